package engine

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/kvlog/kvlog/engine/index"
)

// shouldRoll applies Kafka's roll rules before an append of size bytes whose
// largest timestamp is maxTs and last offset is last. Caller holds l.mu.
func (l *Log) shouldRoll(seg *segment, h *handle, cfg Config, size int64, maxTs int64, last Offset) bool {
	if seg.size.Load() == 0 {
		return false
	}
	switch {
	case seg.size.Load() > cfg.SegmentBytes-size:
		return true
	case h.oidx.IsFull() || h.tidx.IsFull():
		return true
	case int64(last)-int64(seg.base) > math.MaxInt32:
		return true
	}
	return l.timeToRoll(seg, cfg, maxTs)
}

// timeToRoll: the segment's age measured in record time (the first batch's
// max timestamp to the incoming one), or in wall time since the segment was
// created when it has no timestamps, exceeds segment.ms (capped by
// max.compaction.lag.ms on compacted logs).
func (l *Log) timeToRoll(seg *segment, cfg Config, incomingTs int64) bool {
	limit := cfg.rollTime()
	if limit <= 0 || seg.size.Load() == 0 {
		return false
	}
	if seg.firstBatchTs >= 0 && incomingTs >= 0 {
		return incomingTs-seg.firstBatchTs > limit.Milliseconds()
	}
	return l.clk.Now().Sub(seg.created) > limit
}

// RollIfIdle rolls a non-empty active segment that has been active longer
// than its roll time in wall-clock terms, so an idle partition's last records
// become cleanable and deletable (Kafka only rolls on append). It reports
// whether it rolled.
func (l *Log) RollIfIdle() (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return false, nil
	}
	seg := l.active()
	cfg := l.Config()
	if seg.size.Load() == 0 || l.clk.Now().Sub(seg.created) <= cfg.rollTime() {
		return false, nil
	}
	if err := l.ensureLoaded(); err != nil {
		return false, err
	}
	_, err := l.roll(l.LogEndOffset())
	return err == nil, err
}

// LastAppend returns when a batch was last appended to the log (as a
// leader or a follower), or when the log was opened if none was since.
func (l *Log) LastAppend() time.Time { return time.Unix(0, l.lastAppend.Load()) }

// RollIdle rolls the active segment for the cleaner's roll of an idle
// compacted log (package cleaner, Config.IdleRoll): only when the active
// segment is still the one whose SegmentRef.ID is id, holds data, and
// nothing was appended since the caller read lastAppend from LastAppend.
// The caller decided from that snapshot (the segment had no append for
// long enough, and would be cleanable once rolled); checking it again
// under the log's lock means an append racing with the decision wins and
// nothing is rolled. It reports whether it rolled.
func (l *Log) RollIdle(id uint64, lastAppend time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return false, nil
	}
	seg := l.active()
	if seg.id != id || seg.size.Load() == 0 || l.lastAppend.Load() != lastAppend.UnixNano() {
		return false, nil
	}
	if err := l.ensureLoaded(); err != nil {
		return false, err
	}
	_, err := l.roll(l.LogEndOffset())
	return err == nil, err
}

// Roll closes the active segment and starts a new one at the log end, unless
// the active segment is empty.
func (l *Log) Roll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return l.errorf("roll", -1, -1, ErrClosed)
	}
	if l.active().size.Load() == 0 {
		return nil
	}
	if err := l.ensureLoaded(); err != nil {
		return err
	}
	_, err := l.roll(l.LogEndOffset())
	return err
}

