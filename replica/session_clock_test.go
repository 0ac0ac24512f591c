package replica

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestSessionClockKeepsIdleFollowerInSync: a follower whose fetch session
// passes over a partition (it is at the leader's log end and nothing
// changed, so the leader does not read the partition) is in sync as of
// the session's last such fetch: an append does not make it look lagging
// since its last fetch the leader saw, and its next fetch counts the
// session's fetch as the previous one (Kafka's caught-up rule). When the
// session stops passing over it (the follower died or forgot it), it
// falls out of sync replica.lag.time.max.ms after the last such fetch.
func TestSessionClockKeepsIdleFollowerInSync(t *testing.T) {
	const lag = 10 * time.Second
	t0 := time.Unix(1_700_000_000, 0)
	l := NewLeader(LeaderParams{ID: 1, Epoch: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}, LEO: 10, HW: 10, EpochStart: 10, LagMax: lag}, t0)
	var clock2, clock3 atomic.Int64
	for _, r := range []int32{2, 3} {
		if _, err := l.FollowerFetch(r, 10, t0); err != nil {
			t.Fatal(err)
		}
	}
	l.SetSessionClock(2, &clock2)
	l.SetSessionClock(3, &clock3)
	// Follower 2's session keeps passing over the partition; follower 3's
	// stopped at t0+1s.
	clock3.Store(t0.Add(time.Second).UnixNano())
	for s := 2; s <= 20; s += 2 {
		clock2.Store(t0.Add(time.Duration(s) * time.Second).UnixNano())
	}
	l.Appended(11)
	at := t0.Add(21 * time.Second)
	if out := l.OutOfSync(at); !slices.Equal(out, []int32{3}) {
		t.Fatalf("out of sync at t0+21s after an append: %v, want [3] (2's session passed over the partition at t0+20s)", out)
	}
	// Follower 2 fetches at its old end: caught up as of its session's
	// last fetch (t0+20s), lagging from then on.
	if _, err := l.FollowerFetch(2, 10, at); err != nil {
		t.Fatal(err)
	}
	if out := l.OutOfSync(t0.Add(30 * time.Second)); !slices.Equal(out, []int32{3}) {
		t.Fatalf("out of sync at t0+30s: %v, want [3]", out)
	}
	if out := l.OutOfSync(t0.Add(31 * time.Second)); !slices.Equal(out, []int32{2, 3}) {
		t.Fatalf("out of sync at t0+31s: %v, want [2 3] (2 fell behind at t0+20s)", out)
	}
}

// TestSessionClockIgnoredForLaggingFollower: a session's clock counts only
// while the follower was at the leader's log end at its last fetch the
// leader saw (a session passes over only such partitions): a lagging
// follower's clock, however recent, does not keep it in sync.
func TestSessionClockIgnoredForLaggingFollower(t *testing.T) {
	const lag = 10 * time.Second
	t0 := time.Unix(1_700_000_000, 0)
	l := NewLeader(LeaderParams{ID: 1, Epoch: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}, LEO: 10, HW: 10, EpochStart: 10, LagMax: lag}, t0)
	l.Appended(20)
	if _, err := l.FollowerFetch(2, 15, t0); err != nil { // behind the log end
		t.Fatal(err)
	}
	var clock atomic.Int64
	l.SetSessionClock(2, &clock)
	clock.Store(t0.Add(30 * time.Second).UnixNano())
	if out := l.OutOfSync(t0.Add(31 * time.Second)); !slices.Equal(out, []int32{2}) {
		t.Fatalf("out of sync: %v, want [2]", out)
	}
}
