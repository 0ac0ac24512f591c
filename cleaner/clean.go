package cleaner

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// This file is one clean pass of one log by one thread (Kafka's
// Cleaner.doClean): decide which records of the dirty section are the latest
// of their key (scan.go), then recopy every segment from the log start to
// the pass's end offset in groups, keeping a record iff it is the latest of
// its key (or at or beyond the end) and, for a tombstone, its delete horizon
// has not passed.

// ErrCorrupt marks a pass that found a batch failing its CRC or framing.
var ErrCorrupt = errors.New("cleaner: corrupt batch")

// ioChunk is how many bytes a pass processes between throttle accounting
// and abort checks.
const ioChunk = 1 << 20

// PassStats describes one clean pass. The status document shows it as a
// cleanerstatus.Pass.
type PassStats struct {
	Start    time.Time
	Duration time.Duration
	MapDone  time.Duration // time spent building the offset map
	Reason   Reason

	FirstDirty       engine.Offset
	FirstUncleanable engine.Offset
	// EndOffset is the pass's end: everything below it is clean; it is the
	// next first dirty offset. Below FirstUncleanable when the dirty section
	// held more than maxScans map-fulls of keys, or more offsets than the
	// pass's bitsets cover.
	EndOffset engine.Offset
	// MapFull: the dirty section held more keys than the offset map, so
	// the pass mapped it one key range at a time (MapScans scans) and, when
	// it held more than maxScans ranges' worth, ended early.
	MapFull  bool
	MapScans int // scans of the dirty section that built the map

	MapBytesRead   int64 // all scans, the clean section's included
	MapRecords     int64
	MapUtilization float64 // the fullest scan's
	// MapArrayRecords is how many records of the dirty section (digest and
	// offset) the first scan of a MapFull pass kept for the later key
	// ranges, which map them without reading the log again.
	MapArrayRecords int64

	BytesRead       int64 // bytes of the recopied segments
	BytesWritten    int64 // bytes of the cleaned segments swapped in
	RecordsRead     int64
	RecordsRetained int64

	BatchesCopied     int64 // unchanged, copied byte for byte
	BatchesRewritten  int64 // re-encoded with their codec
	BatchesEmptied    int64 // kept as empty batches (producer state, group end)
	BatchesDropped    int64
	TombstonesDropped int64
	HorizonsStamped   int64
	KeylessDropped    int64
	AbortedRecords    int64 // records of aborted transactions removed
	MarkersStamped    int64 // transaction markers with no data left given a delete horizon
	MarkersRemoved    int64 // transaction markers removed after their horizon

	Groups        int
	GroupsSkipped int // single segments with nothing to change: not rewritten

	// TombstoneHorizon is the earliest delete horizon (Unix ms) among the
	// retained batches holding tombstones below EndOffset, MaxInt64 if none.
	TombstoneHorizon int64
}

