package engine

import (
	"errors"
	"fmt"
	"os"
)

// TruncateTo removes every record at or above offset (a follower diverging
// from its new leader). The batch containing offset is removed whole, so
// offset should be a batch boundary. Readers holding ranges of the truncated
// segment are waited for before its file shrinks.
func (l *Log) TruncateTo(offset Offset) error {
	return l.persistLoweredRecoveryPoint(l.truncateTo, offset)
}

// persistLoweredRecoveryPoint runs a truncation and, when it lowered the
// recovery point, has the owner persist the recovery-point checkpoint
// before the caller can append again (LogOptions.RecoveryPointLowered).
func (l *Log) persistLoweredRecoveryPoint(truncate func(Offset) error, offset Offset) error {
	before := l.recoveryPoint.Load()
	if err := truncate(offset); err != nil {
		return err
	}
	if l.rpLowered == nil || l.recoveryPoint.Load() >= before {
		return nil
	}
	if err := l.rpLowered(); err != nil {
		return l.errorf("truncate", -1, offset, fmt.Errorf("%w: writing the lowered recovery point: %w", ErrStorage, err))
	}
	return nil
}

func (l *Log) truncateTo(offset Offset) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return l.errorf("truncate", -1, offset, ErrClosed)
	}
	if err := l.ensureLoaded(); err != nil {
		return err
	}
	if offset >= l.LogEndOffset() {
		return nil
	}
	if offset <= l.LogStartOffset() {
		return l.truncateFullyLocked(offset)
	}
	segs := l.segments()
	i, _ := floorSegment(segs, offset)
	keep := segs[:i+1]
	target := segs[i]
	// Drop whole segments above the target, durably before the target is
	// cut: a power loss bringing them back next to the shortened target
	// would leave a gap recovery accepts, with the removed records after
	// it (FORMAT.md §7, Recovery).
	for _, s := range segs[i+1:] {
		l.deleteSegmentFiles(s)
	}
	if len(segs) > i+1 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return l.errorf("truncate", target.base, offset, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	if err := l.truncateSegment(target, offset); err != nil {
		return err
	}
	l.setSegments(append([]*segment(nil), keep...))
	l.afterTruncate(offset)
	l.keyIndexTruncated(l.LogEndOffset(), false)
	return l.journalTruncated()
}

