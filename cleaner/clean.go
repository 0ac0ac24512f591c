package cleaner

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// This file is one clean pass of one log by one thread (Kafka's
// Cleaner.doClean): map the dirty section's keys to their latest offsets,
// then recopy every segment from the log start to the pass's end offset in
// groups, keeping a record iff it is the latest of its key (or beyond the
// mapped range) and, for a tombstone, its delete horizon has not passed.

// ErrCorrupt marks a pass that found a batch failing its CRC or framing.
var ErrCorrupt = errors.New("cleaner: corrupt batch")

// ioChunk is how many bytes a pass processes between throttle accounting
// and abort checks.
const ioChunk = 1 << 20

// PassStats describes one clean pass.
type PassStats struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	MapDone  time.Duration `json:"map_duration_ns"` // time spent building the offset map
	Reason   Reason        `json:"reason"`

	FirstDirty       engine.Offset `json:"first_dirty_offset"`
	FirstUncleanable engine.Offset `json:"first_uncleanable_offset"`
	// EndOffset is the pass's end: everything below it is clean; it is the
	// next first dirty offset. Below FirstUncleanable when the map filled.
	EndOffset engine.Offset `json:"end_offset"`
	MapFull   bool          `json:"map_full"`

	MapBytesRead   int64   `json:"map_bytes_read"`
	MapRecords     int64   `json:"map_records"`
	MapUtilization float64 `json:"map_utilization"`

	BytesRead       int64 `json:"bytes_read"`    // bytes of the recopied segments
	BytesWritten    int64 `json:"bytes_written"` // bytes of the cleaned segments swapped in
	RecordsRead     int64 `json:"records_read"`
	RecordsRetained int64 `json:"records_retained"`

	BatchesCopied     int64 `json:"batches_copied"`    // unchanged, copied byte for byte
	BatchesRewritten  int64 `json:"batches_rewritten"` // re-encoded with their codec
	BatchesEmptied    int64 `json:"batches_emptied"`   // kept as empty batches (producer state, group end)
	BatchesDropped    int64 `json:"batches_dropped"`
	TombstonesDropped int64 `json:"tombstones_dropped"`
	HorizonsStamped   int64 `json:"horizons_stamped"`
	KeylessDropped    int64 `json:"keyless_dropped"`

	Groups        int `json:"groups"`
	GroupsSkipped int `json:"groups_skipped"` // single segments with nothing to change: not rewritten

	// TombstoneHorizon is the earliest delete horizon (Unix ms) among the
	// retained batches holding tombstones below EndOffset, MaxInt64 if none.
	TombstoneHorizon int64 `json:"tombstone_horizon_ms"`
}

// RecopyRatio is BytesWritten / BytesRead (Kafka's cleaner-recopy-percent / 100).
func (s PassStats) RecopyRatio() float64 {
	if s.BytesRead == 0 {
		return 0
	}
	return float64(s.BytesWritten) / float64(s.BytesRead)
}

// passInput is what one pass works on.
type passInput struct {
	log              *engine.Log
	firstDirty       engine.Offset
	firstUncleanable engine.Offset
	now              time.Time
	deleteRetention  time.Duration
	reason           Reason
}

// worker holds one cleaner thread's reusable resources: the offset map,
// record decoder and builder, scratch buffers. Nothing it owns is shared.
type worker struct {
	id       int
	m        *OffsetMap
	throttle *Throttle
	elapsed  func() time.Duration // monotonic time since an arbitrary origin

	dec   record.Decoder
	bl    record.Builder
	out   []byte
	plain []byte    // a compressed batch, decompressed (header + records)
	recs  []recInfo // the records of the batch being looked at
	sink  uint64    // keeps prefetching loads alive

	// Per-pass state read by the record callbacks (bound once, so iterating
	// records does not allocate).
	ctx        context.Context
	stats      *PassStats
	firstDirty int64
	digestUpTo int64 // records above it need no key digest (beyond the mapped range)
	nowMs      int64
	cur        record.Batch
	k          int

	collectFn, rebuildFn func(r *record.Record) error
}

// recInfo is what filtering needs of one record, gathered in a first walk
// over a batch so that the map lookups of a whole batch can be issued
// together (their cache misses then overlap instead of queueing).
type recInfo struct {
	h1, h2 uint64
	off    int64
	ts     int64 // absolute timestamp as stored (BaseTimestamp + delta)
	keyed  bool
	hashed bool // h1, h2 computed (keyed and at most digestUpTo)
	tomb   bool
	keep   bool
}

