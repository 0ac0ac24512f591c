package cleaner

import (
	"cmp"
	"math"
	"time"

	"github.com/kvlog/kvlog/engine"
)

// This file is the cleaner's deterministic core: given what is known of a
// log and the time, where its dirty section lies, how dirty it is and
// whether (and why) it should be cleaned now. No I/O, no goroutines, no
// clock: the Manager gathers a LogInfo, calls Assess and Pick, and acts.

// LogInfo is what planning knows of one log at one moment.
type LogInfo struct {
	TP     engine.TopicPartition
	Config engine.Config
	Topic  TopicConfig
	// Segments are the log's segments, oldest first, the last one active.
	Segments []engine.SegmentRef
	// FirstBatchTimestamps, parallel to Segments, holds each segment's first
	// batch's MaxTimestamp (Kafka's rolling-based timestamp), -1 when unknown
	// or empty. Only dirty inactive segments are looked at.
	FirstBatchTimestamps []int64
	LogStart, LogEnd     engine.Offset
	LastStable           engine.Offset
	// Checkpoint is the first dirty offset from cleaner-offset-checkpoint, -1
	// when the partition has none.
	Checkpoint engine.Offset
	// TombstoneHorizon is the earliest delete horizon (Unix ms) of a batch
	// holding a tombstone in the clean section, math.MaxInt64 if none;
	// meaningful when HorizonKnown.
	TombstoneHorizon int64
	HorizonKnown     bool
	// LastAppend is when the log last received an append (its opening
	// when none since): engine.Log.LastAppend, read before Segments.
	LastAppend time.Time
}

// Reason says why a log is due for cleaning.
type Reason string

// Reasons, in the order Assess checks them.
const (
	ReasonNone       Reason = ""
	ReasonDirtyRatio Reason = "dirty-ratio"        // cleanable ratio above min.cleanable.dirty.ratio
	ReasonMaxLag     Reason = "max-compaction-lag" // a dirty record older than max.compaction.lag.ms (KIP-354)
	ReasonTombstones Reason = "tombstones"         // kvlog: a retained tombstone passed its delete horizon
	ReasonStaleDirty Reason = "stale-dirty"        // kvlog: dirty records older than delete.retention.ms
)

// Assessment is Assess's verdict on one log.
type Assessment struct {
	TP engine.TopicPartition
	// FirstDirty is where the dirty section starts: the checkpoint, or the
	// log start when there is none. ResetCheckpoint says the checkpoint was
	// out of range (below the log start or past the log end) and was reset
	// to the log start; the Manager then rewrites it, as Kafka does.
	FirstDirty      engine.Offset
	ResetCheckpoint bool
	// FirstUncleanable is the base offset of the first segment a pass may not
	// touch: the active segment, the segment holding the last stable offset,
	// or the first dirty segment with a record newer than
	// min.compaction.lag.ms, whichever comes first.
	FirstUncleanable engine.Offset
	CleanBytes       int64 // bytes below FirstDirty
	CleanableBytes   int64 // bytes of [FirstDirty, FirstUncleanable)
	// Ratio is CleanableBytes / (CleanBytes + CleanableBytes).
	Ratio float64
	// CompactionDelay is how long ago the oldest dirty record should have
	// been compacted under max.compaction.lag.ms (0: not overdue).
	CompactionDelay time.Duration
	// NeedsHorizonScan: the clean section may hold tombstones whose horizon
	// is not known (after a restart); a header scan finds out.
	NeedsHorizonScan bool
	Reason           Reason
}

// Due reports whether the log should be cleaned.
func (a Assessment) Due() bool { return a.Reason != ReasonNone }

