package cleaner

import (
	"math"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
)

// seg builds a SegmentRef of 100 bytes per offset.
func seg(base, next engine.Offset, largestTs int64) engine.SegmentRef {
	return engine.SegmentRef{ID: uint64(base) + 1, BaseOffset: base, NextOffset: next, Size: int64(next-base) * 100, LargestTimestamp: largestTs}
}

// TestAssess is the scheduler's decision table.
func TestAssess(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	nowMs := now.UnixMilli()
	base := func() LogInfo {
		segs := []engine.SegmentRef{seg(0, 10, nowMs-5000), seg(10, 20, nowMs-4000), seg(20, 30, nowMs-3000), seg(30, 35, nowMs)}
		segs[3].Active = true
		cfg := engine.DefaultConfig()
		cfg.Compact = true
		return LogInfo{
			TP: testTP, Config: cfg, Topic: TopicConfig{MinCleanableRatio: 0.5, DeleteRetention: time.Hour},
			Segments: segs, FirstBatchTimestamps: []int64{nowMs - 5500, nowMs - 4500, nowMs - 3500, nowMs - 100},
			LogStart: 0, LogEnd: 35, LastStable: 35, Checkpoint: -1,
			TombstoneHorizon: math.MaxInt64, HorizonKnown: true,
		}
	}
	cases := []struct {
		name       string
		edit       func(*LogInfo)
		bounded    bool
		firstDirty engine.Offset
		firstUncl  engine.Offset
		ratio      float64
		reason     Reason
		reset      bool
	}{
		{"no checkpoint: all dirty", nil, false, 0, 30, 1, ReasonDirtyRatio, false},
		{"checkpoint mid-log", func(li *LogInfo) { li.Checkpoint = 20 }, false, 20, 30, 1000.0 / 3000, ReasonNone, false},
		{"checkpoint inside a segment: counted pro rata", func(li *LogInfo) { li.Checkpoint = 15 }, false, 15, 30, 1500.0 / 3000, ReasonNone, false},
		{"ratio above a lower threshold", func(li *LogInfo) { li.Checkpoint = 20; li.Topic.MinCleanableRatio = 0.3 }, false, 20, 30, 1000.0 / 3000, ReasonDirtyRatio, false},
		{"checkpoint below log start is reset", func(li *LogInfo) { li.Checkpoint = 5; li.LogStart = 10 }, false, 10, 30, 2000.0 / 3000, ReasonDirtyRatio, true},
		{"checkpoint past the log end is reset", func(li *LogInfo) { li.Checkpoint = 99 }, false, 0, 30, 1, ReasonDirtyRatio, true},
		{"last stable offset caps the dirty section", func(li *LogInfo) { li.LastStable = 15 }, false, 0, 10, 1, ReasonDirtyRatio, false},
		{"LSO at a segment boundary", func(li *LogInfo) { li.LastStable = 20 }, false, 0, 20, 1, ReasonDirtyRatio, false},
		{"min compaction lag", func(li *LogInfo) { li.Topic.MinCompactionLag = 3500 * time.Millisecond }, false, 0, 20, 1, ReasonDirtyRatio, false},
		{"min compaction lag: nothing old enough", func(li *LogInfo) { li.Topic.MinCompactionLag = time.Hour }, false, 0, 0, 0, ReasonNone, false},
		{"max compaction lag overdue", func(li *LogInfo) {
			li.Checkpoint = 20
			li.Config.MaxCompactionLag = 3 * time.Second
		}, false, 20, 30, 1000.0 / 3000, ReasonMaxLag, false},
		{"max compaction lag not yet", func(li *LogInfo) {
			li.Checkpoint = 20
			li.Config.MaxCompactionLag = 4 * time.Second
		}, false, 20, 30, 1000.0 / 3000, ReasonNone, false},
		{"expired tombstones, nothing dirty", func(li *LogInfo) {
			li.Checkpoint = 30
			li.TombstoneHorizon = nowMs
		}, true, 30, 30, 0, ReasonTombstones, false},
		{"expired tombstones ignored by Kafka rules", func(li *LogInfo) {
			li.Checkpoint = 30
			li.TombstoneHorizon = nowMs
		}, false, 30, 30, 0, ReasonNone, false},
		{"tombstones not yet expired", func(li *LogInfo) {
			li.Checkpoint = 30
			li.TombstoneHorizon = nowMs + 1
		}, true, 30, 30, 0, ReasonNone, false},
		{"stale dirty section", func(li *LogInfo) {
			li.Checkpoint = 20
			li.Topic.DeleteRetention = 3 * time.Second
		}, true, 20, 30, 1000.0 / 3000, ReasonStaleDirty, false},
		{"empty log", func(li *LogInfo) {
			li.Segments = []engine.SegmentRef{{ID: 1, Active: true}}
			li.LogEnd, li.LastStable = 0, 0
		}, true, 0, 0, 0, ReasonNone, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			li := base()
			if c.edit != nil {
				c.edit(&li)
			}
			a := Assess(li, now, c.bounded)
			if a.FirstDirty != c.firstDirty || a.FirstUncleanable != c.firstUncl || math.Abs(a.Ratio-c.ratio) > 1e-9 || a.Reason != c.reason || a.ResetCheckpoint != c.reset {
				t.Fatalf("got dirty %d uncleanable %d ratio %v reason %q reset %v; want %d %d %v %q %v",
					a.FirstDirty, a.FirstUncleanable, a.Ratio, a.Reason, a.ResetCheckpoint, c.firstDirty, c.firstUncl, c.ratio, c.reason, c.reset)
			}
		})
	}
}