func newWorker(id int, throttle *Throttle, elapsed func() time.Duration) *worker {
	w := &worker{id: id, throttle: throttle, elapsed: elapsed}
	w.collectFn = w.collectRecord
	w.rebuildFn = w.rebuildRecord
	return w
}

// ensureMap (re)allocates the offset map when the configured size or load
// factor changed (live tuning takes effect at the next pass).
func (w *worker) ensureMap(size int64, loadFactor float64) error {
	if w.m != nil && int64(w.m.Bytes()) == size/EntrySize*EntrySize && w.m.MaxEntries() == int(float64(w.m.Slots())*loadFactor) {
		return nil
	}
	w.m = nil // let the old buffer go before allocating the new one
	m, err := NewOffsetMap(size, loadFactor)
	if err != nil {
		return err
	}
	w.m = m
	return nil
}

// tick accounts processed bytes with the throttle and checks for an abort.
func (w *worker) tick(n *int64, size int) error {
	*n += int64(size)
	if *n < ioChunk {
		return nil
	}
	err := w.throttle.Wait(w.ctx, *n)
	*n = 0
	return err
}

// clean runs one pass. It returns the pass statistics; on error nothing below
// the first failed group was lost (groups already swapped stay swapped: each
// is a correct compaction on its own) and the checkpoint must not move.
func (w *worker) clean(ctx context.Context, in passInput) (PassStats, error) {
	st := PassStats{
		Start: in.now, Reason: in.reason, FirstDirty: in.firstDirty, FirstUncleanable: in.firstUncleanable,
		EndOffset: in.firstDirty, TombstoneHorizon: math.MaxInt64,
	}
	t0 := w.elapsed()
	w.ctx, w.stats = ctx, &st
	defer func() { w.ctx, w.stats, w.cur = nil, nil, nil }()
	w.firstDirty = int64(in.firstDirty)
	w.nowMs = in.now.UnixMilli()
	l := in.log
	segs := l.CleanerSegments()

	// 1. The offset map over the dirty section [firstDirty, firstUncleanable).
	m := w.m
	m.Clear()
	w.digestUpTo = math.MaxInt64
	for again := true; again; {
		again = false
		m.SetLatest(int64(in.firstDirty) - 1)
		for _, s := range segs {
			if s.Active || s.BaseOffset >= in.firstUncleanable {
				break
			}
			if s.NextOffset <= in.firstDirty {
				continue
			}
			full, err := w.mapSegment(l, s)
			if err != nil {
				return st, err
			}
			if full {
				// The table outgrew its cache-friendly sizes: use the whole
				// buffer and map again, or, when it is the whole buffer
				// already, end the pass where the map filled.
				again = m.Expand()
				st.MapFull = !again
				break
			}
		}
	}
	st.MapUtilization = m.Utilization()
	end := engine.Offset(m.Latest() + 1)
	if end < in.firstDirty {
		end = in.firstDirty
	}
	w.digestUpTo = m.Latest()
	st.EndOffset = end
	st.MapDone = w.elapsed() - t0

	// 2. Recopy [log start, end) in groups.
	limit := min(end, in.firstUncleanable)
	var cands []engine.SegmentRef
	var next []engine.SegmentRef // successor of each candidate
	for i, s := range segs {
		if s.Active || s.BaseOffset >= limit {
			break
		}
		cands = append(cands, s)
		next = append(next, segs[i+1])
	}
	cfg := l.Config()
	producers := l.ActiveProducerLastOffsets()
	for _, g := range groupSegments(cands, cfg) {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		st.Groups++
		if err := w.cleanGroup(l, cands[g[0]:g[1]], next[g[1]-1], producers, in.deleteRetention); err != nil {
			return st, err
		}
	}
	st.Duration = w.elapsed() - t0
	if invariants {
		checkCleanSection(l, end)
	}
	return st, nil
}

