package engine

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kvlog/kvlog/engine/vfs"
)

// syncFile fsyncs the file at path through a descriptor of its own.
func syncFile(fs vfs.FS, path string) error {
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Sync makes everything appended so far durable and advances the recovery
// point. Concurrent callers share fsyncs (group commit): a caller whose
// appends were covered by another caller's flush returns without one.
func (l *Log) Sync() error {
	bytes := l.appendedBytes.Load() // before the log end: never ahead of it
	target := l.leo.Load()
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.recoveryPoint.Load() >= target {
		l.markDurableBytes(bytes)
		return nil
	}
	if err := l.flushTo(l.leo.Load()); err != nil {
		return err
	}
	l.markDurableBytes(bytes)
	return nil
}

// markDurableBytes records that the first bytes bytes appended are durable
// (durableBytes, never lowered).
func (l *Log) markDurableBytes(bytes int64) {
	for {
		cur := l.durableBytes.Load()
		if bytes <= cur || l.durableBytes.CompareAndSwap(cur, bytes) {
			return
		}
	}
}

// pendingBytes is about how many bytes appended are not durable yet, as
// a group commit last saw (an estimate: a flush outside group commits, or
// a truncation, leaves it high).
func (l *Log) pendingBytes() int64 {
	return max(0, l.appendedBytes.Load()-l.durableBytes.Load())
}

// flushLocked flushes everything; caller holds l.mu.
func (l *Log) flushLocked() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	err := l.flushTo(l.leo.Load())
	if err == nil {
		l.unflushed = 0
		l.lastFlushAt = l.clk.Now()
	}
	return err
}

// flushTo syncs every segment holding offsets below upTo that has unsynced
// bytes (the .log, then its indexes), then raises the recovery point to upTo.
// Caller holds syncMu.
func (l *Log) flushTo(upTo int64) error {
	// A truncation since the caller chose upTo (a flush scheduled by a roll
	// runs later) lowered the log end: never flush, nor record a recovery
	// point, past it.
	upTo = min(upTo, l.leo.Load())
	rp := l.recoveryPoint.Load()
	// Below the recovery point every .log byte is synced, but a segment
	// sealed by a roll after its last byte was synced still has its
	// final indexes to sync.
	indexesOnly := upTo <= rp
	if indexesOnly && !l.sealedIndexesUnsynced(upTo) {
		return nil
	}
	start := time.Now()
	defer observeFlush(start)
	for _, s := range l.segments() {
		if int64(s.base) >= upTo {
			break
		}
		size := s.size.Load()
		logSynced := s.flushed.Load() >= size
		if logSynced && !s.indexesUnsynced.Load() {
			continue
		}
		// Taken before the indexes are synced, so a seal after this point
		// marks them again; put back if the sync fails.
		sealed := !s.isActive() && s.indexesUnsynced.Swap(false)
		h, err := s.acquireOpen()
		if errors.Is(err, errSegmentGone) {
			continue // deleted meanwhile: nothing to flush
		}
		if err != nil {
			if sealed {
				s.indexesUnsynced.Store(true)
			}
			return l.errorf("flush", s.base, -1, storageErr(err))
		}
		if h == nil {
			// Closed for the budget: its files were closed as they are
			// (sealed if it was active); sync them by name rather than
			// reopen the segment.
			err = syncFile(l.fs, LogFileName(s.dir, s.base))
			if err == nil && !s.isActive() {
				if err = syncFile(l.fs, IndexFileName(s.dir, s.base)); err == nil {
					err = syncFile(l.fs, TimeIndexFileName(s.dir, s.base))
				}
			}
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted meanwhile (renamed .deleted)
			}
			if err != nil {
				if sealed {
					s.indexesUnsynced.Store(true)
				}
				return l.errorf("flush", s.base, -1, storageErr(err))
			}
			s.flushed.Store(size)
			continue
		}
		err = h.file.Sync()
		if err == nil && !s.isActive() {
			if h.oidx.Writable() {
				if err = h.oidx.Flush(); err == nil {
					err = h.tidx.Flush()
				}
			} else {
				// Reopened read-only after an eviction: the indexes the
				// roll sealed may not be synced yet; sync them by name.
				if err = syncFile(l.fs, IndexFileName(s.dir, s.base)); err == nil {
					err = syncFile(l.fs, TimeIndexFileName(s.dir, s.base))
				}
			}
		}
		h.release()
		if err != nil {
			if sealed {
				s.indexesUnsynced.Store(true)
			}
			return l.errorf("flush", s.base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
		s.flushed.Store(size)
	}
	// Leader epochs assigned on the append path are written with the data
	// they describe; past the recovery point, recovery rebuilds them.
	if err := l.epochs.Flush(); err != nil {
		return l.errorf("flush", -1, -1, fmt.Errorf("%w: leader-epoch-checkpoint: %w", ErrStorage, err))
	}
	// The directory needs a sync only after entries changed (a segment was
	// created, renamed or removed), not on every group commit.
	if l.dirDirty.Swap(false) {
		if err := l.fs.SyncDir(l.dir); err != nil {
			l.dirDirty.Store(true)
			return l.errorf("flush", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	if !indexesOnly {
		l.recoveryPoint.Store(min(upTo, l.leo.Load()))
	}
	return nil
}

// sealedIndexesUnsynced reports a segment below upTo whose sealed indexes
// no flush has synced yet.
func (l *Log) sealedIndexesUnsynced(upTo int64) bool {
	for _, s := range l.segments() {
		if int64(s.base) >= upTo {
			break
		}
		if s.indexesUnsynced.Load() {
			return true
		}
	}
	return false
}

// FlushIfDue flushes when flush.ms has passed since the last flush (called
// periodically by the manager).
func (l *Log) FlushIfDue() error {
	cfg := l.Config()
	if cfg.FlushInterval <= 0 || l.recoveryPoint.Load() >= l.leo.Load() {
		return nil // (nothing unflushed: no lock taken, the common case)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() || l.clk.Now().Sub(l.lastFlushAt) < cfg.FlushInterval || l.recoveryPoint.Load() >= l.leo.Load() {
		return nil
	}
	return l.flushLocked()
}

func (s *segment) isActive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}
