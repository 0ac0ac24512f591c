package cleaner

import (
	"fmt"
	"math"
)

// This file is the per-record array of a pass over more keys than the
// offset map holds (see scan.go). The first scan of the dirty section parses
// every record and digests every key anyway. From the moment its map first
// fills (its first split of the key range) it keeps, 20 bytes each, the
// digest and offset of every record whose key is outside the range being
// mapped, and, for each key a split evicts from the map, the key's latest
// record so far (the earlier ones are decided: their keep bits are clear).
// The later key ranges are then mapped from the array (in offset order, like
// a scan, as far as each key's records go) instead of each one reading,
// parsing and digesting the whole dirty section again. A pass whose map
// does not fill keeps nothing.
//
// The array is bounded: the map's size in bytes, at least
// minDirtyRecBudget. A first scan that would outgrow it stops keeping
// records at a batch boundary (dirtyEnd), after adding the map's entries
// (the latest record below dirtyEnd of each key it holds): the later ranges
// map the array, then read the log from dirtyEnd as they did without one.
// Before each batch, the budget must have room for the batch's records and
// the map's entries: each record adds at most one entry to the array or the
// map, and a split moves entries from one to the other, so that final copy
// always fits. The array is allocated as it fills, reused by the thread's
// next passes and released with the offset map.
//
// The clean section is read once per pass the same way: the first
// scanClean, with the map holding the first range, keeps the digest and
// ordinal of each keyed clean record outside it (within what the dirty
// array left of the budget; beyond, from a batch boundary, later calls
// read the log); each later call checks the records of the range the map
// holds and drops them from the array.

// dirtyRec is one keyed record of the dirty section: its key digest (the
// two halves of each hash apart, so that the array packs 20 bytes a record)
// and its offset less the pass's first dirty offset (the array is used only
// when the pass's span, at most maxSpan offsets, fits 32 bits).
type dirtyRec struct {
	h1lo, h1hi, h2lo, h2hi uint32
	off                    uint32
}

// dirtyRecSize is the size of a dirtyRec.
const dirtyRecSize = 20

// minDirtyRecBudget is the smallest budget of the per-record array, 1.6M
// records: a small map's own size would keep a small share of a dirty
// section holding several times its keys (records outnumber keys).
const minDirtyRecBudget = 32 << 20

func newDirtyRec(h1, h2 uint64, rel int64) dirtyRec {
	return dirtyRec{uint32(h1), uint32(h1 >> 32), uint32(h2), uint32(h2 >> 32), uint32(rel)}
}

func (d *dirtyRec) digest() (uint64, uint64) {
	return uint64(d.h1hi)<<32 | uint64(d.h1lo), uint64(d.h2hi)<<32 | uint64(d.h2lo)
}

// inRange is r.has for the record's digest.
func (d *dirtyRec) inRange(r keyRange) bool { return d.h1lo-r.lo <= r.hi-r.lo }

// dirtyRecCap is how many records the per-record array of a pass may hold:
// w.dirtyBudget when set (tests; < 0: none), else the budget of a map of
// mapBytes.
func (w *worker) dirtyRecCap(mapBytes int) int {
	switch {
	case w.dirtyBudget < 0:
		return 0
	case w.dirtyBudget > 0:
		return int(w.dirtyBudget)
	}
	return max(minDirtyRecBudget, mapBytes) / dirtyRecSize
}

// growDirty makes the array's capacity at least need (at most dirtyCap).
func (w *worker) growDirty(need int) {
	if need > cap(w.dirty) {
		c := min(w.dirtyCap, max(need, 2*cap(w.dirty), 4096))
		d := make([]dirtyRec, len(w.dirty), c)
		copy(d, w.dirty)
		w.dirty = d
	}
}

// startDirty starts the array at the first scan's first split (the map
// full, about to evict the upper half of its range), when the budget has
// room for the map's entries and the current batch's records (w.batchN).
func (w *worker) startDirty() {
	if w.recording || w.dirtyStopped || w.dirtyCap == 0 {
		return
	}
	need := w.m.Size() + max(w.batchN, 0)
	if need > w.dirtyCap {
		w.dirtyStopped = true // no array: dirtyEnd stays firstDirty
		return
	}
	w.growDirty(need)
	w.recording = true
}

// keepDirty adds a record (or the latest record of an evicted key) to the
// array.
func (w *worker) keepDirty(h1, h2 uint64, off int64) {
	w.dirty = append(w.dirty, newDirtyRec(h1, h2, off-w.firstDirty))
}