// groupSegments splits candidates into runs [i, j) that fit one cleaned
// segment: total size within segment.bytes, index entries (at most one per
// index.interval.bytes) within segment.index.bytes, and the offset span within
// int32 (Kafka's groupSegmentsBySize).
func groupSegments(cands []engine.SegmentRef, cfg engine.Config) [][2]int {
	maxEntries := int64(max(cfg.SegmentIndexBytes, 32)) / 8
	interval := int64(max(cfg.IndexIntervalBytes, 1))
	var out [][2]int
	for i := 0; i < len(cands); {
		j := i + 1
		size := cands[i].Size
		for j < len(cands) {
			c := cands[j]
			if size+c.Size > cfg.SegmentBytes ||
				(size+c.Size)/interval+2 > maxEntries ||
				(c.Size > 0 && int64(c.NextOffset-1)-int64(cands[i].BaseOffset) > math.MaxInt32) {
				break
			}
			size += c.Size
			j++
		}
		out = append(out, [2]int{i, j})
		i = j
	}
	return out
}

// mapSegment adds the keyed records of s at or above the first dirty offset
// to the map. It reports whether the map filled (the pass then ends at the
// last offset mapped).
func (w *worker) mapSegment(l *engine.Log, s engine.SegmentRef) (bool, error) {
	v, err := l.ViewSegment(s)
	if err != nil {
		return false, err
	}
	defer v.Release()
	var n int64
	defer func() { _ = w.throttle.Wait(w.ctx, n) }()
	data := v.Data
	for pos := 0; pos < len(data); {
		b, _, err := record.ReadBatch(data[pos:])
		if err != nil {
			return false, fmt.Errorf("%w: segment %d position %d: %w", ErrCorrupt, s.BaseOffset, pos, err)
		}
		pos += len(b)
		w.stats.MapBytesRead += int64(len(b))
		if err := w.tick(&n, len(b)); err != nil {
			return false, err
		}
		if b.LastOffset() < w.firstDirty {
			continue
		}
		if b.IsControl() || b.NumRecords() == 0 {
			w.m.UpdateLatest(b.LastOffset())
			continue
		}
		if err := b.VerifyCRC(); err != nil {
			return false, fmt.Errorf("%w: segment %d position %d: %w", ErrCorrupt, s.BaseOffset, pos-len(b), err)
		}
		if err := w.collect(b); err != nil {
			return false, fmt.Errorf("%w: segment %d: %w", ErrCorrupt, s.BaseOffset, err)
		}
		for i := range w.recs {
			r := &w.recs[i]
			if !r.hashed || r.off < w.firstDirty {
				continue
			}
			if !w.m.putDigest(r.h1, r.h2, r.off) {
				return true, nil
			}
			w.stats.MapRecords++
		}
		w.m.UpdateLatest(b.LastOffset())
	}
	return false, nil
}

// collect walks the records of view (a batch, or a compressed batch
// decompressed) into w.recs with their key digests, then touches each
// digest's probe lines so that the lookups that follow find them in cache.
func (w *worker) collect(view record.Batch) error {
	w.cur = view
	w.recs = w.recs[:0]
	if err := w.dec.Records(view, w.collectFn); err != nil {
		return err
	}
	var x uint64
	for i := range w.recs {
		if w.recs[i].hashed {
			x += w.m.touch(w.recs[i].h1)
		}
	}
	w.sink += x
	return nil
}

func (w *worker) collectRecord(r *record.Record) error {
	b := w.cur
	ri := recInfo{
		off:   b.BaseOffset() + int64(r.OffsetDelta),
		ts:    b.BaseTimestamp() + r.TimestampDelta,
		keyed: r.Key != nil,
		tomb:  r.Key != nil && r.Value == nil,
	}
	if ri.keyed && ri.off <= w.digestUpTo {
		ri.h1, ri.h2 = w.m.Digest(r.Key)
		ri.hashed = true
	}
	w.recs = append(w.recs, ri)
	return nil
}

