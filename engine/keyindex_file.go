package engine

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/vfs"
)

// The key-index checkpoint (FORMAT.md §8): a 24-byte header, 16-byte
// entries, a CRC-32C trailer.
const (
	keyIndexMagic      = "KVKI"
	keyIndexVersion    = 1
	keyIndexHeaderSize = 24
	keyIndexEntrySize  = 16
	keyIndexTrailer    = 4
)

var (
	errNoKeyIndexCheckpoint = errors.New("no key index checkpoint")
	// ErrKeyIndexCorrupt: a key-index checkpoint that must not be used.
	ErrKeyIndexCorrupt = errors.New("engine: corrupt key index checkpoint")
)

var castagnoliTable = crc32.MakeTable(crc32.Castagnoli)

// KeyIndexCheckpoint is a decoded key-index checkpoint.
type KeyIndexCheckpoint struct {
	Version  int16
	DigestID int16  // 1: XXH64 (seed 0) of the key bytes
	Covers   Offset // every record below this offset is reflected
	Entries  []KeyIndexEntry
}

// KeyIndexEntry is one entry: the newest record whose key has Digest.
type KeyIndexEntry struct {
	Digest    uint64
	Offset    Offset
	Tombstone bool
}

func keyIndexHeader(digestID int16, covers Offset, n int64) []byte {
	h := make([]byte, keyIndexHeaderSize)
	copy(h, keyIndexMagic)
	binary.BigEndian.PutUint16(h[4:], keyIndexVersion)
	binary.BigEndian.PutUint16(h[6:], uint16(digestID))
	binary.BigEndian.PutUint64(h[8:], uint64(covers))
	binary.BigEndian.PutUint64(h[16:], uint64(n))
	return h
}

// EncodeKeyIndexCheckpoint encodes c (entries in the given order).
func EncodeKeyIndexCheckpoint(c KeyIndexCheckpoint) []byte {
	buf := keyIndexHeader(c.DigestID, c.Covers, int64(len(c.Entries)))
	for _, e := range c.Entries {
		buf = binary.BigEndian.AppendUint64(buf, e.Digest)
		buf = binary.BigEndian.AppendUint64(buf, encodeEntry(e.Offset, e.Tombstone))
	}
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoliTable))
}

// parseKeyIndexHeader checks the header against the file size.
func parseKeyIndexHeader(h []byte, size int64) (digestID int16, covers Offset, n int64, err error) {
	if len(h) < keyIndexHeaderSize {
		return 0, 0, 0, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrKeyIndexCorrupt, size, keyIndexHeaderSize)
	}
	if string(h[:4]) != keyIndexMagic {
		return 0, 0, 0, fmt.Errorf("%w: magic %q", ErrKeyIndexCorrupt, h[:4])
	}
	if v := int16(binary.BigEndian.Uint16(h[4:])); v != keyIndexVersion {
		return 0, 0, 0, fmt.Errorf("%w: version %d", ErrKeyIndexCorrupt, v)
	}
	digestID = int16(binary.BigEndian.Uint16(h[6:]))
	covers = Offset(binary.BigEndian.Uint64(h[8:]))
	n = int64(binary.BigEndian.Uint64(h[16:]))
	if covers < 0 {
		return 0, 0, 0, fmt.Errorf("%w: covers offset %d", ErrKeyIndexCorrupt, covers)
	}
	if n < 0 || n > (size-keyIndexHeaderSize-keyIndexTrailer)/keyIndexEntrySize || keyIndexHeaderSize+n*keyIndexEntrySize+keyIndexTrailer != size {
		return 0, 0, 0, fmt.Errorf("%w: %d entries do not fill %d bytes", ErrKeyIndexCorrupt, n, size)
	}
	return digestID, covers, n, nil
}

// checkKeyIndexEntry checks one entry of a checkpoint covering covers.
func checkKeyIndexEntry(i int64, v uint64, covers Offset) error {
	if v&(1<<63|1<<61) != 0 || v&^tombBit == 0 {
		return fmt.Errorf("%w: entry %d: value %#x", ErrKeyIndexCorrupt, i, v)
	}
	if o, _ := decodeEntry(v); o >= covers {
		return fmt.Errorf("%w: entry %d: offset %d not below the covered offset %d", ErrKeyIndexCorrupt, i, o, covers)
	}
	return nil
}

