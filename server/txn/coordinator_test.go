package txn

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

func TestInitProducerIDBumpsEpoch(t *testing.T) {
	h := newHarness(t, testConfig())
	first := mustPE(t, h.init("app", 60000, nil))
	if first.Epoch != 0 {
		t.Fatalf("first epoch %d, want 0", first.Epoch)
	}
	second := mustPE(t, h.init("app", 60000, nil))
	if second.ProducerID != first.ProducerID || second.Epoch != 1 {
		t.Fatalf("second init %+v, want id %d epoch 1", second, first.ProducerID)
	}
	// KIP-360: the current producer recovers with its id and epoch.
	third := mustPE(t, h.init("app", 60000, &second))
	if third != (ProducerIDEpoch{first.ProducerID, 2}) {
		t.Fatalf("bump with expected epoch: %+v", third)
	}
	// The answer was lost and the producer retries with the epoch it had:
	// the same epoch again.
	retry := mustPE(t, h.init("app", 60000, &second))
	if retry != third {
		t.Fatalf("retried bump: %+v, want %+v", retry, third)
	}
	// A zombie with an older epoch is fenced, so is a foreign producer id.
	if r := h.init("app", 60000, &first); !errors.Is(r.Err, ErrProducerFenced) {
		t.Fatalf("zombie epoch: %v", r.Err)
	}
	if r := h.init("app", 60000, &ProducerIDEpoch{7, 3}); !errors.Is(r.Err, ErrProducerFenced) {
		t.Fatalf("foreign producer id: %v", r.Err)
	}
	if r := h.init("app", 0, nil); !errors.Is(r.Err, ErrInvalidTransactionTimeout) {
		t.Fatalf("timeout 0: %v", r.Err)
	}
	if r := h.init("app", int32((16 * time.Minute).Milliseconds()), nil); !errors.Is(r.Err, ErrInvalidTransactionTimeout) {
		t.Fatalf("timeout over max: %v", r.Err)
	}
	if r := h.init("", 1000, nil); !errors.Is(r.Err, ErrInvalidRequest) {
		t.Fatalf("empty id: %v", r.Err)
	}
}

func TestInitProducerIDRotatesExhaustedEpoch(t *testing.T) {
	h := newHarness(t, testConfig())
	pe := mustPE(t, h.init("app", 60000, nil))
	s := h.co.shardFor("app")
	s.mu.Lock()
	s.core.txns["app"].epoch = math.MaxInt16 - 1
	s.mu.Unlock()
	old := ProducerIDEpoch{pe.ProducerID, math.MaxInt16 - 1}
	next := mustPE(t, h.init("app", 60000, &old))
	if next.ProducerID == pe.ProducerID || next.Epoch != 0 {
		t.Fatalf("exhausted epoch: got %+v, want a new producer id at epoch 0", next)
	}
	// The rotation's answer was lost: the retry with the old id and its
	// exhausted epoch is not fenced.
	if r := h.init("app", 60000, &old); r.Err != nil {
		t.Fatalf("retried rotation: %v", r.Err)
	}
}