// cleanGroup writes the cleaned replacement of group and swaps it in. A
// group of one segment in which nothing changes is left alone.
func (w *worker) cleanGroup(l *engine.Log, group []engine.SegmentRef, next engine.SegmentRef, producers map[int64]engine.Offset, deleteRetention time.Duration) (err error) {
	st := w.stats
	lastSeg := -1 // the last non-empty segment holds the group's last batch
	for i, s := range group {
		if s.Size > 0 {
			lastSeg = i
		}
	}
	var cs *engine.CleanedSegment
	defer func() {
		if err != nil {
			cs.Abort()
		}
	}()
	open := func() error {
		if cs == nil {
			var err error
			cs, err = l.NewCleanedSegment(group[0].BaseOffset)
			return err
		}
		return nil
	}
	if len(group) > 1 {
		if err := open(); err != nil {
			return err
		}
	}
	var end engine.Offset
	var n int64
	defer func() { _ = w.throttle.Wait(w.ctx, n) }()
	for gi, s := range group {
		if s.Size == 0 {
			continue
		}
		v, err := l.ViewSegment(s)
		if err != nil {
			return err
		}
		data := v.Data
		run := 0 // start of the unchanged batches not yet handed to cs
		for pos := 0; pos < len(data); {
			b, _, err := record.ReadBatch(data[pos:])
			if err != nil {
				v.Release()
				return fmt.Errorf("%w: segment %d position %d: %w", ErrCorrupt, s.BaseOffset, pos, err)
			}
			if err := w.tick(&n, len(b)); err != nil {
				v.Release()
				return err
			}
			st.BytesRead += int64(len(b))
			last := gi == lastSeg && pos+len(b) == len(data)
			if last {
				end = engine.Offset(b.LastOffset()) + 1
			}
			out, keep, err := w.filterBatch(b, last, producers, deleteRetention)
			if err != nil {
				v.Release()
				return fmt.Errorf("segment %d position %d: %w", s.BaseOffset, pos, err)
			}
			if keep {
				pos += len(b)
				continue
			}
			if err := open(); err != nil {
				v.Release()
				return err
			}
			if err := cs.Append(data[run:pos]); err != nil {
				v.Release()
				return err
			}
			if len(out) > 0 {
				if err := cs.Append(out); err != nil {
					v.Release()
					return err
				}
			}
			pos += len(b)
			run = pos
		}
		if cs != nil {
			err = cs.Append(data[run:])
		}
		v.Release()
		if err != nil {
			return err
		}
	}
	if cs == nil {
		st.GroupsSkipped++
		return nil
	}
	if err := cs.Finish(end); err != nil {
		return err
	}
	if err := l.ReplaceSegments([]*engine.CleanedSegment{cs}, group, next); err != nil {
		return err
	}
	st.BytesWritten += cs.Size()
	return w.throttle.Wait(w.ctx, cs.Size())
}

