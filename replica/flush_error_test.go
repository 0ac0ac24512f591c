package replica

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestAckAfterFailedFlushFails: an acks=all append whose group commit
// fails before its waiter registers (the committer ran between Append and
// AwaitAcks, as when a full disk refuses the commit) is answered with the
// storage error at once; it used to wait for a high watermark the failed
// flush would never move, until the request timed out.
func TestAckAfterFailedFlushFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	fs := &gatedFS{FS: vfs.Default, entered: make(chan struct{}), release: make(chan error)}
	l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{FS: fs, Clock: clock.NewManual(time.Unix(1_700_000_000, 0)),
		Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m := NewManager(ManagerConfig{ID: 1, SyncAlone: true, Logger: silent})
	defer m.Close()
	p, err := m.LeadAlone(l, 0)
	if err != nil {
		t.Fatal(err)
	}
	fs.armed.Store(true)
	defer fs.armed.Store(false) // the closes' syncs go through
	awaitAck := func(last Offset) chan error {
		done := make(chan error, 1)
		waits := []AckWait{{P: p, Last: last, MinISR: 1}}
		m.AwaitAcks(waits, time.Hour, func() { done <- waits[0].Err })
		return done
	}
	answer := func(ch chan error, what string) error {
		t.Helper()
		select {
		case err := <-ch:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer", what)
			return nil
		}
	}

	resA, err := m.Append(p, batch(t, "a", 2), true, 1)
	if err != nil {
		t.Fatal(err)
	}
	<-fs.entered                          // a's commit is syncing
	fs.release <- errors.New("disk full") // and fails, before a's waiter exists
	failed := func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.flushErr != nil
	}
	for deadline := time.Now().Add(10 * time.Second); !failed(); {
		if time.Now().After(deadline) {
			t.Fatal("the failed commit was never handled")
		}
		time.Sleep(time.Millisecond) // bounded poll for the committer to handle the failure
	}
	if err := answer(awaitAck(resA.LastOffset), "acks=all a after its flush failed"); !errors.Is(err, engine.ErrStorage) {
		t.Fatalf("acks=all a after its flush failed: %v, want a storage error", err)
	}
}
