package server

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
)

// TestGroupTransactSessionInProcess: franz-go's consume-transform-produce
// session against the broker's transaction APIs: every input record is
// turned into one output record inside a transaction that also commits
// the group's offsets; one transaction is aborted and its output never
// reaches a read_committed consumer; the group's committed offset is the
// input's end.
func TestGroupTransactSessionInProcess(t *testing.T) {
	b := startBroker(t, "transaction.state.log.num.partitions=3", "offsets.topic.num.partitions=3")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := b.admin(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "in"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"cleanup.policy": kmsg.StringPtr("compact")}, "out"); err != nil {
		t.Fatal(err)
	}
	const n = 60
	prod := b.client(t, kgo.DefaultProduceTopic("in"))
	for i := 0; i < n; i++ {
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%7)), Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(b.addr),
		kgo.TransactionalID("tx-app"),
		kgo.TransactionTimeout(20*time.Second),
		kgo.ConsumerGroup("tx-group"),
		kgo.ConsumeTopics("in"),
		kgo.DefaultProduceTopic("out"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	seen, round, aborted := 0, 0, 0
	for seen < n && ctx.Err() == nil {
		fs := sess.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		if fs.NumRecords() == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		round++
		abort := round == 1
		var produced int
		fs.EachRecord(func(r *kgo.Record) {
			out := &kgo.Record{Key: r.Key, Value: []byte("out-" + string(r.Value))}
			if abort {
				out.Value = []byte("aborted-" + string(r.Value))
			}
			if err := sess.ProduceSync(ctx, out).FirstErr(); err != nil {
				t.Fatal(err)
			}
			produced++
		})
		committed, err := sess.End(ctx, kgo.TransactionEndTry(!abort))
		if err != nil {
			t.Fatal(err)
		}
		if abort {
			aborted = produced
			continue // the session rewinds to the committed offsets
		}
		if !committed {
			t.Fatal("the commit was not committed")
		}
		seen += produced
	}
	if aborted == 0 {
		t.Fatal("no transaction was aborted")
	}
	// The output under read_committed: each input exactly once, nothing aborted.
	cons := b.client(t, kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]int{}
	total := 0
	for total < n && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			got[string(r.Value)]++
			total++
		})
	}
	for i := 0; i < n; i++ {
		if c := got["out-"+strconv.Itoa(i)]; c != 1 {
			t.Fatalf("input %d seen %d times in the output: %v", i, c, got)
		}
	}
	if total != n {
		t.Fatalf("%d output records, want %d: %v", total, n, got)
	}
	// The group's offsets are the input's end.
	offs, err := adm.FetchOffsets(ctx, "tx-group")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != n {
		t.Fatalf("committed offsets sum to %d, want %d", sum, n)
	}
	// DescribeTransactions and ListTransactions see the id.
	dt, err := adm.DescribeTransactions(ctx, "tx-app")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := dt["tx-app"]; !ok || d.Err != nil || d.ProducerID < 0 {
		t.Fatalf("DescribeTransactions: %+v", dt)
	}
	lt, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(lt.TransactionalIDs()) != 1 {
		t.Fatalf("ListTransactions: %+v", lt)
	}
	dp, err := adm.DescribeProducers(ctx, kadm.TopicsSet{"out": {0: {}, 1: {}}})
	if err != nil {
		t.Fatal(err)
	}
	producers := 0
	dp.EachProducer(func(kadm.DescribedProducer) { producers++ })
	if producers == 0 {
		t.Fatalf("DescribeProducers: none on out")
	}

}

