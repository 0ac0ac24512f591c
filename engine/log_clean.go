package engine

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/kvlog/kvlog/engine/index"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// This file is the engine side of log compaction: what the cleaner (package
// cleaner) needs to read inactive segments, write their cleaned replacement
// and swap it in. The cleaner decides what to keep; the engine owns files,
// indexes, segment lists and the crash-safe swap.
//
// Swap protocol (docs/storage.md#cleaner-swap), all under Log.mu:
//
//  1. every cleaned segment was written as <base>.log.cleaned (+ .index.cleaned,
//     .timeindex.cleaned) and fsynced by CleanedSegment.Finish;
//  2. verify that the replaced segments are still exactly the ones the pass
//     read (else ErrSegmentsChanged, nothing renamed);
//  3. rename every cleaned segment's files .cleaned → .swap, segments in
//     descending base offset, the .log last within a segment;
//  4. publish the new segment list (readers switch to the new files, which
//     they reach through already-open descriptors);
//  5. retire the old segments and rename their files .deleted (unlinked by
//     ProcessDeletes after file.delete.delay.ms; readers holding them keep
//     reading);
//  6. rename .swap → final names; 7. fsync the directory.
//
// finishInterruptedSwaps undoes a crash before every .cleaned reached .swap
// and completes one after. For completion to delete exactly the replaced
// segments, a cleaned segment must end with a batch whose last offset is the
// last offset of the group it replaces (the cleaner keeps the group's last
// batch, emptied if need be); Finish checks it.

// ErrSegmentsChanged is returned by ViewSegment and ReplaceSegments when the
// segments a clean pass read are no longer the log's (truncation, retention,
// deletion, another swap or a close changed the log meanwhile). The pass is
// abandoned; nothing was renamed.
var ErrSegmentsChanged = errors.New("engine: segments changed during cleaning")

// SegmentRef identifies one segment instance of a log for the cleaner. ID
// distinguishes a segment from a later one with the same base offset.
type SegmentRef struct {
	ID               uint64
	BaseOffset       Offset
	NextOffset       Offset // offset after the segment's last batch (for inactive segments after a restart: the next segment's base)
	Size             int64
	LargestTimestamp int64 // -1 when the segment holds no timestamps
	Active           bool
}

// CleanerSegments describes every segment, oldest first, the last being the
// active one. It is a snapshot; the cleaner passes elements back to
// ViewSegment and ReplaceSegments, which check they are still current.
func (l *Log) CleanerSegments() []SegmentRef {
	segs := l.segments()
	out := make([]SegmentRef, len(segs))
	for i, s := range segs {
		ts, _, _ := s.largestTimestamp() // -1 when unreadable
		out[i] = SegmentRef{
			ID:               s.id,
			BaseOffset:       s.base,
			NextOffset:       Offset(s.next.Load()),
			Size:             s.size.Load(),
			LargestTimestamp: ts,
			Active:           i == len(segs)-1,
		}
	}
	return out
}

// ProducerLast is what the cleaner must keep of an active producer (Kafka's
// cleaner rules): the batch holding its last data offset, whose sequence
// numbers the producer state needs, or, when the log holds no data batch
// of it (LastDataOffset -1), its newest marker of its current Epoch, which
// carries the epoch zombie fencing needs.
type ProducerLast struct {
	LastDataOffset Offset
	Epoch          int16
}

// ActiveProducers returns, for every producer id the log tracks, its
// ProducerLast.
func (l *Log) ActiveProducers() map[int64]ProducerLast {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil
	}
	if err := l.ensureLoaded(); err != nil {
		l.logger.Error("producer state unavailable", "partition", l.tp.String(), "err", err)
		return nil
	}
	out := make(map[int64]ProducerLast, len(l.producers.m))
	for pid, e := range l.producers.m {
		pl := ProducerLast{LastDataOffset: -1, Epoch: e.epoch}
		if n := len(e.batches); n > 0 {
			pl.LastDataOffset = e.batches[n-1].lastOffset
		}
		out[pid] = pl
	}
	return out
}

