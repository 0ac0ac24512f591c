package replica

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestCommitWaitObserved: the commit-wait observer (the broker's
// kvlog_produce_commit_wait_seconds) gets one observation per leader
// append, when the HW passes its batch: none while the group commit's
// fsync is held, one per batch once it is through; with
// kvlog.fsync.acks.all off, one at once.
func TestCommitWaitObserved(t *testing.T) {
	var mu sync.Mutex
	var got []time.Duration
	observed := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	SetCommitWaitObserver(func(d time.Duration) {
		mu.Lock()
		got = append(got, d)
		mu.Unlock()
	})
	defer SetCommitWaitObserver(nil)

	for _, syncAlone := range []bool{true, false} {
		mu.Lock()
		got = nil
		mu.Unlock()
		dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
		fs := &gatedFS{FS: vfs.Default, entered: make(chan struct{}), release: make(chan error)}
		l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{FS: fs, Clock: clock.NewManual(time.Unix(1_700_000_000, 0)),
			Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		m := NewManager(ManagerConfig{ID: 1, SyncAlone: syncAlone, Logger: silent})
		p, err := m.LeadAlone(l, 0)
		if err != nil {
			t.Fatal(err)
		}
		fs.armed.Store(syncAlone)
		a, err := m.Append(p, batch(t, "a", 2), true, 1)
		if err != nil {
			t.Fatal(err)
		}
		if syncAlone {
			<-fs.entered // a's commit syncs
			b, err := m.Append(p, batch(t, "b", 3), true, 1)
			if err != nil {
				t.Fatal(err)
			}
			if n := observed(); n != 0 {
				t.Fatalf("%d observations while the commit's fsync is held; want 0", n)
			}
			fs.release <- nil // a's commit
			<-fs.entered      // b's, after it
			fs.release <- nil
			a = b
		}
		done := make(chan struct{})
		waits := []AckWait{{P: p, Last: a.LastOffset, MinISR: 1}}
		m.AwaitAcks(waits, time.Hour, func() { close(done) })
		<-done
		if waits[0].Err != nil {
			t.Fatal(waits[0].Err)
		}
		want := 1
		if syncAlone {
			want = 2
		}
		if n := observed(); n != want {
			t.Fatalf("sync alone %v: %d observations; want %d (one per append)", syncAlone, n, want)
		}
		p.mu.Lock()
		left := len(p.uncommitted)
		p.mu.Unlock()
		if left != 0 {
			t.Fatalf("%d appends still waiting for the HW", left)
		}
		fs.armed.Store(false)
		m.Close()
		l.Close()
	}
}
