package cleaner

import (
	"errors"
	"fmt"
	"math"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// This file is the first half of a pass: reading the dirty section (and,
// for a pass over more keys than the offset map holds, the clean section)
// to decide which records survive, before anything is written.
//
// The decisions for the dirty section [firstDirty, end) are bits, one per
// offset: keep (the record is the latest of its key in the section) and
// tomb (the record is a tombstone). Mapping a record sets its keep bit and
// clears that of the key's previous offset, which the map returns, so the
// recopy decides a dirty record without hashing its key again, and a dirty
// batch all of whose records are dropped (or all kept) without reading
// them at all.
//
// When the map fills, the pass does not end there (Kafka's behaviour, which
// makes a log cycling through more keys than the map holds rewrite its
// growing clean prefix once per map-full of keys). It maps the dirty section
// one key range at a time instead: a range is an interval of the low 32 bits
// of the key digest's first hash (independent of the map's home slots, which
// come from its high bits). The first scan starts with every key; each time
// the map fills, the upper half of the current range is evicted from the map
// (OffsetMap.retain) and deferred, and the scan goes on with the lower half.
// At its end the map holds the keys of one range, which tells how many keys
// the section holds: the deferred ranges are cut into as many ranges as the
// map needs at most targetFill, each mapped by one more scan of the dirty
// section. From its first split on, the first scan keeps what the later
// ranges need of the records in the per-record array (dirtyrecs.go): a
// later range's scan maps the array, then reads the log only from where the
// array ran out of budget, if it did. A record's keep bit is final after
// the scan of its key's range (the scans of other ranges may have set it
// while its key was still mapped; its own range's scan sets and clears it
// again). Before moving to the next range, a scan of the clean section
// marks the clean records whose key the map holds (cleanDrop, indexed by the
// record's ordinal in the clean section, which holds each key at most
// once); the first keeps the clean records of the other ranges in an array
// of its own for the later ones. The recopy looks the last range up in the
// map directly.
//
// A pass takes at most maxScans ranges' worth of keys: when the first scan's
// estimate of the keys seen so far (keys mapped / width of the current
// range) exceeds that, the pass ends after the record that crossed it, as a
// pass whose map filled did before (the next pass goes on from there).
// Nothing is written before the recopy, so an abort or a crash while
// scanning leaves nothing behind; the checkpoint moves only after the whole
// pass. If a range turns out to hold more keys than the map (an estimate
// off), it is split again; the pass ends where it was meant to either way.

// maxScans is how many key ranges (scans of the dirty section) a pass plans
// for at most.
const maxScans = 8

// keyRange is the interval [lo, hi] of the low 32 bits of a key digest's
// first hash.
type keyRange struct{ lo, hi uint32 }

var allKeys = keyRange{0, math.MaxUint32}

func (r keyRange) has(h1 uint64) bool { return uint32(h1)-r.lo <= r.hi-r.lo }
func (r keyRange) all() bool          { return r == allKeys }

// width is the share of all keys the range holds.
func (r keyRange) width() float64 { return float64(uint64(r.hi-r.lo)+1) / (1 << 32) }

// halves splits r into its lower and upper half; false when r is one value.
func (r keyRange) halves() (keyRange, keyRange, bool) {
	if r.lo == r.hi {
		return r, r, false
	}
	mid := r.lo + (r.hi-r.lo)/2
	return keyRange{r.lo, mid}, keyRange{mid + 1, r.hi}, true
}

// divide cuts r into k ranges of (about) equal width, appended to dst.
func (r keyRange) divide(dst []keyRange, k int) []keyRange {
	n := uint64(r.hi-r.lo) + 1
	k = max(1, min(k, int(min(n, 1<<20))))
	lo := uint64(r.lo)
	for i := 1; i <= k; i++ {
		hi := uint64(r.lo) + n*uint64(i)/uint64(k) - 1
		dst = append(dst, keyRange{uint32(lo), uint32(hi)})
		lo = hi + 1
	}
	return dst
}

// targetFill is how many keys a planned range should hold: the map's
// capacity less a margin for the spread of keys over equal ranges (four
// standard deviations) and for the estimate it is planned from.
func targetFill(maxEntries int) float64 {
	c := float64(maxEntries)
	return max(1, c-4*math.Sqrt(c)-1)
}

// mapDirty builds the keep and tomb bits of the dirty section with as many
// scans as its keys need, and leaves in the map the keys of the range
// w.last. It may lower w.end (the pass then ends there).
func (w *worker) mapDirty(segs []engine.SegmentRef) error {
	m, st := w.m, w.stats
	w.rng, w.pending = allKeys, w.pending[:0]
	w.target = targetFill(m.MaxEntries())
	w.maxKeys = max(float64(m.MaxEntries()), maxScans*w.target)
	end, keyless := w.end, st.KeylessDropped
	// The per-record array (dirtyrecs.go), started when the map fills.
	w.dirtyCap = 0
	if w.end-w.firstDirty <= math.MaxUint32 {
		w.dirtyCap = w.dirtyRecCap(m.Bytes())
	}
	w.from = w.firstDirty
	for {
		w.dirty, w.recording, w.dirtyStopped, w.dirtyEnd = w.dirty[:0], false, false, w.firstDirty
		restart, err := w.scanDirty(segs, true)
		if err != nil {
			return err
		}
		if !restart {
			break
		}
		// The table outgrew its cache-friendly sizes: use the whole buffer
		// and map again.
		m.Expand()
		w.end, st.KeylessDropped = end, keyless
	}
	if w.recording {
		w.dirtyEnd = w.end // the array covers the whole section
	}
	w.recording = false
	st.MapScans = 1
	st.MapUtilization = m.Utilization()
	if len(w.pending) == 0 {
		w.last = w.rng
		w.dirty = w.dirty[:0]
		return nil
	}
	// More keys than the map holds: plan the ranges left from what the
	// first scan saw of the current one.
	st.MapFull = true
	st.MapArrayRecords = int64(len(w.dirty))
	rest := keyRange{w.rng.hi + 1, math.MaxUint32}
	keys := float64(m.Size()) / w.rng.width() * rest.width()
	w.pending = rest.divide(w.pending[:0], int(math.Ceil(keys/w.target)))
	w.cleanDrop = w.cleanDrop[:0]
	w.cleanSeen = false
	w.from = w.dirtyEnd
	for len(w.pending) > 0 {
		if err := w.scanClean(segs); err != nil {
			return err
		}
		done := w.rng
		w.rng = w.pending[len(w.pending)-1]
		w.pending = w.pending[:len(w.pending)-1]
		m.ClearWhole()
		// The records below dirtyEnd from the array, the rest from the log.
		if err := w.mapArray(done); err != nil {
			return err
		}
		if w.from < w.end {
			if _, err := w.scanDirty(segs, false); err != nil {
				return err
			}
		}
		st.MapScans++
		st.MapUtilization = max(st.MapUtilization, m.Utilization())
	}
	w.last = w.rng
	w.dirty, w.cleanRecs = w.dirty[:0], w.cleanRecs[:0]
	return nil
}

// scanDirty is one scan of the dirty section [firstDirty, end), mapping the
// keyed records whose key lies in w.rng. The first scan also verifies batch
// CRCs, sets tomb bits, counts keyless records and may end the pass early;
// it reports restart when the map must be expanded and the scan redone.
func (w *worker) scanDirty(segs []engine.SegmentRef, first bool) (restart bool, err error) {
	var n int64
	defer func() { _ = w.throttle.Wait(w.ctx, n) }()
	for _, s := range segs {
		if s.Active || int64(s.BaseOffset) >= w.end {
			break
		}
		if int64(s.NextOffset) <= w.from {
			continue
		}
		v, err := w.log.ViewSegment(s)
		if err != nil {
			return false, err
		}
		done, restart, err := w.scanDirtySegment(s, v.Data, first, &n)
		v.Release()
		if err != nil || restart || done {
			return restart, err
		}
	}
	return false, nil
}

func (w *worker) scanDirtySegment(s engine.SegmentRef, data []byte, first bool, n *int64) (done, restart bool, err error) {
	for pos := 0; pos < len(data); {
		b, _, err := record.ReadBatch(data[pos:])
		if err != nil {
			return false, false, w.corrupt(s, pos, err)
		}
		at := pos
		pos += len(b)
		w.stats.MapBytesRead += int64(len(b))
		if err := w.tick(n, len(b)); err != nil {
			return false, false, err
		}
		if b.LastOffset() < w.from || b.IsControl() || b.NumRecords() == 0 || w.aborted.aborted(b) {
			continue // aborted records never enter the map (txn.go)
		}
		if b.BaseOffset() >= w.end {
			return true, false, nil
		}
		if first {
			if err := b.VerifyCRC(); err != nil {
				return false, false, w.corrupt(s, at, err)
			}
		}
		w.batchN = int(b.NumRecords())
		if w.recording {
			w.reserveDirty(w.batchN, b.BaseOffset())
		}
		p, err := w.section(b)
		if err != nil {
			return false, false, w.corrupt(s, at, err)
		}
		stop, restart, err := w.mapSection(b, p, first)
		if errors.Is(err, errRecords) {
			return false, false, w.corrupt(s, at, err)
		}
		if err != nil {
			return false, false, fmt.Errorf("cleaner: %s segment %d position %d: %w", w.log.TopicPartition(), s.BaseOffset, at, err)
		}
		if stop || restart {
			return true, restart, nil
		}
	}
	return false, false, nil
}

// mapSection maps the records of batch b (records section p). A table too
// large for the cache has the probe lines of a whole batch's keys touched
// before the puts (walk, then mapBatch), so that the misses overlap.
func (w *worker) mapSection(b record.Batch, p []byte, first bool) (stop, restart bool, err error) {
	if !w.m.prefetch() {
		return w.mapRecords(b, p, first)
	}
	// A first scan keeping the per-record array digests every key.
	if err := w.walk(b, p, hashing{from: w.from, to: w.end, rng: w.rng, all: w.recording, touch: true}); err != nil {
		return false, false, err
	}
	return w.mapBatch(first)
}

// mapBatch maps the records of the batch in w.recs, digested by walk, in
// offset order.
func (w *worker) mapBatch(first bool) (stop, restart bool, err error) {
	m := w.m
	lo, from, hi := w.firstDirty, w.from, w.end
	recs := w.recs
	rng := w.rng
	keep, tomb := w.keep, w.tomb
	var mapped, keyless int64
	defer func() {
		w.stats.MapRecords += mapped
		if first {
			w.stats.KeylessDropped += keyless
		}
	}()
	for i := range recs {
		r := &recs[i]
		if r.off < from || r.off >= hi {
			continue
		}
		if first {
			if r.tomb {
				tomb.set(r.off - lo)
			}
			if r.keyLen < 0 {
				keyless++
			}
		}
		if !r.hashed {
			continue
		}
		if !rng.has(r.h1) {
			if w.recording {
				w.keepDirty(r.h1, r.h2, r.off)
			}
			continue
		}
		prev, ok := m.putPrev(r.h1, r.h2, r.off)
		if !ok {
			var skip bool
			if prev, skip, restart, err = w.overflow(r.h1, r.h2, r.off, first); restart || err != nil {
				return false, restart, err
			}
			if rng = w.rng; skip {
				if w.recording {
					w.keepDirty(r.h1, r.h2, r.off)
				}
				continue
			}
		}
		mapped++
		keep.set(r.off - lo)
		if prev >= 0 {
			keep.unset(prev - lo)
		}
		if first && prev < 0 && !rng.all() && float64(m.Size()) > w.maxKeys*rng.width() {
			// More keys than a pass takes: it ends after this record.
			w.end = r.off + 1
			return true, false, nil
		}
	}
	return false, false, nil
}

// overflow handles a put refused because the map is full: in the first scan
// with the table not yet the whole buffer, the scan restarts (restart);
// otherwise the upper half of the key range is evicted and deferred, until
// the key is out of range (skip) or put (prev as putPrev's).
func (w *worker) overflow(h1, h2 uint64, off int64, first bool) (prev int64, skip, restart bool, err error) {
	m := w.m
	for {
		if first && !m.Whole() {
			return -1, false, true, nil
		}
		lower, upper, ok := w.rng.halves()
		if !ok {
			return -1, false, false, fmt.Errorf("cleaner: more than %d keys share one key range value: raise log.cleaner.dedupe.buffer.size", m.MaxEntries())
		}
		var evicted func(h1, h2 uint64, off int64)
		if first {
			// The first scan keeps what later ranges need (dirtyrecs.go).
			if w.startDirty(); w.recording {
				evicted = w.keepDirty
			}
		}
		m.retain(lower, evicted)
		w.rng = lower
		w.pending = append(w.pending, upper)
		if !lower.has(h1) {
			return -1, true, false, nil
		}
		if prev, ok := m.putPrev(h1, h2, off); ok {
			return prev, false, false, nil
		}
	}
}

// mapRecords is walk and mapBatch in one loop over the records section p of
// b, for a map table small enough to stay in cache (nothing to prefetch):
// each record is parsed, digested and put while its bytes are at hand,
// nothing is stored. It checks what walk checks.
func (w *worker) mapRecords(b record.Batch, p []byte, first bool) (stop, restart bool, err error) {
	m := w.m
	lo, from, hi := w.firstDirty, w.from, w.end
	rng := w.rng
	keep, tomb := w.keep, w.tomb
	var mapped, keyless int64
	defer func() {
		w.stats.MapRecords += mapped
		if first {
			w.stats.KeylessDropped += keyless
		}
	}()
	n := int(b.NumRecords())
	base := b.BaseOffset()
	lastDelta := int64(b.LastOffsetDelta())
	if n < 0 || n > len(p) {
		return false, false, fmt.Errorf("%w: %d records declared in %d bytes", errRecords, n, len(p))
	}
	i, prevDelta := 0, int64(-1)
	for k := 0; k < n; k++ {
		var f recFields
		if f, err = parseRecord(p, i, k, prevDelta, lastDelta); err != nil {
			return false, false, err
		}
		prevDelta, i = f.od, f.end
		od, kl, vl, keyOff := f.od, f.kl, f.vl, f.keyOff
		off := base + od
		if off < from || off >= hi {
			continue
		}
		if first {
			if kl >= 0 && vl == -1 {
				tomb.set(off - lo)
			}
			if kl < 0 {
				keyless++
			}
		}
		if kl < 0 {
			continue
		}
		h1, h2 := keyDigest(p[keyOff : keyOff+int(kl)])
		if !rng.has(h1) {
			if w.recording {
				w.keepDirty(h1, h2, off)
			}
			continue
		}
		prev, ok := m.putPrev(h1, h2, off)
		if !ok {
			var skip bool
			if prev, skip, restart, err = w.overflow(h1, h2, off, first); restart || err != nil {
				return false, restart, err
			}
			if rng = w.rng; skip {
				if w.recording {
					w.keepDirty(h1, h2, off)
				}
				continue
			}
		}
		mapped++
		keep.set(off - lo)
		if prev >= 0 {
			keep.unset(prev - lo)
		}
		if first && prev < 0 && !rng.all() && float64(m.Size()) > w.maxKeys*rng.width() {
			// More keys than a pass takes: it ends after this record.
			w.end = off + 1
			return true, false, nil
		}
	}
	if i != len(p) {
		return false, false, fmt.Errorf("%w: %d bytes after the %d declared records", errRecords, len(p)-i, n)
	}
	return false, false, nil
}

// scanClean marks the records of the clean section (below firstDirty) whose
// key the map (holding the range w.rng) has: a later record of the key
// exists in the dirty section. Its first call of a pass reads the clean
// section and keeps, within what the dirty array left of the budget, the
// digest and ordinal of each keyed record outside w.rng (dirtyrecs.go); the
// later calls check that array (sweepClean), then read the log only from
// where it ran out of budget, if it did.
func (w *worker) scanClean(segs []engine.SegmentRef) error {
	lo := w.firstDirty
	first := !w.cleanSeen
	ord := int64(0)
	if first {
		w.cleanSeen = true
		w.cleanRecs = w.cleanRecs[:0]
		w.cleanCap = max(0, w.dirtyCap-cap(w.dirty))
		w.recordingClean = w.cleanCap > 0
		// The array holds what later calls need of the records below
		// cleanFrom; they read the log from there.
		w.cleanFrom, w.cleanFromOrd = math.MinInt64, 0
		if w.recordingClean {
			w.cleanFrom = lo
		}
	} else {
		if err := w.sweepClean(); err != nil {
			return err
		}
		if w.cleanFrom >= lo {
			return nil
		}
		ord = w.cleanFromOrd
	}
	from := w.cleanFrom
	if first {
		from = math.MinInt64
	}
	var n int64
	defer func() { _ = w.throttle.Wait(w.ctx, n) }()
	for _, s := range segs {
		if s.Active || int64(s.BaseOffset) >= lo {
			break
		}
		if int64(s.NextOffset) <= from {
			continue
		}
		v, err := w.log.ViewSegment(s)
		if err != nil {
			return err
		}
		data := v.Data
		for pos := 0; pos < len(data); {
			b, _, err := record.ReadBatch(data[pos:])
			if err != nil {
				v.Release()
				return w.corrupt(s, pos, err)
			}
			at := pos
			pos += len(b)
			if b.BaseOffset() >= lo {
				break
			}
			if b.LastOffset() < from {
				continue // in the array
			}
			w.stats.MapBytesRead += int64(len(b))
			if err := w.tick(&n, len(b)); err != nil {
				v.Release()
				return err
			}
			if b.IsControl() || b.NumRecords() == 0 || w.aborted.aborted(b) {
				continue
			}
			if w.recordingClean {
				w.reserveClean(int(b.NumRecords()), b.BaseOffset(), ord)
			}
			keeping := w.recordingClean
			p, err := w.section(b)
			if err == nil {
				err = w.walk(b, p, hashing{from: math.MinInt64, to: lo, rng: w.rng, all: keeping, touch: w.m.prefetch()})
			}
			if err != nil {
				v.Release()
				return w.corrupt(s, at, err)
			}
			for i := range w.recs {
				r := &w.recs[i]
				if r.off >= lo {
					break
				}
				o := ord
				ord++
				if !r.hashed {
					continue
				}
				if !w.rng.has(r.h1) {
					if keeping {
						w.cleanRecs = append(w.cleanRecs, newDirtyRec(r.h1, r.h2, o))
					}
					continue
				}
				if w.m.getDigest(r.h1, r.h2) >= 0 {
					w.cleanDrop = w.cleanDrop.grow(o)
					w.cleanDrop.set(o)
				}
			}
		}
		v.Release()
	}
	return nil
}

// corrupt wraps a read or parse failure of the batch at pos of segment s.
func (w *worker) corrupt(s engine.SegmentRef, pos int, err error) error {
	return fmt.Errorf("%w: %s segment %d position %d: %w", ErrCorrupt, w.log.TopicPartition(), s.BaseOffset, pos, err)
}
