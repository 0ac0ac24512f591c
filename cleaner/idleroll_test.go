package cleaner

import (
	"fmt"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// idleEnv is an env whose logs keep everything in their active segment
// (1 MiB segments, segment.ms a week) under Kafka's default dirty ratio,
// with the idle roll at idle.
func idleEnv(t *testing.T, idle time.Duration) *env {
	t.Helper()
	e := newEnv(t)
	e.ecfg.SegmentBytes = 1 << 20
	e.ecfg.SegmentIndexBytes = 1 << 16
	e.topics.def = TopicConfig{MinCleanableRatio: 0.5, DeleteRetention: time.Hour}
	cfg := e.cm.Config()
	cfg.IdleRoll = idle
	if err := e.cm.UpdateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// overwrite appends one batch per update, cycling over keys, and returns
// the latest value of each key.
func overwrite(t *testing.T, e *env, l *engine.Log, keys, updates int, model map[string]string) {
	t.Helper()
	for i := 0; i < updates; i++ {
		k, v := fmt.Sprintf("key-%03d", i%keys), fmt.Sprintf("value-%d-%d", e.clk.Now().UnixMilli(), i)
		appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte(k), value: []byte(v), ts: e.clk.Now().UnixMilli()}})
		model[k] = v
	}
}

func checkState(t *testing.T, l *engine.Log, model map[string]string) []rec {
	t.Helper()
	got, _ := readLog(t, l)
	if d := diffState(state(got), model); d != "" {
		t.Fatalf("log state differs from the model: %s", d)
	}
	return got
}

// TestIdleRollCleansQuietChangelog: a compacted log written and then left
// idle, all of it in its active segment (at Kafka's default segment.bytes
// and segment.ms it would stay there a week), is rolled once it has had no
// append for the idle roll time, not a millisecond earlier, and cleaned by
// the same planning round: the log holds each key's latest record only.
// Disabled, or with the partition paused, nothing is rolled.
func TestIdleRollCleansQuietChangelog(t *testing.T) {
	const idle = 30 * time.Second
	// run writes a log, then lets it idle for 1 ms less than idle (nothing
	// rolled or cleaned), then for idle.
	run := func(t *testing.T, setting time.Duration, pause bool) (*env, *engine.Log, map[string]string) {
		e := idleEnv(t, setting)
		l := e.log(testTP)
		model := map[string]string{}
		overwrite(t, e, l, 20, 400, model)
		if pause {
			e.cm.AbortAndPause(testTP)
		}
		if res, ok := e.runOnce(); ok {
			t.Fatalf("cleaned a log whose records are all in its active segment: %+v", res)
		}
		e.clk.Advance(idle - time.Millisecond)
		if res, ok := e.runOnce(); ok {
			t.Fatalf("cleaned 1 ms before the idle roll time: %+v", res)
		}
		if n := len(l.CleanerSegments()); n != 1 {
			t.Fatalf("%d segments 1 ms before the idle roll time, want 1", n)
		}
		e.clk.Advance(time.Millisecond)
		return e, l, model
	}

	t.Run("rolled and cleaned", func(t *testing.T) {
		e, l, model := run(t, idle, false)
		leo := l.LogEndOffset()
		res, ok := e.runOnce()
		if !ok || res.Reason != ReasonDirtyRatio || res.Stats.EndOffset != leo {
			t.Fatalf("idle log not rolled and cleaned to its end %d: ran %v %+v", leo, ok, res)
		}
		if got := checkState(t, l, model); len(got) != len(model) {
			t.Fatalf("%d records after the pass, want one per key (%d)", len(got), len(model))
		}
		// The key index still answers every key's latest value.
		for k, v := range model {
			if lk, err := l.Lookup([]byte(k)); err != nil || !lk.Found || string(lk.Value) != v {
				t.Fatalf("lookup %s after the idle roll and pass: %+v %v, want %q", k, lk, err, v)
			}
		}
		segs := l.CleanerSegments()
		if act := segs[len(segs)-1]; act.Size != 0 || act.BaseOffset != leo {
			t.Fatalf("active segment after the roll: %+v, want empty at %d", act, leo)
		}
		if n := gauge(t, e, "kvlog_cleaner_idle_rolls_total"); n != 1 {
			t.Fatalf("idle rolls metric %v, want 1", n)
		}
		if off, _ := e.cm.Checkpoint(testTP); off != leo {
			t.Fatalf("checkpoint %d, want the log end %d", off, leo)
		}
		// Nothing appended since: no further roll or pass, however long
		// the log stays idle.
		e.clk.Advance(time.Hour)
		if res, ok := e.runOnce(); ok {
			t.Fatalf("a pass on a clean idle log: %+v", res)
		}
		if n := len(l.CleanerSegments()); n != len(segs) {
			t.Fatalf("%d segments after an idle hour, want %d", n, len(segs))
		}
	})
	t.Run("disabled", func(t *testing.T) {
		e, l, _ := run(t, 0, false)
		e.clk.Advance(time.Hour)
		if res, ok := e.runOnce(); ok {
			t.Fatalf("cleaned with the idle roll disabled: %+v", res)
		}
		if n := len(l.CleanerSegments()); n != 1 {
			t.Fatalf("%d segments with the idle roll disabled, want 1", n)
		}
	})
	t.Run("paused", func(t *testing.T) {
		e, l, _ := run(t, idle, true)
		if res, ok := e.runOnce(); ok {
			t.Fatalf("cleaned a paused partition: %+v", res)
		}
		if n := len(l.CleanerSegments()); n != 1 {
			t.Fatalf("rolled a paused partition: %d segments", n)
		}
		e.cm.Resume(testTP)
		if res, ok := e.runOnce(); !ok || res.Stats.EndOffset != l.LogEndOffset() {
			t.Fatalf("not rolled and cleaned after Resume: ran %v %+v", ok, res)
		}
	})
}

