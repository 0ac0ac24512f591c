package engine

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"slices"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/vfs"
)

// The key-index checkpoint (FORMAT.md §8): a header, 16-byte entries, a
// CRC-32C trailer. Version 2 (written) stores the table's layout: its
// size in slots and the entries in the order they sit in it, so that a
// load places each entry in its slot in one sequential pass instead of
// inserting it. Version 1 (entries in no particular order) is still read.
const (
	keyIndexMagic        = "KVKI"
	keyIndexVersion      = 2
	keyIndexV1           = 1
	keyIndexHeaderSize   = 32
	keyIndexV1HeaderSize = 24
	keyIndexEntrySize    = 16
	keyIndexTrailer      = 4
)

var (
	errNoKeyIndexCheckpoint = errors.New("no key index checkpoint")
	// ErrKeyIndexCorrupt: a key-index checkpoint that must not be used.
	ErrKeyIndexCorrupt = errors.New("engine: corrupt key index checkpoint")
)

var castagnoliTable = crc32.MakeTable(crc32.Castagnoli)

// KeyIndexCheckpoint is a decoded key-index checkpoint.
type KeyIndexCheckpoint struct {
	Version  int16  // 2; 1 for the older layout (still read)
	DigestID int16  // 1: XXH64 (seed 0) of the key bytes
	Covers   Offset // every record below this offset is reflected
	// Slots is the size of the table the entries were laid out in
	// (version 2). EncodeKeyIndexCheckpoint picks one when it is 0 or too
	// small for the entries.
	Slots   int64
	Entries []KeyIndexEntry
}

// KeyIndexEntry is one entry: the newest record whose key has Digest.
type KeyIndexEntry struct {
	Digest    uint64
	Offset    Offset
	Tombstone bool
}

func keyIndexHeader(digestID int16, covers Offset, n, slots int64) []byte {
	h := make([]byte, keyIndexHeaderSize)
	copy(h, keyIndexMagic)
	binary.BigEndian.PutUint16(h[4:], keyIndexVersion)
	binary.BigEndian.PutUint16(h[6:], uint16(digestID))
	binary.BigEndian.PutUint64(h[8:], uint64(covers))
	binary.BigEndian.PutUint64(h[16:], uint64(n))
	binary.BigEndian.PutUint64(h[24:], uint64(slots))
	return h
}

// EncodeKeyIndexCheckpoint encodes c. Version 1 writes the entries in the
// given order; otherwise (version 2) they are placed in a table of
// c.Slots slots (one is picked when that is 0 or too small) and written
// in that table's canonical order (canonicalizeSlots), a digest given
// twice keeping its last entry.
func EncodeKeyIndexCheckpoint(c KeyIndexCheckpoint) []byte {
	if c.Version == keyIndexV1 {
		buf := make([]byte, keyIndexV1HeaderSize, keyIndexV1HeaderSize+len(c.Entries)*keyIndexEntrySize+keyIndexTrailer)
		copy(buf, keyIndexMagic)
		binary.BigEndian.PutUint16(buf[4:], keyIndexV1)
		binary.BigEndian.PutUint16(buf[6:], uint16(c.DigestID))
		binary.BigEndian.PutUint64(buf[8:], uint64(c.Covers))
		binary.BigEndian.PutUint64(buf[16:], uint64(len(c.Entries)))
		for _, e := range c.Entries {
			buf = binary.BigEndian.AppendUint64(buf, e.Digest)
			buf = binary.BigEndian.AppendUint64(buf, encodeEntry(e.Offset, e.Tombstone))
		}
		return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoliTable))
	}
	n := int64(len(c.Entries))
	size := c.Slots
	switch {
	case n == 0 && (size < 0 || size > minTableSlots):
		size = 0
	case n > 0 && (size <= n || size > max(minTableSlots, 4*n)):
		size = max(int64(float64(n)/tableLoadFactor)+1, minTableSlots)
	}
	t := digestTable{slots: make([]digestSlot, size)}
	for _, e := range c.Entries {
		t.insert(e.Digest, encodeEntry(e.Offset, e.Tombstone))
	}
	var w sliceWriter
	if err := encodeKeyIndexV2(&w, c.DigestID, c.Covers, t.slots, t.n); err != nil {
		panic(err) // a sliceWriter does not fail
	}
	return w.b
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// canonicalizeSlots puts slots (a table's slot array, load below 100%)
// in the layout version 2 stores: each probe run (maximal sequence of
// occupied slots, wrapping around the end) sorted by the entries' home
// slot, counted from the run's first slot, then by digest. Entries of a
// linear-probing table keep the occupied slots whatever their insertion
// order, and in this order each still sits at or after its home with no
// empty slot between: the table answers the same. It returns the first
// slot of the run starting at the lowest index (-1: no entry), where
// the stored order starts.
func canonicalizeSlots(slots []digestSlot) int {
	c := len(slots)
	start := -1
	for i := 0; i < c; i++ {
		if slots[i].value != 0 && slots[(i+c-1)%c].value == 0 {
			start = i
			break
		}
	}
	if start < 0 {
		return -1
	}
	type keyed struct {
		home int // counted from the run's first slot
		s    digestSlot
	}
	var run []keyed
	// i walks the slots from start, wrapping; seen counts them.
	for i, seen := start, 0; seen < c; {
		if slots[i].value == 0 {
			if i++; i == c {
				i = 0
			}
			seen++
			continue
		}
		first := i
		run = run[:0]
		for seen < c && slots[i].value != 0 {
			s := slots[i]
			h, _ := bits.Mul64(s.digest, uint64(c))
			rel := int(h) - first
			if rel < 0 {
				rel += c
			}
			run = append(run, keyed{home: rel, s: s})
			if i++; i == c {
				i = 0
			}
			seen++
		}
		if len(run) == 1 {
			continue
		}
		slices.SortFunc(run, func(a, b keyed) int {
			if a.home != b.home {
				return a.home - b.home
			}
			return cmp.Compare(a.s.digest, b.s.digest)
		})
		j := first
		for _, e := range run {
			slots[j] = e.s
			if j++; j == c {
				j = 0
			}
		}
	}
	return start
}

