package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// txnBrokerProps keep the transaction machinery small and quick for the
// tests: few coordinator partitions, transactions left open by a killed
// client aborted within seconds.
var txnBrokerProps = []string{
	"transaction.state.log.num.partitions=3",
	"offsets.topic.num.partitions=3",
	"transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
	"group.initial.rebalance.delay.ms=0",
}

func startTxnKvlogd(t *testing.T) *testbroker.Broker {
	t.Helper()
	return testbroker.Start(t, testbroker.Options{Race: true, LogLevel: "warn", Props: txnBrokerProps})
}

// readCommitted waits until no transaction is open (ListTransactions),
// then reads every partition of topic from the start under
// read_committed until a poll brings nothing for two seconds.
func readCommitted(t *testing.T, p *testbroker.Broker, topic string) map[int32][]*kgo.Record {
	t.Helper()
	ctx := testbroker.Context(t, 60*time.Second)
	adm := p.Admin(t)
	for {
		lt, err := adm.ListTransactions(ctx, nil, []string{"Ongoing", "PrepareCommit", "PrepareAbort"})
		if err == nil && len(lt.TransactionalIDs()) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("transactions still open: %v %v", lt, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := map[int32][]*kgo.Record{}
	cl := p.Client(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			return out
		}
		fs.EachRecord(func(r *kgo.Record) { out[r.Partition] = append(out[r.Partition], r) })
	}
	t.Fatalf("reading %s under read_committed: %v", topic, ctx.Err())
	return nil
}

// TestTransactionsExactlyOnceAcrossKills: franz-go's GroupTransactSession
// consumes an input topic and writes one output record per input record
// to a compacted output topic, committing the group's offsets in the same
// transaction (every seventh transaction is aborted on purpose), while the
// broker is SIGKILLed and restarted three times.
// A read_committed consumer of the output then sees every input record's
// effect exactly once, in input order per key. Meanwhile a second
// transactional producer commits and aborts random transactions on a
// checker topic; a Jepsen-style check over its history: no aborted write
// is read, no acknowledged commit is lost, no write is read twice, a
// transaction whose outcome the client never learnt is all or nothing,
// and the offsets of committed writes never change across restarts.
func TestTransactionsExactlyOnceAcrossKills(t *testing.T) {
	p := startTxnKvlogd(t)
	ctx := testbroker.Context(t, 240*time.Second)
	adm := p.Admin(t)
	for _, tc := range []struct {
		name    string
		configs map[string]*string
	}{
		{"in", nil},
		{"out", map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}},
		{"chk", nil},
	} {
		if _, err := adm.CreateTopic(ctx, 3, 1, tc.configs, tc.name); err != nil {
			t.Fatal(err)
		}
	}
	const (
		n    = 600
		keys = 20
	)
	// Input: per key, the values 0, 1, 2, ... in order, in small batches
	// so the session's fetches (FetchMaxBytes) make many transactions.
	prod := p.Client(t, kgo.DefaultProduceTopic("in"))
	for i := 0; i < n; i += 4 {
		var recs []*kgo.Record
		for j := i; j < i+4 && j < n; j++ {
			recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(j%keys)), Value: []byte(strconv.Itoa(j / keys))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	prod.Close()

	var (
		rounds   atomic.Int64 // transactions the session ended
		stop     = make(chan struct{})
		finished = make(chan struct{})
		history  = &txnHistory{done: make(chan struct{})}
		kills    int
	)
	go func() {
		defer close(finished)
		transform(t, p, ctx, n, &rounds)
	}()
	go history.run(p, stop)

	// Three SIGKILLs, each after the session made some progress (while it
	// still runs).
	for kills < 3 {
		want := rounds.Load() + 5
		for rounds.Load() < want {
			select {
			case <-finished:
				want = 0
			case <-time.After(20 * time.Millisecond):
			}
		}
		if want == 0 {
			break
		}
		p.Kill()
		p.Restart()
		kills++
	}
	<-finished
	close(stop)
	history.wait()
	if kills < 3 {
		t.Errorf("the session finished after %d kills, %d rounds: make its transactions smaller", kills, rounds.Load())
	}
	if t.Failed() {
		return
	}

	// Exactly once, in order per key.
	out := readCommitted(t, p, "out")
	perKey := map[string][]int{}
	total := 0
	for _, rs := range out {
		for _, r := range rs {
			v, err := strconv.Atoi(string(r.Value))
			if err != nil {
				t.Fatalf("output record %s=%q at %d-%d", r.Key, r.Value, r.Partition, r.Offset)
			}
			perKey[string(r.Key)] = append(perKey[string(r.Key)], v)
			total++
		}
	}
	for k := 0; k < keys; k++ {
		vs := perKey["k"+strconv.Itoa(k)]
		if len(vs) != n/keys {
			t.Errorf("key k%d: %d output records, want %d (each input exactly once): %v", k, len(vs), n/keys, vs)
			continue
		}
		for i, v := range vs {
			if v != i {
				t.Errorf("key k%d: output %v, want 0..%d in order", k, vs, n/keys-1)
				break
			}
		}
	}
	if total != n {
		t.Errorf("%d output records, want %d", total, n)
	}

	// The checker topic's history, read before and after one more restart.
	before := readCommitted(t, p, "chk")
	history.check(t, before)
	p.Kill()
	p.Restart()
	after := offsetsOf(readCommitted(t, p, "chk"))
	for v, at := range offsetsOf(before) {
		if after[v] != at {
			t.Errorf("committed write %s moved across a restart: %s, then %q", v, at, after[v])
		}
	}
	t.Logf("checker: %d transactions committed, %d aborted, %d of unknown outcome (%d of them visible); %d session rounds, %d kills",
		history.counts[outcomeCommitted], history.counts[outcomeAborted], history.counts[outcomeUnknown], history.unknownVisible, rounds.Load(), kills)
}

// transform is the consume-transform-produce loop: input key/value go to
// the output unchanged, in transactions that also commit the offsets. It
// returns once the group's committed offsets reach the input's end. An
// instance whose End fails (no End error is retryable in franz-go: e.g. its
// transaction outlived its timeout while the broker was down and was
// aborted, fencing it) is replaced by a new one, as an application
// restarts its producer.
func transform(t *testing.T, p *testbroker.Broker, ctx context.Context, n int, rounds *atomic.Int64) {
	for restarts := 0; restarts < 5 && ctx.Err() == nil; restarts++ {
		done, err := transformSession(t, p, ctx, n, rounds)
		if done {
			return
		}
		t.Logf("session ended (%v); starting a new instance", err)
	}
	t.Errorf("the transform did not finish: %v", ctx.Err())
}

func transformSession(t *testing.T, p *testbroker.Broker, ctx context.Context, n int, rounds *atomic.Int64) (bool, error) {
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(p.Addr),
		kgo.TransactionalID("eos-app"),
		kgo.TransactionTimeout(30*time.Second),
		kgo.ConsumerGroup("eos-group"),
		kgo.ConsumeTopics("in"),
		kgo.DefaultProduceTopic("out"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(300), // small rounds: the kills land mid-stream
		kgo.SessionTimeout(10*time.Second),
		kgo.RetryTimeout(60*time.Second),
	)
	if err != nil {
		return false, err
	}
	defer sess.Close()
	adm := p.Admin(t)
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := sess.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			if caughtUp(ctx, adm, n) {
				return true, nil
			}
			continue
		}
		if err := sess.Begin(); err != nil {
			return false, err
		}
		var (
			mu      sync.Mutex
			failed  error
			pending sync.WaitGroup
		)
		fs.EachRecord(func(r *kgo.Record) {
			pending.Add(1)
			sess.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
				pending.Done()
			})
		})
		pending.Wait()
		// A failed produce (the broker died) aborts, and so does every
		// seventh round on purpose. The session then rewinds to the
		// committed offsets.
		abort := failed != nil || rounds.Load()%7 == 3
		if _, err := sess.End(ctx, kgo.TransactionEndTry(!abort)); err != nil {
			return false, err
		}
		rounds.Add(1)
	}
	return false, ctx.Err()
}

