package replica

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestIdleISRTickLooksAtNoPartition: once every follower of every led
// partition fetched up to the log end, the ISR check looks at no
// partition, however long the broker stays idle (it walked every
// partition every replica.lag.time.max.ms / 4). A partition that then
// takes an append its follower does not fetch is the only one looked
// at, and its follower still leaves the ISR once it lagged for longer
// than replica.lag.time.max.ms; a follower that catches up in time stays.
func TestIdleISRTickLooksAtNoPartition(t *testing.T) {
	const n, lagMax = 200, 10 * time.Second
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	var mu sync.Mutex
	var changes []string
	m := NewManager(ManagerConfig{ID: 1, LagMax: lagMax, Clock: clk, Logger: silent,
		OnISRChange: func(p *Partition, ch *ISRChange) {
			mu.Lock()
			changes = append(changes, p.Log().TopicPartition().String())
			mu.Unlock()
			p.ISRChangeDone(ch, ch.ZkVersion+1, nil, nil)
		}})
	t.Cleanup(m.Close)
	root := t.TempDir()
	ps := make([]*Partition, n)
	for i := range ps {
		tp := engine.TopicPartition{Topic: "t", Partition: int32(i)}
		l, err := engine.OpenLog(filepath.Join(root, engine.PartitionDirName(tp)), tp, engine.DefaultConfig(),
			engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		p := m.Add(l)
		if _, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1, 2}, Replicas: []int32{1, 2}, ZkVersion: 1}, clk.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Append(p, batch(t, "a", 2), false, 1); err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	fetchToEnd := func(p *Partition) {
		t.Helper()
		if _, err := m.FollowerFetch(p, 2, p.Log().LogEndOffset(), 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range ps {
		fetchToEnd(p)
	}
	tick := func() uint64 {
		t.Helper()
		before := m.isr.looked.Load()
		m.Tick()
		return m.isr.looked.Load() - before
	}
	// The first check finds every partition quiet; from then on an idle
	// broker's checks look at none, past any lag limit.
	if got := tick(); got > n {
		t.Fatalf("first check looked at %d partitions, at most %d expected", got, n)
	}
	for i := range 8 {
		clk.Advance(lagMax / 2)
		if got := tick(); got != 0 {
			t.Fatalf("idle check %d looked at %d partitions, want 0", i, got)
		}
	}
	if len(changes) != 0 {
		t.Fatalf("idle followers left the ISR: %v", changes)
	}

	// An append its follower does not fetch: that partition alone is
	// looked at, and its follower leaves once it lagged for longer than
	// lagMax (not before).
	lagging, catching := ps[7], ps[11]
	for _, p := range []*Partition{lagging, catching} {
		fetchToEnd(p) // (a fetch at the log end marks nothing)
	}
	if got := tick(); got != 0 {
		t.Fatalf("check after fetches at the log end looked at %d partitions, want 0", got)
	}
	for _, p := range []*Partition{lagging, catching} {
		if _, err := m.Append(p, batch(t, "b", 1), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(lagMax / 2)
	if got := tick(); got != 2 {
		t.Fatalf("check after two appends looked at %d partitions, want 2", got)
	}
	fetchToEnd(catching)
	clk.Advance(lagMax/2 + time.Millisecond)
	if got := tick(); got != 2 {
		t.Fatalf("check after the lag limit looked at %d partitions, want 2", got)
	}
	if want := []string{lagging.Log().TopicPartition().String()}; !slices.Equal(changes, want) {
		t.Fatalf("ISR changes %v, want %v", changes, want)
	}
	if isr := lagging.State().ISR; !slices.Equal(isr, []int32{1}) {
		t.Fatalf("lagging partition's ISR %v, want [1]", isr)
	}
	if isr := catching.State().ISR; !slices.Equal(isr, []int32{1, 2}) {
		t.Fatalf("caught-up partition's ISR %v, want [1 2]", isr)
	}
	// The shrunk partition (its ISR the leader alone) is quiet again;
	// the one whose follower caught up was found quiet already.
	if got := tick(); got > 1 {
		t.Fatalf("check after the shrink looked at %d partitions, want at most 1", got)
	}
	clk.Advance(lagMax)
	if got := tick(); got != 0 {
		t.Fatalf("idle check after the shrink looked at %d partitions, want 0", got)
	}
	if m.isr.size() != 0 {
		t.Fatalf("%d partitions left marked", m.isr.size())
	}
}

// TestISRTickNewLeaderFollowerNeverFetches: a new leader's follower that
// never fetches leaves the ISR after replica.lag.time.max.ms with no
// other event (the leader's MakeLeader is what marks it for the check).
func TestISRTickNewLeaderFollowerNeverFetches(t *testing.T) {
	const lagMax = 10 * time.Second
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	var changes []*ISRChange
	m := NewManager(ManagerConfig{ID: 1, LagMax: lagMax, Clock: clk, Logger: silent,
		OnISRChange: func(p *Partition, ch *ISRChange) {
			changes = append(changes, ch)
			p.ISRChangeDone(ch, ch.ZkVersion+1, nil, nil)
		}})
	t.Cleanup(m.Close)
	l, err := engine.OpenLog(filepath.Join(t.TempDir(), engine.PartitionDirName(simTP)), simTP, engine.DefaultConfig(),
		engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := m.Add(l)
	if _, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1, 2}, Replicas: []int32{1, 2}, ZkVersion: 1}, clk.Now()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clk.Advance(lagMax / 4)
		m.Tick()
	}
	if len(changes) != 0 {
		t.Fatalf("shrunk before the lag limit: %+v", changes)
	}
	clk.Advance(lagMax/4 + time.Millisecond)
	m.Tick()
	if len(changes) != 1 || !slices.Equal(changes[0].ISR, []int32{1}) {
		t.Fatalf("ISR changes %+v, want one to [1]", changes)
	}
}