// encodeKeyIndexV2 writes a version-2 checkpoint of slots (a table's slot
// array holding n entries; reordered in place) to w.
func encodeKeyIndexV2(w io.Writer, digestID int16, covers Offset, slots []digestSlot, n int) error {
	start := canonicalizeSlots(slots)
	h := keyIndexHeader(digestID, covers, int64(n), int64(len(slots)))
	crc := crc32.Update(0, castagnoliTable, h)
	if _, err := w.Write(h); err != nil {
		return err
	}
	chunk := make([]byte, 0, keyIndexEntrySize*4096)
	flush := func() error {
		crc = crc32.Update(crc, castagnoliTable, chunk)
		_, err := w.Write(chunk)
		chunk = chunk[:0]
		return err
	}
	if start >= 0 {
		for _, part := range [2][]digestSlot{slots[start:], slots[:start]} {
			for _, s := range part {
				if s.value == 0 {
					continue
				}
				chunk = binary.BigEndian.AppendUint64(chunk, s.digest)
				chunk = binary.BigEndian.AppendUint64(chunk, s.value)
				if len(chunk) == cap(chunk) {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	_, err := w.Write(binary.BigEndian.AppendUint32(nil, crc))
	return err
}

// keyIndexHeaderInfo is a parsed header.
type keyIndexHeaderInfo struct {
	version  int16
	digestID int16
	covers   Offset
	n, slots int64
	size     int64 // header size
}

// parseKeyIndexHeader checks the header (h holds at least the version-1
// header's bytes when the file has them) against the file size.
func parseKeyIndexHeader(h []byte, size int64) (keyIndexHeaderInfo, error) {
	var hi keyIndexHeaderInfo
	if len(h) < keyIndexV1HeaderSize || size < keyIndexV1HeaderSize {
		return hi, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrKeyIndexCorrupt, size, keyIndexV1HeaderSize)
	}
	if string(h[:4]) != keyIndexMagic {
		return hi, fmt.Errorf("%w: magic %q", ErrKeyIndexCorrupt, h[:4])
	}
	hi.version = int16(binary.BigEndian.Uint16(h[4:]))
	switch hi.version {
	case keyIndexV1:
		hi.size = keyIndexV1HeaderSize
	case keyIndexVersion:
		hi.size = keyIndexHeaderSize
		if len(h) < keyIndexHeaderSize || size < keyIndexHeaderSize {
			return hi, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrKeyIndexCorrupt, size, keyIndexHeaderSize)
		}
		hi.slots = int64(binary.BigEndian.Uint64(h[24:]))
	default:
		return hi, fmt.Errorf("%w: version %d", ErrKeyIndexCorrupt, hi.version)
	}
	hi.digestID = int16(binary.BigEndian.Uint16(h[6:]))
	hi.covers = Offset(binary.BigEndian.Uint64(h[8:]))
	hi.n = int64(binary.BigEndian.Uint64(h[16:]))
	if hi.covers < 0 {
		return hi, fmt.Errorf("%w: covers offset %d", ErrKeyIndexCorrupt, hi.covers)
	}
	if hi.n < 0 || hi.n > (size-hi.size-keyIndexTrailer)/keyIndexEntrySize || hi.size+hi.n*keyIndexEntrySize+keyIndexTrailer != size {
		return hi, fmt.Errorf("%w: %d entries do not fill %d bytes", ErrKeyIndexCorrupt, hi.n, size)
	}
	// A table keeps at least one slot empty, and is at least half full
	// unless it has minTableSlots slots or fewer (shrunk otherwise): a
	// bound on what a load allocates.
	if hi.version == keyIndexVersion && (hi.slots < 0 || (hi.n > 0 && hi.slots <= hi.n) || hi.slots > max(minTableSlots, 4*hi.n)) {
		return hi, fmt.Errorf("%w: a table of %d slots for %d entries", ErrKeyIndexCorrupt, hi.slots, hi.n)
	}
	return hi, nil
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

// layoutChecker places a version-2 checkpoint's entries, in file order,
// in a table of c slots and checks they are in the layout
// canonicalizeSlots writes: the first entry sits at its home slot s; the
// others follow ordered by home (counted from s) then digest, strictly
// (so no digest twice), each at its home or right after the entry before
// it; the last one leaves the slot before s empty; and no probe run
// starts at a lower index than s.
type layoutChecker struct {
	c, start     int
	k            int64
	home, pos    int // of the previous entry, counted from start
	digest       uint64
	overflowSeen bool
}

// next returns the slot of the next entry (digest d).
func (lc *layoutChecker) next(d uint64) (int, error) {
	h64, _ := bits.Mul64(d, uint64(lc.c))
	h := int(h64)
	k := lc.k
	lc.k++
	if k == 0 {
		lc.start, lc.home, lc.pos, lc.digest = h, 0, 0, d
		if lc.c < 2 {
			return 0, fmt.Errorf("%w: entry 0: a table of %d slots", ErrKeyIndexCorrupt, lc.c)
		}
		return h, nil
	}
	rel := h - lc.start
	if rel < 0 {
		rel += lc.c
	}
	switch {
	case rel == lc.home && d == lc.digest:
		return 0, fmt.Errorf("%w: entry %d: digest %#x twice", ErrKeyIndexCorrupt, k, d)
	case rel < lc.home || (rel == lc.home && d < lc.digest):
		return 0, fmt.Errorf("%w: entry %d: digest %#x not in table order", ErrKeyIndexCorrupt, k, d)
	}
	pos := lc.pos + 1
	if rel > pos {
		// A run starts here, after an empty slot.
		pos = rel
		if lc.start+pos >= lc.c {
			return 0, fmt.Errorf("%w: entry %d: digest %#x starts a run before the first entry's slot", ErrKeyIndexCorrupt, k, d)
		}
	}
	if pos > lc.c-2 {
		return 0, fmt.Errorf("%w: entry %d: digest %#x does not fit in the table of %d slots", ErrKeyIndexCorrupt, k, d, lc.c)
	}
	lc.home, lc.pos, lc.digest = rel, pos, d
	return (lc.start + pos) % lc.c, nil
}

// ParseKeyIndexCheckpoint decodes and checks a whole checkpoint: header,
// size, CRC, every entry's offset below Covers, no digest twice, and for
// version 2 the table layout (layoutChecker).
func ParseKeyIndexCheckpoint(buf []byte) (KeyIndexCheckpoint, error) {
	hi, err := parseKeyIndexHeader(buf, int64(len(buf)))
	if err != nil {
		return KeyIndexCheckpoint{}, err
	}
	body := buf[:len(buf)-keyIndexTrailer]
	if want, got := binary.BigEndian.Uint32(buf[len(body):]), crc32.Checksum(body, castagnoliTable); want != got {
		return KeyIndexCheckpoint{}, fmt.Errorf("%w: CRC %#x, computed %#x", ErrKeyIndexCorrupt, want, got)
	}
	c := KeyIndexCheckpoint{Version: hi.version, DigestID: hi.digestID, Covers: hi.covers, Slots: hi.slots, Entries: make([]KeyIndexEntry, 0, hi.n)}
	var seen map[uint64]struct{}
	lc := layoutChecker{c: int(hi.slots)}
	if hi.version == keyIndexV1 {
		seen = make(map[uint64]struct{}, hi.n)
	}
	for i := int64(0); i < hi.n; i++ {
		p := body[hi.size+i*keyIndexEntrySize:]
		d, v := binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
		if err := checkKeyIndexEntry(i, v, hi.covers); err != nil {
			return KeyIndexCheckpoint{}, err
		}
		if seen != nil {
			if _, dup := seen[d]; dup {
				return KeyIndexCheckpoint{}, fmt.Errorf("%w: entry %d: digest %#x twice", ErrKeyIndexCorrupt, i, d)
			}
			seen[d] = struct{}{}
		} else if _, err := lc.next(d); err != nil {
			return KeyIndexCheckpoint{}, err
		}
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
	h := make([]byte, keyIndexV1HeaderSize)
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
// entry offset. Anything wrong (size, CRC, an entry, the layout, another
// digest function, covering more than the log end leo) is an error and
// tab's content is then meaningless.
//
// A version-2 checkpoint is placed slot by slot into a table of its size
// (layoutChecker), front to back; a version-1 one is inserted entry by
// entry.
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
	h, err := r.Peek(int(min(fi.Size(), keyIndexHeaderSize)))
	if err != nil {
		return 0, fmt.Errorf("%w: header: %w", ErrKeyIndexCorrupt, err)
	}
	hi, err := parseKeyIndexHeader(h, fi.Size())
	if err != nil {
		return 0, err
	}
	crc := crc32.Update(0, castagnoliTable, h[:hi.size])
	if _, err := r.Discard(int(hi.size)); err != nil {
		return 0, fmt.Errorf("%w: header: %w", ErrKeyIndexCorrupt, err)
	}
	if hi.digestID != digestID {
		return 0, fmt.Errorf("%w: digest function %d, this index uses %d", ErrKeyIndexCorrupt, hi.digestID, digestID)
	}
	if hi.covers > leo {
		return 0, fmt.Errorf("%w: covers offsets up to %d, beyond the log end %d", ErrKeyIndexCorrupt, hi.covers, leo)
	}
	n := hi.n
	var lc layoutChecker
	if hi.version == keyIndexVersion {
		*tab = digestTable{}
		if hi.slots > 0 {
			tab.slots = make([]digestSlot, hi.slots)
		}
		lc.c = int(hi.slots)
	} else {
		tab.reserve(int(n))
	}
	// Entries are read in chunks, each checksummed in one call. Version
	// 1: put without a lookup first; a digest twice leaves the table with
	// fewer entries than the count, which is checked at the end.
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
			if err := checkKeyIndexEntry(i, v, hi.covers); err != nil {
				return 0, err
			}
			if o, _ := decodeEntry(v); o < *minOffset {
				*minOffset = o
			}
			if hi.version == keyIndexVersion {
				slot, err := lc.next(d)
				if err != nil {
					return 0, err
				}
				tab.slots[slot] = digestSlot{digest: d, value: v}
				tab.n++
			} else {
				tab.put(d, v)
			}
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
	return hi.covers, nil
}

// writeKeyIndexCheckpoint writes slots (a copy of the table, n entries;
// reordered) covering covers to path atomically, as version 2: path.tmp
// written and fsynced, renamed over path, directory fsynced.
func writeKeyIndexCheckpoint(fsys vfs.FS, path string, digestID int16, covers Offset, slots []digestSlot, n int) error {
	tmp := path + checkpoint.TmpSuffix
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	err = encodeKeyIndexV2(w, digestID, covers, slots, n)
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
