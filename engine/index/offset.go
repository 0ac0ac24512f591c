package index

import (
	"encoding/binary"
	"math"

	"github.com/kvlog/kvlog/engine/vfs"
)

// OffsetEntrySize is the size of an offset index entry: relative offset
// (4 bytes) and file position (4 bytes), big-endian.
const OffsetEntrySize = 8

// offsetWarmEntries is the number of entries in the offset index's warm section.
const offsetWarmEntries = warmSectionBytes / OffsetEntrySize

// OffsetIndex is a segment's sparse offset index (<base>.index): it maps the
// last offset of some record batches to the batch's start position in the
// segment's .log. Offsets are strictly increasing. See the package doc for
// the concurrency contract.
type OffsetIndex struct {
	mmapFile
}

// OpenOffset opens or creates the offset index at path for the segment with
// base offset baseOffset. maxIndexSize is segment.index.bytes, rounded down to
// a multiple of 8.
//
// A writable index is created if missing, extended (ftruncate) to
// maxIndexSize, or to its entries' size if that is larger, and mapped
// read-write. The entries of an existing file are its first size/8 entries
// less any trailing all-zero entries, which an unclean shutdown leaves in a
// preallocated file (an all-zero entry is valid only at slot 0). A read-only
// index is mapped at the file's exact size and must exist.
//
// Open does not validate the entries; call SanityCheck. A file larger than any
// index can be is reported as ErrCorruptIndex.
func OpenOffset(fs vfs.FS, path string, baseOffset int64, maxIndexSize int, writable bool) (*OffsetIndex, error) {
	x := &OffsetIndex{}
	if err := x.open(fs, path, baseOffset, OffsetEntrySize, maxIndexSize, writable); err != nil {
		return nil, err
	}
	return x, nil
}

// NewOffset returns a new, empty writable offset index whose file at path
// (which must not exist) is created, extended to maxIndexSize and mapped
// only when its first entry is written. Until then it holds no descriptor
// and no mapping, Flush and Close create nothing, and TrimToValidSize (a
// roll) creates the file empty. Kafka defers its index files likewise: a
// partition that never holds index.interval.bytes of records, and every
// partition just created, costs one descriptor (its .log), not three.
func NewOffset(fs vfs.FS, path string, baseOffset int64, maxIndexSize int) (*OffsetIndex, error) {
	x := &OffsetIndex{}
	if err := x.deferOpen(fs, path, baseOffset, OffsetEntrySize, maxIndexSize); err != nil {
		return nil, err
	}
	return x, nil
}

// offsetAt returns the absolute offset in slot i. Relative offsets are read as
// signed 32-bit integers, as Kafka reads them.
func (x *OffsetIndex) offsetAt(data []byte, i int) int64 {
	return x.base + int64(int32(binary.BigEndian.Uint32(data[i*OffsetEntrySize:])))
}

func (x *OffsetIndex) entryAt(data []byte, i int) (int64, uint32) {
	p := data[i*OffsetEntrySize : i*OffsetEntrySize+OffsetEntrySize]
	return x.base + int64(int32(binary.BigEndian.Uint32(p))), binary.BigEndian.Uint32(p[4:])
}

// Append adds the entry (offset, position). offset must be larger than the
// last entry's offset (ErrInvalidOffset), offset-base must be in
// [0, math.MaxInt32] (ErrOffsetOverflow), and the index must not be full
// (ErrIndexFull). The entry is written with pwrite (a failed write, e.g. a
// full file system, is returned and nothing is appended) and is visible to
// readers when Append returns, unless the index is in bulk mode (BeginBulk).
func (x *OffsetIndex) Append(offset int64, position uint32) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.checkWritable(); err != nil {
		return err
	}
	n := x.count()
	if n >= x.MaxEntries() {
		return x.wrap(ErrIndexFull, "append offset %d: %d entries", offset, n)
	}
	if n > 0 {
		if last := x.offsetAt(x.writerSlot(n-1), 0); offset <= last {
			return x.wrap(ErrInvalidOffset, "append offset %d at slot %d: not larger than the last offset %d", offset, n, last)
		}
	}
	rel := offset - x.base
	if offset < x.base || rel > math.MaxInt32 {
		return x.wrap(ErrOffsetOverflow, "append offset %d: base offset %d", offset, x.base)
	}
	var e [OffsetEntrySize]byte
	binary.BigEndian.PutUint32(e[:], uint32(rel))
	binary.BigEndian.PutUint32(e[4:], position)
	return x.put(e[:])
}

