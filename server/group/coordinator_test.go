package group

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/kvlog/kvlog/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The runner with its timers: join phases end and sessions expire without
// any request arriving; a restart rebuilds the groups from the store. It
// runs in a synctest bubble: the shards' timers run on the bubble's clock,
// so the session expiry is checked at its deadline, not polled for.
func TestCoordinatorTimersAndRestart(t *testing.T) {
	synctest.Test(t, testCoordinatorTimersAndRestart)
}

func testCoordinatorTimersAndRestart(t *testing.T) {
	store := newMemStore()
	cfg := DefaultConfig()
	cfg.Partitions = 4
	cfg.MinSessionTimeout = 10 * time.Millisecond
	cfg.InitialRebalanceDelay = 50 * time.Millisecond
	co, err := New(cfg, store, Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := co.LoadAll(); err != nil {
		t.Fatal(err)
	}
	defer co.Close()

	join := func(req JoinRequest) chan JoinResult {
		ch := make(chan JoinResult, 1)
		go co.Join(req, func(r JoinResult) { ch <- r })
		return ch
	}
	wait := func(ch chan JoinResult) JoinResult {
		t.Helper()
		select {
		case r := <-ch:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("JoinGroup not answered")
			return JoinResult{}
		}
	}
	// Three members join at once; the initial delay puts them in one
	// generation, ended by the timer.
	const sessionTimeout = 300 * time.Millisecond
	var chans []chan JoinResult
	for i := 0; i < 3; i++ {
		req := joinReq("")
		req.SessionTimeout = sessionTimeout
		req.RebalanceTimeout = 2 * time.Second
		chans = append(chans, join(req))
	}
	var (
		results []JoinResult
		leader  JoinResult
	)
	for _, ch := range chans {
		r := wait(ch)
		if r.Err != nil || r.Generation != 1 {
			t.Fatalf("join: %+v", r)
		}
		if r.MemberID == r.Leader {
			leader = r
		}
		results = append(results, r)
	}
	if len(leader.Members) != 3 {
		t.Fatalf("leader saw %d members", len(leader.Members))
	}
	// Everyone syncs; the group is stable.
	var wg sync.WaitGroup
	assign := map[string][]byte{}
	for _, r := range results {
		assign[r.MemberID] = []byte(r.MemberID)
	}
	for _, r := range results {
		wg.Add(1)
		go func(r JoinResult) {
			defer wg.Done()
			done := make(chan SyncResult, 1)
			req := SyncRequest{Group: "g", MemberID: r.MemberID, Generation: 1}
			if r.MemberID == r.Leader {
				req.Assignments = assign
			}
			co.Sync(req, func(s SyncResult) { done <- s })
			select {
			case s := <-done:
				if s.Err != nil || string(s.Assignment) != r.MemberID {
					t.Errorf("sync %s: %+v", r.MemberID, s)
				}
			case <-time.After(10 * time.Second):
				t.Error("SyncGroup not answered")
			}
		}(r)
	}
	wg.Wait()
	if d, _ := co.Describe("g"); d.State != Stable || len(d.Members) != 3 {
		t.Fatalf("describe: %+v", d)
	}
	errs := co.Commit(CommitRequest{Group: "g", Generation: 1, MemberID: results[0].MemberID, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 0}, Offset: 99, LeaderEpoch: -1}}})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	// Nobody heartbeats: the sessions end on the timer, a session timeout
	// after the generation completed, and the group empties.
	time.Sleep(sessionTimeout - time.Millisecond)
	synctest.Wait()
	if d, _ := co.Describe("g"); d.State != Stable || len(d.Members) != 3 {
		t.Fatalf("1 ms before the sessions end: %s with %d members", d.State, len(d.Members))
	}
	time.Sleep(time.Millisecond)
	synctest.Wait()
	if d, _ := co.Describe("g"); d.State != Empty {
		t.Fatalf("at the end of the sessions: %s with %d members", d.State, len(d.Members))
	}

	// Restart from the store.
	co.Close()
	if err := co.Heartbeat(HeartbeatRequest{Group: "g"}); !errors.Is(err, ErrCoordinatorNotAvailable) {
		t.Fatalf("heartbeat after close: %v", err)
	}
	co2, err := New(cfg, store, Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer co2.Close()
	if err := co2.LoadAll(); err != nil {
		t.Fatal(err)
	}
	d, _ := co2.Describe("g")
	if d.State != Empty || d.ProtocolType != ConsumerProtocolType {
		t.Fatalf("after restart: %+v", d)
	}
	offs, _ := co2.FetchOffsets("g", nil)
	if len(offs) != 1 || offs[0].Offset != 99 {
		t.Fatalf("offsets after restart: %+v", offs)
	}
	list, err := co2.List()
	if err != nil || len(list) != 1 || list[0].Group != "g" {
		t.Fatalf("list: %+v %v", list, err)
	}
}

