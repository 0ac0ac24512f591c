package server

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	first := init(b)
	if first.Err != nil || first.Epoch != 0 {
		t.Fatalf("InitProducerID: %+v", first)
	}
	added := make(chan error, 1)
	b.s.txns.AddPartitions("app", first.ProducerID, first.Epoch, []txn.TopicPartition{{Topic: "out", Partition: 1}}, func(err error) { added <- err })
	if err := <-added; err != nil {
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
	// A new instance fences the ongoing transaction; its markers cannot be
	// written yet, so the id stays in PrepareAbort and the retry waits.
	if r := init(b); errCode(r.Err) != kerr.ConcurrentTransactions.Code {
		t.Fatalf("fencing init: %+v", r)
	}
	if d, _ := b.s.txns.Describe("app"); d.State != txn.PrepareAbort || d.ProducerEpoch != 1 {
		t.Fatalf("after the fence: %+v", d)
	}
}