// Lookup returns the entry with the largest offset <= target, or
// (BaseOffset(), 0) if there is none. It uses Kafka's warm-section binary
// search: if the entry at slot max(0, Entries()-1-1024) has an offset below
// target, only the slots from there to the end are searched.
func (x *OffsetIndex) Lookup(target int64) (offset int64, position uint32) {
	data := x.mapping()
	slot, _ := x.lookupSlot(data, target)
	if slot < 0 {
		return x.base, 0
	}
	return x.entryAt(data, slot)
}

// lookupSlot returns the slot Lookup answers with (-1 for none) and whether
// the warm section alone was searched.
func (x *OffsetIndex) lookupSlot(data []byte, target int64) (slot int, warm bool) {
	n := x.publishedIn(data)
	if n == 0 {
		return -1, false
	}
	firstHot := max(0, n-1-offsetWarmEntries)
	if x.offsetAt(data, firstHot) < target {
		return x.search(data, target, firstHot, n-1), true
	}
	if x.offsetAt(data, 0) > target {
		return -1, false
	}
	return x.search(data, target, 0, firstHot), false
}

// search is Kafka's binary search for the largest slot in [lo, hi] whose
// offset is <= target, given that slot lo's offset is.
func (x *OffsetIndex) search(data []byte, target int64, lo, hi int) int {
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		switch k := x.offsetAt(data, mid); {
		case k > target:
			hi = mid - 1
		case k < target:
			lo = mid
		default:
			return mid
		}
	}
	return lo
}

// Entry returns entry i. For i outside [0, Entries()) it returns
// (BaseOffset(), 0), the same answer as a Lookup that finds nothing.
func (x *OffsetIndex) Entry(i int) (offset int64, position uint32) {
	data := x.mapping()
	if i < 0 || i >= x.publishedIn(data) {
		return x.base, 0
	}
	return x.entryAt(data, i)
}

// LastOffset returns the last entry's offset, or BaseOffset() if the index is
// empty.
func (x *OffsetIndex) LastOffset() int64 {
	data := x.mapping()
	n := x.publishedIn(data)
	if n == 0 {
		return x.base
	}
	return x.offsetAt(data, n-1)
}

// IsFull reports whether no slot is free.
func (x *OffsetIndex) IsFull() bool { return x.published() >= x.MaxEntries() }

// TruncateTo drops every entry whose offset is >= offset; truncating to an
// offset above the last entry has no effect. Dropped slots of a writable index
// are zeroed.
func (x *OffsetIndex) TruncateTo(offset int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return
	}
	// Lower bound: the first slot whose offset is >= offset.
	lo, hi := 0, x.published()
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if x.offsetAt(x.mapping(), mid) < offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	x.setEntries(lo)
}

// Reset drops every entry, for a rebuild from the log. It does not resize a
// trimmed index: call Resize to make room again.
func (x *OffsetIndex) Reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return
	}
	x.setEntries(0)
	x.badSize = false
}

// SanityCheck reports, as ErrCorruptIndex, an index whose file size (at open
// or now) is not a multiple of 8 or whose last offset is below the base offset
// (Kafka's OffsetIndex.sanityCheck). It is O(1); Verify checks every entry.
func (x *OffsetIndex) SanityCheck() error {
	if x.closed {
		return x.wrap(ErrClosed, "sanity check")
	}
	if err := x.sanitySize(); err != nil {
		return err
	}
	if n := x.published(); n > 0 {
		if last := x.LastOffset(); last < x.base {
			return x.corrupt("last offset %d (%d entries) is below the base offset %d", last, n, x.base)
		}
	}
	return nil
}

// Verify checks every entry: offsets at or above the base offset and strictly
// increasing, positions non-decreasing. It reports the first violation as
// ErrCorruptIndex; nil implies SanityCheck's entry condition holds and Lookup
// answers exactly "largest offset <= target".
func (x *OffsetIndex) Verify() error {
	if err := x.SanityCheck(); err != nil {
		return err
	}
	data := x.mapping()
	n := x.publishedIn(data)
	prevOff, prevPos := int64(math.MinInt64), uint32(0)
	for i := range n {
		off, pos := x.entryAt(data, i)
		switch {
		case off < x.base:
			return x.corrupt("entry %d: offset %d is below the base offset %d", i, off, x.base)
		case i > 0 && off <= prevOff:
			return x.corrupt("entry %d: offset %d is not larger than the previous offset %d", i, off, prevOff)
		case i > 0 && pos < prevPos:
			return x.corrupt("entry %d: position %d is below the previous position %d", i, pos, prevPos)
		}
		prevOff, prevPos = off, pos
	}
	return nil
}