func TestCommitWritesMarkersThenCompletes(t *testing.T) {
	h := newHarness(t, testConfig())
	pe := mustPE(t, h.init("app", 60000, nil))
	if err := h.add("app", pe, tp("a", 0), tp("b", 1)); err != nil {
		t.Fatal(err)
	}
	var offErr error
	h.co.AddOffsets("app", pe.ProducerID, pe.Epoch, "grp", func(err error) { offErr = err })
	if offErr != nil {
		t.Fatal(offErr)
	}
	if s := h.state("app"); s != Ongoing {
		t.Fatalf("state %s", s)
	}
	// Adding a partition already in the transaction writes nothing.
	n := len(h.store.records(h.co.PartitionFor("app")))
	if err := h.add("app", pe, tp("a", 0)); err != nil || len(h.store.records(h.co.PartitionFor("app"))) != n {
		t.Fatalf("re-adding a partition: err %v, records %d → %d", err, n, len(h.store.records(h.co.PartitionFor("app"))))
	}
	if err := h.end("app", pe, true); err != nil {
		t.Fatal(err)
	}
	if s := h.state("app"); s != PrepareCommit {
		t.Fatalf("after EndTxn: %s", s)
	}
	// Other requests wait while the markers are written
	// (AddPartitions: TestAddPartitionsWaitsForCompletion).
	if r := h.init("app", 60000, nil); !errors.Is(r.Err, ErrConcurrentTransactions) {
		t.Fatalf("InitProducerId during PrepareCommit: %v", r.Err)
	}
	if err := h.end("app", pe, true); !errors.Is(err, ErrConcurrentTransactions) {
		t.Fatalf("EndTxn retry during PrepareCommit: %v", err)
	}
	if err := h.end("app", pe, false); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("abort during PrepareCommit: %v", err)
	}
	sent := h.deliver()
	if len(sent) != 1 || !sent[0].Commit || sent[0].ProducerID != pe.ProducerID || sent[0].ProducerEpoch != pe.Epoch {
		t.Fatalf("markers %+v", sent)
	}
	want := []TopicPartition{tp("__consumer_offsets", PartitionFor("grp", 50)), tp("a", 0), tp("b", 1)}
	if !slices.Equal(sent[0].Partitions, want) {
		t.Fatalf("marker partitions %v, want %v", sent[0].Partitions, want)
	}
	if s := h.state("app"); s != CompleteCommit {
		t.Fatalf("after markers: %s", s)
	}
	if err := h.end("app", pe, true); err != nil {
		t.Fatalf("EndTxn retry after completion: %v", err)
	}
	// The log holds Empty, Ongoing (two adds), PrepareCommit, CompleteCommit.
	var states []State
	for _, r := range h.store.records(h.co.PartitionFor("app")) {
		v, err := decodeValue(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, v.state)
	}
	if !slices.Equal(states, []State{Empty, Ongoing, Ongoing, PrepareCommit, CompleteCommit}) {
		t.Fatalf("logged states %v", states)
	}
}

func TestEndTxnChecks(t *testing.T) {
	h := newHarness(t, testConfig())
	pe := mustPE(t, h.init("app", 60000, nil))
	if err := h.end("app", pe, true); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("commit in Empty: %v", err)
	}
	if err := h.end("nope", pe, true); !errors.Is(err, ErrInvalidProducerIDMapping) {
		t.Fatalf("unknown id: %v", err)
	}
	if err := h.end("app", ProducerIDEpoch{pe.ProducerID + 1, 0}, true); !errors.Is(err, ErrInvalidProducerIDMapping) {
		t.Fatalf("other producer id: %v", err)
	}
	if err := h.add("app", ProducerIDEpoch{pe.ProducerID, pe.Epoch + 1}, tp("a", 0)); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("AddPartitions with another epoch: %v", err)
	}
	if err := h.add("nope", pe, tp("a", 0)); !errors.Is(err, ErrInvalidProducerIDMapping) {
		t.Fatalf("AddPartitions of an unknown id: %v", err)
	}
}

// A second instance with the same transactional id fences the first: its
// InitProducerId aborts the ongoing transaction under a bumped epoch and
// asks to retry; the retry gets the epoch after that.
func TestZombieFencing(t *testing.T) {
	h := newHarness(t, testConfig())
	zombie := mustPE(t, h.init("app", 60000, nil))
	if err := h.add("app", zombie, tp("a", 0)); err != nil {
		t.Fatal(err)
	}
	if r := h.init("app", 60000, nil); !errors.Is(r.Err, ErrConcurrentTransactions) {
		t.Fatalf("init over an ongoing transaction: %v", r.Err)
	}
	// The zombie is fenced at once, before the markers are written.
	if err := h.add("app", zombie, tp("b", 0)); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("zombie AddPartitions: %v", err)
	}
	if err := h.end("app", zombie, true); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("zombie EndTxn: %v", err)
	}
	sent := h.deliver()
	if len(sent) != 1 || sent[0].Commit || sent[0].ProducerEpoch != zombie.Epoch+1 {
		t.Fatalf("abort markers %+v", sent)
	}
	if s := h.state("app"); s != CompleteAbort {
		t.Fatalf("state %s", s)
	}
	next := mustPE(t, h.init("app", 60000, nil))
	if next != (ProducerIDEpoch{zombie.ProducerID, zombie.Epoch + 2}) {
		t.Fatalf("new instance %+v", next)
	}
	if err := h.end("app", zombie, false); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("zombie abort: %v", err)
	}
}

