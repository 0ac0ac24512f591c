package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/server/txn"
)

// The transaction coordinator writes __transaction_state through the
// partition manager (compacted, created on first use) in Kafka's record
// format, and a restarted broker resumes from it. The coordinator is not
// reachable by clients yet, so the test drives it directly.
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
	if tp == nil || len(tp.parts) != 3 || !tp.settings.compact {
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