// caughtUp reports whether the group's committed offsets of "in" add up
// to n.
func caughtUp(ctx context.Context, adm *kadm.Client, n int) bool {
	offs, err := adm.FetchOffsets(ctx, "eos-group")
	if err != nil {
		return false
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == "in" && o.Err == nil {
			sum += o.At
		}
	})
	return sum == int64(n)
}

type outcome int

const (
	outcomeCommitted outcome = iota
	outcomeAborted
	outcomeUnknown
)

// txnHistory is the checker producer's history: each transaction's
// values and what the client learnt of its outcome.
type txnHistory struct {
	done           chan struct{}
	txns           []txnRecord
	counts         [3]int
	unknownVisible int
}

type txnRecord struct {
	values  []string
	outcome outcome
}

// run writes transactions of 1-5 records to "chk", committing about
// two thirds and aborting the rest, until stop.
func (h *txnHistory) run(p *testbroker.Broker, stop chan struct{}) {
	defer close(h.done)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Addr), kgo.TransactionalID("checker"), kgo.DefaultProduceTopic("chk"),
		kgo.TransactionTimeout(10*time.Second), kgo.RetryTimeout(30*time.Second))
	if err != nil {
		return
	}
	defer cl.Close()
	for i := 0; i < 10000; i++ {
		select {
		case <-stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		tr := txnRecord{outcome: outcomeUnknown}
		if err := cl.BeginTransaction(); err != nil {
			cancel()
			return
		}
		var produceErr error
		for j := 0; j < 1+rng.Intn(5); j++ {
			v := fmt.Sprintf("t%d-%d", i, j)
			tr.values = append(tr.values, v)
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(v), Value: []byte(v)}).FirstErr(); err != nil {
				produceErr = err
				break
			}
		}
		commit := produceErr == nil && rng.Intn(3) > 0
		err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit))
		switch {
		case err == nil && commit:
			tr.outcome = outcomeCommitted
		case err == nil:
			tr.outcome = outcomeAborted
		default:
			// The outcome is unknown to the client: recover with an
			// abort attempt (a no-op once the coordinator decided).
			cl.AbortBufferedRecords(ctx)
			cl.EndTransaction(ctx, kgo.TryAbort)
		}
		cancel()
		h.txns = append(h.txns, tr)
	}
}

