package cleaner

import (
	"fmt"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// countTombstones returns how many tombstones a consumer reading from the
// log start sees.
func countTombstones(t *testing.T, l *engine.Log) int {
	t.Helper()
	recs, _ := readLog(t, l)
	n := 0
	for _, r := range recs {
		if r.tombstone() {
			n++
		}
	}
	return n
}

// TestTombstoneExpiry: a retained tombstone gets its horizon (pass time +
// delete.retention.ms) and survives every pass before it; the first pass at
// or after it removes it — on an idle partition too (no new writes: the pass
// is triggered by the expired horizon), and after a restart (the horizon is
// found again by a header scan).
func TestTombstoneExpiry(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			e := newEnv(t)
			retention := 2 * time.Hour
			e.topics.set(testTP, TopicConfig{MinCleanableRatio: 0.5, DeleteRetention: retention})
			l := e.log(testTP)
			now := func() int64 { return e.clk.Now().UnixMilli() }
			for i := 0; i < 20; i++ {
				appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte(fmt.Sprintf("k%d", i)), value: []byte("v"), ts: now()}})
			}
			for i := 0; i < 10; i++ {
				appendRecs(t, l, record.CodecLZ4, nil, []rec{{key: []byte(fmt.Sprintf("k%d", i)), ts: now()}})
			}
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			res, ok := e.runOnce()
			if !ok || res.Stats.HorizonsStamped != 10 {
				t.Fatalf("first pass: ran %v, stats %+v", ok, res.Stats)
			}
			stamped := e.clk.Now()
			if n := countTombstones(t, l); n != 10 {
				t.Fatalf("%d tombstones after the first pass, want 10", n)
			}
			if _, ok := e.runOnce(); ok {
				t.Fatal("an idle, clean partition was cleaned again before any horizon")
			}
			if restart {
				e.restart()
				l = e.log(testTP)
				if n := e.cm.ScanHorizons(t.Context()); n != 1 {
					t.Fatalf("scanned %d partitions, want 1", n)
				}
			}
			// Just before the horizon: nothing is due, tombstones stay.
			e.clk.Set(stamped.Add(retention - time.Millisecond))
			if res, ok := e.runOnce(); ok {
				t.Fatalf("pass before the horizon: %+v", res)
			}
			if n := countTombstones(t, l); n != 10 {
				t.Fatalf("%d tombstones before the horizon, want 10", n)
			}
			st := e.cm.Status()
			if len(st.Partitions) != 1 || st.Partitions[0].TombstoneHorizon == nil || !st.Partitions[0].TombstoneHorizon.Equal(stamped.Add(retention)) {
				t.Fatalf("status horizon %+v, want %v", st.Partitions, stamped.Add(retention))
			}
			// At the horizon the idle partition is due for its tombstones.
			e.clk.Set(stamped.Add(retention))
			res, ok = e.runOnce()
			if !ok || res.Reason != ReasonTombstones || res.Stats.TombstonesDropped != 10 {
				t.Fatalf("pass at the horizon: ran %v, %+v", ok, res)
			}
			if n := countTombstones(t, l); n != 0 {
				t.Fatalf("%d tombstones after the horizon", n)
			}
			got, _ := readLog(t, l)
			if len(got) != 10 {
				t.Fatalf("%d records left, want the 10 live keys", len(got))
			}
			if _, ok := e.runOnce(); ok {
				t.Fatal("cleaned again with nothing left to expire")
			}
		})
	}
}

// TestTombstoneStaleDirty: tombstones written to a partition whose dirty
// ratio never reaches min.cleanable.dirty.ratio (a large clean section, a
// small dirty one, then silence) are stamped once the dirty records are
// older than delete.retention.ms, and removed one retention later. Kafka
// keeps them forever; with BoundedTombstones off, so does kvlog.
func TestTombstoneStaleDirty(t *testing.T) {
	for _, bounded := range []bool{true, false} {
		t.Run(fmt.Sprintf("bounded=%v", bounded), func(t *testing.T) {
			e := newEnv(t)
			e.ccfg.BoundedTombstones = bounded
			if err := e.cm.UpdateConfig(e.ccfg); err != nil {
				t.Fatal(err)
			}
			retention := time.Hour
			e.topics.set(testTP, TopicConfig{MinCleanableRatio: 0, DeleteRetention: retention})
			l := e.log(testTP)
			now := func() int64 { return e.clk.Now().UnixMilli() }
			for i := 0; i < 200; i++ {
				appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte(fmt.Sprintf("k%d", i)), value: make([]byte, 100), ts: now()}})
			}
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			e.cleanAll(10)
			e.topics.set(testTP, TopicConfig{MinCleanableRatio: 0.5, DeleteRetention: retention})
			for i := 0; i < 5; i++ {
				appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte(fmt.Sprintf("k%d", i)), ts: now()}})
			}
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			if _, ok := e.runOnce(); ok {
				t.Fatal("cleaned below the dirty ratio")
			}
			e.clk.Advance(retention + time.Second)
			res, ok := e.runOnce()
			if !bounded {
				if ok {
					t.Fatalf("Kafka rules cleaned a partition below its ratio: %+v", res)
				}
				e.clk.Advance(10 * retention)
				if _, ok := e.runOnce(); ok || countTombstones(t, l) != 5 {
					t.Fatal("Kafka rules: tombstones should stay forever")
				}
				return
			}
			if !ok || res.Reason != ReasonStaleDirty || res.Stats.HorizonsStamped == 0 {
				t.Fatalf("stale dirty section not cleaned: ran %v %+v", ok, res)
			}
			e.clk.Advance(retention)
			res, ok = e.runOnce()
			if !ok || res.Reason != ReasonTombstones || countTombstones(t, l) != 0 {
				t.Fatalf("tombstones not removed one retention later: ran %v %+v, %d left", ok, res, countTombstones(t, l))
			}
		})
	}
}

// TestIdleActiveSegment: with max.compaction.lag.ms set, the cleaner rolls
// an idle active segment once it is older than the lag and compacts it,
// though nothing is written any more (Kafka only rolls on append).
func TestIdleActiveSegment(t *testing.T) {
	e := newEnv(t)
	e.ecfg.MaxCompactionLag = 10 * time.Minute
	e.topics.set(testTP, TopicConfig{MinCleanableRatio: 0.99, DeleteRetention: time.Hour})
	l := e.log(testTP)
	for i := 0; i < 200; i++ {
		appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte(fmt.Sprintf("live%d", i)), value: make([]byte, 50), ts: e.clk.Now().UnixMilli()}})
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cleanAll(5) // the first pass is due by ratio (nothing is clean yet)
	for i := 0; i < 20; i++ {
		appendRecs(t, l, record.CodecZstd, nil, []rec{{key: []byte(fmt.Sprintf("k%d", i%5)), value: []byte(fmt.Sprint(i)), ts: e.clk.Now().UnixMilli()}})
	}
	if _, ok := e.runOnce(); ok {
		t.Fatal("cleaned the active segment")
	}
	e.clk.Advance(11 * time.Minute)
	res, ok := e.runOnce()
	if !ok || res.Reason != ReasonMaxLag {
		t.Fatalf("idle active segment not rolled and cleaned: ran %v %+v", ok, res)
	}
	got, _ := readLog(t, l)
	if len(got) != 205 {
		t.Fatalf("%d records after compaction, want 205", len(got))
	}
}