// status is s as the status document shows it.
func (s PassStats) status() *cleanerstatus.Pass {
	return &cleanerstatus.Pass{
		Start: s.Start, DurationMs: cleanerstatus.Millis(s.Duration), MapDurationMs: cleanerstatus.Millis(s.MapDone), Reason: string(s.Reason),
		FirstDirty: int64(s.FirstDirty), FirstUncleanable: int64(s.FirstUncleanable), EndOffset: int64(s.EndOffset),
		MapFull: s.MapFull, MapScans: s.MapScans,
		MapBytesRead: s.MapBytesRead, MapRecords: s.MapRecords, MapUtilization: s.MapUtilization, MapArrayRecords: s.MapArrayRecords,
		BytesRead: s.BytesRead, BytesWritten: s.BytesWritten, RecordsRead: s.RecordsRead, RecordsRetained: s.RecordsRetained,
		BatchesCopied: s.BatchesCopied, BatchesRewritten: s.BatchesRewritten, BatchesEmptied: s.BatchesEmptied,
		BatchesDropped: s.BatchesDropped, TombstonesDropped: s.TombstonesDropped, HorizonsStamped: s.HorizonsStamped,
		KeylessDropped: s.KeylessDropped, AbortedRecords: s.AbortedRecords, MarkersStamped: s.MarkersStamped, MarkersRemoved: s.MarkersRemoved,
		Groups: s.Groups, GroupsSkipped: s.GroupsSkipped,
		TombstoneHorizon: s.TombstoneHorizon,
	}
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
// the pass's bitsets, scratch buffers. Nothing it owns is shared.
type worker struct {
	id       int
	m        *OffsetMap
	used     time.Time // when m was last allocated or a pass with it ended (Manager clock)
	throttle *Throttle
	elapsed  func() time.Duration // monotonic time since an arbitrary origin

	out    []byte    // a rebuilt batch
	recBuf []byte    // the records section of a rebuilt batch, uncompressed
	plain  []byte    // a compressed batch's records, decompressed
	recs   []recInfo // the records of the batch being looked at
	sink   uint64    // keeps prefetching loads alive

	// keep and tomb hold, for each offset of the dirty section from
	// firstDirty, whether its record is the latest of its key and whether it
	// is a tombstone; cleanDrop, for each record of the clean section by
	// ordinal, whether a dirty record supersedes it (key-range passes only).
	keep, tomb, cleanDrop bitset
	// maxSpan bounds the offsets of the dirty section one pass covers (the
	// bitsets' size); 0: defaultMaxSpan.
	maxSpan int64
	// dirty is the per-record array of a pass whose map fills
	// (dirtyrecs.go); dirtyBudget overrides its bound, in records (tests;
	// 0: the map's budget, < 0: no array).
	dirty       []dirtyRec
	dirtyBudget int64
	// cleanRecs is the same for the clean section, by record ordinal (the
	// off field), within what dirty leaves of the budget.
	cleanRecs []dirtyRec

	// Per-pass state.
	ctx          context.Context
	log          *engine.Log
	stats        *PassStats
	firstDirty   int64
	end          int64 // records at or above it are left as they are
	nowMs        int64
	rng          keyRange   // the key range being mapped
	last         keyRange   // the key range the map holds for the recopy
	pending      []keyRange // key ranges still to map
	target       float64    // keys a planned range should hold
	maxKeys      float64    // keys a pass takes at most
	cleanOrd     int64      // ordinal of the next clean-section record the recopy reads
	from         int64      // a scan of the dirty section maps the records at or above it
	recording    bool       // the first scan keeps records in dirty
	dirtyStopped bool       // the first scan no longer keeps them (out of budget)
	dirtyCap     int        // records dirty may hold this pass
	dirtyEnd     int64      // dirty holds what the later ranges need of the records below it
	batchN       int        // records of the batch the first scan is at
	// The clean section's array (scanClean).
	cleanSeen      bool  // scanClean ran this pass
	recordingClean bool  // its first call keeps records in cleanRecs
	cleanCap       int   // records cleanRecs may hold this pass
	cleanFrom      int64 // cleanRecs holds what later calls need of the records below it
	cleanFromOrd   int64 // the ordinal of the first record at or above cleanFrom
	aborted        abortedTxns
	txn            *txnTracker // the recopy's transactions (txn.go)
	txnList        []engine.AbortedTxn
}

// defaultMaxSpan is the largest dirty section, in offsets, a pass covers
// when the map is small: the bitsets take span/4 bytes, at most 2 MiB here,
// or (spanPerMapByte) a quarter of the map's size for larger maps.
const (
	defaultMaxSpan = 8 << 20
	spanPerMapByte = 1
)

func newWorker(id int, throttle *Throttle, elapsed func() time.Duration) *worker {
	return &worker{id: id, throttle: throttle, elapsed: elapsed}
}

// ensureMap (re)allocates the offset map when the configured size or load
// factor changed (live tuning takes effect at the next pass).
func (w *worker) ensureMap(size int64, loadFactor float64, alloc func(int64, float64) (*OffsetMap, error)) error {
	if w.m != nil && int64(w.m.Bytes()) == size/EntrySize*EntrySize && w.m.MaxEntries() == int(float64(w.m.Slots())*loadFactor) {
		return nil
	}
	w.m = nil // let the old buffer go before allocating the new one
	if alloc == nil {
		alloc = NewOffsetMap
	}
	m, err := alloc(size, loadFactor)
	if err != nil {
		return err
	}
	w.m = m
	return nil
}

// mapBytes is the size of w's offset map, 0 without one.
func (w *worker) mapBytes() int64 {
	if w.m == nil {
		return 0
	}
	return int64(w.m.Bytes())
}

// release drops the offset map and the pass's bitsets and scratch buffers
// (the next pass allocates them again).
func (w *worker) release() {
	w.m = nil
	w.keep, w.tomb, w.cleanDrop = nil, nil, nil
	w.dirty, w.cleanRecs = nil, nil
	w.out, w.recBuf, w.plain, w.recs = nil, nil, nil, nil
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
	l := in.log
	w.ctx, w.stats, w.log = ctx, &st, l
	defer func() { w.ctx, w.stats, w.log, w.aborted, w.txn, w.txnList = nil, nil, nil, nil, nil, nil }()
	w.firstDirty = int64(in.firstDirty)
	w.nowMs = in.now.UnixMilli()
	w.cleanOrd = 0
	w.cleanDrop = w.cleanDrop[:0]
	segs := l.CleanerSegments()

	// 1. Decide the dirty section [firstDirty, end): its keep and tomb bits,
	// and the map for the clean section.
	span := max(0, int64(in.firstUncleanable)-w.firstDirty)
	maxSpan := w.maxSpan
	if maxSpan <= 0 {
		maxSpan = max(defaultMaxSpan, int64(w.m.Bytes())*spanPerMapByte)
	}
	span = min(span, maxSpan)
	w.end = w.firstDirty + span
	w.keep = w.keep.resize(span)
	w.tomb = w.tomb.resize(span)
	w.m.Clear()
	// The aborted transactions that began below the first uncleanable
	// offset: all of them are decided (txn.go).
	ab, err := l.AbortedTxns(0, in.firstUncleanable)
	if err != nil {
		return st, err
	}
	w.aborted = newAbortedTxns(ab)
	w.txn, w.txnList = newTxnTracker(ab), ab
	if err := w.mapDirty(segs); err != nil {
		return st, err
	}
	end := engine.Offset(w.end)
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
	producers := l.ActiveProducers()
	out, err := w.estimateOutput(cands)
	if err != nil {
		return st, err
	}
	for _, g := range groupSegments(cands, out, cfg) {
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

// groupReadFactor bounds the bytes a group reads, in segment.bytes: the
// work an abort of the group throws away.
const groupReadFactor = 4

// groupSegments splits candidates into runs [i, j) that fit one cleaned
// segment (Kafka's groupSegmentsBySize): its estimated size (out, see
// estimateOutput) within segment.bytes, its index entries (at most one per
// index.interval.bytes of it) within segment.index.bytes, and the offset span
// within int32. Kafka bounds the segments' sizes before cleaning instead,
// which leaves a log of mostly superseded records in as many cleaned segments
// as it had (each one a file set to create, fsync and swap in) until later
// passes merge them; a group here reads at most groupReadFactor ×
// segment.bytes.
func groupSegments(cands []engine.SegmentRef, out []int64, cfg engine.Config) [][2]int {
	maxEntries := int64(max(cfg.SegmentIndexBytes, 32)) / 8
	interval := int64(max(cfg.IndexIntervalBytes, 1))
	var groups [][2]int
	for i := 0; i < len(cands); {
		j := i + 1
		size, read := out[i], cands[i].Size
		for j < len(cands) {
			c := cands[j]
			if size+out[j] > cfg.SegmentBytes ||
				(size+out[j])/interval+2 > maxEntries ||
				read+c.Size > groupReadFactor*cfg.SegmentBytes ||
				(c.Size > 0 && int64(c.NextOffset-1)-int64(cands[i].BaseOffset) > math.MaxInt32) {
				break
			}
			size += out[j]
			read += c.Size
			j++
		}
		groups = append(groups, [2]int{i, j})
		i = j
	}
	return groups
}

// estimateOutput returns, for each candidate segment, a bound on the size of
// what the pass will write of it: for a segment wholly within the dirty
// section, read from its batch headers and keep bits (a batch dropped
// counts as an empty batch; one thinned or re-based as its size plus room
// for larger timestamp deltas and compression); for any other, its size.
func (w *worker) estimateOutput(cands []engine.SegmentRef) ([]int64, error) {
	out := make([]int64, len(cands))
	lo, hi := w.firstDirty, w.end
	for k, s := range cands {
		out[k] = s.Size
		if int64(s.BaseOffset) < lo || int64(s.NextOffset) > hi || s.Size == 0 {
			continue
		}
		v, err := w.log.ViewSegment(s)
		if err != nil {
			return nil, err
		}
		var est int64
		for pos := 0; pos < len(v.Data); {
			b, _, err := record.ReadBatch(v.Data[pos:])
			if err != nil {
				v.Release()
				return nil, w.corrupt(s, pos, err)
			}
			pos += len(b)
			nrec := int(b.NumRecords())
			if b.IsControl() {
				est += int64(len(b)) + 10 // room for a delete horizon's larger timestamp delta
				continue
			}
			if nrec <= 0 || b.BaseOffset() < lo || b.LastOffset() >= hi {
				est += int64(len(b))
				continue
			}
			switch kept, tombs := w.keep.count(w.tomb, b.BaseOffset()-lo, b.LastOffset()-lo); {
			case kept == 0:
				est += record.HeaderSize
			case kept == nrec && tombs == 0:
				est += int64(len(b))
			default:
				est += int64(len(b)) + 10*int64(kept) + 64
			}
		}
		v.Release()
		out[k] = est
	}
	return out, nil
}

// cleanGroup writes the cleaned replacement of group and swaps it in. A
// group of one segment in which nothing changes is left alone.
func (w *worker) cleanGroup(l *engine.Log, group []engine.SegmentRef, next engine.SegmentRef, producers map[int64]engine.ProducerLast, deleteRetention time.Duration) (err error) {
	st := w.stats
	w.txn.kept = w.txn.kept[:0]
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
				return w.corrupt(s, pos, err)
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
				if errors.Is(err, errRecords) || errors.Is(err, record.ErrCorrupt) || errors.Is(err, record.ErrInvalid) || errors.Is(err, record.ErrTruncated) {
					return w.corrupt(s, pos, err)
				}
				return fmt.Errorf("cleaner: %s segment %d position %d: %w", l.TopicPartition(), s.BaseOffset, pos, err)
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
	if cs == nil && w.sameTxnIndex(group[0].BaseOffset, next.BaseOffset) {
		st.GroupsSkipped++
		return nil
	}
	if cs == nil {
		// Nothing changed but the .txnindex (an entry whose data is gone,
		// of a marker that already has its horizon): the segment is
		// copied as it is with its new index.
		if err := open(); err != nil {
			return err
		}
		for _, s := range group {
			if s.Size == 0 {
				continue
			}
			v, err := l.ViewSegment(s)
			if err != nil {
				return err
			}
			err = cs.Append(v.Data)
			v.Release()
			if err != nil {
				return err
			}
		}
	}
	for _, a := range w.txn.kept {
		if err := cs.AddAbortedTxn(a); err != nil {
			return err
		}
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

// sameTxnIndex reports whether the aborted transactions the group keeps
// (w.txn.kept) are all those of the pass's input with a marker in [from,
// to) (kept ones always are among them).
func (w *worker) sameTxnIndex(from, to engine.Offset) bool {
	n := 0
	for _, a := range w.txnList {
		if a.LastOffset >= from && a.LastOffset < to {
			n++
		}
	}
	return n == len(w.txn.kept)
}

// filterBatch decides what becomes of batch b. keep: b goes to the cleaned
// segment unchanged (byte for byte). Otherwise out is its replacement (a
// re-encoded or empty batch) or empty when the batch is dropped. last says b
// is the group's last batch, which is always kept, emptied if need be, so
// that the cleaned segment ends where the group does.
//
// A record is kept (Kafka's shouldRetainRecord, with KIP-534 horizons) when
// it is at or beyond the pass's end, or else when it is keyed, no later
// record of its key was mapped (dirty records: its keep bit; clean ones:
// cleanDrop and the map), and it is not a tombstone past its batch's delete
// horizon. A dirty batch whose records are all dropped, or all kept with no
// tombstone to stamp or expire, is decided from the bits alone.
func (w *worker) filterBatch(b record.Batch, last bool, producers map[int64]engine.ProducerLast, deleteRetention time.Duration) (out []byte, keep bool, err error) {
	st := w.stats
	retainEmpty := last
	if pid := b.ProducerID(); pid >= 0 {
		pl, ok := producers[pid]
		switch {
		case !ok:
		case b.IsControl():
			retainEmpty = retainEmpty || pl.LastDataOffset < 0 && pl.Epoch == b.ProducerEpoch()
		default:
			retainEmpty = retainEmpty || int64(pl.LastDataOffset) == b.LastOffset()
		}
	}
	if b.IsControl() {
		return w.filterMarker(b, retainEmpty, deleteRetention)
	}
	w.txn.onData(b)
	nrec := int(b.NumRecords())
	if nrec == 0 {
		if retainEmpty {
			st.BatchesCopied++
			return nil, true, nil
		}
		st.BatchesDropped++
		return nil, false, nil
	}
	base, lastOff := b.BaseOffset(), b.LastOffset()
	lo, hi := w.firstDirty, w.end
	if base >= hi {
		// Wholly beyond the pass's end (the rest of a segment in which the
		// pass ended): kept as it is, without decoding. Its tombstones get
		// their horizon when a later pass maps them.
		st.RecordsRead += int64(nrec)
		st.RecordsRetained += int64(nrec)
		st.BatchesCopied++
		return nil, true, nil
	}
	if w.aborted.aborted(b) {
		// An aborted transaction's records are removed (txn.go).
		st.RecordsRead += int64(nrec)
		st.AbortedRecords += int64(nrec)
		return w.emptied(b, retainEmpty)
	}
	horizon, hasHorizon := b.DeleteHorizon()
	expired := hasHorizon && w.nowMs >= horizon
	if base >= lo && lastOff < hi {
		kept, tombs := w.keep.count(w.tomb, base-lo, lastOff-lo)
		switch {
		case kept == 0:
			st.RecordsRead += int64(nrec)
			return w.emptied(b, retainEmpty)
		case kept == nrec && (tombs == 0 || hasHorizon && !expired):
			st.RecordsRead += int64(nrec)
			st.RecordsRetained += int64(nrec)
			st.BatchesCopied++
			if tombs > 0 {
				st.TombstoneHorizon = min(st.TombstoneHorizon, horizon)
			}
			return nil, true, nil
		}
	}
	if lastOff < lo {
		// Not read by the map's first scan: verify it before anything of it
		// is rewritten under a new CRC.
		if err := b.VerifyCRC(); err != nil {
			return nil, false, err
		}
	}
	m := w.m
	p, err := w.section(b)
	if err == nil {
		// Clean records are looked up in the map when their key is in the
		// range it holds.
		err = w.walk(b, p, hashing{from: math.MinInt64, to: lo, rng: w.last, touch: m.prefetch()})
	}
	if err != nil {
		return nil, false, err
	}
	retained, tombs := 0, 0
	minTs := int64(math.MaxInt64)
	for i := range w.recs {
		r := &w.recs[i]
		switch {
		case r.off >= hi:
			r.keep = true // beyond the pass's end: untouched this pass
		case r.off >= lo:
			r.keep = w.keep.has(r.off - lo) // keyless records have no bit
		default:
			ord := w.cleanOrd
			w.cleanOrd++
			switch {
			case r.keyLen < 0:
				r.keep = false
				st.KeylessDropped++
			case w.cleanDrop.hasAt(ord), r.hashed && m.getDigest(r.h1, r.h2) >= 0:
				r.keep = false // a later record of the key exists
			default:
				r.keep = true
			}
		}
		if r.keep && r.tomb && expired && r.off < hi {
			r.keep = false // tombstone past its delete horizon
			st.TombstonesDropped++
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
	if retained == 0 {
		return w.emptied(b, retainEmpty)
	}
	attrs, baseTs := b.Attributes(), b.BaseTimestamp()
	switch {
	case needHorizon:
		attrs |= record.AttrDeleteHorizon
		baseTs = w.nowMs + deleteRetention.Milliseconds()
		st.HorizonsStamped++
	case hasHorizon && tombs == 0:
		// The batch's tombstones are all gone: so is its delete horizon
		// (BaseTimestamp becomes a record timestamp again).
		attrs &^= record.AttrDeleteHorizon
		baseTs = minTs
	}
	st.BatchesRewritten++
	w.out, err = w.rebuild(b, p, attrs, baseTs, retained)
	return w.out, false, err
}

// filterMarker decides what becomes of control batch b (txn.go): kept as
// it is while a batch of its transaction was read or its horizon has not
// passed, stamped with a delete horizon when the pass finds its data gone,
// removed after the horizon unless retain (its producer's newest batch, or
// the group's last).
func (w *worker) filterMarker(b record.Batch, retain bool, deleteRetention time.Duration) ([]byte, bool, error) {
	st := w.stats
	noData, indexed, err := w.txn.onMarker(b)
	if err != nil {
		return nil, false, err
	}
	horizon, hasHorizon := b.DeleteHorizon()
	switch {
	case !noData || hasHorizon && (w.nowMs < horizon || indexed || retain):
		if noData && (w.nowMs < horizon || indexed) {
			// A later pass removes it (one kept for its producer or
			// its group's end does not make the partition due).
			st.TombstoneHorizon = min(st.TombstoneHorizon, horizon)
		}
		st.BatchesCopied++
		return nil, true, nil
	case hasHorizon:
		st.BatchesDropped++
		st.MarkersRemoved++
		return nil, false, nil
	case b.NumRecords() == 0:
		st.BatchesCopied++ // an emptied marker: nothing to stamp
		return nil, true, nil
	}
	p, err := w.section(b)
	if err == nil {
		err = w.walk(b, p, noHashing)
	}
	if err != nil {
		return nil, false, err
	}
	for i := range w.recs {
		w.recs[i].keep = true
	}
	h := w.nowMs + deleteRetention.Milliseconds()
	st.HorizonsStamped++
	st.MarkersStamped++
	st.BatchesRewritten++
	st.TombstoneHorizon = min(st.TombstoneHorizon, h)
	w.out, err = w.rebuild(b, p, b.Attributes()|record.AttrDeleteHorizon, h, len(w.recs))
	return w.out, false, err
}

// emptied drops b, all of whose records are gone, or keeps it as an empty
// batch when retainEmpty: header fields kept (base and last offset, producer
// id/epoch/base sequence, leader epoch, MaxTimestamp, flags), no records,
// no codec, no delete horizon, BaseTimestamp NoTimestamp — what Kafka's
// writeEmptyHeader writes.
func (w *worker) emptied(b record.Batch, retainEmpty bool) ([]byte, bool, error) {
	st := w.stats
	if !retainEmpty {
		st.BatchesDropped++
		return nil, false, nil
	}
	st.BatchesEmptied++
	out := append(w.out[:0], b[:record.HeaderSize]...)
	h := record.Batch(out)
	be := binary.BigEndian
	be.PutUint32(h[record.OffLength:], record.MinLengthField)
	h.SetAttributes(b.Attributes() &^ (record.AttrCodecMask | record.AttrDeleteHorizon))
	h.SetBaseTimestamp(record.NoTimestamp)
	be.PutUint32(h[record.OffNumRecords:], 0)
	h.UpdateCRC()
	w.out = out
	return out, false, nil
}

// rebuild encodes the retained records of b (w.recs, in section p) as a
// batch with b's header but attrs and baseTs: base and last offset, leader
// epoch, producer fields and codec kept; MaxTimestamp that of the retained
// records (kept for LogAppendTime). A retained record's bytes are copied as
// they are, or, when BaseTimestamp changes, with its timestamp delta
// re-based so that its timestamp stays the same.
func (w *worker) rebuild(b record.Batch, p []byte, attrs int16, baseTs int64, n int) ([]byte, error) {
	oldBase := b.BaseTimestamp()
	buf := w.recBuf[:0]
	maxTs := int64(math.MinInt64)
	for i := range w.recs {
		r := &w.recs[i]
		if !r.keep {
			continue
		}
		maxTs = max(maxTs, r.ts)
		if baseTs == oldBase {
			buf = append(buf, p[r.start:r.end]...)
			continue
		}
		// length, attributes, timestamp delta, then the rest unchanged.
		delta := r.ts - baseTs
		body := 1 + varintSize(delta) + int(r.end-r.tsEnd)
		buf = binary.AppendVarint(buf, int64(body))
		buf = append(buf, p[r.attrAt])
		buf = binary.AppendVarint(buf, delta)
		buf = append(buf, p[r.tsEnd:r.end]...)
	}
	w.recBuf = buf
	out := append(w.out[:0], b[:record.HeaderSize]...)
	out, err := record.Compress(b.Codec(), out, buf)
	if err != nil {
		return nil, fmt.Errorf("cleaner: re-encoding batch at %d: %w", b.BaseOffset(), err)
	}
	if len(out)-record.LogOverhead > math.MaxInt32 {
		return nil, fmt.Errorf("cleaner: re-encoded batch at %d is %d bytes", b.BaseOffset(), len(out))
	}
	h := record.Batch(out)
	be := binary.BigEndian
	be.PutUint32(h[record.OffLength:], uint32(len(out)-record.LogOverhead))
	h.SetAttributes(attrs)
	h.SetBaseTimestamp(baseTs)
	if attrs&record.AttrLogAppendTime == 0 {
		h.SetMaxTimestamp(max(record.NoTimestamp, maxTs))
	}
	be.PutUint32(h[record.OffNumRecords:], uint32(n))
	h.UpdateCRC()
	return out, nil
}

// varintSize is the size of v as a zigzag varint.
func varintSize(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(u|1) + 6) / 7
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
