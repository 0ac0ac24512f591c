package engine

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/kvlog/kvlog/engine/checkpoint"
)

// EnforceRetention deletes the oldest whole segments that lie entirely below
// the high watermark and below the log start offset, or (for logs with the
// delete policy) past retention.ms by their largest timestamp, or beyond
// retention.bytes. The active segment always stays. It returns how many
// segments it deleted.
func (l *Log) EnforceRetention() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return 0
	}
	cfg := l.Config()
	segs := l.segments()
	hw, start := l.HighWatermark(), l.LogStartOffset()
	nowMs := l.clk.Now().UnixMilli()
	total := l.Size()
	n := 0
	for ; n < len(segs)-1; n++ {
		s, next := segs[n], segs[n+1]
		if next.base > hw {
			break
		}
		size := s.size.Load()
		switch {
		case next.base <= start:
		case cfg.Delete && cfg.RetentionTime >= 0 && nowMs-l.retentionTimestamp(s) > cfg.RetentionTime.Milliseconds():
		case cfg.Delete && cfg.RetentionBytes >= 0 && total-size >= cfg.RetentionBytes:
		default:
			return l.dropOldest(segs, n)
		}
		total -= size
	}
	return l.dropOldest(segs, n)
}

// retentionTimestamp is the time retention.ms is measured from, Kafka's
// LogSegment.largestTimestamp: the segment's largest record timestamp, or,
// when its batches carry none, the .log file's modification time. A segment
// whose timestamp cannot be read is kept (nowMs minus MaxInt64 never exceeds
// a retention time). Caller holds l.mu.
func (l *Log) retentionTimestamp(s *segment) int64 {
	ts, _, err := s.largestTimestamp()
	if err != nil {
		l.logger.Warn("retention: largest timestamp unreadable, segment kept", "segment", s.String(), "err", err)
		return math.MaxInt64
	}
	if ts >= 0 {
		return ts
	}
	fi, err := l.fs.Stat(LogFileName(s.dir, s.base))
	if err != nil {
		l.logger.Warn("retention: segment without timestamps cannot be dated, kept", "segment", s.String(), "err", err)
		return math.MaxInt64
	}
	return fi.ModTime().UnixMilli()
}

// dropOldest removes segs[:n] and advances the log start. Caller holds l.mu.
func (l *Log) dropOldest(segs []*segment, n int) int {
	if n == 0 {
		return 0
	}
	for _, s := range segs[:n] {
		l.deleteSegmentFiles(s)
	}
	rest := append([]*segment(nil), segs[n:]...)
	l.setSegments(rest)
	if newStart := rest[0].base; newStart > l.LogStartOffset() {
		l.logStart.Store(int64(newStart))
		l.logStartMoved()
		_ = l.epochs.TruncateFromStart(int64(newStart))
		l.keyIndexStartMoved(newStart)
	}
	pruneSnapshots(l.fs, l.dir, l.LogStartOffset())
	l.logger.Info("retention deleted segments", "partition", l.tp.String(), "count", n, "log_start", l.LogStartOffset())
	return n
}

// Close flushes the log, writes a producer snapshot at the log end, trims the
// active indexes and closes every file once readers release them.
func (l *Log) Close() error {
	_, _, err := l.close(true)
	return err
}

// close is Close. With sync false nothing is fsynced and the leader-epoch
// checkpoint and producer snapshot are only staged
// (checkpoint.WriteFileStaged): the caller syncs the file system, installs
// the staged files (their paths are returned), syncs again and calls
// markSynced (Manager.closeLogs). closed is false when the log was closed
// already.
func (l *Log) close(sync bool) (closed bool, staged []string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Swap(true) {
		return false, nil, nil
	}
	l.wg.Wait()
	if sync {
		l.syncMu.Lock()
		err = l.flushTo(l.leo.Load())
		l.syncMu.Unlock()
		if eerr := l.epochs.Flush(); eerr != nil && err == nil {
			err = l.errorf("close", -1, -1, fmt.Errorf("%w: leader-epoch-checkpoint: %w", ErrStorage, eerr))
		}
	} else if path, eerr := l.epochs.Stage(); eerr != nil {
		err = l.errorf("close", -1, -1, fmt.Errorf("%w: leader-epoch-checkpoint: %w", ErrStorage, eerr))
	} else if path != "" {
		staged = append(staged, path)
	}
	// A snapshot at the log end already on disk (or state never loaded
	// since the last one) is not written again: a restart finds the same.
	if l.producers != nil && l.snapAt != l.LogEndOffset() {
		if sync {
			if perr := l.producers.snapshot(l.fs, l.dir, l.LogEndOffset()); perr != nil && err == nil {
				err = perr
			}
		} else if perr := l.producers.writeSnapshotUnsynced(l.fs, l.dir, l.LogEndOffset()); perr != nil && err == nil {
			err = perr
		}
	}
	// An active segment whose index has no file yet is left so (sealing
	// it would create the file, and reopen it when it was closed for the
	// budget): the restart finds the index missing and rebuilds it from
	// the few batches before its first entry.
	if s := l.active(); !s.indexDeferred() {
		if serr := s.seal(); serr != nil && err == nil {
			err = serr
		}
	}
	if ki := l.kidx.Load(); ki != nil {
		if l.txnReady.Load() {
			// Checkpoint what is committed, so the restart reads less.
			lso := l.LastStableOffset()
			ki.mu.Lock()
			_ = l.catchUp(ki, lso)
			ki.mu.Unlock()
		}
		if kerr := l.checkpointKeyIndex(ki, 0); kerr != nil && err == nil {
			err = kerr
		}
		l.keyIndexOff()
	}
	l.closeSegments()
	if l.ownHandles {
		l.handles.close()
	}
	return true, staged, err
}

// syncClosedFiles makes a log closed by close(false) durable where the
// file system has no syncfs: every file of its directory is fsynced by
// name, the staged files are renamed into place and the directory is
// fsynced, before and after the renames.
func (l *Log) syncClosedFiles(staged []string) error {
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return l.errorf("close", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if err := syncFile(l.fs, filepath.Join(l.dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return l.errorf("close", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return l.errorf("close", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	for _, path := range staged {
		if err := checkpoint.InstallStaged(l.fs, path); err != nil {
			return l.errorf("close", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	if len(staged) > 0 {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return l.errorf("close", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	return nil
}

// markSynced records, after close(false), the installation of its staged
// files and the file-system sync after it, that everything the closed log
// holds is on stable storage.
func (l *Log) markSynced() {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	for _, s := range l.segments() {
		s.flushed.Store(s.size.Load())
	}
	l.dirDirty.Store(false)
	l.epochs.Installed()
	l.recoveryPoint.Store(l.leo.Load())
}

func (l *Log) closeSegments() {
	p := l.segs.Load()
	if p == nil {
		return
	}
	for _, s := range *p {
		s.retire()
	}
}

// Delete closes the log and removes its directory.
func (l *Log) Delete() error {
	l.keyIndexOff() // no checkpoint: the directory goes
	_ = l.Close()
	l.mu.Lock() // the maintenance pass may be unlinking them (ProcessDeletes)
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, d := range pending {
		d.unlink(l)
	}
	return l.fs.RemoveAll(l.dir)
}
