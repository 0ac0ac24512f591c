package replica

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
)

// timedLeader is a leader of simTP with follower 2 in its ISR (it never
// fetches, so the HW stays put), on a Manager whose timers run on clk.
func timedLeader(t *testing.T) (*clock.Manual, *Manager, *Partition, engine.AppendResult) {
	t.Helper()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerConfig{ID: 1, Clock: clk, Logger: silent})
	t.Cleanup(func() {
		m.Close()
		l.Close()
	})
	p := m.Add(l)
	if _, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1, 2}, Replicas: []int32{1, 2}, ZkVersion: 1}, clk.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := m.Append(p, batch(t, "a", 3), true, 1)
	if err != nil {
		t.Fatal(err)
	}
	return clk, m, p, res
}

// TestAwaitAcksTimeoutOnTheClock: an acks=all wait the ISR does not
// complete ends with ErrTimedOut exactly when the Manager's clock reaches
// its timeout, not before.
func TestAwaitAcksTimeoutOnTheClock(t *testing.T) {
	clk, m, p, res := timedLeader(t)
	const timeout = 30 * time.Second
	before := clk.Waiters()
	done := make(chan error, 1)
	waits := []AckWait{{P: p, Last: res.LastOffset, MinISR: 1}}
	m.AwaitAcks(waits, timeout, func() { done <- waits[0].Err })
	if n := clk.Waiters(); n != before+1 {
		t.Fatalf("%d timers on the clock after AwaitAcks, want %d", n, before+1)
	}
	clk.Advance(timeout - time.Nanosecond)
	if !clk.AwaitCallbacks(10 * time.Second) {
		t.Fatal("timer callbacks did not return")
	}
	select {
	case err := <-done:
		t.Fatalf("acks=all answered before its timeout: %v", err)
	default:
	}
	clk.Advance(time.Nanosecond)
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimedOut) {
			t.Fatalf("acks=all at its timeout: %v, want ErrTimedOut", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acks=all not answered at its timeout")
	}
	if n := clk.Waiters(); n != before {
		t.Fatalf("%d timers on the clock after the timeout, want %d", n, before)
	}
}

// TestParkDeadlineOnTheClock: a parked fetch nothing wakes ends (final)
// exactly when the Manager's clock reaches its deadline, not before.
func TestParkDeadlineOnTheClock(t *testing.T) {
	clk, m, p, _ := timedLeader(t)
	const wait = 500 * time.Millisecond
	before := clk.Waiters()
	done := make(chan bool, 1)
	m.Park([]Watched{{P: p, Seen: p.log.HighWatermark()}}, wait, func(final bool) { done <- final })
	if n := clk.Waiters(); n != before+1 {
		t.Fatalf("%d timers on the clock after Park, want %d", n, before+1)
	}
	clk.Advance(wait - time.Nanosecond)
	if !clk.AwaitCallbacks(10 * time.Second) {
		t.Fatal("timer callbacks did not return")
	}
	// Its timer still pending: the wait was not cut short.
	if n := clk.Waiters(); n != before+1 {
		t.Fatalf("%d timers on the clock just before the deadline, want %d", n, before+1)
	}
	select {
	case final := <-done:
		t.Fatalf("parked fetch ended before its deadline (final %v)", final)
	default:
	}
	clk.Advance(time.Nanosecond)
	select {
	case final := <-done:
		if !final {
			t.Fatal("the deadline ended the wait as not final")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("parked fetch not ended at its deadline")
	}
}

// TestFetcherBackoffOnTheClock: a fetcher that cannot reach its leader
// tries again replica.fetch.backoff.ms later on its clock, not sooner.
func TestFetcherBackoffOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerConfig{ID: 2, Clock: clk, Logger: silent})
	p := m.Add(l)
	if _, err := p.MakeFollower(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1, 2}, Replicas: []int32{1, 2}, ZkVersion: 1}); err != nil {
		t.Fatal(err)
	}
	// Each attempt to reach the leader waits here until the test takes it.
	attempts := make(chan struct{})
	stop := make(chan struct{})
	const backoff = 5 * time.Second
	fs := NewFetchers(FetcherConfig{
		ReplicaID: 2, Backoff: backoff, Clock: clk, Logger: silent,
		Resolve: func(int32) (string, bool) {
			select {
			case attempts <- struct{}{}:
			case <-stop:
			}
			return "", false
		},
	})
	t.Cleanup(func() {
		close(stop)
		fs.Close()
		m.Close()
		l.Close()
	})
	attempt := func(what string) {
		t.Helper()
		select {
		case <-attempts:
		case <-time.After(10 * time.Second):
			t.Fatalf("no attempt to reach the leader %s", what)
		}
	}
	fs.Follow(p, 1)
	attempt("at first")
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("the failed attempt set no back-off timer on the clock")
	}
	// A timer fires (and leaves the clock) inside Advance: still there,
	// the back-off was not cut short.
	clk.Advance(backoff - time.Nanosecond)
	if n := clk.Waiters(); n != 1 {
		t.Fatalf("%d timers on the clock just before the back-off ends, want 1", n)
	}
	clk.Advance(time.Nanosecond)
	attempt("once the back-off passed")
}
