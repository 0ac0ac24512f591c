package index

import (
	"encoding/binary"
	"math"

	"github.com/kvlog/kvlog/engine/vfs"
)

// TimeEntrySize is the size of a time index entry: timestamp (8 bytes) and
// relative offset (4 bytes), big-endian.
const TimeEntrySize = 12

// NoTimestamp is Kafka's RecordBatch.NO_TIMESTAMP: the timestamp reported by
// an empty time index or a Lookup that finds nothing.
const NoTimestamp int64 = -1

// timeWarmEntries is the number of entries in the time index's warm section.
const timeWarmEntries = warmSectionBytes / TimeEntrySize

// TimeIndex is a segment's sparse time index (<base>.timeindex). An entry
// (T, O) means "the largest timestamp among the records up to and including
// offset O is T": any record with a timestamp greater than T comes after O.
// Timestamps are strictly increasing and offsets non-decreasing. Its last slot
// is reserved for the entry written when the segment rolls, so IsFull is true
// one entry early. See the package doc for the concurrency contract.
type TimeIndex struct {
	mmapFile
}

// OpenTime opens or creates the time index at path, exactly as OpenOffset does
// with 12-byte entries: maxIndexSize is rounded down to a multiple of 12, and
// trailing all-zero entries of an existing file are not entries (an all-zero
// entry is valid only at slot 0).
func OpenTime(fs vfs.FS, path string, baseOffset int64, maxIndexSize int, writable bool) (*TimeIndex, error) {
	x := &TimeIndex{}
	if err := x.open(fs, path, baseOffset, TimeEntrySize, maxIndexSize, writable); err != nil {
		return nil, err
	}
	return x, nil
}

// NewTime is NewOffset for a time index.
func NewTime(fs vfs.FS, path string, baseOffset int64, maxIndexSize int) (*TimeIndex, error) {
	x := &TimeIndex{}
	if err := x.deferOpen(fs, path, baseOffset, TimeEntrySize, maxIndexSize); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *TimeIndex) timestampAt(data []byte, i int) int64 {
	return int64(binary.BigEndian.Uint64(data[i*TimeEntrySize:]))
}

func (x *TimeIndex) offsetAt(data []byte, i int) int64 {
	return x.base + int64(int32(binary.BigEndian.Uint32(data[i*TimeEntrySize+8:])))
}

func (x *TimeIndex) entryAt(data []byte, i int) (int64, int64) {
	p := data[i*TimeEntrySize : i*TimeEntrySize+TimeEntrySize]
	return int64(binary.BigEndian.Uint64(p)), x.base + int64(int32(binary.BigEndian.Uint32(p[8:])))
}

// MaybeAppend is Kafka's TimeIndex.maybeAppend. In order:
//   - unless skipFullCheck, a full index (IsFull) is ErrIndexFull; with
//     skipFullCheck the reserved last slot may be used, and only an index with
//     no free slot at all is ErrIndexFull;
//   - an offset below the last entry's offset is ErrInvalidOffset;
//   - a timestamp below the last entry's timestamp is ErrInvalidTimestamp;
//   - the entry is appended only if timestamp is larger than the last entry's
//     timestamp (NoTimestamp for an empty index); otherwise, e.g. the same
//     entry again at roll or close, or the same timestamp at a later offset,
//     nothing happens. An appended offset must be in
//     [base, base+math.MaxInt32] (ErrOffsetOverflow).
func (x *TimeIndex) MaybeAppend(timestamp int64, offset int64, skipFullCheck bool) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.checkWritable(); err != nil {
		return err
	}
	n := x.count()
	maxEntries := x.MaxEntries()
	if n >= maxEntries || (!skipFullCheck && n >= maxEntries-1) {
		return x.wrap(ErrIndexFull, "append timestamp %d offset %d: %d of %d entries", timestamp, offset, n, maxEntries)
	}
	lastTs := NoTimestamp
	if n > 0 {
		ts, off := x.entryAt(x.writerSlot(n-1), 0)
		if offset < off {
			return x.wrap(ErrInvalidOffset, "append offset %d at slot %d: smaller than the last offset %d", offset, n, off)
		}
		if timestamp < ts {
			return x.wrap(ErrInvalidTimestamp, "append timestamp %d at slot %d: smaller than the last timestamp %d", timestamp, n, ts)
		}
		lastTs = ts
	}
	if timestamp <= lastTs {
		return nil
	}
	rel := offset - x.base
	if offset < x.base || rel > math.MaxInt32 {
		return x.wrap(ErrOffsetOverflow, "append offset %d: base offset %d", offset, x.base)
	}
	var e [TimeEntrySize]byte
	binary.BigEndian.PutUint64(e[:], uint64(timestamp))
	binary.BigEndian.PutUint32(e[8:], uint32(rel))
	return x.put(e[:])
}