// reserveDirty is called before each batch of the first scan while it
// keeps the array (at is the batch's base offset, n its record count): it
// makes room for the batch, or, beyond the budget, ends the array there.
func (w *worker) reserveDirty(n int, at int64) {
	need := len(w.dirty) + max(n, 0) + w.m.Size()
	if need <= w.dirtyCap {
		w.growDirty(need)
		return
	}
	w.m.each(w.keepDirty)
	w.recording, w.dirtyStopped = false, true
	w.dirtyEnd = max(at, w.firstDirty)
}

// mapArray maps the records of the array whose key lies in w.rng, in
// offset order, as a scan of [firstDirty, dirtyEnd) would, and drops from
// the array those of done, a key range mapped to the end before. The range
// may be split on the way (overflow), as in a scan.
func (w *worker) mapArray(done keyRange) error {
	m, keep, lo := w.m, w.keep, w.firstDirty
	arr := w.dirty
	n := 0
	var mapped int64
	defer func() {
		w.dirty = arr[:n]
		w.stats.MapRecords += mapped
	}()
	pf := m.prefetch()
	const block = 64
	for b := 0; b < len(arr); b += block {
		if b&(1<<16-1) == 0 {
			if err := w.ctx.Err(); err != nil {
				return err
			}
		}
		blk := arr[b:min(b+block, len(arr))]
		if pf {
			// Touch the probe lines of the block's keys first, so that
			// their cache misses overlap (see walk).
			var sink uint64
			for i := range blk {
				if blk[i].inRange(w.rng) {
					sink += m.touch(uint64(blk[i].h1hi)<<32 | uint64(blk[i].h1lo))
				}
			}
			w.sink += sink
		}
		for i := range blk {
			d := blk[i]
			if d.inRange(done) {
				continue
			}
			if n != b+i {
				arr[n] = d
			}
			n++
			if !d.inRange(w.rng) {
				continue
			}
			h1, h2 := d.digest()
			off := lo + int64(d.off)
			prev, ok := m.putPrev(h1, h2, off)
			if !ok {
				var skip bool
				var err error
				if prev, skip, _, err = w.overflow(h1, h2, off, false); err != nil {
					return fmt.Errorf("cleaner: %s offset %d: %w", w.log.TopicPartition(), off, err)
				}
				if skip {
					continue
				}
			}
			mapped++
			keep.set(int64(d.off))
			if prev >= 0 {
				keep.unset(prev - lo)
			}
		}
	}
	return nil
}

// reserveClean is reserveDirty for the clean section's array, before a batch
// of scanClean's first call (at its base offset, ord the ordinal of its
// first record): beyond the budget (or ordinals beyond 32 bits), the array
// ends there.
func (w *worker) reserveClean(n int, at, ord int64) {
	n = max(n, 0)
	need := len(w.cleanRecs) + n
	if need > w.cleanCap || ord+int64(n) > math.MaxUint32 {
		w.recordingClean = false
		w.cleanFrom, w.cleanFromOrd = at, ord
		return
	}
	if need > cap(w.cleanRecs) {
		c := min(w.cleanCap, max(need, 2*cap(w.cleanRecs), 4096))
		d := make([]dirtyRec, len(w.cleanRecs), c)
		copy(d, w.cleanRecs)
		w.cleanRecs = d
	}
}

// sweepClean is scanClean from the clean section's array: it marks the
// records whose key lies in w.rng (the range the map holds) and the map has,
// and drops them from the array (checked against their range's map, they
// are decided).
func (w *worker) sweepClean() error {
	m := w.m
	arr := w.cleanRecs
	n := 0
	defer func() { w.cleanRecs = arr[:n] }()
	pf := m.prefetch()
	const block = 64
	for b := 0; b < len(arr); b += block {
		if b&(1<<16-1) == 0 {
			if err := w.ctx.Err(); err != nil {
				return err
			}
		}
		blk := arr[b:min(b+block, len(arr))]
		if pf {
			var sink uint64
			for i := range blk {
				if blk[i].inRange(w.rng) {
					sink += m.touch(uint64(blk[i].h1hi)<<32 | uint64(blk[i].h1lo))
				}
			}
			w.sink += sink
		}
		for i := range blk {
			d := blk[i]
			if !d.inRange(w.rng) {
				arr[n] = d
				n++
				continue
			}
			if h1, h2 := d.digest(); m.getDigest(h1, h2) >= 0 {
				o := int64(d.off)
				w.cleanDrop = w.cleanDrop.grow(o)
				w.cleanDrop.set(o)
			}
		}
	}
	return nil
}
