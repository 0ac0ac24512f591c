package replica

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestParkWide: a fetch parked on a whole session (ParkWide) is woken by
// a move of a partition the session covers (an append, for a follower's
// session), not by one it does not cover, and at once when Moved says a
// passed-over partition moved before it was registered; Manager.Moves
// counts every move.
func TestParkWide(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	m := NewManager(ManagerConfig{ID: 1, Clock: clk})
	var parts []*Partition
	for i := range int32(2) {
		tp := engine.TopicPartition{Topic: "t", Partition: i}
		l, err := engine.OpenLog(filepath.Join(t.TempDir(), engine.PartitionDirName(tp)), tp, engine.DefaultConfig(),
			engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		p, err := m.LeadAlone(l, 1)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	covered, other := parts[0], parts[1]
	woken := make(chan bool, 1)
	park := func(moved bool) {
		m.ParkWide(nil, Wide{
			Follower: true,
			Covers:   func(p *Partition) bool { return p == covered },
			Moved:    func() bool { return moved },
		}, time.Hour, func(final bool) { woken <- final })
	}
	waitParked := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for m.ParkedWide() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("not parked")
			}
			time.Sleep(time.Millisecond)
		}
	}
	before := m.Moves()
	park(false)
	waitParked()
	if _, _, err := other.AppendAsLeader(batch(t, "o", 1), false, 1); err != nil {
		t.Fatal(err)
	}
	if m.Moves() == before {
		t.Fatal("Moves did not count an append")
	}
	// (A wake marks the fetch fired before its append returns.)
	m.wide.mu.Lock()
	for w := range m.wide.ws {
		if w.fired.Load() {
			t.Error("woken by a partition the session does not cover")
		}
	}
	n := len(m.wide.ws)
	m.wide.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d wide fetches registered after an uncovered move, want 1", n)
	}
	if _, _, err := covered.AppendAsLeader(batch(t, "c", 1), false, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case final := <-woken:
		if final {
			t.Fatal("woken as final by a move")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not woken by a covered partition's append")
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.ParkedWide() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a woken fetch stayed registered")
		}
		time.Sleep(time.Millisecond)
	}
	// A passed-over partition moved before the registration: woken at once.
	park(true)
	select {
	case final := <-woken:
		if final {
			t.Fatal("woken as final")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not woken although Moved")
	}
	// Shutdown answers a wide fetch as final.
	park(false)
	waitParked()
	m.Shutdown()
	select {
	case final := <-woken:
		if !final {
			t.Fatal("shutdown woke it as not final")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not answered at shutdown")
	}
}