// Lookup returns the entry with the largest timestamp <= targetTimestamp, or
// (NoTimestamp, BaseOffset()) if there is none. It uses Kafka's warm-section
// binary search: if the entry at slot max(0, Entries()-1-682) has a timestamp
// below the target, only the slots from there to the end are searched.
func (x *TimeIndex) Lookup(targetTimestamp int64) (timestamp int64, offset int64) {
	data := x.mapping()
	slot, _ := x.lookupSlot(data, targetTimestamp)
	if slot < 0 {
		return NoTimestamp, x.base
	}
	return x.entryAt(data, slot)
}

// lookupSlot returns the slot Lookup answers with (-1 for none) and whether
// the warm section alone was searched.
func (x *TimeIndex) lookupSlot(data []byte, target int64) (slot int, warm bool) {
	n := x.publishedIn(data)
	if n == 0 {
		return -1, false
	}
	firstHot := max(0, n-1-timeWarmEntries)
	if x.timestampAt(data, firstHot) < target {
		return x.search(data, target, firstHot, n-1), true
	}
	if x.timestampAt(data, 0) > target {
		return -1, false
	}
	return x.search(data, target, 0, firstHot), false
}

// search is Kafka's binary search for the largest slot in [lo, hi] whose
// timestamp is <= target, given that slot lo's timestamp is.
func (x *TimeIndex) search(data []byte, target int64, lo, hi int) int {
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		switch k := x.timestampAt(data, mid); {
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
// (NoTimestamp, BaseOffset()), the same answer as a Lookup that finds nothing.
func (x *TimeIndex) Entry(i int) (timestamp int64, offset int64) {
	data := x.mapping()
	if i < 0 || i >= x.publishedIn(data) {
		return NoTimestamp, x.base
	}
	return x.entryAt(data, i)
}

// LastEntry returns the last entry, or (NoTimestamp, BaseOffset()) if the
// index is empty.
func (x *TimeIndex) LastEntry() (timestamp int64, offset int64) {
	data := x.mapping()
	n := x.publishedIn(data)
	if n == 0 {
		return NoTimestamp, x.base
	}
	return x.entryAt(data, n-1)
}

// LastOffset returns the last entry's offset, or BaseOffset() if the index is
// empty.
func (x *TimeIndex) LastOffset() int64 {
	_, off := x.LastEntry()
	return off
}

// IsFull reports whether only the slot reserved for the roll-time entry is
// left: Entries() >= MaxEntries()-1, as in Kafka.
func (x *TimeIndex) IsFull() bool { return x.published() >= x.MaxEntries()-1 }

// TruncateTo drops every entry whose offset is >= offset; truncating to an
// offset above the last entry has no effect. Dropped slots of a writable index
// are zeroed.
func (x *TimeIndex) TruncateTo(offset int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return
	}
	// Lower bound: the first slot whose offset is >= offset. Offsets may
	// repeat; every entry with the truncation offset goes.
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
func (x *TimeIndex) Reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return
	}
	x.setEntries(0)
	x.badSize = false
}

// SanityCheck reports, as ErrCorruptIndex, an index whose file size (at open
// or now) is not a multiple of 12, whose last timestamp is below its first, or
// whose last offset is below the base offset (Kafka's TimeIndex.sanityCheck).
// It is O(1); Verify checks every entry.
func (x *TimeIndex) SanityCheck() error {
	if x.closed {
		return x.wrap(ErrClosed, "sanity check")
	}
	data := x.mapping()
	n := x.publishedIn(data)
	if n > 0 {
		lastTs, lastOff := x.entryAt(data, n-1)
		if first := x.timestampAt(data, 0); lastTs < first {
			return x.corrupt("last timestamp %d is below the first timestamp %d", lastTs, first)
		}
		if lastOff < x.base {
			return x.corrupt("last offset %d (%d entries) is below the base offset %d", lastOff, n, x.base)
		}
	}
	return x.sanitySize()
}

// Verify checks every entry: timestamps strictly increasing, offsets at or
// above the base offset and non-decreasing. It reports the first violation as
// ErrCorruptIndex; nil implies SanityCheck's entry conditions hold and Lookup
// answers exactly "largest timestamp <= target".
func (x *TimeIndex) Verify() error {
	if err := x.SanityCheck(); err != nil {
		return err
	}
	data := x.mapping()
	n := x.publishedIn(data)
	prevTs, prevOff := int64(math.MinInt64), int64(math.MinInt64)
	for i := range n {
		ts, off := x.entryAt(data, i)
		switch {
		case off < x.base:
			return x.corrupt("entry %d: offset %d is below the base offset %d", i, off, x.base)
		case i > 0 && ts <= prevTs:
			return x.corrupt("entry %d: timestamp %d is not larger than the previous timestamp %d", i, ts, prevTs)
		case i > 0 && off < prevOff:
			return x.corrupt("entry %d: offset %d is below the previous offset %d", i, off, prevOff)
		}
		prevTs, prevOff = ts, off
	}
	return nil
}
