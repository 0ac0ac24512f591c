package engine

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
)

func openMaintManager(t *testing.T, clk *clock.Manual) *Manager {
	t.Helper()
	m, err := OpenManager(ManagerOptions{Dirs: []string{t.TempDir()}, Clock: clk, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestMaintenanceVisitsOnlyDueLogs: the once-a-second pass visits the logs
// with something due, not every log: after a first visit of each new log,
// idle logs with nothing to flush, delete or roll are not queued, and a
// pass visits only the one log that was appended to once its deadline has
// come.
func TestMaintenanceVisitsOnlyDueLogs(t *testing.T) {
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	m := openMaintManager(t, clk)
	cfg := DefaultConfig()
	cfg.FlushInterval = 10 * time.Second
	const idle = 50
	for i := range idle {
		if _, err := m.CreateLog(TopicPartition{Topic: "idle", Partition: int32(i)}, cfg); err != nil {
			t.Fatal(err)
		}
	}
	busy, err := m.CreateLog(TopicPartition{Topic: "busy", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.maint.queued(); got != idle+1 {
		t.Fatalf("new logs queued: %d, want %d (each is visited once)", got, idle+1)
	}
	m.Maintain(false)
	if got := m.maintVisits.Load(); got != idle+1 {
		t.Fatalf("first pass visited %d logs, want %d", got, idle+1)
	}
	if got := m.maint.queued(); got != 0 {
		t.Fatalf("after the first pass %d logs queued, want 0 (nothing is due in empty logs)", got)
	}
	for range 5 {
		clk.Advance(time.Second)
		m.Maintain(false)
	}
	if got := m.maintVisits.Load(); got != idle+1 {
		t.Fatalf("idle passes visited %d logs in all, want still %d", got, idle+1)
	}
	appendRecords(t, busy, 3)
	if got := m.maint.queued(); got != 1 {
		t.Fatalf("after an append %d logs queued, want 1", got)
	}
	for range 12 {
		clk.Advance(time.Second)
		m.Maintain(false)
	}
	if got := m.maintVisits.Load(); got != idle+2 {
		t.Fatalf("passes after the append visited %d logs in all, want %d (the appended log once, at its flush deadline)", got, idle+2)
	}
	if busy.RecoveryPoint() != busy.LogEndOffset() {
		t.Fatalf("flush.ms passed: recovery point %d, want the log end %d", busy.RecoveryPoint(), busy.LogEndOffset())
	}
}

// TestMaintenanceDueWorkStillHappens: with the deadline queue, each kind of
// due work still happens at its time, and not before: a flush.ms flush of
// an unflushed log, an idle roll at segment.ms, and the unlinking of a
// deleted segment's files after file.delete.delay.ms (the segment deleted
// by the retention pass after DeleteRecords).
func TestMaintenanceDueWorkStillHappens(t *testing.T) {
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	m := openMaintManager(t, clk)

	t.Run("flush", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.FlushInterval = 10 * time.Second
		l, err := m.CreateLog(TopicPartition{Topic: "flush", Partition: 0}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.Maintain(false)
		appendRecords(t, l, 2)
		clk.Advance(9 * time.Second)
		m.Maintain(false)
		if l.RecoveryPoint() == l.LogEndOffset() {
			t.Fatal("flushed before flush.ms")
		}
		clk.Advance(time.Second)
		m.Maintain(false)
		if l.RecoveryPoint() != l.LogEndOffset() {
			t.Fatalf("flush.ms passed: recovery point %d, want %d", l.RecoveryPoint(), l.LogEndOffset())
		}
		// A later append is flushed flush.ms after that flush.
		appendRecords(t, l, 1)
		clk.Advance(10 * time.Second)
		m.Maintain(false)
		if l.RecoveryPoint() != l.LogEndOffset() {
			t.Fatalf("second flush: recovery point %d, want %d", l.RecoveryPoint(), l.LogEndOffset())
		}
	})

	t.Run("idle roll", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.SegmentTime = time.Hour
		l, err := m.CreateLog(TopicPartition{Topic: "roll", Partition: 0}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.Maintain(false)
		clk.Advance(30 * time.Minute)
		appendRecords(t, l, 2)
		clk.Advance(30 * time.Minute)
		m.Maintain(false)
		if n := l.SegmentCount(); n != 1 {
			t.Fatalf("rolled at segment.ms exactly: %d segments", n)
		}
		clk.Advance(time.Second)
		m.Maintain(false)
		if n := l.SegmentCount(); n != 2 {
			t.Fatalf("segment.ms passed: %d segments, want 2 (an idle roll)", n)
		}
	})

	t.Run("delayed delete", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.FileDeleteDelay = 30 * time.Second
		l, err := m.CreateLog(TopicPartition{Topic: "delete", Partition: 0}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		appendRecords(t, l, 2)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
		appendRecords(t, l, 1)
		l.SetHighWatermark(l.LogEndOffset())
		if err := l.DeleteRecordsBefore(2); err != nil {
			t.Fatal(err)
		}
		m.Maintain(true) // the retention pass deletes the first segment
		deleted := LogFileName(l.Dir(), 0) + DeletedSuffix
		if _, err := os.Stat(deleted); err != nil {
			t.Fatalf("segment 0 not renamed .deleted: %v", err)
		}
		clk.Advance(29 * time.Second)
		m.Maintain(false)
		if _, err := os.Stat(deleted); err != nil {
			t.Fatalf("unlinked before file.delete.delay.ms: %v", err)
		}
		clk.Advance(time.Second)
		m.Maintain(false)
		if _, err := os.Stat(deleted); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("file.delete.delay.ms passed: %s still there (%v)", deleted, err)
		}
	})

	t.Run("settings change", func(t *testing.T) {
		// flush.ms lowered on a log with unflushed records: due at once.
		l, err := m.CreateLog(TopicPartition{Topic: "settings", Partition: 0}, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		appendRecords(t, l, 1)
		m.Maintain(false)
		clk.Advance(time.Minute)
		cfg := DefaultConfig()
		cfg.FlushInterval = time.Second
		l.SetConfig(cfg)
		m.Maintain(false)
		if l.RecoveryPoint() != l.LogEndOffset() {
			t.Fatalf("flush.ms lowered below the time since the last flush: recovery point %d, want %d", l.RecoveryPoint(), l.LogEndOffset())
		}
	})
}

// TestMaintenanceQueueForgetsDeletedLogs: a deleted log leaves the queue.
func TestMaintenanceQueueForgetsDeletedLogs(t *testing.T) {
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	m := openMaintManager(t, clk)
	for i := range 3 {
		tp := TopicPartition{Topic: "gone", Partition: int32(i)}
		l, err := m.CreateLog(tp, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		appendRecords(t, l, 1)
		if err := m.DeleteLog(tp); err != nil {
			t.Fatal(fmt.Errorf("delete %s: %w", tp, err))
		}
	}
	if got := m.maint.queued(); got != 0 {
		t.Fatalf("%d deleted logs still queued", got)
	}
}