func TestTimeoutAbortsTransaction(t *testing.T) {
	cfg := testConfig()
	h := newHarness(t, cfg)
	pe := mustPE(t, h.init("app", 5000, nil))
	if err := h.add("app", pe, tp("a", 0)); err != nil {
		t.Fatal(err)
	}
	h.advance(4 * time.Second)
	if s := h.state("app"); s != Ongoing {
		t.Fatalf("before the timeout: %s", s)
	}
	h.advance(cfg.AbortTimedOutInterval)
	if s := h.state("app"); s != PrepareAbort {
		t.Fatalf("after the timeout: %s", s)
	}
	sent := h.deliver()
	if len(sent) != 1 || sent[0].Commit || sent[0].ProducerEpoch != pe.Epoch+1 {
		t.Fatalf("markers %+v", sent)
	}
	if err := h.end("app", pe, true); !errors.Is(err, ErrProducerFenced) {
		t.Fatalf("commit after the timeout: %v", err)
	}
	// KIP-360: the timed-out producer recovers with its id (no new instance).
	bumped := mustPE(t, h.init("app", 5000, &ProducerIDEpoch{pe.ProducerID, pe.Epoch + 1}))
	if bumped != (ProducerIDEpoch{pe.ProducerID, pe.Epoch + 2}) {
		t.Fatalf("recovery: %+v", bumped)
	}
}

func TestTransactionalIDExpires(t *testing.T) {
	cfg := testConfig()
	cfg.IDExpiration = time.Minute
	cfg.RemoveExpiredInterval = time.Minute
	h := newHarness(t, cfg)
	mustPE(t, h.init("idle", 60000, nil))
	busy := mustPE(t, h.init("busy", 900000, nil))
	if err := h.add("busy", busy, tp("a", 0)); err != nil {
		t.Fatal(err)
	}
	h.advance(cfg.IDExpiration + cfg.RemoveExpiredInterval)
	if _, err := h.co.Describe("idle"); !errors.Is(err, ErrTransactionalIDNotFound) {
		t.Fatalf("expired id: %v", err)
	}
	if s := h.state("busy"); s != Ongoing {
		t.Fatalf("an id with a transaction in progress expired: %s", s)
	}
	recs := h.store.records(h.co.PartitionFor("idle"))
	if last := recs[len(recs)-1]; last.Value != nil {
		t.Fatal("no tombstone written for the expired id")
	}
	// A restart does not bring it back.
	h.co.Close()
	h.start(cfg)
	if _, err := h.co.Describe("idle"); !errors.Is(err, ErrTransactionalIDNotFound) {
		t.Fatalf("expired id after reload: %v", err)
	}
}

func TestMarkerErrors(t *testing.T) {
	cfg := testConfig()
	h := newHarness(t, cfg)
	pe := mustPE(t, h.init("app", 60000, nil))
	if err := h.add("app", pe, tp("a", 0), tp("gone", 0), tp("slow", 0)); err != nil {
		t.Fatal(err)
	}
	slowFails := 2
	h.write = func(req *MarkerRequest, p TopicPartition) error {
		switch p.Topic {
		case "gone":
			return ErrMarkerPartitionGone
		case "slow":
			if slowFails > 0 {
				slowFails--
				return errors.New("no leader")
			}
		}
		return nil
	}
	if err := h.end("app", pe, true); err != nil {
		t.Fatal(err)
	}
	sent := h.deliver()
	if len(sent) != 1 || h.state("app") != PrepareCommit {
		t.Fatalf("first round %d requests, state %s", len(sent), h.state("app"))
	}
	for i := 0; i < 2; i++ {
		h.advance(cfg.MarkerRetryBackoff)
		sent = h.deliver()
		if len(sent) != 1 || !slices.Equal(sent[0].Partitions, []TopicPartition{tp("slow", 0)}) {
			t.Fatalf("retry %d: %+v", i, sent)
		}
	}
	if s := h.state("app"); s != CompleteCommit {
		t.Fatalf("state %s", s)
	}

	// A fenced marker stops this coordinator driving the transaction.
	pe = mustPE(t, h.init("app", 60000, nil))
	if err := h.add("app", pe, tp("a", 0)); err != nil {
		t.Fatal(err)
	}
	h.write = func(*MarkerRequest, TopicPartition) error { return ErrMarkerFenced }
	if err := h.end("app", pe, false); err != nil {
		t.Fatal(err)
	}
	h.deliver()
	h.advance(time.Minute)
	if sent := h.deliver(); len(sent) != 0 || h.state("app") != PrepareAbort {
		t.Fatalf("after a fenced marker: %d requests, state %s", len(sent), h.state("app"))
	}
}