func (h *txnHistory) wait() { <-h.done }

// check compares what read_committed returned with the history.
func (h *txnHistory) check(t *testing.T, read map[int32][]*kgo.Record) {
	t.Helper()
	seen := map[string]int{}
	for _, rs := range read {
		for _, r := range rs {
			seen[string(r.Value)]++
		}
	}
	known := map[string]bool{}
	for _, tr := range h.txns {
		h.counts[tr.outcome]++
		visible := 0
		for _, v := range tr.values {
			known[v] = true
			if seen[v] > 1 {
				t.Errorf("duplicate write: %s read %d times", v, seen[v])
			}
			if seen[v] > 0 {
				visible++
			}
		}
		switch tr.outcome {
		case outcomeCommitted:
			if visible != len(tr.values) {
				t.Errorf("lost committed write: transaction %v, %d of its records read", tr.values, visible)
			}
		case outcomeAborted:
			if visible != 0 {
				t.Errorf("aborted read: transaction %v, %d of its records read", tr.values, visible)
			}
		case outcomeUnknown:
			// A transaction cut short by a produce error has fewer values
			// than it wrote at most; it is atomic all the same.
			if visible != 0 && visible != len(tr.values) {
				t.Errorf("non-atomic transaction %v: %d of its records read", tr.values, visible)
			}
			if visible > 0 {
				h.unknownVisible++
			}
		}
	}
	for v := range seen {
		if !known[v] && !strings.HasPrefix(v, "t") {
			t.Errorf("read a value never written: %q", v)
		}
	}
	if h.counts[outcomeCommitted] == 0 || h.counts[outcomeAborted] == 0 {
		t.Errorf("the checker's history has %d commits and %d aborts: not a test", h.counts[outcomeCommitted], h.counts[outcomeAborted])
	}
}

