package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/txn"
)

// The transaction coordinator writes __transaction_state through the
// partition manager (compacted, created on first use) in Kafka's record
// format, and a restarted broker resumes from it. The test drives the
// coordinator directly.
func TestTxnCoordinatorStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := startBrokerIn(t, dir, "transaction.state.log.num.partitions=3")
	init := func(b *testBroker) txn.InitResult {
		t.Helper()
		ch := make(chan txn.InitResult, 1)
		b.s.txns.InitProducerID(txn.InitRequest{TransactionalID: "app", TimeoutMs: 60000}, func(r txn.InitResult) { ch <- r })
		return <-ch
	}
	if _, err := b.admin(t).CreateTopic(ctxT(t), 2, 1, nil, "out"); err != nil {
		t.Fatal(err)
	}
	first := init(b)
	if first.Err != nil || first.Epoch != 0 {
		t.Fatalf("InitProducerID: %+v", first)
	}
	added := make(chan error, 1)
	b.s.txns.AddPartitions("app", first.ProducerID, first.Epoch, []txn.TopicPartition{{Topic: "out", Partition: 1}}, func(err error) { added <- err })
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	// The producer's transactional data in out-1 (written to the log
	// directly: Produce does not take transactional batches yet).
	var bl record.Builder
	bl.Attributes = record.AttrTransactional
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = first.ProducerID, first.Epoch, 0
	bl.MaxTimestamp, bl.LastOffsetDelta = -1, -1
	bl.Add(record.Record{Key: []byte("k"), Value: []byte("aborted")})
	data, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	out1 := b.s.topic("out").parts[1]
	if _, err := b.s.replicas.Append(out1.rep, data, true, 1); err != nil {
		t.Fatal(err)
	}
	tp := b.s.topic(txn.StateTopic)
	if tp == nil || len(tp.parts) != 3 || !tp.settings.Compact {
		t.Fatalf("__transaction_state: %+v", tp)
	}
	// The records are Kafka's TransactionLogKey/Value.
	p := b.s.txns.PartitionFor("app")
	l := tp.parts[p].log
	var states []int8
	var dec record.Decoder
	if err := l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(bt record.Batch) error {
		return dec.Records(bt, func(r *record.Record) error {
			var k kmsg.TxnMetadataKey
			var v kmsg.TxnMetadataValue
			if err := k.ReadFrom(r.Key); err != nil || k.TransactionalID != "app" {
				t.Fatalf("key %x: %v", r.Key, err)
			}
			if err := v.ReadFrom(r.Value); err != nil || v.ProducerID != first.ProducerID {
				t.Fatalf("value %x: %v", r.Value, err)
			}
			states = append(states, int8(v.State))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 || states[0] != int8(txn.Empty) || states[1] != int8(txn.Ongoing) {
		t.Fatalf("logged states %v", states)
	}
	b.stop(t)

	b = startBrokerIn(t, dir, "transaction.state.log.num.partitions=3")
	d, err := b.s.txns.Describe("app")
	if err != nil || d.State != txn.Ongoing || d.ProducerID != first.ProducerID || len(d.Partitions) != 1 {
		t.Fatalf("after restart: %+v %v", d, err)
	}
	// A new instance fences the ongoing transaction: its abort marker goes
	// to out-1, whose last stable offset then passes the aborted data, and
	// the instance's retry gets the next epoch.
	if r := init(b); errCode(r.Err) != kerr.ConcurrentTransactions.Code {
		t.Fatalf("fencing init: %+v", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, _ := b.s.txns.Describe("app")
		if d.State == txn.CompleteAbort && d.ProducerEpoch == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fenced transaction did not complete its abort: %+v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	l = b.s.topic("out").parts[1].log
	if l.LogEndOffset() != 2 || l.LastStableOffset() != 2 {
		t.Fatalf("out-1: log end %d, LSO %d; want the data and its marker, stable", l.LogEndOffset(), l.LastStableOffset())
	}
	aborted, err := l.AbortedTxns(0, 2)
	if err != nil || len(aborted) != 1 || aborted[0] != (engine.AbortedTxn{ProducerID: first.ProducerID, FirstOffset: 0, LastOffset: 1, LastStableOffset: 2}) {
		t.Fatalf("out-1 aborted transactions %+v, %v", aborted, err)
	}
	if r := init(b); r.Err != nil || r.ProducerID != first.ProducerID || r.Epoch != 2 {
		t.Fatalf("init after the abort: %+v", r)
	}
}

// A read_committed consumer reads only below the last stable offset and
// gets the aborted transactions of the range it reads; ListOffsets latest
// under read_committed is the last stable offset. The transactional data
// is written to the log directly and ended by the coordinator's marker
// writer; a franz-go
// read_committed consumer then sees the committed and plain records only.
func TestReadCommittedFetchAndListOffsets(t *testing.T) {
	b := startBroker(t)
	if _, err := b.admin(t).CreateTopic(ctxT(t), 1, 1, nil, "rc"); err != nil {
		t.Fatal(err)
	}
	part := b.s.topic("rc").parts[0]
	seq := map[int64]int32{}
	appendTxn := func(pid int64, value string) {
		t.Helper()
		var bl record.Builder
		bl.Attributes = record.AttrTransactional
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = pid, 0, seq[pid]
		bl.MaxTimestamp, bl.LastOffsetDelta = -1, -1
		bl.Add(record.Record{Key: []byte("k"), Value: []byte(value)})
		data, err := bl.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.s.replicas.Append(part.rep, data, true, 1)
		if err != nil {
			t.Fatal(err)
		}
		waits := []replica.AckWait{{P: part.rep, Last: res.LastOffset, MinISR: 1}}
		done := make(chan struct{})
		b.s.replicas.AwaitAcks(waits, 10*time.Second, func() { close(done) })
		<-done
		if waits[0].Err != nil {
			t.Fatal(waits[0].Err)
		}
		seq[pid]++
	}
	marker := func(pid int64, commit bool) {
		t.Helper()
		ch := make(chan []error, 1)
		txnMarkers{s: b.s}.WriteMarkers(&txn.MarkerRequest{ProducerID: pid, Commit: commit, Partitions: []txn.TopicPartition{{Topic: "rc", Partition: 0}}}, func(errs []error) { ch <- errs })
		if errs := <-ch; errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	c := b.dial(t)
	corr := int32(0)
	fetch := func(level int8) *kmsg.FetchResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.ReplicaID, req.MaxBytes, req.IsolationLevel = 11, -1, 1<<20, level
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "rc"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		corr++
		c.send(req, corr)
		resp := c.recv(req, corr).(*kmsg.FetchResponse)
		return &resp.Topics[0].Partitions[0]
	}
	latest := func(level int8) int64 {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version, req.ReplicaID, req.IsolationLevel = 5, -1, level
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "rc"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp, rp.CurrentLeaderEpoch = -1, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		corr++
		c.send(req, corr)
		return c.recv(req, corr).(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].Offset
	}

	appendTxn(7, "aborted-0") // 0
	appendTxn(8, "committed") // 1
	appendTxn(7, "aborted-1") // 2
	if p := fetch(1); p.ErrorCode != 0 || p.LastStableOffset != 0 || p.HighWatermark != 3 || len(p.RecordBatches) != 0 {
		t.Fatalf("read_committed over an open transaction: error %d, LSO %d, HW %d, %d bytes", p.ErrorCode, p.LastStableOffset, p.HighWatermark, len(p.RecordBatches))
	}
	if p := fetch(0); p.LastStableOffset != 0 || len(p.RecordBatches) == 0 {
		t.Fatalf("read_uncommitted: LSO %d, %d bytes", p.LastStableOffset, len(p.RecordBatches))
	}
	if got, unc := latest(1), latest(0); got != 0 || unc != 3 {
		t.Fatalf("ListOffsets latest: read_committed %d, read_uncommitted %d; want 0, 3", got, unc)
	}
	marker(7, false) // 3
	if p := fetch(1); p.LastStableOffset != 1 || len(p.RecordBatches) == 0 || len(p.AbortedTransactions) != 1 ||
		p.AbortedTransactions[0].ProducerID != 7 || p.AbortedTransactions[0].FirstOffset != 0 {
		t.Fatalf("after the abort: LSO %d, %d bytes, aborted %+v", p.LastStableOffset, len(p.RecordBatches), p.AbortedTransactions)
	}
	marker(8, true) // 4
	if got := latest(1); got != 5 {
		t.Fatalf("ListOffsets latest read_committed %d, want 5", got)
	}
	cl := b.client(t, kgo.ConsumeTopics("rc"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 1 {
		fs := cl.PollFetches(ctxT(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != 1 || got[0] != "committed" {
		t.Fatalf("read_committed consumer got %q, want only the committed record", got)
	}
}

// Produce takes transactional batches for partitions added to the
// transactional id's ongoing transaction (driven through the coordinator
// directly), and the coordinator's commit makes them
// visible to a read_committed franz-go consumer.
func TestTransactionalProduceCommit(t *testing.T) {
	b := startBroker(t)
	if _, err := b.admin(t).CreateTopic(ctxT(t), 1, 1, nil, "tx"); err != nil {
		t.Fatal(err)
	}
	ch := make(chan txn.InitResult, 1)
	b.s.txns.InitProducerID(txn.InitRequest{TransactionalID: "app", TimeoutMs: 60000}, func(r txn.InitResult) { ch <- r })
	ir := <-ch
	if ir.Err != nil {
		t.Fatal(ir.Err)
	}
	c := b.dial(t)
	corr := int32(0)
	produce := func(txnID *string, transactional bool, epoch int16, seq int32) int16 {
		t.Helper()
		var bl record.Builder
		if transactional {
			bl.Attributes = record.AttrTransactional
		}
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = ir.ProducerID, epoch, seq
		bl.MaxTimestamp, bl.LastOffsetDelta = -1, -1
		bl.Add(record.Record{Key: []byte("k"), Value: []byte(fmt.Sprintf("v%d", seq))})
		data, err := bl.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis, req.TransactionID = 9, -1, 10000, txnID
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "tx"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = data
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		corr++
		c.send(req, corr)
		return c.recv(req, corr).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
	}
	id := "app"
	if code := produce(&id, true, ir.Epoch, 0); code != kerr.InvalidTxnState.Code {
		t.Fatalf("produce before AddPartitionsToTxn: error %d", code)
	}
	added := make(chan error, 1)
	b.s.txns.AddPartitions("app", ir.ProducerID, ir.Epoch, []txn.TopicPartition{{Topic: "tx", Partition: 0}}, func(err error) { added <- err })
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if code := produce(nil, true, ir.Epoch, 0); code != kerr.InvalidTxnState.Code {
		t.Fatalf("transactional batch without a transactional id: error %d", code)
	}
	if code := produce(&id, true, ir.Epoch+1, 0); code != kerr.InvalidTxnState.Code {
		t.Fatalf("batch of another epoch: error %d", code)
	}
	for seq := int32(0); seq < 2; seq++ {
		if code := produce(&id, true, ir.Epoch, seq); code != 0 {
			t.Fatalf("transactional produce %d: error %d", seq, code)
		}
	}
	l := b.s.topic("tx").parts[0].log
	if lso := l.LastStableOffset(); lso != 0 {
		t.Fatalf("LSO %d with the transaction open, want 0", lso)
	}
	ended := make(chan error, 1)
	b.s.txns.EndTxn("app", ir.ProducerID, ir.Epoch, true, func(err error) { ended <- err })
	if err := <-ended; err != nil {
		t.Fatal(err)
	}
	cl := b.client(t, kgo.ConsumeTopics("tx"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < 2 {
		fs := cl.PollFetches(ctxT(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	if len(got) != 2 || got[0] != "v0" || got[1] != "v1" {
		t.Fatalf("read_committed consumer got %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for d, _ := b.s.txns.Describe("app"); d.State != txn.CompleteCommit; d, _ = b.s.txns.Describe("app") {
		if time.Now().After(deadline) {
			t.Fatalf("after the commit: %+v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
