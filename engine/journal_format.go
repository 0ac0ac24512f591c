package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The group-commit journal's bytes (FORMAT.md §9). A journal file is a
// header followed by entries; every integer is big-endian.
//
//	header: Magic [8]byte "KVLJRNL\x00" | Version uint16 (1) | Flags uint16 (0)
//	        | Generation uint64 | CRC uint32 (CRC-32C of the 20 bytes before)
//	entry:  Length uint32 (bytes after CRC) | CRC uint32 (CRC-32C of them)
//	        | Generation uint64 | Kind uint8 | Partition int32
//	        | TopicLength uint16 | Topic [TopicLength]byte | Offset int64
//	        | Payload (Kind 1: whole record batches; Kind 2: nothing)
const (
	journalMagic      = "KVLJRNL\x00"
	journalVersion    = 1
	journalHeaderSize = 24
	// journalEntryFixed is an entry's size without its topic and payload.
	journalEntryFixed = 4 + 4 + 8 + 1 + 4 + 2 + 8
	// journalMaxEntry bounds Length: a larger value is damage, not an entry.
	journalMaxEntry = 1 << 30

	// journalData: Payload holds whole batches appended to the partition
	// after Offset, its log end when they were journaled.
	journalData = 1
	// journalVoid: every earlier entry of the partition is void (its log
	// was truncated and the truncation synced, or it was created anew);
	// Offset is its log end at that moment.
	journalVoid = 2
)

// errJournalHeader is a journal file whose header is missing or damaged.
var errJournalHeader = errors.New("journal header damaged")

// journalEntry is one decoded entry. Payload aliases the decoded buffer.
type journalEntry struct {
	Gen     uint64
	Kind    uint8
	TP      TopicPartition
	Offset  Offset
	Payload []byte
}

func appendJournalHeader(buf []byte, gen uint64) []byte {
	start := len(buf)
	buf = append(buf, journalMagic...)
	buf = binary.BigEndian.AppendUint16(buf, journalVersion)
	buf = binary.BigEndian.AppendUint16(buf, 0)
	buf = binary.BigEndian.AppendUint64(buf, gen)
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoliTable))
}

// appendJournalEntry encodes e (its Gen included) after buf.
func appendJournalEntry(buf []byte, e journalEntry) []byte {
	start := len(buf)
	buf = append(appendJournalEntryHead(buf, e), e.Payload...)
	sealJournalEntry(buf[start:], nil)
	return buf
}

// appendJournalEntryHead appends e's entry up to its payload (e.Payload is
// not used), its Length and CRC left for sealJournalEntry.
func appendJournalEntryHead(buf []byte, e journalEntry) []byte {
	buf = binary.BigEndian.AppendUint64(buf, 0) // Length and CRC
	buf = binary.BigEndian.AppendUint64(buf, e.Gen)
	buf = append(buf, e.Kind)
	buf = binary.BigEndian.AppendUint32(buf, uint32(e.TP.Partition))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(e.TP.Topic)))
	buf = append(buf, e.TP.Topic...)
	return binary.BigEndian.AppendUint64(buf, uint64(e.Offset))
}

// sealJournalEntry sets the Length and CRC of the entry starting at
// entry[0]: entry holds its head (appendJournalEntryHead) and whatever of
// its payload follows it in memory, payload the rest (written after it).
func sealJournalEntry(entry, payload []byte) {
	crc := crc32.Update(crc32.Checksum(entry[8:], castagnoliTable), castagnoliTable, payload)
	binary.BigEndian.PutUint32(entry, uint32(len(entry)-8+len(payload)))
	binary.BigEndian.PutUint32(entry[4:], crc)
}

// journalEnd says why decodeJournal stopped before the end of the data.
type journalEnd struct {
	At     int64  // offset in the file of the first byte not taken
	Reason string // empty: the data ended exactly after an entry
}

// decodeJournal decodes a journal file's bytes: its generation and the
// entries from the start up to the first one that is torn (runs past the
// end), damaged (bad CRC, impossible length or kind) or of another
// generation (left from before the file was last reset). Everything from
// there on is not taken; end says where and why. A damaged header is
// errJournalHeader.
func decodeJournal(data []byte) (gen uint64, ents []journalEntry, end journalEnd, err error) {
	if len(data) < journalHeaderSize {
		return 0, nil, journalEnd{}, fmt.Errorf("%w: %d bytes", errJournalHeader, len(data))
	}
	h := data[:journalHeaderSize]
	if string(h[:8]) != journalMagic {
		return 0, nil, journalEnd{}, fmt.Errorf("%w: bad magic", errJournalHeader)
	}
	if crc32.Checksum(h[:20], castagnoliTable) != binary.BigEndian.Uint32(h[20:]) {
		return 0, nil, journalEnd{}, fmt.Errorf("%w: bad CRC", errJournalHeader)
	}
	if v := binary.BigEndian.Uint16(h[8:]); v != journalVersion {
		return 0, nil, journalEnd{}, fmt.Errorf("%w: version %d", errJournalHeader, v)
	}
	gen = binary.BigEndian.Uint64(h[12:])
	pos := int64(journalHeaderSize)
	rest := data[journalHeaderSize:]
	stop := func(reason string) (uint64, []journalEntry, journalEnd, error) {
		return gen, ents, journalEnd{At: pos, Reason: reason}, nil
	}
	for len(rest) > 0 {
		if len(rest) < 8 {
			return stop("torn entry header")
		}
		n := int64(binary.BigEndian.Uint32(rest))
		if n < journalEntryFixed-8 || n > journalMaxEntry {
			return stop(fmt.Sprintf("impossible entry length %d", n))
		}
		if int64(len(rest)-8) < n {
			return stop("torn entry")
		}
		body := rest[8 : 8+n]
		if crc32.Checksum(body, castagnoliTable) != binary.BigEndian.Uint32(rest[4:]) {
			return stop("entry CRC mismatch")
		}
		e := journalEntry{Gen: binary.BigEndian.Uint64(body), Kind: body[8]}
		if e.Gen != gen {
			return stop(fmt.Sprintf("entry of generation %d in a journal of generation %d", e.Gen, gen))
		}
		if e.Kind != journalData && e.Kind != journalVoid {
			return stop(fmt.Sprintf("unknown entry kind %d", e.Kind))
		}
		e.TP.Partition = int32(binary.BigEndian.Uint32(body[9:]))
		tl := int64(binary.BigEndian.Uint16(body[13:]))
		if 15+tl+8 > n {
			return stop(fmt.Sprintf("topic length %d past the entry", tl))
		}
		e.TP.Topic = string(body[15 : 15+tl])
		e.Offset = Offset(binary.BigEndian.Uint64(body[15+tl:]))
		e.Payload = body[15+tl+8:]
		if e.Kind == journalVoid && len(e.Payload) != 0 {
			return stop("void entry with a payload")
		}
		ents = append(ents, e)
		pos += 8 + n
		rest = rest[8+n:]
	}
	return gen, ents, journalEnd{At: pos}, nil
}