// TestIdleRollWriteOnceAMinute: a partition written once a minute (each
// write followed by half a minute or more of quiet) is not given a segment
// per write. A roll waits until the records written since the last pass
// exceed the dirty ratio against the clean section, and the pass after it
// merges the rolled segment into the clean one: the log keeps at most a
// clean segment, a rolled one and the active one, and rolls on a small
// fraction of the writes, over 300 writes.
func TestIdleRollWriteOnceAMinute(t *testing.T) {
	const (
		idle   = 30 * time.Second
		keys   = 40
		writes = 300
	)
	e := idleEnv(t, idle)
	l := e.log(testTP)
	model := map[string]string{}
	overwrite(t, e, l, keys, keys, model) // every key once
	maxSegs, passes := 0, 0
	for i := 0; i < writes; i++ {
		k, v := fmt.Sprintf("key-%03d", (i*7)%keys), fmt.Sprintf("minute-%d", i)
		appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte(k), value: []byte(v), ts: e.clk.Now().UnixMilli()}})
		model[k] = v
		for _, step := range []time.Duration{idle, time.Minute - idle} {
			e.clk.Advance(step)
			if res, ok := e.runOnce(); ok {
				passes++
				if res.Stats.EndOffset != l.LogEndOffset() {
					t.Fatalf("write %d: a pass ended at %d, not at the log end %d: %+v", i, res.Stats.EndOffset, l.LogEndOffset(), res)
				}
			}
			maxSegs = max(maxSegs, len(l.CleanerSegments()))
		}
	}
	rolls := gauge(t, e, "kvlog_cleaner_idle_rolls_total")
	t.Logf("%d writes a minute apart: %v idle rolls, %d passes, at most %d segments", writes, rolls, passes, maxSegs)
	if maxSegs > 3 {
		t.Errorf("up to %d segments, want at most 3 (clean, rolled, active)", maxSegs)
	}
	if rolls < 2 || rolls > writes/4 {
		t.Errorf("%v idle rolls for %d writes: want a few, not one per write", rolls, writes)
	}
	checkState(t, l, model)
}

// TestIdleRollWakesThread: a cleaner thread with nothing to do and an
// hour's backoff wakes when an idle roll falls due, half a minute after the
// last append, and the log is rolled and cleaned then.
func TestIdleRollWakesThread(t *testing.T) {
	const idle = 30 * time.Second
	e := idleEnv(t, idle)
	cfg := e.cm.Config()
	cfg.Backoff = time.Hour
	if err := e.cm.UpdateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	l := e.log(testTP)
	model := map[string]string{}
	overwrite(t, e, l, 10, 100, model)
	due := e.clk.Now().Add(idle)
	e.cm.Start(t.Context())
	if !e.clk.AwaitDeadline(due, 10*time.Second) {
		t.Fatalf("the idle thread waits for %v, want the idle roll at %v", e.clk.Deadlines(), due)
	}
	e.clk.Advance(idle)
	eventually(t, 10*time.Second, "a pass after the idle roll", func() bool { return partStatus(e.cm, testTP).Passes >= 1 })
	checkState(t, l, model)
	if off, _ := e.cm.Checkpoint(testTP); off != l.LogEndOffset() {
		t.Fatalf("checkpoint %d after the pass, want the log end %d", off, l.LogEndOffset())
	}
}