// offsetsOf maps each record's value to its partition and offset.
func offsetsOf(read map[int32][]*kgo.Record) map[string]string {
	out := map[string]string{}
	for p, rs := range read {
		for _, r := range rs {
			out[string(r.Value)] = fmt.Sprintf("%d@%d", p, r.Offset)
		}
	}
	return out
}

// TestTransactionsZombieFencing: a second producer instance with the same
// transactional id fences the first (a zombie, e.g. a paused process):
// the zombie's open transaction is aborted, its later writes and its
// commit are refused (PRODUCER_FENCED or INVALID_PRODUCER_EPOCH), and a
// read_committed consumer sees only the new instance's committed writes.
func TestTransactionsZombieFencing(t *testing.T) {
	p := startTxnKvlogd(t)
	ctx := testbroker.Context(t, 60*time.Second)
	if _, err := p.Admin(t).CreateTopic(ctx, 2, 1, nil, "fenced"); err != nil {
		t.Fatal(err)
	}
	opts := []kgo.Opt{kgo.TransactionalID("zombie-app"), kgo.DefaultProduceTopic("fenced"), kgo.TransactionTimeout(30 * time.Second), kgo.RecordRetries(3)}
	zombie := p.Client(t, opts...)
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := zombie.ProduceSync(ctx, &kgo.Record{Key: []byte("z"), Value: []byte("zombie-1"), Partition: 0}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	live := p.Client(t, opts...)
	if err := live.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := live.ProduceSync(ctx, &kgo.Record{Key: []byte("l"), Value: []byte("live-1"), Partition: 0}).FirstErr(); err != nil {
		t.Fatalf("the new instance's produce: %v", err)
	}
	fencedErr := func(err error) bool {
		return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch)
	}
	zerr := zombie.ProduceSync(ctx, &kgo.Record{Key: []byte("z"), Value: []byte("zombie-2"), Partition: 1}).FirstErr()
	if err := zombie.EndTransaction(ctx, kgo.TryCommit); !fencedErr(zerr) && !fencedErr(err) {
		t.Fatalf("the zombie's produce (%v) and commit (%v) were not fenced", zerr, err)
	}
	if err := live.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("the new instance's commit: %v", err)
	}
	var got []string
	for _, rs := range readCommitted(t, p, "fenced") {
		for _, r := range rs {
			got = append(got, string(r.Value))
		}
	}
	if len(got) != 1 || got[0] != "live-1" {
		t.Fatalf("read_committed: %q, want only live-1", got)
	}
}

// storedMarkers counts the control batches (transaction markers) stored in
// partition 0 of topic, by type, with a raw read_uncommitted Fetch from
// offset 0.
func storedMarkers(t *testing.T, p *testbroker.Broker, topic string) (commits, aborts int) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.MaxWaitMillis = 100
	req.MaxBytes = 64 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 64 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testbroker.Context(t, 30*time.Second), p.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("raw fetch of %s-0: %+v", topic, resp)
	}
	for raw := resp.Topics[0].Partitions[0].RecordBatches; len(raw) >= 61; {
		n := 12 + int(int32(binary.BigEndian.Uint32(raw[8:])))
		if n > len(raw) {
			break
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw[:n]); err != nil {
			t.Fatal(err)
		}
		if b.Attributes&0x20 != 0 && b.NumRecords > 0 {
			// The control record's key: version int16, type int16.
			if key := controlKey(b.Records); key == 1 {
				commits++
			} else {
				aborts++
			}
		}
		raw = raw[n:]
	}
	return commits, aborts
}

// controlKey decodes the type of the first control record of an
// uncompressed control batch's records section (-1 if unreadable).
func controlKey(recs []byte) int16 {
	var r kmsg.Record
	length, n := binary.Varint(recs)
	if n <= 0 || int(length)+n > len(recs) {
		return -1
	}
	if err := r.ReadFrom(recs[:n+int(length)]); err != nil || len(r.Key) < 4 {
		return -1
	}
	return int16(binary.BigEndian.Uint16(r.Key[2:]))
}

