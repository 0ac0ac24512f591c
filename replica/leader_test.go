package replica

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// naiveLeader is the slow model the Leader core is checked against: it keeps
// every event and recomputes each decision from the whole history.
type naiveLeader struct {
	id         int32
	start      time.Time
	initISR    []int32
	replicas   []int32
	isr        []int32
	pending    []int32 // proposed ISR, nil when none
	shrink     bool
	leo        Offset
	hw         Offset
	epochStart Offset
	lagMax     time.Duration
	fetches    map[int32][]naiveFetch
}

type naiveFetch struct {
	at        time.Time
	offset    Offset
	leaderLEO Offset // leader LEO when the fetch arrived
}

func (n *naiveLeader) followerLEO(r int32) Offset {
	fs := n.fetches[r]
	if len(fs) == 0 {
		return UnknownOffset
	}
	return fs[len(fs)-1].offset
}

// lastCaughtUp: the latest time the follower provably had everything the
// leader had: a fetch reaching the leader LEO at that fetch, or the previous
// fetch's time when a fetch reached the leader LEO seen at the previous one.
func (n *naiveLeader) lastCaughtUp(r int32) time.Time {
	var t time.Time
	if slices.Contains(n.initISR, r) {
		t = n.start
	}
	fs := n.fetches[r]
	for i, f := range fs {
		if f.offset >= f.leaderLEO && f.at.After(t) {
			t = f.at
		} else if i > 0 && f.offset >= fs[i-1].leaderLEO && fs[i-1].at.After(t) {
			t = fs[i-1].at
		}
	}
	return t
}

func (n *naiveLeader) maximal() []int32 {
	if n.pending != nil && !n.shrink {
		return n.pending
	}
	return n.isr
}

func (n *naiveLeader) recomputeHW() {
	hw := n.leo
	for _, r := range n.maximal() {
		if r != n.id {
			hw = min(hw, n.followerLEO(r))
		}
	}
	n.hw = max(n.hw, hw)
}

func (n *naiveLeader) outOfSync(now time.Time) []int32 {
	var out []int32
	for _, r := range n.isr {
		if r == n.id {
			continue
		}
		if n.followerLEO(r) != n.leo && now.Sub(n.lastCaughtUp(r)) > n.lagMax {
			out = append(out, r)
		}
	}
	return out
}

func (n *naiveLeader) fetch(r int32, off Offset, now time.Time) []int32 {
	n.fetches[r] = append(n.fetches[r], naiveFetch{at: now, offset: off, leaderLEO: n.leo})
	var proposal []int32
	if n.pending == nil && !slices.Contains(n.isr, r) && off >= n.hw && off >= n.epochStart {
		n.pending = append(slices.Clone(n.isr), r)
		n.shrink = false
		proposal = n.pending
	}
	n.recomputeHW()
	return proposal
}

func (n *naiveLeader) tick(now time.Time) []int32 {
	if n.pending != nil {
		return nil
	}
	out := n.outOfSync(now)
	if len(out) == 0 {
		return nil
	}
	var isr []int32
	for _, r := range n.isr {
		if !slices.Contains(out, r) {
			isr = append(isr, r)
		}
	}
	n.pending, n.shrink = isr, true
	return isr
}

