package group

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
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