// The shards' timers run on the coordinator's clock: on a manual clock the
// initial rebalance delay and a session end exactly when the clock reaches
// them, and not before.
func TestCoordinatorTimersOnManualClock(t *testing.T) {
	clk := clock.NewManual(t0)
	cfg := DefaultConfig()
	cfg.Partitions = 1
	cfg.InitialRebalanceDelay = 3 * time.Second
	co, err := New(cfg, newMemStore(), Options{Logger: testLogger(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := co.LoadAll(); err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	step := func(d time.Duration) {
		t.Helper()
		clk.Advance(d)
		if !clk.AwaitCallbacks(10 * time.Second) {
			t.Fatal("the coordinator's timer callback did not return")
		}
	}
	got := make(chan JoinResult, 1)
	req := joinReq("")
	req.SessionTimeout = 10 * time.Second
	co.Join(req, func(r JoinResult) { got <- r })
	step(cfg.InitialRebalanceDelay - time.Nanosecond)
	select {
	case r := <-got:
		t.Fatalf("join answered before the initial rebalance delay: %+v", r)
	default:
	}
	step(time.Nanosecond)
	var r JoinResult
	select {
	case r = <-got:
	default:
		t.Fatal("join not answered at the end of the initial rebalance delay")
	}
	if r.Err != nil || r.Generation != 1 {
		t.Fatalf("join: %+v", r)
	}
	synced := make(chan SyncResult, 1)
	co.Sync(SyncRequest{Group: "g", MemberID: r.MemberID, Generation: 1, Assignments: map[string][]byte{r.MemberID: {1}}}, func(s SyncResult) { synced <- s })
	if s := <-synced; s.Err != nil {
		t.Fatalf("sync: %+v", s)
	}
	step(req.SessionTimeout - time.Nanosecond)
	if d, _ := co.Describe("g"); d.State != Stable || len(d.Members) != 1 {
		t.Fatalf("just before the session ends: %s with %d members", d.State, len(d.Members))
	}
	step(time.Nanosecond)
	if d, _ := co.Describe("g"); d.State != Empty {
		t.Fatalf("at the end of the session: %s with %d members", d.State, len(d.Members))
	}
}

// Close answers parked requests, and a shard that is not loaded answers
// NOT_COORDINATOR.
func TestCoordinatorCloseAndUnloaded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Partitions = 2
	cfg.InitialRebalanceDelay = time.Hour // the join phase would never end
	co, err := New(cfg, newMemStore(), Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	other := ""
	for i := 0; other == "" || co.PartitionFor(other) == co.PartitionFor("g2"); i++ {
		other = fmt.Sprintf("other-%d", i)
	}
	if err := co.Load(co.PartitionFor("g2")); err != nil {
		t.Fatal(err)
	}
	if err := co.Heartbeat(HeartbeatRequest{Group: other}); !errors.Is(err, ErrNotCoordinator) {
		t.Fatalf("unloaded partition: %v", err)
	}
	got := make(chan JoinResult, 1)
	req := joinReq("")
	req.Group = "g2"
	co.Join(req, func(r JoinResult) { got <- r })
	select {
	case r := <-got:
		t.Fatalf("answered early: %+v", r)
	default:
	}
	co.Close()
	select {
	case r := <-got:
		if !errors.Is(r.Err, ErrNotCoordinator) {
			t.Fatalf("parked join at close: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("parked join not answered at close")
	}
	co.Join(req, func(r JoinResult) { got <- r })
	if r := <-got; !errors.Is(r.Err, ErrCoordinatorNotAvailable) {
		t.Fatalf("join after close: %+v", r)
	}
}

// Many groups and members at once, under -race.
func TestCoordinatorConcurrent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Partitions = 3
	cfg.InitialRebalanceDelay = 10 * time.Millisecond
	co, err := New(cfg, newMemStore(), Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.LoadAll()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		for m := 0; m < 3; m++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				req := joinReq("")
				req.Group = fmt.Sprintf("group-%d", g)
				req.RequireKnownMemberID = true
				for attempt := 0; attempt < 20; attempt++ {
					ch := make(chan JoinResult, 1)
					co.Join(req, func(r JoinResult) { ch <- r })
					r := <-ch
					switch {
					case errors.Is(r.Err, ErrMemberIDRequired):
						req.MemberID = r.MemberID
						continue
					case r.Err != nil:
						t.Errorf("join: %v", r.Err)
						return
					}
					sch := make(chan SyncResult, 1)
					co.Sync(SyncRequest{Group: req.Group, MemberID: r.MemberID, Generation: r.Generation}, func(s SyncResult) { sch <- s })
					s := <-sch
					if errors.Is(s.Err, ErrRebalanceInProgress) {
						continue // a later member joined: rejoin
					}
					if s.Err != nil {
						t.Errorf("sync: %v", s.Err)
					}
					co.Commit(CommitRequest{Group: req.Group, MemberID: r.MemberID, Generation: r.Generation, Offsets: []OffsetCommit{{TopicPartition: TopicPartition{"t", 0}, Offset: 1}}})
					co.Heartbeat(HeartbeatRequest{Group: req.Group, MemberID: r.MemberID, Generation: r.Generation})
					co.Leave(req.Group, []LeaveMember{{MemberID: r.MemberID}})
					return
				}
			}(g)
		}
	}
	wg.Wait()
	if _, err := co.List(); err != nil {
		t.Fatal(err)
	}
}

// An offset commit whose records were appended but could not be made
// durable (the offsets partition's leader is cut off from its followers, so
// Sync fails: the high watermark never passes the commit) is answered with
// an error and never served by OffsetFetch: the next leader of the
// partition may not have it, and serving it first would make the group's
// committed offset go back when leadership moves (found by the network
// partition test).
func TestCommitNotFetchableUntilSynced(t *testing.T) {
	store := newMemStore()
	cfg := DefaultConfig()
	cfg.Partitions = 1
	co, err := New(cfg, store, Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := co.LoadAll(); err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	tp := TopicPartition{"t", 0}
	commit := func(offset int64) error {
		return co.Commit(CommitRequest{Group: "g", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: tp, Offset: offset, LeaderEpoch: -1}}})[0]
	}
	fetched := func() int64 {
		t.Helper()
		out, err := co.FetchOffsets("g", []TopicPartition{tp})
		if err != nil {
			t.Fatal(err)
		}
		return out[0].Offset
	}
	if err := commit(5); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.syncErr = errors.New("not replicated: cut off from the followers")
	store.mu.Unlock()
	if err := commit(9); !errors.Is(err, ErrCoordinatorNotAvailable) {
		t.Fatalf("commit that could not be synced: %v", err)
	}
	if got := fetched(); got != 5 {
		t.Fatalf("OffsetFetch after a failed commit of 9 returned %d, want the last durable commit 5", got)
	}
	// A group first seen in a commit that fails is not left behind either.
	if err := co.Commit(CommitRequest{Group: "new", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: tp, Offset: 1, LeaderEpoch: -1}}})[0]; err == nil {
		t.Fatal("commit of a new group succeeded without Sync")
	}
	if out, _ := co.FetchOffsets("new", []TopicPartition{tp}); out[0].Offset != -1 {
		t.Fatalf("new group's failed commit visible: %+v", out)
	}
	store.mu.Lock()
	store.syncErr = nil
	store.mu.Unlock()
	if err := commit(12); err != nil {
		t.Fatal(err)
	}
	if got := fetched(); got != 12 {
		t.Fatalf("OffsetFetch after a synced commit of 12 returned %d", got)
	}
}

// Commits become visible in log order whatever order their Syncs finish
// in: an earlier commit installed late never replaces a later one.
func TestCommitsInstalledInLogOrder(t *testing.T) {
	h := newHarness(t, testConfig())
	tp := TopicPartition{"t", 0}
	now := h.clk.Now()
	h.c.commit(now, CommitRequest{Group: "s", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: tp, Offset: 10}}})
	first := h.c.takeCommits()
	h.c.commit(now, CommitRequest{Group: "s", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: tp, Offset: 20}}})
	second := h.c.takeCommits()
	if o := h.c.fetchOffsets("s", []TopicPartition{tp}); o[0].Offset != -1 {
		t.Fatalf("pending commit visible: %+v", o)
	}
	h.c.installCommits(second, true)
	h.c.installCommits(first, true)
	if o := h.c.fetchOffsets("s", []TopicPartition{tp}); o[0].Offset != 20 {
		t.Fatalf("after installing out of order: %+v, want 20", o)
	}
}