// TestInitProducerIDIdempotentNoBump: InitProducerId v3+ without a
// transactional id never bumps the epoch of the id it names (that would
// let any client fence another idempotent producer): it hands out a new
// id at epoch 0, as Kafka does; an id without an epoch is INVALID_REQUEST.
func TestInitProducerIDIdempotentNoBump(t *testing.T) {
	b := startBroker(t)
	c := b.dial(t)
	init := func(corr int32, pid int64, epoch int16) *kmsg.InitProducerIDResponse {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version, req.ProducerID, req.ProducerEpoch = 4, pid, epoch
		c.send(req, corr)
		return c.recv(req, corr).(*kmsg.InitProducerIDResponse)
	}
	victim := init(1, -1, -1)
	if victim.ErrorCode != 0 || victim.ProducerEpoch != 0 {
		t.Fatalf("first InitProducerId: %+v", victim)
	}
	other := init(2, victim.ProducerID, victim.ProducerEpoch)
	if other.ErrorCode != 0 || other.ProducerID == victim.ProducerID || other.ProducerEpoch != 0 {
		t.Fatalf("InitProducerId naming another producer's id: id %d epoch %d error %d, want a new id at epoch 0",
			other.ProducerID, other.ProducerEpoch, other.ErrorCode)
	}
	if r := init(3, victim.ProducerID, -1); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("an id without an epoch: error %d, want INVALID_REQUEST", r.ErrorCode)
	}
}

