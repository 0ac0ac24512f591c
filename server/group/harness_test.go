package group

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
)

// Test helpers: a memory Store and a harness that drives one core with a
// manual clock, delivering effects as the runner does.

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("GROUP_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// memStore keeps every partition's records in memory.
type memStore struct {
	mu      sync.Mutex
	parts   map[int32][]Record
	syncs   int
	failErr error // Append fails with it when set
	syncErr error // Sync fails with it when set
}

func newMemStore() *memStore { return &memStore{parts: map[int32][]Record{}} }

func (s *memStore) Append(p int32, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return s.failErr
	}
	for _, r := range recs {
		s.parts[p] = append(s.parts[p], Record{Key: append([]byte(nil), r.Key...), Value: cloneNil(r.Value)})
	}
	return nil
}

func (s *memStore) AppendTxn(p int32, pid int64, epoch int16, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return s.failErr
	}
	for _, r := range recs {
		s.parts[p] = append(s.parts[p], Record{Key: append([]byte(nil), r.Key...), Value: cloneNil(r.Value), ProducerID: pid, Transactional: true})
	}
	return nil
}

// marker appends a transaction marker of pid, as the transaction
// coordinator's WriteTxnMarkers does.
func (s *memStore) marker(p int32, pid int64, commit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := AbortMarker
	if commit {
		m = CommitMarker
	}
	s.parts[p] = append(s.parts[p], Record{ProducerID: pid, Marker: m})
}

func cloneNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func (s *memStore) Sync(int32) error {
	s.mu.Lock()
	s.syncs++
	err := s.syncErr
	s.mu.Unlock()
	return err
}

func (s *memStore) Replay(p int32, fn func(Record)) error {
	s.mu.Lock()
	recs := append([]Record(nil), s.parts[p]...)
	s.mu.Unlock()
	for _, r := range recs {
		fn(r)
	}
	return nil
}

func (s *memStore) records(p int32) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.parts[p]...)
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Partitions = 1
	cfg.InitialRebalanceDelay = 0
	return cfg
}

type harness struct {
	t     *testing.T
	cfg   Config
	clk   *clock.Manual
	store *memStore
	c     *core
	ids   int
	// syncErr is what the runner's Sync returns in do (nil: success).
	syncErr error
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, cfg: cfg, clk: clock.NewManual(t0), store: newMemStore()}
	h.c = h.newCore()
	newLoader().install(h.c, h.clk.Now())
	return h
}

func (h *harness) newCore() *core {
	c := newCore(&h.cfg, 0, testLogger(), func(prefix string) string {
		h.ids++
		return fmt.Sprintf("%s-%d", prefix, h.ids)
	}, func(recs []Record) error { return h.store.Append(0, recs) })
	c.writeTxn = func(pid int64, epoch int16, recs []Record) error { return h.store.AppendTxn(0, pid, epoch, recs) }
	return c
}

// restart builds a new core from the store's records, as a broker restart
// does.
func (h *harness) restart() {
	h.c = h.newCore()
	l := newLoader()
	h.store.Replay(0, l.add)
	l.install(h.c, h.clk.Now())
}

// do runs fn as the runner does: due deadlines, fn, due deadlines, then
// the effects.
func (h *harness) do(fn func(now time.Time)) {
	now := h.clk.Now()
	h.c.tick(now)
	if fn != nil {
		fn(now)
	}
	h.c.tick(now)
	effects, _ := h.c.takeEffects()
	h.c.installCommits(h.c.takeCommits(), h.syncErr == nil)
	for _, e := range effects {
		e(h.syncErr)
	}
}

func (h *harness) advance(d time.Duration) {
	h.clk.Advance(d)
	h.do(nil)
}

// joinCall is a JoinGroup that may still be parked.
type joinCall struct {
	done  bool
	calls int
	res   JoinResult
}

func (j *joinCall) get(t *testing.T) JoinResult {
	t.Helper()
	if !j.done {
		t.Fatal("JoinGroup still parked")
	}
	return j.res
}

type syncCall struct {
	done  bool
	calls int
	res   SyncResult
}

func (s *syncCall) get(t *testing.T) SyncResult {
	t.Helper()
	if !s.done {
		t.Fatal("SyncGroup still parked")
	}
	return s.res
}

// joinReq is a consumer JoinGroup for group "g".
func joinReq(memberID string, protocols ...string) JoinRequest {
	if len(protocols) == 0 {
		protocols = []string{"range"}
	}
	req := JoinRequest{
		Group:            "g",
		MemberID:         memberID,
		ClientID:         "client",
		ClientHost:       "/127.0.0.1",
		ProtocolType:     ConsumerProtocolType,
		SessionTimeout:   10 * time.Second,
		RebalanceTimeout: 30 * time.Second,
	}
	for _, p := range protocols {
		req.Protocols = append(req.Protocols, Protocol{Name: p, Metadata: subscription("t")})
	}
	return req
}