// truncateSegment cuts s at the first batch whose last offset >= offset and
// makes it the active segment again.
func (l *Log) truncateSegment(s *segment, offset Offset) error {
	h, err := s.acquire()
	if err != nil {
		return l.errorf("truncate", s.base, offset, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	pos, found, err := s.translate(h, offset, s.size.Load())
	h.release()
	if err != nil {
		return l.errorf("truncate", s.base, offset, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	if !found {
		pos = s.size.Load()
	}
	// Detach and drain every reader before the file shrinks.
	// Every handle of the segment — the current one and any the cache
	// evicted while a reader (a sendfile range, a cleaner view) still holds
	// it — must be closed before the file shrinks.
	s.retire().Wait()
	s.live.Wait()
	if err := s.truncateFile(pos); err != nil {
		return l.errorf("truncate", s.base, offset, err)
	}
	s.mu.Lock()
	s.gone = false
	s.mu.Unlock()
	s.next.Store(int64(s.base))
	s.setMaxTs(-1, s.base)
	s.firstBatchTs = -1
	if err := l.reopenActive(s); err != nil {
		return err
	}
	if h, err = s.acquire(); err != nil {
		return l.errorf("truncate", s.base, offset, storageErr(err))
	}
	h.oidx.TruncateTo(int64(offset))
	h.tidx.TruncateTo(int64(offset))
	h.release()
	return nil
}

// TruncateFullyAndStartAt deletes every segment and starts an empty log at
// offset (a follower too far behind its leader's log start).
func (l *Log) TruncateFullyAndStartAt(offset Offset) error {
	return l.persistLoweredRecoveryPoint(l.truncateFullyAndStartAt, offset)
}

func (l *Log) truncateFullyAndStartAt(offset Offset) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return l.errorf("truncate", -1, offset, ErrClosed)
	}
	if err := l.ensureLoaded(); err != nil {
		return err
	}
	return l.truncateFullyLocked(offset)
}

func (l *Log) truncateFullyLocked(offset Offset) error {
	for _, s := range l.segments() {
		l.deleteSegmentFiles(s)
	}
	s, err := l.newActiveSegment(offset, l.Config())
	if err != nil {
		return err
	}
	l.setSegments([]*segment{s})
	l.logStart.Store(int64(offset))
	l.logStartMoved()
	l.afterTruncate(offset)
	l.keyIndexTruncated(offset, true)
	_ = l.epochs.TruncateFromStart(int64(offset))
	return l.journalTruncated()
}

func (l *Log) afterTruncate(offset Offset) {
	leo := Offset(l.active().next.Load())
	l.leo.Store(int64(leo))
	if Offset(l.hw.Load()) > leo {
		l.hw.Store(int64(leo))
	}
	if Offset(l.recoveryPoint.Load()) > leo {
		l.recoveryPoint.Store(int64(leo))
	}
	_ = l.epochs.TruncateFromEnd(int64(leo))
	l.snapAt = -1
	for _, o := range snapshotOffsets(l.fs, l.dir) {
		if o > leo {
			_ = l.fs.Remove(SnapshotFileName(l.dir, o))
		}
	}
	// Producer and transaction state are rebuilt from the newest snapshot
	// at or below the new end, the .txnindex files (cut to the new end)
	// and the log, as Kafka does after a truncation: transactions whose
	// markers were cut off are ongoing again.
	l.resetTxnState()
	l.scheduleMaintenanceNow() // (an older segment may be active again)
}

// deleteSegmentFiles retires s and renames its files to .deleted; they are
// unlinked by ProcessDeletes once file.delete.delay.ms has passed and no
// reader holds them. Caller holds l.mu.
func (l *Log) deleteSegmentFiles(s *segment) { l.retireSegmentFiles(s, true) }

// retireSegmentFiles is deleteSegmentFiles; with withTxn false (the
// cleaner's swap, whose output segments cover the same offsets) the
// segment's .txnindex and its aborted transactions stay: the loader
// attaches a .txnindex to the segment now holding its base offset.
func (l *Log) retireSegmentFiles(s *segment, withTxn bool) {
	l.dirDirty.Store(true)
	wg := s.retire()
	var files []string
	if !s.isUnborn() { // (retired, it cannot be created any more; unborn, it has no file)
		files = []string{LogFileName(s.dir, s.base), IndexFileName(s.dir, s.base), TimeIndexFileName(s.dir, s.base)}
	}
	for _, p := range files {
		if err := l.fs.Rename(p, p+DeletedSuffix); err != nil && !(p != LogFileName(s.dir, s.base) && errors.Is(err, os.ErrNotExist)) {
			// (An active segment's index files exist only once they
			// have an entry.)
			l.logger.Warn("rename to .deleted failed", "file", p, "err", err)
		}
	}
	if withTxn {
		if p := TxnIndexFileName(s.dir, s.base); l.fs.Rename(p, p+DeletedSuffix) != nil {
			_ = l.fs.Remove(p) // most segments have none
		}
		l.forgetAborted(s.base, Offset(s.next.Load()))
	}
	d := &deletedSegment{seg: s, at: l.clk.Now(), wg: wg}
	l.pending = append(l.pending, d)
	l.scheduleMaintenance(unixAfter(d.at, l.Config().FileDeleteDelay))
}

// ProcessDeletes unlinks .deleted files whose delay has passed.
func (l *Log) ProcessDeletes() {
	l.mu.Lock()
	defer l.mu.Unlock()
	delay := l.Config().FileDeleteDelay
	now := l.clk.Now()
	kept := l.pending[:0]
	for _, d := range l.pending {
		if now.Sub(d.at) < delay {
			kept = append(kept, d)
			continue
		}
		d.unlink(l)
	}
	l.pending = kept
}

func (d *deletedSegment) unlink(l *Log) {
	for _, p := range []string{LogFileName(d.seg.dir, d.seg.base), IndexFileName(d.seg.dir, d.seg.base), TimeIndexFileName(d.seg.dir, d.seg.base), TxnIndexFileName(d.seg.dir, d.seg.base)} {
		_ = l.fs.Remove(p + DeletedSuffix)
	}
}

// DeleteRecordsBefore raises the log start offset to offset (DeleteRecords);
// whole segments below it are deleted by the next retention pass.
func (l *Log) DeleteRecordsBefore(offset Offset) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if offset > l.HighWatermark() {
		return l.errorf("delete records", -1, offset, fmt.Errorf("%w: above high watermark %d", ErrOffsetOutOfRange, l.HighWatermark()))
	}
	if offset > l.LogStartOffset() {
		l.logStart.Store(int64(offset))
		l.logStartMoved()
		_ = l.epochs.TruncateFromStart(int64(offset))
		l.keyIndexStartMoved(offset)
	}
	return nil
}