// TestTxnOffsetCommitAppliedAtMarker drives the transaction APIs with raw
// requests: a TxnOffsetCommit is invisible to OffsetFetch (and
// UNSTABLE_OFFSET_COMMIT under require_stable) until EndTxn's marker
// reaches __consumer_offsets; an abort drops it; a commit applies it, also
// when the broker restarted in between (the pending commit is replayed
// from the log).
func TestTxnOffsetCommitAppliedAtMarker(t *testing.T) {
	dir := t.TempDir()
	props := []string{"transaction.state.log.num.partitions=2", "offsets.topic.num.partitions=2"}
	b := startBrokerIn(t, dir, props...)
	ctx := ctxT(t)
	if _, err := b.admin(t).CreateTopic(ctx, 1, 1, nil, "in"); err != nil {
		t.Fatal(err)
	}
	do := func(b *testBroker, req kmsg.Request) kmsg.Response {
		t.Helper()
		for i := 0; ; i++ {
			resp, err := b.client(t).Request(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			// Retry while the coordinator finishes the previous step.
			if e, ok := resp.(*kmsg.AddOffsetsToTxnResponse); ok && e.ErrorCode == kerr.ConcurrentTransactions.Code && i < 200 {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return resp
		}
	}
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionalID, init.TransactionTimeoutMillis = kmsg.StringPtr("offsets-app"), 30000
	ir := do(b, init).(*kmsg.InitProducerIDResponse)
	if ir.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v", kerr.ErrorForCode(ir.ErrorCode))
	}
	step := func(b *testBroker, offset int64, commit, restart bool) *testBroker {
		t.Helper()
		ao := kmsg.NewPtrAddOffsetsToTxnRequest()
		ao.TransactionalID, ao.ProducerID, ao.ProducerEpoch, ao.Group = "offsets-app", ir.ProducerID, ir.ProducerEpoch, "g"
		if code := do(b, ao).(*kmsg.AddOffsetsToTxnResponse).ErrorCode; code != 0 {
			t.Fatalf("AddOffsetsToTxn: %v", kerr.ErrorForCode(code))
		}
		tc := kmsg.NewPtrTxnOffsetCommitRequest()
		tc.TransactionalID, tc.Group, tc.ProducerID, tc.ProducerEpoch = "offsets-app", "g", ir.ProducerID, ir.ProducerEpoch
		tc.Generation = -1
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "in"
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Offset, rp.LeaderEpoch = offset, -1
		rt.Partitions = append(rt.Partitions, rp)
		tc.Topics = append(tc.Topics, rt)
		if code := do(b, tc).(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("TxnOffsetCommit: %v", kerr.ErrorForCode(code))
		}
		if got, code := fetchOffset(t, b, true); code != kerr.UnstableOffsetCommit.Code || got != -1 {
			t.Fatalf("require_stable fetch while pending: offset %d error %v", got, kerr.ErrorForCode(code))
		}
		if restart {
			b.stop(t)
			b = startBrokerIn(t, dir, props...)
			if got, code := fetchOffset(t, b, true); code != kerr.UnstableOffsetCommit.Code {
				t.Fatalf("require_stable fetch while pending, after a restart: offset %d error %v", got, kerr.ErrorForCode(code))
			}
		}
		et := kmsg.NewPtrEndTxnRequest()
		et.TransactionalID, et.ProducerID, et.ProducerEpoch, et.Commit = "offsets-app", ir.ProducerID, ir.ProducerEpoch, commit
		if code := do(b, et).(*kmsg.EndTxnResponse).ErrorCode; code != 0 {
			t.Fatalf("EndTxn: %v", kerr.ErrorForCode(code))
		}
		return b
	}
	waitOffset := func(b *testBroker, want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, code := fetchOffset(t, b, true)
			if code == 0 && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("committed offset %d (error %v), want %d", got, kerr.ErrorForCode(code), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	b = step(b, 10, false, false)
	waitOffset(b, -1) // aborted: dropped
	b = step(b, 20, true, false)
	waitOffset(b, 20)
	b = step(b, 30, false, true)
	waitOffset(b, 20)
	b = step(b, 40, true, true)
	waitOffset(b, 40)
	b.stop(t)
	b = startBrokerIn(t, dir, props...)
	waitOffset(b, 40)
}

// fetchOffset is OffsetFetch v7 of group g, partition in-0.
func fetchOffset(t *testing.T, b *testBroker, requireStable bool) (int64, int16) {
	t.Helper()
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Version, of.Group, of.RequireStable = 7, "g", requireStable
	ft := kmsg.NewOffsetFetchRequestTopic()
	ft.Topic, ft.Partitions = "in", []int32{0}
	of.Topics = append(of.Topics, ft)
	r, err := of.RequestWith(ctxT(t), b.client(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.ErrorCode != 0 {
		return -1, r.ErrorCode
	}
	p := r.Topics[0].Partitions[0]
	return p.Offset, p.ErrorCode
}

// TestTxnTimeoutAndExpiration: a transaction left open past its
// transaction.timeout.ms is aborted by the coordinator at its first check
// past the timeout (the epoch bumped, the partition's last stable offset
// released, nothing visible under read_committed), and an idle
// transactional id is forgotten after transactional.id.expiration.ms. The
// broker runs on a manual clock: the coordinator's timers fire when the
// test moves it, not before.
func TestTxnTimeoutAndExpiration(t *testing.T) {
	clk := clock.NewManual(time.Now())
	const (
		txnTimeout = 500 * time.Millisecond
		interval   = 100 * time.Millisecond // both cleanup intervals
		expiration = 1500 * time.Millisecond
	)
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk}, "transaction.state.log.num.partitions=2",
		"transaction.abort.timed.out.transaction.cleanup.interval.ms=100",
		"transaction.remove.expired.transaction.cleanup.interval.ms=100",
		"transactional.id.expiration.ms=1500")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := b.admin(t).CreateTopic(ctx, 1, 1, nil, "slow"); err != nil {
		t.Fatal(err)
	}
	advance := func(d time.Duration) {
		t.Helper()
		clk.Advance(d)
		if !clk.AwaitCallbacks(10 * time.Second) {
			t.Fatal("the coordinator's timer callbacks did not return")
		}
	}
	prod := b.client(t, kgo.TransactionalID("slow-app"), kgo.DefaultProduceTopic("slow"), kgo.TransactionTimeout(txnTimeout))
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte("never committed")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	first, err := b.s.txns.Describe("slow-app")
	if err != nil || first.State.String() != "Ongoing" {
		t.Fatalf("after the produce: %+v %v", first, err)
	}
	// The checks run every interval; the one just before the timeout
	// leaves the transaction alone, the next aborts it.
	advance(txnTimeout - time.Millisecond)
	if d, err := b.s.txns.Describe("slow-app"); err != nil || d.State.String() != "Ongoing" {
		t.Fatalf("1 ms before the timeout: %+v %v", d, err)
	}
	advance(interval)
	// Aborted by the coordinator: CompleteAbort at a bumped epoch once the
	// markers are written.
	l := b.s.topic("slow").parts[0].log
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := b.s.txns.Describe("slow-app")
		if err == nil && d.State.String() == "CompleteAbort" && d.ProducerEpoch > first.ProducerEpoch && l.LastStableOffset() == l.LogEndOffset() {
			break
		}
		if d.State.String() == "Ongoing" || time.Now().After(deadline) {
			t.Fatalf("the timed-out transaction was not aborted: %+v %v, LSO %d LEO %d", d, err, l.LastStableOffset(), l.LogEndOffset())
		}
		time.Sleep(time.Millisecond) // bounded poll for the markers to be written
	}
	// The client's commit fails: its transaction is gone.
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("committing a transaction the coordinator aborted succeeded")
	}
	// A record written after the abort: a read_committed consumer reads in
	// offset order, so once it has it, it has passed the aborted one.
	if err := b.client(t, kgo.DefaultProduceTopic("slow")).ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := b.client(t, kgo.ConsumeTopics("slow"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var read []string
	for len(read) == 0 || read[len(read)-1] != "after" {
		fs := cons.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("read_committed after reading %q: %v", read, err)
		}
		fs.EachRecord(func(r *kgo.Record) { read = append(read, string(r.Value)) })
	}
	if len(read) != 1 {
		t.Fatalf("read_committed read %q: the aborted transaction's record is visible", read)
	}
	// Idle, the id expires once the expiration has passed since its last
	// update (the abort), at the next check.
	prod.Close()
	advance(expiration - interval)
	if _, err := b.s.txns.Describe("slow-app"); err != nil {
		t.Fatalf("expired before transactional.id.expiration.ms: %v", err)
	}
	advance(2 * interval)
	if _, err := b.s.txns.Describe("slow-app"); err == nil {
		t.Fatal("the idle transactional id did not expire")
	}
}

// TestTxnOffsetCommitOutsideTransaction: a TxnOffsetCommit whose
// transaction did not add the group's offsets (no AddOffsetsToTxn), or
// from an unknown producer, is refused (INVALID_TXN_STATE,
// INVALID_PRODUCER_ID_MAPPING) and leaves nothing pending: before, it was
// accepted and its offsets stayed pending forever (no marker would ever
// end them), so OffsetFetch with require_stable answered
// UNSTABLE_OFFSET_COMMIT for the partition indefinitely.
func TestTxnOffsetCommitOutsideTransaction(t *testing.T) {
	b := startBroker(t, "transaction.state.log.num.partitions=2", "offsets.topic.num.partitions=2")
	ctx := ctxT(t)
	if _, err := b.admin(t).CreateTopic(ctx, 1, 1, nil, "in"); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t)
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionalID, init.TransactionTimeoutMillis = kmsg.StringPtr("lonely"), 30000
	ir, err := init.RequestWith(ctx, cl)
	if err != nil || ir.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v %v", err, kerr.ErrorForCode(ir.ErrorCode))
	}
	commit := func(pid int64) int16 {
		tc := kmsg.NewPtrTxnOffsetCommitRequest()
		tc.Version = 3
		tc.TransactionalID, tc.Group, tc.ProducerID, tc.ProducerEpoch, tc.Generation = "lonely", "g", pid, ir.ProducerEpoch, -1
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic = "in"
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Offset, rp.LeaderEpoch = 5, -1
		rt.Partitions = append(rt.Partitions, rp)
		tc.Topics = append(tc.Topics, rt)
		resp, err := tc.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if code := commit(ir.ProducerID); code != kerr.InvalidTxnState.Code {
		t.Fatalf("TxnOffsetCommit without AddOffsetsToTxn: %v, want INVALID_TXN_STATE", kerr.ErrorForCode(code))
	}
	if code := commit(ir.ProducerID + 1000); code != kerr.InvalidProducerIDMapping.Code {
		t.Fatalf("TxnOffsetCommit of another producer id: %v, want INVALID_PRODUCER_ID_MAPPING", kerr.ErrorForCode(code))
	}
	if got, code := fetchOffset(t, b, true); code != 0 || got != -1 {
		t.Fatalf("require_stable fetch after the refused commits: offset %d error %v, want -1 and no error", got, kerr.ErrorForCode(code))
	}
}