// TestPick: the dirtiest due log wins; ties go to the most overdue, then by name.
func TestPick(t *testing.T) {
	as := []Assessment{
		{TP: engine.TopicPartition{Topic: "a"}, Ratio: 0.9},
		{TP: engine.TopicPartition{Topic: "b"}, Ratio: 0.6, Reason: ReasonDirtyRatio},
		{TP: engine.TopicPartition{Topic: "c"}, Ratio: 0.7, Reason: ReasonDirtyRatio},
		{TP: engine.TopicPartition{Topic: "d"}, Ratio: 0.7, Reason: ReasonMaxLag, CompactionDelay: time.Second},
		{TP: engine.TopicPartition{Topic: "e"}, Ratio: 0, Reason: ReasonTombstones},
	}
	if i := Pick(as); i != 3 {
		t.Fatalf("picked %d", i)
	}
	if i := Pick(as[:1]); i != -1 {
		t.Fatalf("picked %d from nothing due", i)
	}
}

// TestIdleRollDue is the decision table of the idle roll: the active
// segment is rolled once it has had no append for the idle time, only when
// the log would then be due by its dirty ratio with the whole rolled
// segment cleanable; before that, the time it falls due is returned.
func TestIdleRollDue(t *testing.T) {
	const idle = 30 * time.Second
	last := time.UnixMilli(10_000_000)
	lastMs := last.UnixMilli()
	// Clean [0, 20) of 2,000 bytes; the active segment [20, 35) holds
	// 1,500 dirty bytes: rolled, the ratio would be 1500/3500 = 0.43.
	base := func() LogInfo {
		segs := []engine.SegmentRef{seg(0, 10, lastMs-5000), seg(10, 20, lastMs-4000), seg(20, 35, lastMs)}
		segs[2].Active = true
		cfg := engine.DefaultConfig()
		cfg.Compact = true
		return LogInfo{
			TP: testTP, Config: cfg, Topic: TopicConfig{MinCleanableRatio: 0.4, DeleteRetention: time.Hour},
			Segments: segs, FirstBatchTimestamps: []int64{-1, -1, -1},
			LogStart: 0, LogEnd: 35, LastStable: 35, Checkpoint: 20,
			TombstoneHorizon: math.MaxInt64, HorizonKnown: true, LastAppend: last,
		}
	}
	cases := []struct {
		name string
		edit func(*LogInfo)
		now  time.Time
		idle time.Duration
		roll bool
		at   time.Time // zero: none
	}{
		{"idle long enough, due once rolled", nil, last.Add(idle), idle, true, time.Time{}},
		{"idle long enough, much later", nil, last.Add(time.Hour), idle, true, time.Time{}},
		{"not idle yet: due at last append + idle", nil, last.Add(idle - time.Millisecond), idle, false, last.Add(idle)},
		{"disabled", nil, last.Add(time.Hour), 0, false, time.Time{}},
		{"ratio not exceeded once rolled", func(li *LogInfo) { li.Topic.MinCleanableRatio = 1500.0 / 3500 }, last.Add(time.Hour), idle, false, time.Time{}},
		{"ratio not exceeded: no wake-up either", func(li *LogInfo) { li.Topic.MinCleanableRatio = 0.5 }, last, idle, false, time.Time{}},
		{"empty active segment", func(li *LogInfo) {
			li.Segments[2] = engine.SegmentRef{ID: 99, BaseOffset: 35, NextOffset: 35, LargestTimestamp: -1, Active: true}
			li.Segments = append(li.Segments[:2], engine.SegmentRef{ID: 50, BaseOffset: 20, NextOffset: 35, Size: 1500}, li.Segments[2])
			li.FirstBatchTimestamps = append(li.FirstBatchTimestamps, -1)
		}, last.Add(time.Hour), idle, false, time.Time{}},
		{"open transaction in the active segment", func(li *LogInfo) { li.LastStable = 30 }, last.Add(time.Hour), idle, false, time.Time{}},
		{"high watermark behind the log end", func(li *LogInfo) { li.LastStable = 34 }, last.Add(time.Hour), idle, false, time.Time{}},
		{"min compaction lag not passed", func(li *LogInfo) { li.Topic.MinCompactionLag = 2 * time.Hour }, last.Add(time.Hour), idle, false, time.Time{}},
		{"min compaction lag passed", func(li *LogInfo) { li.Topic.MinCompactionLag = time.Minute }, last.Add(time.Hour), idle, true, time.Time{}},
		{"min compaction lag passed by the time idle ends", func(li *LogInfo) { li.Topic.MinCompactionLag = 20 * time.Second }, last, idle, false, last.Add(idle)},
		{"min compaction lag not passed when idle ends: no wake-up", func(li *LogInfo) { li.Topic.MinCompactionLag = time.Minute }, last, idle, false, time.Time{}},
		{"nothing clean yet: all dirty", func(li *LogInfo) { li.Checkpoint = -1; li.Topic.MinCleanableRatio = 0.5 }, last.Add(idle), idle, true, time.Time{}},
		{"an append raced the snapshot (log end past the active segment's end)", func(li *LogInfo) { li.LogEnd = 36; li.LastStable = 36 }, last.Add(time.Hour), idle, false, time.Time{}},
		{"only segment is active", func(li *LogInfo) {
			li.Segments = []engine.SegmentRef{{ID: 1, BaseOffset: 0, NextOffset: 35, Size: 3500, LargestTimestamp: lastMs, Active: true}}
			li.FirstBatchTimestamps = []int64{-1}
			li.Checkpoint = -1
		}, last.Add(idle), idle, true, time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			li := base()
			if c.edit != nil {
				c.edit(&li)
			}
			segs := append([]engine.SegmentRef(nil), li.Segments...)
			roll, at := IdleRollDue(li, c.now, c.idle, true)
			if roll != c.roll || !at.Equal(c.at) {
				t.Fatalf("roll %v at %v; want %v at %v", roll, at, c.roll, c.at)
			}
			for i := range segs {
				if li.Segments[i] != segs[i] {
					t.Fatalf("the caller's segments were changed: %+v", li.Segments)
				}
			}
		})
	}
}
