package engine

import (
	"context"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
)

// TestBackgroundMaintenanceOnTheClock: the background maintenance
// (Manager.Start) passes once a maintenanceTick on the Manager's clock, so
// a test moving a manual clock decides when an idle roll and a retention
// deletion happen: each at the first pass after the clock passes its time
// (retention at a retention check), not before, without sleeping.
func TestBackgroundMaintenanceOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000)) // the records' timestamps
	m, err := OpenManager(ManagerOptions{Dirs: []string{t.TempDir()}, Clock: clk, Logger: quietLogger,
		RetentionCheckInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	cfg := DefaultConfig()
	cfg.SegmentTime = time.Hour
	cfg.RetentionTime = 2 * time.Hour
	l, err := m.CreateLog(TopicPartition{Topic: "timed", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, l, 2)
	m.Start(context.Background())

	// pass moves the clock by d (at least a tick) and waits until the
	// pass it starts is over: the next pass's timer is set once it is.
	pass := func(d time.Duration) {
		t.Helper()
		if !clk.AwaitDeadline(clk.Now().Add(maintenanceTick), 10*time.Second) {
			t.Fatal("the maintenance does not wait on the Manager's clock")
		}
		clk.Advance(d)
		if !clk.AwaitDeadline(clk.Now().Add(maintenanceTick), 10*time.Second) {
			t.Fatal("the maintenance pass did not end")
		}
	}

	pass(time.Hour) // segment.ms exactly: not yet (a roll needs more)
	if n := l.SegmentCount(); n != 1 {
		t.Fatalf("at segment.ms: %d segments, want 1", n)
	}
	pass(time.Second)
	if n := l.SegmentCount(); n != 2 {
		t.Fatalf("past segment.ms: %d segments, want 2 (an idle roll)", n)
	}
	l.SetHighWatermark(l.LogEndOffset()) // retention deletes only below the HW
	// The retention pass runs every RetentionCheckInterval (1 min here),
	// counted from the last one (at segment.ms, above).
	pass(time.Hour - 2*time.Second) // a retention pass; the records are 2 h - 1 s old
	if got := l.LogStartOffset(); got != 0 {
		t.Fatalf("before retention.ms: log start %d, want 0", got)
	}
	pass(2 * time.Second) // past retention.ms, but no retention pass due
	if got := l.LogStartOffset(); got != 0 {
		t.Fatalf("between retention passes: log start %d, want 0", got)
	}
	pass(time.Minute - 2*time.Second) // the next retention pass
	if got := l.LogStartOffset(); got != 2 {
		t.Fatalf("past retention.ms at a retention pass: log start %d, want 2 (the rolled segment deleted)", got)
	}
}