// Assess computes a log's dirty section and decides whether it is due, with
// Kafka's rules (LogCleanerManager.cleanableOffsets, grabFilthiestCompactedLog,
// KIP-354) and, when bounded is set, kvlog's bounded tombstone lifetime
// (Config.BoundedTombstones).
func Assess(li LogInfo, now time.Time, bounded bool) Assessment {
	a := Assessment{TP: li.TP}
	segs := li.Segments
	if len(segs) == 0 {
		return a
	}
	nowMs := now.UnixMilli()

	// First dirty offset: the checkpoint, reset to the log start when
	// missing or out of range.
	a.FirstDirty = li.Checkpoint
	switch {
	case li.Checkpoint < 0:
		a.FirstDirty = li.LogStart
	case li.Checkpoint < li.LogStart || li.Checkpoint > li.LogEnd:
		a.FirstDirty, a.ResetCheckpoint = li.LogStart, true
	}

	// First uncleanable offset, on a segment boundary.
	active := segs[len(segs)-1]
	fu := active.BaseOffset
	for _, s := range segs[:len(segs)-1] {
		if s.NextOffset > li.LastStable {
			fu = min(fu, s.BaseOffset)
			break
		}
	}
	if lag := li.Topic.MinCompactionLag; lag > 0 {
		limit := nowMs - lag.Milliseconds()
		for _, s := range segs[:len(segs)-1] {
			if s.NextOffset <= a.FirstDirty {
				continue
			}
			if s.LargestTimestamp > limit {
				fu = min(fu, s.BaseOffset)
				break
			}
		}
	}
	a.FirstUncleanable = fu

	oldestDirty := int64(math.MaxInt64) // earliest first-batch timestamp of a dirty inactive segment
	oldestCleanable := int64(math.MaxInt64)
	for i, s := range segs {
		// A segment holding the first dirty offset (a pass whose map filled
		// ended inside it) counts as clean and dirty in proportion to its
		// offsets on each side. Kafka counts it whole on both sides, which
		// pins the ratio of a one-segment log at 0.5 after such a pass.
		dirtyPart := s.Size
		if s.BaseOffset < a.FirstDirty {
			cleanPart := s.Size
			if s.NextOffset > a.FirstDirty && s.NextOffset > s.BaseOffset {
				cleanPart = int64(float64(s.Size) * float64(a.FirstDirty-s.BaseOffset) / float64(s.NextOffset-s.BaseOffset))
			}
			a.CleanBytes += cleanPart
			dirtyPart = s.Size - cleanPart
		}
		if s.Active || s.NextOffset <= a.FirstDirty {
			continue
		}
		ts := int64(-1)
		if i < len(li.FirstBatchTimestamps) {
			ts = li.FirstBatchTimestamps[i]
		}
		if ts > 0 {
			oldestDirty = min(oldestDirty, ts)
		}
		if s.BaseOffset < fu {
			a.CleanableBytes += dirtyPart
			if ts <= 0 {
				ts = s.LargestTimestamp
			}
			if ts > 0 {
				oldestCleanable = min(oldestCleanable, ts)
			}
		}
	}
	if total := a.CleanBytes + a.CleanableBytes; total > 0 {
		a.Ratio = float64(a.CleanableBytes) / float64(total)
	}
	if lag := li.Config.MaxCompactionLag; lag >= 0 && oldestDirty != math.MaxInt64 {
		cleanUntil := nowMs - lag.Milliseconds()
		if oldestDirty < cleanUntil {
			a.CompactionDelay = time.Duration(cleanUntil-oldestDirty) * time.Millisecond
		}
	}
	a.NeedsHorizonScan = bounded && !li.HorizonKnown && a.CleanBytes > 0

	if a.CleanBytes+a.CleanableBytes == 0 && !(bounded && li.HorizonKnown && li.TombstoneHorizon <= nowMs) {
		return a
	}
	switch {
	case a.CleanableBytes > 0 && a.Ratio > li.Topic.MinCleanableRatio:
		a.Reason = ReasonDirtyRatio
	case a.CleanableBytes > 0 && a.CompactionDelay > 0:
		a.Reason = ReasonMaxLag
	case bounded && li.HorizonKnown && li.TombstoneHorizon <= nowMs:
		a.Reason = ReasonTombstones
	case bounded && a.CleanableBytes > 0 && oldestCleanable != math.MaxInt64 && nowMs-oldestCleanable > li.Topic.DeleteRetention.Milliseconds():
		a.Reason = ReasonStaleDirty
	}
	return a
}

// IdleRollDue decides kvlog's roll of an idle active segment
// (Config.IdleRoll, idle here; 0 disables it): the log's active segment
// holds data and has had no append for idle, and the log, were the segment
// rolled now, would be due by its dirty ratio with the whole rolled segment
// cleanable — its dirty section including the segment exceeds
// min.cleanable.dirty.ratio, and neither the last stable offset (an open
// transaction, a high watermark behind the log end) nor
// min.compaction.lag.ms keeps the segment from a pass. Kafka never cleans
// the active segment, and rolls one only on append.
//
// The ratio rule is what keeps a partition written now and then from
// getting a segment per write: once its records are cleaned, the next
// roll waits until more has been written since than the clean section
// holds, and the pass after it merges the segments back into one.
//
// roll says to roll now. Otherwise at, when not zero, is the later time at
// which the roll becomes due if nothing is appended meanwhile (the
// threads wake then rather than after their backoff).
func IdleRollDue(li LogInfo, now time.Time, idle time.Duration, bounded bool) (roll bool, at time.Time) {
	segs := li.Segments
	if idle <= 0 || len(segs) == 0 || li.LastAppend.IsZero() {
		return false, time.Time{}
	}
	active := segs[len(segs)-1]
	if !active.Active || active.Size == 0 || active.NextOffset != li.LogEnd {
		return false, time.Time{}
	}
	// The log as it would be rolled: the active segment inactive, a new
	// empty one at the log end.
	rolled := li
	rolled.Segments = append(append(make([]engine.SegmentRef, 0, len(segs)+1), segs...),
		engine.SegmentRef{BaseOffset: li.LogEnd, NextOffset: li.LogEnd, LargestTimestamp: -1, Active: true})
	rolled.Segments[len(segs)-1].Active = false
	rolled.FirstBatchTimestamps = make([]int64, len(rolled.Segments))
	for i := range rolled.FirstBatchTimestamps {
		rolled.FirstBatchTimestamps[i] = -1
		if i < len(li.FirstBatchTimestamps) {
			rolled.FirstBatchTimestamps[i] = li.FirstBatchTimestamps[i]
		}
	}
	due := li.LastAppend.Add(idle)
	when := now
	if now.Before(due) {
		when = due
	}
	a := Assess(rolled, when, bounded)
	if a.Reason != ReasonDirtyRatio || a.FirstUncleanable != li.LogEnd {
		return false, time.Time{}
	}
	if now.Before(due) {
		return false, due
	}
	return true, time.Time{}
}

// Pick returns the index of the assessment to clean first: the due log with
// the highest dirty ratio (Kafka's "filthiest"), ties broken by the larger
// compaction delay and then by topic and partition; -1 when none is due.
func Pick(as []Assessment) int {
	best := -1
	for i, a := range as {
		if !a.Due() {
			continue
		}
		if best < 0 || better(a, as[best]) {
			best = i
		}
	}
	return best
}

func better(a, b Assessment) bool {
	if c := cmp.Compare(a.Ratio, b.Ratio); c != 0 {
		return c > 0
	}
	if a.CompactionDelay != b.CompactionDelay {
		return a.CompactionDelay > b.CompactionDelay
	}
	if a.TP.Topic != b.TP.Topic {
		return a.TP.Topic < b.TP.Topic
	}
	return a.TP.Partition < b.TP.Partition
}