// Persistence before action: a write that does not become durable is not
// acted on — the client gets an error, the state is as before, no marker
// is sent.
func TestFailedWriteIsNotActedOn(t *testing.T) {
	h := newHarness(t, testConfig())
	pe := mustPE(t, h.init("app", 60000, nil))
	if err := h.add("app", pe, tp("a", 0)); err != nil {
		t.Fatal(err)
	}
	h.store.syncErr = errDisk
	if err := h.end("app", pe, true); !errors.Is(err, ErrCoordinatorNotAvailable) {
		t.Fatalf("EndTxn with a failing log: %v", err)
	}
	if s := h.state("app"); s != Ongoing {
		t.Fatalf("state %s", s)
	}
	if sent := h.deliver(); len(sent) != 0 {
		t.Fatalf("markers sent for a transition not durable: %+v", sent)
	}
	h.store.syncErr = nil
	h.store.appendErr = ErrNotCoordinator
	if err := h.end("app", pe, true); !errors.Is(err, ErrNotCoordinator) {
		t.Fatalf("EndTxn when the store is not the leader: %v", err)
	}
	h.store.appendErr = nil
	if err := h.end("app", pe, true); err != nil {
		t.Fatal(err)
	}
	h.deliver()
	if s := h.state("app"); s != CompleteCommit {
		t.Fatalf("state %s", s)
	}
}

// A failed fence write leaves the epoch bumped in memory (never handed
// out) and the next fence does not bump it again.
func TestFailedFenceDoesNotBumpTwice(t *testing.T) {
	h := newHarness(t, testConfig())
	pe := mustPE(t, h.init("app", 60000, nil))
	if err := h.add("app", pe, tp("a", 0)); err != nil {
		t.Fatal(err)
	}
	h.store.syncErr = errDisk
	if r := h.init("app", 60000, nil); !errors.Is(r.Err, ErrCoordinatorNotAvailable) {
		t.Fatalf("fence with a failing log: %v", r.Err)
	}
	h.store.syncErr = nil
	if r := h.init("app", 60000, nil); !errors.Is(r.Err, ErrConcurrentTransactions) {
		t.Fatalf("second fence: %v", r.Err)
	}
	sent := h.deliver()
	if len(sent) != 1 || sent[0].ProducerEpoch != pe.Epoch+1 {
		t.Fatalf("abort markers %+v", sent)
	}
}

func TestLoadResumesPreparedTransactions(t *testing.T) {
	cfg := testConfig()
	h := newHarness(t, cfg)
	pe := mustPE(t, h.init("app", 60000, nil))
	if err := h.add("app", pe, tp("a", 0), tp("b", 0)); err != nil {
		t.Fatal(err)
	}
	if err := h.end("app", pe, true); err != nil {
		t.Fatal(err)
	}
	h.markers.take() // the broker dies before the markers go out
	h.co.Close()
	h.start(cfg)
	if s := h.state("app"); s != PrepareCommit {
		t.Fatalf("reloaded state %s", s)
	}
	sent := h.deliver()
	if len(sent) != 1 || !sent[0].Commit || len(sent[0].Partitions) != 2 {
		t.Fatalf("resumed markers %+v", sent)
	}
	if s := h.state("app"); s != CompleteCommit {
		t.Fatalf("state %s", s)
	}
}