// readAll reads partition 0 of topic from the start at isolation level
// iso until a poll brings nothing for two seconds.
func readAll(t *testing.T, p *testbroker.Broker, topic string, iso kgo.IsolationLevel) []*kgo.Record {
	t.Helper()
	ctx := testbroker.Context(t, 60*time.Second)
	cl := p.Client(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			return out
		}
		out = append(out, fs.Records()...)
	}
	t.Fatalf("reading %s: %v", topic, ctx.Err())
	return nil
}

// TestTransactionsCleanedTopic: a compacted topic written by a
// transactional producer (every third transaction aborted), then
// overwritten by a last transaction, is cleaned by the real broker until
// the cleaner has removed every abort marker (the aborted data gone, the
// marker stamped with its delete horizon, then removed). Read from the
// start under read_committed and under read_uncommitted, before and after
// a SIGKILL and restart: no aborted record appears, every committed record
// the cleaner keeps is there (each key's last committed value, and the
// records of committed transactions no later write superseded), and the
// commit markers of those transactions are still in the log.
func TestTransactionsCleanedTopic(t *testing.T) {
	props := append(append([]string(nil), txnBrokerProps...), "log.cleaner.backoff.ms=100")
	p := testbroker.Start(t, testbroker.Options{Race: true, LogLevel: "warn", Props: props})
	ctx := testbroker.Context(t, 150*time.Second)
	cfg := func(v string) *string { return &v }
	const topic = "cleaned-txn"
	if _, err := p.Admin(t).CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy": cfg("compact"), "segment.ms": cfg("300"), "min.cleanable.dirty.ratio": cfg("0.01"),
		"delete.retention.ms": cfg("1000"), "min.compaction.lag.ms": cfg("0"),
	}, topic); err != nil {
		t.Fatal(err)
	}
	tx := p.Client(t, kgo.TransactionalID("cleaned-app"), kgo.DefaultProduceTopic(topic), kgo.TransactionTimeout(30*time.Second))
	want := map[string]string{} // key → last committed value
	const txns = 30
	for i := 0; i < txns; i++ {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		abort := i%3 == 0
		prefix := "c"
		if abort {
			prefix = "a"
		}
		var recs []*kgo.Record
		for j := 0; j < 5; j++ {
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", (i+j)%10)), Value: []byte(fmt.Sprintf("%s-%d-%d", prefix, i, j))})
		}
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("u%d", i)), Value: []byte(fmt.Sprintf("%s-%d", prefix, i))})
		if err := tx.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		commit := kgo.TryCommit
		if abort {
			commit = kgo.TryAbort
		}
		if err := tx.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
		if !abort {
			for _, r := range recs {
				want[string(r.Key)] = string(r.Value)
			}
		}
		if i%5 == 4 {
			time.Sleep(350 * time.Millisecond) // a segment.ms roll between some transactions
		}
	}
	// The last transaction overwrites every k key.
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	var last []*kgo.Record
	for j := 0; j < 10; j++ {
		last = append(last, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", j)), Value: []byte(fmt.Sprintf("c-last-%d", j))})
	}
	if err := tx.ProduceSync(ctx, last...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	for _, r := range last {
		want[string(r.Key)] = string(r.Value)
	}
	tx.Close()
	// A plain producer keeps the log rolling (segment.ms) so that the
	// cleaner has passes to run until every abort marker is gone.
	plain := p.Client(t, kgo.DefaultProduceTopic(topic))
	for tick := 0; ; tick++ {
		if err := plain.ProduceSync(ctx, &kgo.Record{Key: []byte("tick"), Value: []byte(strconv.Itoa(tick))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want["tick"] = strconv.Itoa(tick)
		c, a := storedMarkers(t, p, topic)
		if a == 0 {
			// Commit markers of transactions whose data is gone go too;
			// those with a u key left (20) and the last one stay.
			if c != 21 {
				t.Fatalf("%d commit markers left, want 21 (the transactions with data left)", c)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("abort markers never removed: %d commit and %d abort markers left", c, a)
		}
		time.Sleep(200 * time.Millisecond)
	}
	check := func(when string) {
		t.Helper()
		for _, iso := range []kgo.IsolationLevel{kgo.ReadCommitted(), kgo.ReadUncommitted()} {
			got := map[string]string{}
			for _, r := range readAll(t, p, topic, iso) {
				if strings.HasPrefix(string(r.Value), "a-") {
					t.Fatalf("%s: an aborted record read: %s=%s at %d", when, r.Key, r.Value, r.Offset)
				}
				got[string(r.Key)] = string(r.Value)
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %d keys read, want %d: %v", when, len(got), len(want), got)
			}
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("%s: %s = %q, want %q", when, k, got[k], v)
				}
			}
		}
	}
	check("cleaned")
	p.Kill()
	p.Restart()
	check("after a restart")
}

// TestKcatTransactions: kcat's -X transactional.id producer (librdkafka's
// transactional API: all of stdin in one transaction, committed when
// stdin closes). A committed run, and an interrupted one whose records
// (most of 3,000) were written: kcat 1.7.1 exits on SIGINT without ending
// the transaction, so the coordinator aborts it once its
// transaction.timeout.ms (3 s here) passes. kcat's consumer (librdkafka,
// isolation.level=read_committed) and franz-go under read_committed then
// see only the committed records; read_uncommitted sees the aborted ones
// too.
func TestKcatTransactions(t *testing.T) {
	kcat := testbroker.RequireKcat(t, "kcat transactions")
	p := startTxnKvlogd(t)
	ctx := testbroker.Context(t, 90*time.Second)
	const topic = "kcat-txn"
	if _, err := p.Admin(t).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	// Committed: stdin closed.
	testbroker.RunTool(t, 60*time.Second, []byte("c1:one\nc2:two\n"), kcat, "-b", p.Addr, "-P", "-t", topic, "-K", ":",
		"-X", "transactional.id=kcat-committed")
	// Aborted: the records are written, then kcat is interrupted.
	cmd := exec.CommandContext(ctx, kcat, "-b", p.Addr, "-P", "-t", topic, "-K", ":", "-X", "transactional.id=kcat-aborted", "-X", "linger.ms=0",
		"-X", "transaction.timeout.ms=3000")
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// kcat reads stdin through a buffer: enough lines that most are
	// produced while the transaction is open.
	var lines strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&lines, "a%d:gone\n", i)
	}
	if _, err := io.WriteString(stdin, lines.String()); err != nil {
		t.Fatal(err)
	}
	// Wait until most are in the log (read_uncommitted).
	aborted := 0
	for {
		if aborted = len(readAll(t, p, topic, kgo.ReadUncommitted())) - 2; aborted >= 2000 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("kcat's transactional records never reached the log (%d did): %s", aborted, stderr.String())
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = stdin.Close()
	_ = cmd.Wait() // an interrupted kcat exits non-zero
	t.Logf("kcat interrupted after %d aborted records were written: %s", aborted, stderr.String())
	values := func(rs []*kgo.Record) []string {
		var out []string
		for _, r := range rs {
			out = append(out, string(r.Key)+"="+string(r.Value))
		}
		sort.Strings(out)
		return out
	}
	// The coordinator has the abort written once no transaction is open.
	committed := readCommitted(t, p, topic)
	if got := values(committed[0]); strings.Join(got, ",") != "c1=one,c2=two" {
		t.Fatalf("franz-go read_committed: %v (kcat: %s)", got, stderr.String())
	}
	if n := len(readAll(t, p, topic, kgo.ReadUncommitted())); n < 2+aborted {
		t.Fatalf("read_uncommitted: %d records, want the 2 committed and at least the %d aborted", n, aborted)
	}
	out := testbroker.RunTool(t, 60*time.Second, nil, kcat, "-b", p.Addr, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
		"-X", "isolation.level=read_committed", "-f", "%k=%s\n")
	got := strings.Fields(string(out))
	sort.Strings(got)
	if strings.Join(got, ",") != "c1=one,c2=two" {
		t.Fatalf("kcat read_committed: %v", got)
	}
}
