package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestPeriodicCheckpointOnlyWhenChanged: the periodic checkpoint pass
// writes a log dir's recovery-point, log-start and synced-tail
// checkpoints the first time and then only when an entry changed; Close
// writes them whatever they hold. (A checkpoint file removed behind the
// Manager's back shows whether a pass wrote it.)
func TestPeriodicCheckpointOnlyWhenChanged(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Clock: clk, Logger: quietLogger,
		CheckpointInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			m.Close()
		}
	})
	tp := TopicPartition{Topic: "quiet", Partition: 0}
	l, err := m.CreateLog(tp, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, l, 3)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	m.Start(context.Background())
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
	files := []string{RecoveryPointCheckpointFile, LogStartCheckpointFile, SyncedTailCheckpointFile}
	remove := func() {
		t.Helper()
		for _, f := range files {
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
		}
	}
	present := func(what string, want bool) {
		t.Helper()
		for _, f := range files {
			_, err := os.Stat(filepath.Join(dir, f))
			if got := err == nil; got != want {
				t.Fatalf("%s: %s present %v, want %v (%v)", what, f, got, want, err)
			}
		}
	}
	recoveryPoint := func() int64 {
		t.Helper()
		rps, err := checkpoint.ReadOffsets(vfs.Default, filepath.Join(dir, RecoveryPointCheckpointFile))
		if err != nil {
			t.Fatal(err)
		}
		return rps[tp]
	}

	pass(time.Minute)
	present("first periodic pass", true)
	if got := recoveryPoint(); got != 3 {
		t.Fatalf("recovery point %d, want 3", got)
	}
	remove()
	skips := m.checkpointSkips.Load()
	pass(time.Minute)
	pass(time.Minute)
	present("passes with nothing changed", false)
	if got := m.checkpointSkips.Load() - skips; got != 2 {
		t.Fatalf("%d passes left the dir alone, want 2", got)
	}

	appendRecords(t, l, 2)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	pass(time.Minute)
	present("a pass after the recovery point moved", true)
	if got := recoveryPoint(); got != 5 {
		t.Fatalf("recovery point %d, want 5", got)
	}

	remove()
	closed = true
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	present("Close", true)
}