// SegmentView is a read-only memory mapping of an inactive segment's .log,
// for scanning. It holds a reference on the segment's files: deletion and
// retention never unmap or unlink them under it. Release it promptly (before
// ReplaceSegments): a truncation of the same segment waits for it.
type SegmentView struct {
	Segment SegmentRef
	// Data is the whole .log: batches back to back, Segment.Size bytes. It
	// must not be written to, and must not be used after Release.
	Data []byte
	h    *handle
}

// Release drops the view's reference. Safe to call more than once.
func (v *SegmentView) Release() {
	if v != nil && v.h != nil {
		v.h.release()
		v.h, v.Data = nil, nil
	}
}

// ViewSegment maps the inactive segment ref. ErrSegmentsChanged when the
// segment is no longer in the log, is active again, or changed size.
func (l *Log) ViewSegment(ref SegmentRef) (*SegmentView, error) {
	if l.closed.Load() {
		return nil, l.errorf("view segment", ref.BaseOffset, -1, ErrClosed)
	}
	segs := l.segments()
	i, ok := floorSegment(segs, ref.BaseOffset)
	if !ok || segs[i].id != ref.ID || segs[i].base != ref.BaseOffset || i == len(segs)-1 {
		return nil, l.errorf("view segment", ref.BaseOffset, -1, ErrSegmentsChanged)
	}
	s := segs[i]
	h, err := s.acquire()
	if errors.Is(err, errSegmentGone) {
		return nil, l.errorf("view segment", s.base, -1, fmt.Errorf("%w: %w", ErrSegmentsChanged, err))
	}
	if err != nil {
		return nil, l.errorf("view segment", s.base, -1, storageErr(err))
	}
	size := s.size.Load()
	if size != ref.Size || s.isActive() {
		h.release()
		return nil, l.errorf("view segment", s.base, -1, ErrSegmentsChanged)
	}
	data, err := h.mapped(size)
	if err != nil {
		h.release()
		return nil, l.errorf("view segment", s.base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	return &SegmentView{Segment: ref, Data: data[:size:size], h: h}, nil
}

// CleanedSegment writes the replacement of a group of segments:
// <base>.log.cleaned and its two indexes, with index entries every
// index.interval.bytes exactly as appends make them. Not safe for concurrent
// use. Either Finish and hand it to ReplaceSegments, or Abort it.
type CleanedSegment struct {
	l    *Log
	base Offset
	cfg  Config
	h    *handle

	buf     []byte // bytes not yet written to the file
	written int64  // bytes written to the file
	size    int64  // written + len(buf)

	bytesSinceIndex int
	lastOffset      Offset // last offset of the last batch appended, base-1 if none
	maxTs           int64
	offsetOfMaxTs   Offset
	batches         int
	finished        bool
	done            bool // installed or aborted

	// txn holds the aborted transactions whose abort marker the cleaned
	// segment keeps (AddAbortedTxn): its .txnindex. txnFile: Finish wrote
	// them as <base>.txnindex.cleaned.
	txn     []AbortedTxn
	txnFile bool
}

// cleanedWriteBuffer is how many bytes a CleanedSegment gathers before a write.
const cleanedWriteBuffer = 1 << 20

// NewCleanedSegment creates the (empty) files of a cleaned segment at base,
// replacing stale ones a crashed or aborted pass may have left.
func (l *Log) NewCleanedSegment(base Offset) (*CleanedSegment, error) {
	if l.closed.Load() {
		return nil, l.errorf("clean", base, -1, ErrClosed)
	}
	cfg := l.Config()
	paths := cleanedPaths(l.dir, base)
	for _, p := range append(paths[:], TxnIndexFileName(l.dir, base)+CleanedSuffix) {
		if err := l.fs.Remove(p); err != nil && !os.IsNotExist(err) {
			return nil, l.errorf("clean", base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	f, err := l.fs.OpenFile(paths[0], os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, l.errorf("clean", base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	h := &handle{file: f, hc: l.handles}
	if err = h.chargeIndexMaps(); err == nil {
		h.oidx, err = index.OpenOffset(l.fs, paths[1], int64(base), cfg.indexBytes(), true)
	}
	if err == nil {
		h.tidx, err = index.OpenTime(l.fs, paths[2], int64(base), timeIndexBytes(cfg), true)
	}
	if err != nil {
		h.close()
		for _, p := range paths {
			_ = l.fs.Remove(p)
		}
		return nil, l.errorf("clean", base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	// No reader sees a .cleaned index: its entries are written in one go
	// when Finish trims it, not one system call each.
	h.oidx.BeginBulk()
	h.tidx.BeginBulk()
	return &CleanedSegment{
		l: l, base: base, cfg: cfg, h: h,
		lastOffset: base - 1, maxTs: -1, offsetOfMaxTs: base,
	}, nil
}

// cleanedPaths are the .log, .index and .timeindex names with the .cleaned suffix.
func cleanedPaths(dir string, base Offset) [3]string {
	return [3]string{
		LogFileName(dir, base) + CleanedSuffix,
		IndexFileName(dir, base) + CleanedSuffix,
		TimeIndexFileName(dir, base) + CleanedSuffix,
	}
}

// BaseOffset is the base offset of the cleaned segment (that of the first
// segment it replaces).
func (w *CleanedSegment) BaseOffset() Offset { return w.base }

// Size is the number of bytes appended so far.
func (w *CleanedSegment) Size() int64 { return w.size }

// LastOffset is the last offset of the last batch appended (BaseOffset-1 when
// none was).
func (w *CleanedSegment) LastOffset() Offset { return w.lastOffset }

// AddAbortedTxn adds a to the cleaned segment's transaction index: an
// aborted transaction whose abort marker (a.LastOffset) the segment keeps
// and of which data may remain. Entries come in marker order. The cleaned
// segment's index replaces every .txnindex of the offsets it covers when
// it is swapped in; an aborted transaction not added is forgotten (its
// data is gone; its marker may stay).
func (w *CleanedSegment) AddAbortedTxn(a AbortedTxn) error {
	if w.finished || w.done {
		return fmt.Errorf("engine: aborted transaction added to a finished cleaned segment %d", w.base)
	}
	if a.LastOffset < w.base || a.FirstOffset < 0 || a.FirstOffset > a.LastOffset ||
		(len(w.txn) > 0 && a.LastOffset <= w.txn[len(w.txn)-1].LastOffset) {
		return w.l.errorf("clean", w.base, a.LastOffset, fmt.Errorf("%w: aborted transaction %d..%d of producer %d out of order in cleaned segment %d", ErrInvalidRecord, a.FirstOffset, a.LastOffset, a.ProducerID, w.base))
	}
	w.txn = append(w.txn, a)
	return nil
}

// Append adds whole batches (any number, back to back). Their offsets must
// lie in [BaseOffset, BaseOffset+MaxInt32] and increase. The bytes are copied
// (batches may alias a SegmentView). Index entries are added as Log.Append
// adds them: the offset index maps a batch's last offset to its position
// when more than index.interval.bytes were appended since the previous entry,
// and the time index records the largest timestamp seen before that batch.
// A full index only makes the index sparser (indexes are caches).
func (w *CleanedSegment) Append(batches []byte) error {
	if w.finished || w.done {
		return fmt.Errorf("engine: append to a finished cleaned segment %d", w.base)
	}
	for rest := batches; len(rest) > 0; {
		b, r, err := record.ReadBatch(rest)
		if err != nil {
			return w.l.errorf("clean", w.base, w.lastOffset+1, fmt.Errorf("%w: %w", ErrCorruptRecord, err))
		}
		first, last := Offset(b.BaseOffset()), Offset(b.LastOffset())
		if first <= w.lastOffset || first < w.base || int64(last)-int64(w.base) > int64(^uint32(0)>>1) || last < first {
			return w.l.errorf("clean", w.base, first, fmt.Errorf("%w: batch [%d,%d] after offset %d in segment %d", ErrInvalidRecord, first, last, w.lastOffset, w.base))
		}
		pos := w.size
		if w.bytesSinceIndex > w.cfg.IndexIntervalBytes && pos <= int64(^uint32(0)) {
			_ = w.h.oidx.Append(int64(last), uint32(pos))
			_ = w.h.tidx.MaybeAppend(w.maxTs, int64(w.offsetOfMaxTs), false)
			w.bytesSinceIndex = 0
		}
		w.bytesSinceIndex += len(b)
		if ts := b.MaxTimestamp(); ts > w.maxTs {
			w.maxTs, w.offsetOfMaxTs = ts, last
		}
		w.lastOffset = last
		w.size += int64(len(b))
		w.batches++
		rest = r
	}
	if len(w.buf)+len(batches) > cleanedWriteBuffer {
		if err := w.flushBuf(); err != nil {
			return err
		}
		if len(batches) >= cleanedWriteBuffer {
			return w.write(batches)
		}
	}
	w.buf = append(w.buf, batches...)
	return nil
}

func (w *CleanedSegment) flushBuf() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.write(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (w *CleanedSegment) write(p []byte) error {
	if _, err := w.h.file.WriteAt(p, w.written); err != nil {
		return w.l.errorf("clean", w.base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	w.written += int64(len(p))
	return nil
}

// Finish writes the last time-index entry, trims both indexes and fsyncs the
// .log and the indexes. end is the offset after the last batch of the
// replaced group; the last batch appended must end exactly there (see the
// swap protocol) unless nothing was appended.
func (w *CleanedSegment) Finish(end Offset) error {
	if w.done {
		return fmt.Errorf("engine: finish of an aborted cleaned segment %d", w.base)
	}
	if w.finished {
		return nil
	}
	if w.batches > 0 && w.lastOffset+1 != end {
		return w.l.errorf("clean", w.base, w.lastOffset, fmt.Errorf("%w: cleaned segment ends at %d, the group at %d", ErrInvalidRecord, w.lastOffset+1, end))
	}
	if n := len(w.txn); n > 0 && w.txn[n-1].LastOffset >= end {
		return w.l.errorf("clean", w.base, w.txn[n-1].LastOffset, fmt.Errorf("%w: aborted transaction marker %d beyond the cleaned segment's end %d", ErrInvalidRecord, w.txn[n-1].LastOffset, end))
	}
	if err := w.flushBuf(); err != nil {
		return err
	}
	h := w.h
	var err error
	if w.maxTs >= 0 {
		err = h.tidx.MaybeAppend(w.maxTs, int64(w.offsetOfMaxTs), true)
		if errors.Is(err, index.ErrIndexFull) {
			err = nil
		}
	}
	if err == nil {
		err = h.oidx.TrimToValidSize()
	}
	if err == nil {
		err = h.tidx.TrimToValidSize()
	}
	if err == nil {
		err = h.file.Sync()
	}
	if err == nil {
		err = h.oidx.Flush()
	}
	if err == nil {
		err = h.tidx.Flush()
	}
	if err == nil && len(w.txn) > 0 {
		err = writeTxnIndexFile(w.l.fs, TxnIndexFileName(w.l.dir, w.base)+CleanedSuffix, w.txn)
		w.txnFile = err == nil
	}
	if err != nil {
		return w.l.errorf("clean", w.base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	w.finished = true
	return nil
}

// writeTxnIndexFile writes entries as the whole file path (created or
// truncated) and fsyncs it.
func writeTxnIndexFile(fs vfs.FS, path string, entries []AbortedTxn) error {
	buf := make([]byte, 0, len(entries)*TxnIndexEntrySize)
	for _, a := range entries {
		buf = EncodeTxnIndexEntry(buf, a)
	}
	f, err := fs.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(buf, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort closes and removes the cleaned files (under their .cleaned or, after
// a swap that failed and could not be rolled back, .swap names). Safe after a
// failed ReplaceSegments and more than once; a no-op once installed.
func (w *CleanedSegment) Abort() {
	if w == nil || w.done {
		return
	}
	w.done = true
	w.h.close()
	paths := cleanedPaths(w.l.dir, w.base)
	for _, p := range append(paths[:], TxnIndexFileName(w.l.dir, w.base)+CleanedSuffix) {
		_ = w.l.fs.Remove(p)
		_ = w.l.fs.Remove(strings.TrimSuffix(p, CleanedSuffix) + SwapSuffix)
	}
}

// ReplaceSegments swaps finished cleaned segments in for old, a contiguous
// run of inactive segments as returned by CleanerSegments (and read by the
// pass), following the swap protocol above. cleaned must be sorted by base
// offset, the first at old[0]'s base, all within old's range. It returns an
// error wrapping ErrSegmentsChanged, without touching any file, when old is
// not exactly the log's current run of segments (or the segment that
// followed it was replaced, which is how a truncation inside the run and
// later appends show); the caller then aborts the cleaned segments. An
// error after the renames began wraps ErrStorage: the log keeps serving the
// new segments through open descriptors and the next open completes the
// swap, but the partition should not be cleaned again before a restart.
func (l *Log) ReplaceSegments(cleaned []*CleanedSegment, old []SegmentRef, next SegmentRef) error {
	if len(cleaned) == 0 || len(old) == 0 {
		return fmt.Errorf("engine: ReplaceSegments needs cleaned and old segments")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return l.errorf("replace segments", old[0].BaseOffset, -1, ErrClosed)
	}
	segs := l.segments()
	i, ok := floorSegment(segs, old[0].BaseOffset)
	if !ok || i+len(old) >= len(segs) {
		return l.errorf("replace segments", old[0].BaseOffset, -1, ErrSegmentsChanged)
	}
	for k, ref := range old {
		s := segs[i+k]
		if s.id != ref.ID || s.base != ref.BaseOffset || s.size.Load() != ref.Size {
			return l.errorf("replace segments", ref.BaseOffset, -1, ErrSegmentsChanged)
		}
	}
	j := i + len(old)
	if segs[j].id != next.ID || segs[j].base != next.BaseOffset {
		return l.errorf("replace segments", next.BaseOffset, -1, ErrSegmentsChanged)
	}
	end := Offset(segs[j-1].next.Load())
	if end < 0 || end > segs[j].base {
		end = segs[j].base
	}
	for k, w := range cleaned {
		switch {
		case w.l != l || !w.finished || w.done:
			return fmt.Errorf("engine: cleaned segment %d is not a finished segment of %s", w.base, l.tp)
		case k == 0 && w.base != old[0].BaseOffset:
			return fmt.Errorf("engine: cleaned segment %d does not start the replaced run at %d", w.base, old[0].BaseOffset)
		case k > 0 && w.base <= cleaned[k-1].lastOffset:
			return fmt.Errorf("engine: cleaned segments overlap at %d", w.base)
		case w.lastOffset >= end:
			return fmt.Errorf("engine: cleaned segment %d ends at %d beyond the replaced run's end %d", w.base, w.lastOffset, end)
		}
	}

	// 2b. The cleaned segments' transaction indexes replace those of the
	// offsets they cover (see replaceTxnIndexes), before anything is
	// renamed.
	if err := l.replaceTxnIndexes(cleaned, old[0].BaseOffset, end); err != nil {
		return l.errorf("replace segments", old[0].BaseOffset, -1, fmt.Errorf("%w: transaction index: %w", ErrStorage, err))
	}

	// 3. .cleaned → .swap, descending base offset, indexes before the .log.
	renamed := 0
	rollback := func(cause error) error {
		for _, w := range cleaned[len(cleaned)-renamed:] {
			_ = w.unswap()
		}
		return l.errorf("replace segments", old[0].BaseOffset, -1, fmt.Errorf("%w: %w", ErrStorage, cause))
	}
	for k := len(cleaned) - 1; k >= 0; k-- {
		if err := cleaned[k].toSwap(); err != nil {
			_ = cleaned[k].unswap()
			return rollback(err)
		}
		renamed++
	}

	// 4. Publish the new list. The new segments' handles are pinned (not in
	// the handle cache) until their files have their final names, so no
	// reader can reopen them by a name that still belongs to an old segment.
	news := make([]*segment, len(cleaned))
	for k, w := range cleaned {
		s := l.newSegment(w.base)
		s.size.Store(w.size)
		s.flushed.Store(w.size)
		segEnd := end
		if k+1 < len(cleaned) {
			segEnd = cleaned[k+1].base
		}
		s.next.Store(int64(segEnd))
		s.setMaxTs(w.maxTs, w.offsetOfMaxTs)
		s.track(w.h)
		w.h.refs.Store(1)
		s.mu.Lock()
		s.h = w.h
		s.mu.Unlock()
		w.done = true
		news[k] = s
	}
	list := make([]*segment, 0, len(segs)-len(old)+len(news))
	list = append(list, segs[:i]...)
	list = append(list, news...)
	list = append(list, segs[j:]...)
	l.setSegments(list)
	l.kcache.clear() // the cleaned batches replace the cached ones
	l.keyIndexCleaned(old[0].BaseOffset, end)

	// 5. Retire the old segments; their files become .deleted.
	for _, s := range segs[i:j] {
		l.retireSegmentFiles(s, false)
	}

	// 6. .swap → final names.
	var firstErr error
	for k, s := range news {
		if err := s.fromSwap(); err != nil && firstErr == nil {
			firstErr = err
		}
		if cleaned[k].txnFile {
			// Its final name already holds the same entries (2b).
			_ = l.fs.Remove(TxnIndexFileName(l.dir, s.base) + SwapSuffix)
		}
	}
	// 7. Make the renames durable.
	if err := l.fs.SyncDir(l.dir); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		// The handles stay pinned: their files may not have final names.
		return l.errorf("replace segments", old[0].BaseOffset, -1, fmt.Errorf("%w: %w", ErrStorage, firstErr))
	}
	for _, s := range news {
		s.mu.Lock()
		if s.h != nil {
			l.handles.admit(s.h)
		}
		s.mu.Unlock()
	}
	if invariants {
		l.checkCleanInvariants()
	}
	return nil
}

// replaceTxnIndexes makes the cleaned segments' aborted transactions
// (AddAbortedTxn) those of [from, end), on disk and in memory: each cleaned
// segment with some gets <base>.txnindex (written to a .tmp file, fsynced,
// renamed over the old one), and every other .txnindex named in [from,
// end) is removed — also one a pass of an older kvlog left inside a merged
// segment. This happens before the swap's renames, so every state a crash
// can leave is safe: the cleaner keeps an aborted transaction's entry while
// any batch of it is in the log it read, and removes a marker only once a
// pass before this one dropped its entry. The old segments with the new
// indexes lack only entries no record needs; the new segments with the new
// indexes are consistent. The cleaned segment's .txnindex.cleaned/.swap is
// what recovery installs when it completes an interrupted swap (it removes
// the ordinary .txnindex files of the replaced offsets). Caller holds l.mu.
func (l *Log) replaceTxnIndexes(cleaned []*CleanedSegment, from, end Offset) error {
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return err
	}
	var stale []Offset
	for _, e := range ents {
		if o, suffix, ok := parseOffsetFileName(e.Name()); ok && suffix == TxnIndexSuffix && o >= from && o < end {
			stale = append(stale, o)
		}
	}
	written := map[Offset]bool{}
	var entries []AbortedTxn
	for _, w := range cleaned {
		if len(w.txn) == 0 {
			continue
		}
		path := TxnIndexFileName(l.dir, w.base)
		if err := writeTxnIndexFile(l.fs, path+".tmp", w.txn); err != nil {
			_ = l.fs.Remove(path + ".tmp")
			return err
		}
		if err := l.fs.Rename(path+".tmp", path); err != nil {
			_ = l.fs.Remove(path + ".tmp")
			return err
		}
		written[w.base] = true
		entries = append(entries, w.txn...)
	}
	for _, o := range stale {
		if !written[o] {
			if err := l.fs.Remove(TxnIndexFileName(l.dir, o)); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
	}
	if len(stale) > 0 || len(written) > 0 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return err
		}
	}
	l.txnMu.Lock()
	defer l.txnMu.Unlock()
	kept := make([]AbortedTxn, 0, len(l.aborted)+len(entries))
	for _, a := range l.aborted {
		if a.LastOffset < from || a.LastOffset >= end {
			kept = append(kept, a)
		}
	}
	kept = append(kept, entries...)
	sort.Slice(kept, func(i, j int) bool { return kept[i].LastOffset < kept[j].LastOffset })
	l.aborted = kept
	return nil
}

// toSwap renames the cleaned files .cleaned → .swap: indexes first, the .log
// last (a .log.swap is what makes recovery complete a swap).
func (w *CleanedSegment) toSwap() error {
	d, b := w.l.dir, w.base
	if err := w.h.oidx.Rename(IndexFileName(d, b) + SwapSuffix); err != nil {
		return err
	}
	if err := w.h.tidx.Rename(TimeIndexFileName(d, b) + SwapSuffix); err != nil {
		return err
	}
	if w.txnFile {
		if err := w.l.fs.Rename(TxnIndexFileName(d, b)+CleanedSuffix, TxnIndexFileName(d, b)+SwapSuffix); err != nil {
			return err
		}
	}
	return w.l.fs.Rename(LogFileName(d, b)+CleanedSuffix, LogFileName(d, b)+SwapSuffix)
}

// unswap undoes toSwap as far as it got (rollback of a failed swap).
func (w *CleanedSegment) unswap() error {
	d, b := w.l.dir, w.base
	_ = w.l.fs.Rename(LogFileName(d, b)+SwapSuffix, LogFileName(d, b)+CleanedSuffix)
	if w.txnFile {
		_ = w.l.fs.Rename(TxnIndexFileName(d, b)+SwapSuffix, TxnIndexFileName(d, b)+CleanedSuffix)
	}
	if w.h.tidx.Path() != TimeIndexFileName(d, b)+CleanedSuffix {
		_ = w.h.tidx.Rename(TimeIndexFileName(d, b) + CleanedSuffix)
	}
	if w.h.oidx.Path() != IndexFileName(d, b)+CleanedSuffix {
		_ = w.h.oidx.Rename(IndexFileName(d, b) + CleanedSuffix)
	}
	return nil
}

// fromSwap renames a swapped-in segment's files .swap → final: the .log
// first, then the indexes (an index .swap without its .log.swap is dropped
// and rebuilt at load).
func (s *segment) fromSwap() error {
	if err := s.fs.Rename(LogFileName(s.dir, s.base)+SwapSuffix, LogFileName(s.dir, s.base)); err != nil {
		return err
	}
	if err := s.h.oidx.Rename(IndexFileName(s.dir, s.base)); err != nil {
		return err
	}
	return s.h.tidx.Rename(TimeIndexFileName(s.dir, s.base))
}

// checkCleanInvariants verifies the segment list after a swap: ordered,
// non-overlapping, and each installed index strictly increasing. Only with
// -tags invariants; caller holds l.mu.
func (l *Log) checkCleanInvariants() {
	segs := l.segments()
	if !sort.SliceIsSorted(segs, func(i, j int) bool { return segs[i].base < segs[j].base }) {
		panic(fmt.Sprintf("engine invariant: %s segments out of order after a swap", l.tp))
	}
	for i := 1; i < len(segs); i++ {
		if segs[i].base <= segs[i-1].base || Offset(segs[i-1].next.Load()) > segs[i].base {
			panic(fmt.Sprintf("engine invariant: %s segment %d (next %d) overlaps %d after a swap", l.tp, segs[i-1].base, segs[i-1].next.Load(), segs[i].base))
		}
	}
}