// TestLeaderMatchesNaiveModel drives the Leader core and the naive model
// with the same random events and compares every decision: HW, ISR,
// proposals, out-of-sync sets, acks=all verdicts.
func TestLeaderMatchesNaiveModel(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		replicas := []int32{1, 2, 3, 4}[:2+rng.IntN(3)]
		initISR := []int32{1}
		for _, r := range replicas[1:] {
			if rng.IntN(3) > 0 {
				initISR = append(initISR, r)
			}
		}
		start := time.Unix(1_700_000_000, 0)
		now := start
		lag := 1000 * time.Millisecond
		leo := Offset(rng.IntN(20))
		hw := Offset(rng.IntN(int(leo) + 1))
		l := NewLeader(LeaderParams{ID: 1, Epoch: 3, Replicas: replicas, ISR: initISR, ZkVersion: 5, LEO: leo, HW: hw, EpochStart: leo, LagMax: lag}, now)
		n := &naiveLeader{id: 1, start: now, initISR: initISR, replicas: replicas, isr: slices.Clone(initISR), leo: leo, hw: hw,
			epochStart: leo, lagMax: lag, fetches: map[int32][]naiveFetch{}}
		n.recomputeHW()
		var proposal *ISRChange
		zk := int32(5)
		for step := 0; step < 400; step++ {
			switch k := rng.IntN(10); {
			case k < 3: // leader append
				n.leo += Offset(1 + rng.IntN(5))
				l.Appended(n.leo)
				n.recomputeHW()
			case k < 7: // follower fetch
				r := replicas[1+rng.IntN(len(replicas)-1)]
				prev := max(n.followerLEO(r), 0)
				off := prev + Offset(rng.IntN(int(n.leo-prev)+1))
				if rng.IntN(20) == 0 {
					off = Offset(rng.IntN(int(n.leo) + 1)) // after a truncation
				}
				res, err := l.FollowerFetch(r, off, now)
				if err != nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
				want := n.fetch(r, off, now)
				if (res.Expand == nil) != (want == nil) || res.Expand != nil && !slices.Equal(res.Expand.ISR, want) {
					t.Fatalf("seed %d step %d: expansion %v, model %v", seed, step, res.Expand, want)
				}
				if res.Expand != nil {
					proposal = res.Expand
				}
			case k < 8: // time passes
				now = now.Add(time.Duration(rng.IntN(700)) * time.Millisecond)
			case k < 9: // shrink check
				got := l.Tick(now)
				want := n.tick(now)
				if (got == nil) != (want == nil) || got != nil && !slices.Equal(got.ISR, want) {
					t.Fatalf("seed %d step %d: shrink %v, model %v", seed, step, got, want)
				}
				if got != nil {
					if got.SyncFirst != (len(want) == 1) {
						t.Fatalf("seed %d step %d: SyncFirst %v for ISR %v", seed, step, got.SyncFirst, want)
					}
					proposal = got
				}
			default: // the pending change is written (or fails)
				if proposal == nil {
					continue
				}
				if proposal.ZkVersion != zk {
					t.Fatalf("seed %d step %d: proposal at version %d, state at %d", seed, step, proposal.ZkVersion, zk)
				}
				if rng.IntN(4) == 0 {
					l.ISRChangeFailed()
				} else {
					zk++
					l.ISRCommitted(zk)
					n.isr = n.pending
				}
				n.pending = nil
				proposal = nil
				n.recomputeHW()
			}
			if l.HW() != n.hw {
				t.Fatalf("seed %d step %d: HW %d, model %d", seed, step, l.HW(), n.hw)
			}
			if !slices.Equal(l.ISR(), n.isr) {
				t.Fatalf("seed %d step %d: ISR %v, model %v", seed, step, l.ISR(), n.isr)
			}
			if got, want := l.OutOfSync(now), n.outOfSync(now); !slices.Equal(got, want) {
				t.Fatalf("seed %d step %d: out of sync %v, model %v", seed, step, got, want)
			}
			if l.HW() > n.leo {
				t.Fatalf("seed %d step %d: HW %d above LEO %d", seed, step, l.HW(), n.leo)
			}
			// acks=all verdict for a random offset.
			last := Offset(rng.IntN(int(n.leo) + 1))
			minISR := 1 + rng.IntN(3)
			done, err := l.AckStatus(last, minISR)
			wantDone := n.hw > last
			if done != wantDone || done && (err != nil) != (len(n.isr) < minISR) {
				t.Fatalf("seed %d step %d: AckStatus(%d, %d) = %v, %v; model hw %d isr %v", seed, step, last, minISR, done, err, n.hw, n.isr)
			}
			if (l.CheckAcksAll(minISR) != nil) != (len(n.isr) < minISR) {
				t.Fatalf("seed %d step %d: CheckAcksAll(%d) with ISR %v", seed, step, minISR, n.isr)
			}
		}
	}
}