// ParseKeyIndexCheckpoint decodes and checks a whole checkpoint: header,
// size, CRC, every entry's offset below Covers, no digest twice.
func ParseKeyIndexCheckpoint(buf []byte) (KeyIndexCheckpoint, error) {
	id, covers, n, err := parseKeyIndexHeader(buf, int64(len(buf)))
	if err != nil {
		return KeyIndexCheckpoint{}, err
	}
	body := buf[:len(buf)-keyIndexTrailer]
	if want, got := binary.BigEndian.Uint32(buf[len(body):]), crc32.Checksum(body, castagnoliTable); want != got {
		return KeyIndexCheckpoint{}, fmt.Errorf("%w: CRC %#x, computed %#x", ErrKeyIndexCorrupt, want, got)
	}
	c := KeyIndexCheckpoint{Version: keyIndexVersion, DigestID: id, Covers: covers, Entries: make([]KeyIndexEntry, 0, n)}
	seen := make(map[uint64]struct{}, n)
	for i := int64(0); i < n; i++ {
		p := body[keyIndexHeaderSize+i*keyIndexEntrySize:]
		d, v := binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
		if err := checkKeyIndexEntry(i, v, covers); err != nil {
			return KeyIndexCheckpoint{}, err
		}
		if _, dup := seen[d]; dup {
			return KeyIndexCheckpoint{}, fmt.Errorf("%w: entry %d: digest %#x twice", ErrKeyIndexCorrupt, i, d)
		}
		seen[d] = struct{}{}
		o, t := decodeEntry(v)
		c.Entries = append(c.Entries, KeyIndexEntry{Digest: d, Offset: o, Tombstone: t})
	}
	return c, nil
}

// readKeyIndexCovers reads only the covered offset of a checkpoint.
func readKeyIndexCovers(fsys vfs.FS, path string) (Offset, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := make([]byte, keyIndexHeaderSize)
	if _, err := io.ReadFull(f, h); err != nil {
		return 0, err
	}
	if string(h[:4]) != keyIndexMagic {
		return 0, ErrKeyIndexCorrupt
	}
	return Offset(binary.BigEndian.Uint64(h[8:])), nil
}

// readKeyIndexCheckpoint streams the checkpoint at path into tab (empty)
// and returns what it covers; *minOffset is lowered to the smallest
// entry offset. Anything wrong (size, CRC, an entry, another digest
// function, covering more than the log end leo) is an error and tab's
// content is then meaningless.
func readKeyIndexCheckpoint(fsys vfs.FS, path string, digestID int16, leo Offset, tab *digestTable, minOffset *Offset) (Offset, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errNoKeyIndexCheckpoint
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(f, 1<<16)
	h := make([]byte, keyIndexHeaderSize)
	if _, err := io.ReadFull(r, h); err != nil {
		return 0, fmt.Errorf("%w: header: %w", ErrKeyIndexCorrupt, err)
	}
	id, covers, n, err := parseKeyIndexHeader(h, fi.Size())
	if err != nil {
		return 0, err
	}
	if id != digestID {
		return 0, fmt.Errorf("%w: digest function %d, this index uses %d", ErrKeyIndexCorrupt, id, digestID)
	}
	if covers > leo {
		return 0, fmt.Errorf("%w: covers offsets up to %d, beyond the log end %d", ErrKeyIndexCorrupt, covers, leo)
	}
	crc := crc32.Update(0, castagnoliTable, h)
	tab.reserve(int(n))
	// Entries are read in chunks, each checksummed in one call, and put
	// without a lookup first: a digest twice leaves the table with fewer
	// entries than the count, which is checked at the end.
	chunk := make([]byte, keyIndexEntrySize*4096)
	for i := int64(0); i < n; {
		k := min(n-i, int64(len(chunk)/keyIndexEntrySize))
		c := chunk[:k*keyIndexEntrySize]
		if _, err := io.ReadFull(r, c); err != nil {
			return 0, fmt.Errorf("%w: entry %d: %w", ErrKeyIndexCorrupt, i, err)
		}
		crc = crc32.Update(crc, castagnoliTable, c)
		for ; len(c) > 0; c = c[keyIndexEntrySize:] {
			d, v := binary.BigEndian.Uint64(c), binary.BigEndian.Uint64(c[8:])
			if err := checkKeyIndexEntry(i, v, covers); err != nil {
				return 0, err
			}
			if o, _ := decodeEntry(v); o < *minOffset {
				*minOffset = o
			}
			tab.put(d, v)
			i++
		}
	}
	if int64(tab.len()) != n {
		return 0, fmt.Errorf("%w: %d entries but %d distinct digests: a digest twice", ErrKeyIndexCorrupt, n, tab.len())
	}
	t := make([]byte, keyIndexTrailer)
	if _, err := io.ReadFull(r, t); err != nil {
		return 0, fmt.Errorf("%w: trailer: %w", ErrKeyIndexCorrupt, err)
	}
	if want := binary.BigEndian.Uint32(t); want != crc {
		return 0, fmt.Errorf("%w: CRC %#x, computed %#x", ErrKeyIndexCorrupt, want, crc)
	}
	return covers, nil
}