// filterBatch decides what becomes of batch b. keep: b goes to the cleaned
// segment unchanged (byte for byte). Otherwise out is its replacement (a
// re-encoded or empty batch) or empty when the batch is dropped. last says b
// is the group's last batch, which is always kept, emptied if need be, so
// that the cleaned segment ends where the group does.
func (w *worker) filterBatch(b record.Batch, last bool, producers map[int64]engine.Offset, deleteRetention time.Duration) (out []byte, keep bool, err error) {
	st := w.stats
	retainEmpty := last
	if pid := b.ProducerID(); pid >= 0 {
		if lo, ok := producers[pid]; ok && int64(lo) == b.LastOffset() {
			retainEmpty = true
		}
	}
	if b.IsControl() {
		st.BatchesCopied++
		return nil, true, nil
	}
	if err := b.VerifyCRC(); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	nrec := int(b.NumRecords())
	if nrec == 0 {
		if retainEmpty {
			st.BatchesCopied++
			return nil, true, nil
		}
		st.BatchesDropped++
		return nil, false, nil
	}
	if b.BaseOffset() > w.m.Latest() {
		// Wholly beyond the mapped range (the rest of a segment in which
		// the map filled): kept as it is, without decoding. Its tombstones
		// get their horizon when a later pass maps them.
		st.RecordsRead += int64(nrec)
		st.RecordsRetained += int64(nrec)
		st.BatchesCopied++
		return nil, true, nil
	}

	// A compressed batch is decompressed once, into a plain copy that both
	// walks (decide, then re-encode) iterate without decompressing again.
	view := b
	if b.Codec() != record.CodecNone {
		w.plain = append(w.plain[:0], b[:record.HeaderSize]...)
		w.plain, err = record.Decompress(b.Codec(), w.plain, b.Records(), record.DefaultMaxDecompressed)
		if err != nil {
			return nil, false, fmt.Errorf("%w: batch at %d: %w", ErrCorrupt, b.BaseOffset(), err)
		}
		view = record.Batch(w.plain)
		binary.BigEndian.PutUint32(view[record.OffLength:], uint32(len(view)-record.LogOverhead))
		view.SetAttributes(b.Attributes() &^ record.AttrCodecMask)
	}
	if err := w.collect(view); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if len(w.recs) != nrec {
		return nil, false, fmt.Errorf("%w: batch at %d holds %d records, header says %d", ErrCorrupt, b.BaseOffset(), len(w.recs), nrec)
	}

	// Kafka's shouldRetainRecord, with KIP-534 horizons.
	latest := w.m.Latest()
	horizon, hasHorizon := b.DeleteHorizon()
	expired := hasHorizon && w.nowMs >= horizon
	retained, tombs := 0, 0
	minTs := int64(math.MaxInt64)
	for i := range w.recs {
		r := &w.recs[i]
		switch {
		case r.off > latest:
			r.keep = true // beyond the mapped range: untouched this pass
		case !r.keyed:
			r.keep = false
			st.KeylessDropped++
		case r.off < w.m.getDigest(r.h1, r.h2):
			r.keep = false // a later record of the key exists
		case r.tomb && expired:
			r.keep = false // tombstone past its delete horizon
			st.TombstonesDropped++
		default:
			r.keep = true
		}
		if r.keep {
			retained++
			if r.tomb {
				tombs++
			}
			minTs = min(minTs, r.ts)
		}
	}
	st.RecordsRead += int64(nrec)
	st.RecordsRetained += int64(retained)
	changed := retained != nrec
	needHorizon := tombs > 0 && !hasHorizon
	if tombs > 0 {
		h := horizon
		if needHorizon {
			h = w.nowMs + deleteRetention.Milliseconds()
		}
		st.TombstoneHorizon = min(st.TombstoneHorizon, h)
	}
	if !changed && !needHorizon {
		st.BatchesCopied++
		return nil, true, nil
	}
	w.bl.Reset()
	w.bl.HeaderFrom(b)
	if retained == 0 {
		if !retainEmpty {
			st.BatchesDropped++
			return nil, false, nil
		}
		w.bl.Attributes &^= record.AttrDeleteHorizon
		w.bl.BaseTimestamp = record.NoTimestamp
		w.bl.MaxTimestamp = b.MaxTimestamp()
		st.BatchesEmptied++
		w.out, err = w.bl.Build(w.out[:0])
		return w.out, false, err
	}
	switch {
	case needHorizon:
		w.bl.Attributes |= record.AttrDeleteHorizon
		w.bl.BaseTimestamp = w.nowMs + deleteRetention.Milliseconds()
		st.HorizonsStamped++
	case hasHorizon && tombs == 0:
		// The batch's tombstones are all gone: so is its delete horizon
		// (BaseTimestamp becomes a record timestamp again).
		w.bl.Attributes &^= record.AttrDeleteHorizon
		w.bl.BaseTimestamp = minTs
	}
	w.k = 0
	w.cur = view
	if err := w.dec.Records(view, w.rebuildFn); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	st.BatchesRewritten++
	w.out, err = w.bl.Build(w.out[:0])
	return w.out, false, err
}

// rebuildRecord adds the retained records at their offsets and timestamps,
// re-based on the builder's BaseTimestamp (which may have become a delete
// horizon, or stopped being one).
func (w *worker) rebuildRecord(r *record.Record) error {
	k := w.k
	w.k++
	if k < len(w.recs) && w.recs[k].keep {
		w.bl.AddAt(w.recs[k].off, w.recs[k].ts, *r)
	}
	return nil
}

// scanHorizons reads the batch headers of the inactive segments below
// firstDirty and returns the earliest delete horizon found (MaxInt64: none).
// It is how the cleaner learns, after a restart, when tombstones of a quiet
// partition expire.
func (w *worker) scanHorizons(ctx context.Context, l *engine.Log, firstDirty engine.Offset) (int64, error) {
	h := int64(math.MaxInt64)
	var n int64
	defer func() { _ = w.throttle.Wait(ctx, n) }()
	for _, s := range l.CleanerSegments() {
		if s.Active || s.BaseOffset >= firstDirty {
			break
		}
		v, err := l.ViewSegment(s)
		if err != nil {
			return 0, err
		}
		for pos := 0; pos < len(v.Data); {
			b, _, err := record.ReadBatch(v.Data[pos:])
			if err != nil {
				v.Release()
				return 0, fmt.Errorf("%w: segment %d position %d: %w", ErrCorrupt, s.BaseOffset, pos, err)
			}
			if ts, ok := b.DeleteHorizon(); ok {
				h = min(h, ts)
			}
			pos += len(b)
			n += record.HeaderSize
		}
		v.Release()
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	return h, nil
}