// TestLeaderShrinkAndExpand is the ISR life cycle spelled out.
func TestLeaderShrinkAndExpand(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	lag := 10 * time.Second
	l := NewLeader(LeaderParams{ID: 1, Epoch: 1, Replicas: []int32{1, 2, 3}, ISR: []int32{1, 2, 3}, LEO: 0, HW: 0, LagMax: lag}, now)
	l.Appended(10)
	if l.HW() != 0 {
		t.Fatalf("HW %d before any follower fetched", l.HW())
	}
	l.FollowerFetch(2, 10, now)
	l.FollowerFetch(3, 4, now)
	if l.HW() != 4 {
		t.Fatalf("HW %d, want min LEO 4", l.HW())
	}
	// Follower 3 stops fetching; 2 keeps up.
	for i := 0; i < 3; i++ {
		now = now.Add(4 * time.Second)
		l.FollowerFetch(2, 10, now)
		if ch := l.Tick(now); ch != nil && i < 2 {
			t.Fatalf("shrink %v after %v", ch.ISR, time.Duration(i+1)*4*time.Second)
		}
	}
	ch := l.Pending()
	if ch == nil || !ch.Shrink || !slices.Equal(ch.ISR, []int32{1, 2}) || ch.SyncFirst {
		t.Fatalf("want shrink to [1 2] without SyncFirst, got %+v", ch)
	}
	if l.HW() != 4 {
		t.Fatalf("HW moved to %d while the shrink is pending", l.HW())
	}
	if !l.ISRCommitted(1) || l.HW() != 10 {
		t.Fatalf("after the shrink HW %d, want 10", l.HW())
	}
	// 3 comes back and catches up: expansion once it reaches the HW.
	l.Appended(12)
	l.FollowerFetch(2, 12, now)
	if res, _ := l.FollowerFetch(3, 8, now); res.Expand != nil {
		t.Fatalf("expanded below the HW: %v", res.Expand)
	}
	res, _ := l.FollowerFetch(3, 12, now)
	if res.Expand == nil || !slices.Equal(res.Expand.ISR, []int32{1, 2, 3}) || res.Expand.ZkVersion != 1 {
		t.Fatalf("want expansion to [1 2 3] at version 1, got %+v", res.Expand)
	}
	l.ISRCommitted(2)
	if !slices.Equal(l.ISR(), []int32{1, 2, 3}) {
		t.Fatalf("ISR %v", l.ISR())
	}
	// Both followers stop: the shrink to the leader alone asks for an fsync.
	now = now.Add(lag + time.Second)
	l.Appended(13)
	ch = l.Tick(now)
	if ch == nil || !slices.Equal(ch.ISR, []int32{1}) || !ch.SyncFirst {
		t.Fatalf("want shrink to [1] with SyncFirst, got %+v", ch)
	}
	if err := l.CheckAcksAll(2); err != nil {
		t.Fatalf("acks=all refused before the shrink committed: %v", err)
	}
	l.ISRCommitted(3)
	if err := l.CheckAcksAll(2); err != ErrNotEnoughReplicas {
		t.Fatalf("CheckAcksAll with ISR [1] and min 2: %v", err)
	}
	if done, err := l.AckStatus(12, 2); !done || err != ErrNotEnoughReplicasAfterAppend {
		t.Fatalf("AckStatus after shrink: %v %v", done, err)
	}
}

// TestLeaderCaughtUpFollowerNeverShrinks: a follower whose LEO equals the
// leader's is in sync however long it has not fetched (nothing to fetch).
func TestLeaderCaughtUpFollowerNeverShrinks(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewLeader(LeaderParams{ID: 1, Epoch: 1, Replicas: []int32{1, 2}, ISR: []int32{1, 2}, LEO: 5, HW: 5, EpochStart: 5, LagMax: time.Second}, now)
	l.FollowerFetch(2, 5, now)
	if ch := l.Tick(now.Add(time.Hour)); ch != nil {
		t.Fatalf("shrank an idle caught-up follower: %+v", ch)
	}
}

func TestCheckLeaderEpoch(t *testing.T) {
	for _, c := range []struct {
		current, req int32
		want         error
	}{{5, -1, nil}, {5, 5, nil}, {5, 4, ErrFencedLeaderEpoch}, {5, 6, ErrUnknownLeaderEpoch}} {
		if got := CheckLeaderEpoch(c.current, c.req); got != c.want {
			t.Errorf("CheckLeaderEpoch(%d, %d) = %v, want %v", c.current, c.req, got, c.want)
		}
	}
}