// writeKeyIndexCheckpoint writes slots (a copy of the table) covering
// covers to path atomically: path.tmp written and fsynced, renamed over
// path, directory fsynced.
func writeKeyIndexCheckpoint(fsys vfs.FS, path string, digestID int16, covers Offset, slots []digestSlot, n int) error {
	tmp := path + checkpoint.TmpSuffix
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	h := keyIndexHeader(digestID, covers, int64(n))
	crc := crc32.Update(0, castagnoliTable, h)
	_, err = w.Write(h)
	e := make([]byte, keyIndexEntrySize)
	for _, s := range slots {
		if s.value == 0 || err != nil {
			continue
		}
		binary.BigEndian.PutUint64(e, s.digest)
		binary.BigEndian.PutUint64(e[8:], s.value)
		crc = crc32.Update(crc, castagnoliTable, e)
		_, err = w.Write(e)
	}
	if err == nil {
		_, err = w.Write(binary.BigEndian.AppendUint32(nil, crc))
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return err
	}
	return fsys.SyncDir(filepath.Dir(path))
}

// CheckpointKeyIndex writes the key index's checkpoint when the index is
// loaded and has applied at least minNew records' offsets since the last
// one (0: whenever anything changed). The table is copied under the
// index's lock and written without it.
//
// When cleaner swaps removed tombstones since the last one, or (minNew >
// 0) the index is minNew offsets or more behind the last stable offset, it
// also starts the goroutine dropping those entries and catching the index
// up (keyindex_purge.go), which writes the checkpoint again once it
// changed the table: that work reads the log and must not hold up the
// caller (the manager checkpoints every partition in one loop).
func (l *Log) CheckpointKeyIndex(minNew int64) error {
	ki := l.kidx.Load()
	if ki == nil || l.closed.Load() {
		return nil
	}
	l.startKeyIndexPurge(ki, minNew)
	return l.checkpointKeyIndex(ki, minNew)
}

func (l *Log) checkpointKeyIndex(ki *keyIndex, minNew int64) error {
	return l.checkpointKeyIndexIf(ki, minNew, false)
}

// checkpointKeyIndexIf is checkpointKeyIndex; with open it writes nothing
// once the log is closing (a purge goroutine finishing after Close began
// must not write into a closed log's directory; Close writes the
// checkpoint itself).
func (l *Log) checkpointKeyIndexIf(ki *keyIndex, minNew int64, open bool) error {
	ki.mu.Lock()
	if ki.changed == 0 && (ki.applied <= ki.ckptAt || int64(ki.applied-max(ki.ckptAt, 0)) < minNew) {
		ki.mu.Unlock()
		return nil
	}
	covers, n, changed := ki.applied, ki.tab.len(), ki.changed
	slots := append([]digestSlot(nil), ki.tab.slots...)
	ki.mu.Unlock()
	// A truncation dropping this index (and removing the file) while it
	// was copied or is written must win: kidxFileMu orders the two.
	l.kidxFileMu.Lock()
	defer l.kidxFileMu.Unlock()
	if l.kidx.Load() != ki || (open && l.closed.Load()) {
		return nil
	}
	if err := writeKeyIndexCheckpoint(l.fs, KeyIndexFileName(l.dir), ki.digestID, covers, slots, n); err != nil {
		return l.errorf("checkpoint key index", -1, covers, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	ki.mu.Lock()
	if covers > ki.ckptAt {
		ki.ckptAt = covers
	}
	ki.changed -= changed
	ki.mu.Unlock()
	return nil
}
