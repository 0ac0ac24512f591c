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

// TestIdleCheckpointPassBuildsNothing: a periodic checkpoint pass of a
// broker where no log's recovery point, log start or synced tail moved,
// and no log came or went, builds no checkpoint entry (it built and
// compared three maps of every partition each interval); a pass after a
// change (a flushed append, a new log, a deleted one) still writes it.
func TestIdleCheckpointPassBuildsNothing(t *testing.T) {
	const n = 50
	dir := t.TempDir()
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Clock: clk, Logger: quietLogger,
		CheckpointInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	logs := make([]*Log, n)
	for i := range logs {
		l, err := m.CreateLog(TopicPartition{Topic: "idle", Partition: int32(i)}, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		appendRecords(t, l, 2)
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		logs[i] = l
	}
	m.Start(context.Background())
	pass := func() int64 {
		t.Helper()
		before := m.checkpointBuilt.Load()
		if !clk.AwaitDeadline(clk.Now().Add(maintenanceTick), 10*time.Second) {
			t.Fatal("the maintenance does not wait on the Manager's clock")
		}
		clk.Advance(time.Minute)
		if !clk.AwaitDeadline(clk.Now().Add(maintenanceTick), 10*time.Second) {
			t.Fatal("the maintenance pass did not end")
		}
		return m.checkpointBuilt.Load() - before
	}
	checkpointed := func(tp TopicPartition) (rp int64, ok bool) {
		t.Helper()
		rps, err := checkpoint.ReadOffsets(vfs.Default, filepath.Join(dir, RecoveryPointCheckpointFile))
		if err != nil {
			t.Fatal(err)
		}
		rp, ok = rps[tp]
		return rp, ok
	}
	if got := pass(); got != n {
		t.Fatalf("first pass built %d entries, want %d", got, n)
	}
	for i := range 3 {
		if got := pass(); got != 0 {
			t.Fatalf("idle pass %d built %d entries, want 0", i, got)
		}
	}

	// A flushed append moves one recovery point: the pass writes it.
	appendRecords(t, logs[9], 3)
	if err := logs[9].Sync(); err != nil {
		t.Fatal(err)
	}
	if got := pass(); got == 0 {
		t.Fatal("pass after a flushed append built nothing")
	}
	if rp, _ := checkpointed(logs[9].TopicPartition()); rp != 5 {
		t.Fatalf("recovery point %d checkpointed after the append, want 5", rp)
	}
	if got := pass(); got != 0 {
		t.Fatalf("idle pass after the change built %d entries, want 0", got)
	}

	// A new log, then a deleted one.
	tp := TopicPartition{Topic: "idle", Partition: n}
	if _, err := m.CreateLog(tp, DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	if got := pass(); got == 0 {
		t.Fatal("pass after a new log built nothing")
	}
	if _, ok := checkpointed(tp); !ok {
		t.Fatal("the new log has no checkpoint entry")
	}
	if err := m.DeleteLog(tp); err != nil {
		t.Fatal(err)
	}
	if got := pass(); got == 0 {
		t.Fatal("pass after a deleted log built nothing")
	}
	if _, ok := checkpointed(tp); ok {
		t.Fatal("the deleted log still has a checkpoint entry")
	}
	if got := pass(); got != 0 {
		t.Fatalf("idle pass built %d entries, want 0", got)
	}
}