// subscription encodes a consumer protocol v0 subscription.
func subscription(topics ...string) []byte {
	b := []byte{0, 0, 0, 0, 0, byte(len(topics))}
	for _, t := range topics {
		b = append(b, 0, byte(len(t)))
		b = append(b, t...)
	}
	return append(b, 0, 0, 0, 0) // empty user data
}

func (h *harness) join(req JoinRequest) *joinCall {
	j := &joinCall{}
	h.do(func(now time.Time) {
		h.c.join(now, req, func(r JoinResult) {
			j.calls++
			if j.calls > 1 {
				h.t.Errorf("JoinGroup of %q answered twice", req.MemberID)
			}
			j.done, j.res = true, r
		})
	})
	return j
}

func (h *harness) sync(req SyncRequest) *syncCall {
	s := &syncCall{}
	h.do(func(now time.Time) {
		h.c.sync(now, req, func(r SyncResult) {
			s.calls++
			if s.calls > 1 {
				h.t.Errorf("SyncGroup of %q answered twice", req.MemberID)
			}
			s.done, s.res = true, r
		})
	})
	return s
}

func (h *harness) heartbeat(memberID string, gen int32) error {
	var err error
	h.do(func(now time.Time) {
		err = h.c.heartbeat(now, HeartbeatRequest{Group: "g", MemberID: memberID, Generation: gen})
	})
	return err
}

func (h *harness) commit(req CommitRequest) []error {
	var errs []error
	h.do(func(now time.Time) { errs = h.c.commit(now, req) })
	return errs
}

func (h *harness) leave(members ...LeaveMember) ([]error, error) {
	var (
		errs []error
		gerr error
	)
	h.do(func(now time.Time) { errs, gerr = h.c.leave(now, "g", members) })
	return errs, gerr
}

func (h *harness) group() *group { return h.c.groups["g"] }

func (h *harness) state() State {
	if g := h.group(); g != nil {
		return g.state
	}
	return Dead
}

func (h *harness) wantState(want State) {
	h.t.Helper()
	if got := h.state(); got != want {
		h.t.Fatalf("state %s, want %s", got, want)
	}
}

// joinNew does the two-step join of a new member and returns its id and
// the parked second JoinGroup.
func (h *harness) joinNew(protocols ...string) (string, *joinCall) {
	h.t.Helper()
	req := joinReq("", protocols...)
	req.RequireKnownMemberID = true
	first := h.join(req).get(h.t)
	if first.Err != ErrMemberIDRequired || first.MemberID == "" {
		h.t.Fatalf("first join: %+v, want MEMBER_ID_REQUIRED with an id", first)
	}
	req.MemberID = first.MemberID
	return first.MemberID, h.join(req)
}

// stableGroup makes a stable group of n members (first is the leader)
// and returns the member ids and the generation.
func (h *harness) stableGroup(n int) ([]string, int32) {
	h.t.Helper()
	var (
		ids   []string
		joins []*joinCall
	)
	for i := 0; i < n; i++ {
		id, j := h.joinNew()
		ids = append(ids, id)
		joins = append(joins, j)
		if i == 0 {
			// The first member's join phase completes at once (delay 0);
			// the others trigger rebalances that need everyone.
			continue
		}
		for k := 0; k < i; k++ {
			if joins[k].done {
				h.rejoin(ids[k], &joins[k])
			}
		}
	}
	gen := joins[0].get(h.t).Generation
	for _, j := range joins {
		if r := j.get(h.t); r.Err != nil || r.Generation != gen {
			h.t.Fatalf("join result %+v, want generation %d", r, gen)
		}
	}
	h.syncAll(ids, gen)
	h.wantState(Stable)
	return ids, gen
}

func (h *harness) rejoin(id string, j **joinCall) {
	*j = h.join(joinReq(id))
}

// syncAll syncs followers then the leader (ids[0] must be the leader) with
// an assignment naming each member.
func (h *harness) syncAll(ids []string, gen int32) {
	h.t.Helper()
	leader := h.group().leader
	var calls []*syncCall
	for _, id := range ids {
		if id != leader {
			calls = append(calls, h.sync(SyncRequest{Group: "g", MemberID: id, Generation: gen}))
		}
	}
	assign := map[string][]byte{}
	for _, id := range ids {
		assign[id] = []byte("assigned-" + id)
	}
	calls = append(calls, h.sync(SyncRequest{Group: "g", MemberID: leader, Generation: gen, Assignments: assign}))
	for _, c := range calls {
		if r := c.get(h.t); r.Err != nil {
			h.t.Fatalf("sync: %v", r.Err)
		}
	}
}