func TestDescribeAndList(t *testing.T) {
	h := newHarness(t, testConfig())
	a := mustPE(t, h.init("a", 60000, nil))
	b := mustPE(t, h.init("b", 60000, nil))
	if err := h.add("a", a, tp("x", 1)); err != nil {
		t.Fatal(err)
	}
	d, err := h.co.Describe("a")
	if err != nil || d.State != Ongoing || d.ProducerID != a.ProducerID || d.TimeoutMs != 60000 || d.StartMs != t0.UnixMilli() ||
		!slices.Equal(d.Partitions, []TopicPartition{tp("x", 1)}) {
		t.Fatalf("describe: %+v %v", d, err)
	}
	if _, err := h.co.Describe("zz"); !errors.Is(err, ErrTransactionalIDNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	all, err := h.co.List(ListFilter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %+v %v", all, err)
	}
	ongoing, _ := h.co.List(ListFilter{States: []State{Ongoing}})
	if len(ongoing) != 1 || ongoing[0].TransactionalID != "a" {
		t.Fatalf("ongoing: %+v", ongoing)
	}
	byPID, _ := h.co.List(ListFilter{ProducerIDs: []int64{b.ProducerID}})
	if len(byPID) != 1 || byPID[0].TransactionalID != "b" {
		t.Fatalf("by producer id: %+v", byPID)
	}
	h.clock.Advance(2 * time.Second)
	if long, _ := h.co.List(ListFilter{MinDurationMs: 1000}); len(long) != 1 {
		t.Fatalf("by duration: %+v", long)
	}
	if long, _ := h.co.List(ListFilter{MinDurationMs: 3000}); len(long) != 0 {
		t.Fatalf("by duration: %+v", long)
	}
}

func TestNotServed(t *testing.T) {
	h := newHarness(t, testConfig())
	p := h.co.PartitionFor("app")
	h.co.Unload(p)
	if r := h.init("app", 1000, nil); !errors.Is(r.Err, ErrNotCoordinator) {
		t.Fatalf("unloaded: %v", r.Err)
	}
	if err := h.co.Load(p, 3); err != nil {
		t.Fatal(err)
	}
	pe := mustPE(t, h.init("app", 1000, nil))
	if err := h.add("app", pe, tp("a", 0)); err != nil {
		t.Fatal(err)
	}
	if err := h.end("app", pe, true); err != nil {
		t.Fatal(err)
	}
	if sent := h.deliver(); len(sent) != 1 || sent[0].CoordinatorEpoch != 3 {
		t.Fatalf("markers carry the coordinator epoch: %+v", sent)
	}
	h.co.Close()
	if r := h.init("app", 1000, nil); !errors.Is(r.Err, ErrCoordinatorNotAvailable) {
		t.Fatalf("closed: %v", r.Err)
	}
}

func TestPartitionFor(t *testing.T) {
	// Java: "my-txn".hashCode() = -1061187895 → abs mod 50 = 45.
	for _, c := range []struct {
		id   string
		n    int32
		want int32
	}{{"my-txn", 50, 45}, {"transactional-id-1", 50, 41}, {"", 50, 0}, {"a", 50, 47}} {
		if got := PartitionFor(c.id, c.n); got != c.want {
			t.Errorf("PartitionFor(%q, %d) = %d, want %d", c.id, c.n, got, c.want)
		}
	}
}

// TestAddPartitionsWaitsForCompletion: an AddPartitionsToTxn that arrives
// while the previous transaction's markers are being written (the client
// began its next transaction as soon as EndTxn answered) is not refused
// with CONCURRENT_TRANSACTIONS, which made a client back off 20 ms per
// transaction: it waits and runs once the transaction completes. One whose
// wait outlasts completionWait (the markers are not taken) gets
// CONCURRENT_TRANSACTIONS; one waiting when the partition is unloaded gets
// NOT_COORDINATOR.
func TestAddPartitionsWaitsForCompletion(t *testing.T) {
	h := newHarness(t, testConfig())
	pe := mustPE(t, h.init("app", 60000, nil))
	var (
		res    []error
		called int
	)
	addAsync := func(tps ...TopicPartition) {
		h.co.AddPartitions("app", pe.ProducerID, pe.Epoch, tps, func(err error) { res = append(res, err); called++ })
	}
	// Completes: the waiting request runs and starts the next transaction.
	if err := h.add("app", pe, tp("a", 0)); err != nil {
		t.Fatal(err)
	}
	if err := h.end("app", pe, true); err != nil {
		t.Fatal(err)
	}
	addAsync(tp("b", 0))
	if called != 0 {
		t.Fatalf("AddPartitions during PrepareCommit answered at once: %v", res)
	}
	h.deliver()
	if called != 1 || res[0] != nil {
		t.Fatalf("AddPartitions after the completion: answered %d times, %v", called, res)
	}
	if d, err := h.co.Describe("app"); err != nil || d.State != Ongoing || len(d.Partitions) != 1 || d.Partitions[0] != tp("b", 0) {
		t.Fatalf("the next transaction: %+v %v", d, err)
	}
	// Not completed in time: CONCURRENT_TRANSACTIONS, as before.
	if err := h.end("app", pe, true); err != nil {
		t.Fatal(err)
	}
	res, called = nil, 0
	addAsync(tp("c", 0))
	h.advance(completionWait - time.Millisecond)
	if called != 0 {
		t.Fatalf("answered before the wait was over: %v", res)
	}
	h.advance(time.Millisecond)
	if called != 1 || !errors.Is(res[0], ErrConcurrentTransactions) {
		t.Fatalf("after the wait: answered %d times, %v", called, res)
	}
	// Unloaded while waiting: NOT_COORDINATOR.
	res, called = nil, 0
	addAsync(tp("c", 0))
	h.co.Unload(h.co.PartitionFor("app"))
	if called != 1 || !errors.Is(res[0], ErrNotCoordinator) {
		t.Fatalf("after an unload: answered %d times, %v", called, res)
	}
}