// roll creates a new active segment at newBase and seals the old one
// (final time-index entry, indexes trimmed, handle handed to the cache).
// The old segment's .log is made durable first (syncBeforeRoll); its
// indexes and the directory are flushed in the background, advancing the
// recovery point. Caller holds l.mu.
//
// A failure (a full file system) changes nothing: the new segment's files
// are removed and the old segment stays active, so the append that wanted
// the roll fails with ErrStorage and a later one tries again.
func (l *Log) roll(newBase Offset) (*segment, error) {
	old := l.active()
	cfg := l.Config()
	if err := old.syncBeforeRoll(); err != nil {
		return nil, l.errorf("roll", old.base, newBase, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	seg, err := l.newActiveSegment(newBase, cfg)
	if err != nil {
		return nil, err
	}
	if err := old.seal(); err != nil {
		seg.discard()
		return nil, l.errorf("roll", old.base, newBase, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	if l.producers != nil { // not loaded yet: a later load replays from an older snapshot
		if err := l.producers.snapshot(l.fs, l.dir, newBase); err != nil {
			l.logger.Warn("producer snapshot failed", "partition", l.tp.String(), "offset", newBase, "err", err)
		} else if newBase == l.LogEndOffset() {
			l.snapAt = newBase
		}
	}
	segs := append(append([]*segment(nil), l.segments()...), seg)
	l.setSegments(segs)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.syncMu.Lock()
		defer l.syncMu.Unlock()
		if err := l.flushTo(int64(newBase)); err != nil {
			l.logger.Error("flush after roll failed", "partition", l.tp.String(), "err", err)
		}
	}()
	return seg, nil
}

// syncBeforeRoll fdatasyncs the active segment's .log when it holds
// unsynced bytes, before a roll lets the next segment receive any. A
// power loss keeps or loses each file's unsynced writes on its own, so
// without it the new segment's first batches could survive while this
// segment's tail is lost: recovery would find the segment ending short of
// the next one's base, a hole it cannot tell from the gaps compaction and
// a follower of a compacted leader leave there (FORMAT.md §7, Roll and
// Recovery). Where every append is flushed by a group commit there is
// nothing or one batch to sync; otherwise the append that rolls waits for
// the segment's dirty pages.
//
// flushed is left as it was: the flush after the roll syncs the sealed
// indexes of a segment with unsynced bytes. Caller holds Log.mu.
func (s *segment) syncBeforeRoll() error {
	if s.flushed.Load() >= s.size.Load() {
		return nil
	}
	h, err := s.acquire()
	if err != nil {
		return err
	}
	defer h.release()
	return h.file.Sync()
}

// seal finishes the active segment: the largest timestamp goes into the time
// index (where a restart finds it: largestTimestamp), both indexes are
// trimmed to their entries, and the handle becomes an ordinary cached
// handle. Readers keep using the same mappings (trimming does not unmap).
// A segment whose handle was evicted was left sealed on disk by the
// eviction and is not reopened. On an error the segment stays active and
// sealing may be repeated (each step is idempotent). Caller holds Log.mu.
func (s *segment) seal() error {
	s.mu.Lock()
	if !s.active {
		s.mu.Unlock()
		return nil
	}
	if s.h == nil && s.sealedOnDisk {
		s.indexesUnsynced.Store(true) // as the eviction left them
		s.active = false
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	h, err := s.acquire()
	if err != nil {
		return err
	}
	defer h.release()
	if ts := s.maxTs.Load(); ts >= 0 {
		if err := h.tidx.MaybeAppend(ts, s.offsetOfMaxTs.Load(), true); err != nil && !errors.Is(err, index.ErrIndexFull) {
			return err
		}
	}
	if err := h.oidx.TrimToValidSize(); err != nil {
		return err
	}
	if err := h.tidx.TrimToValidSize(); err != nil {
		return err
	}
	s.indexesUnsynced.Store(true)
	s.mu.Lock()
	s.active = false
	if s.h == h {
		s.log.handles.deactivated(h)
	}
	s.mu.Unlock()
	return nil
}

// discard undoes newActiveSegment for a segment that was never published:
// its handle is closed and its files removed. Caller holds Log.mu.
func (s *segment) discard() {
	s.retire().Wait()
	for _, p := range []string{LogFileName(s.dir, s.base), IndexFileName(s.dir, s.base), TimeIndexFileName(s.dir, s.base)} {
		if err := s.fs.Remove(p); err != nil && !os.IsNotExist(err) {
			s.log.logger.Warn("removing an unused segment file failed", "file", p, "err", err)
		}
	}
}

// newActiveSegment creates an empty .log at base (replacing any stale files
// of that name; its index files are created with their first entry) and
// returns the segment with a pinned handle.
func (l *Log) newActiveSegment(base Offset, cfg Config) (*segment, error) {
	for _, p := range []string{LogFileName(l.dir, base), IndexFileName(l.dir, base), TimeIndexFileName(l.dir, base)} {
		if err := l.fs.Remove(p); err != nil && !os.IsNotExist(err) {
			return nil, l.errorf("roll", base, base, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	l.dirDirty.Store(true)
	s := l.newSegment(base)
	s.setMaxTs(-1, base)
	h, err := s.createWritable(cfg, os.O_EXCL)
	if err != nil {
		return nil, l.errorf("roll", base, base, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	s.loaded = true
	s.mu.Lock()
	s.activateLocked(h)
	s.mu.Unlock()
	return s, nil
}

func timeIndexBytes(cfg Config) int { return cfg.indexBytes() / 8 * 12 }

func (l *Log) newSegment(base Offset) *segment {
	s := &segment{dir: l.dir, base: base, id: newSegmentID(), fs: l.fs, log: l, loaded: true}
	s.next.Store(int64(base))
	// A segment found on disk learns its largest timestamp lazily
	// (largestTimestamp); callers creating an empty one set it to -1.
	s.setMaxTs(tsUnknown, base)
	s.firstBatchTs = -1
	s.created = l.clk.Now()
	return s
}

// activateLocked makes h the active segment's current handle and admits it
// to the budget's ring. Caller holds s.mu.
func (s *segment) activateLocked(h *handle) {
	h.refs.Store(1)
	h.used.Store(true)
	s.h = h
	s.active = true
	s.sealedOnDisk = false
	s.log.handles.admit(h)
}
