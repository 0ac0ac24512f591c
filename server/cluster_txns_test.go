package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterTransactions: in a three-broker cluster a transaction spans
// partitions led by every broker (the coordinator writes its markers to
// the other leaders with WriteTxnMarkers); committed transactions are
// read under read_committed, aborted ones never; after the coordinator's
// broker stops, the new leader of its __transaction_state partition loads
// the id and a new producer instance commits a transaction there.
func TestClusterTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	c := startInprocCluster(t, 3, "min.insync.replicas=2",
		"transaction.state.log.num.partitions=3", "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=2",
		"offsets.topic.num.partitions=3", "offsets.topic.replication.factor=3",
		"transaction.abort.timed.out.transaction.cleanup.interval.ms=1000")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(c.client())
	waitFor(t, 20*time.Second, "three brokers", func() bool {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...))
		if err != nil {
			return false
		}
		defer cl.Close()
		m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
		return err == nil && len(m.Brokers) == 3 && m.Controller >= 1
	})
	if res, err := adm.CreateTopic(ctx, 6, 3, nil, "tx"); err != nil || res.Err != nil {
		t.Fatalf("create topic: %v %v", err, res.Err)
	}
	leaders := map[int32]bool{}
	waitFor(t, 20*time.Second, "leaders", func() bool {
		m, err := adm.Metadata(ctx, "tx")
		if err != nil || len(m.Topics["tx"].Partitions) != 6 {
			return false
		}
		for _, p := range m.Topics["tx"].Partitions {
			if p.Leader < 1 || len(p.ISR) < 2 {
				return false
			}
			leaders[p.Leader] = true
		}
		return true
	})
	if len(leaders) < 2 {
		t.Fatalf("partition leaders %v: the test needs them spread", leaders)
	}
	newProducer := func() *kgo.Client {
		return c.client(kgo.TransactionalID("cluster-app"), kgo.DefaultProduceTopic("tx"), kgo.TransactionTimeout(20*time.Second))
	}
	prod := newProducer()
	txnOf := func(name string, commit bool) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 6; p++ {
			r := &kgo.Record{Topic: "tx", Partition: p, Value: []byte(fmt.Sprintf("%s-%d", name, p))}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if err := prod.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("%s: end: %v", name, err)
		}
	}
	txnOf("c1", true)
	txnOf("a1", false)
	txnOf("c2", true)
	check := func(want ...string) {
		t.Helper()
		wantSet := map[string]bool{}
		for _, w := range want {
			for p := 0; p < 6; p++ {
				wantSet[fmt.Sprintf("%s-%d", w, p)] = true
			}
		}
		cons := c.client(kgo.ConsumeTopics("tx"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		got := map[string]bool{}
		for len(got) < len(wantSet) && ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				v := string(r.Value)
				if !wantSet[v] || got[v] {
					t.Fatalf("read_committed read %q (want %v)", v, want)
				}
				got[v] = true
			})
		}
		if len(got) != len(wantSet) {
			t.Fatalf("read_committed read %d of %d records", len(got), len(wantSet))
		}
	}
	check("c1", "c2")

	// Stop the coordinator's broker: another takes over its partition.
	var coord int32 = -1
	adm.FindTxnCoordinators(ctx, "cluster-app").Each(func(d kadm.FindCoordinatorResponse) {
		if d.Err == nil {
			coord = d.NodeID
		}
	})
	if coord < 1 {
		t.Fatalf("no coordinator for cluster-app")
	}
	c.stop(coord)
	adm2 := kadm.NewClient(c.client())
	waitFor(t, 30*time.Second, "a new transaction coordinator", func() bool {
		moved := false
		adm2.FindTxnCoordinators(ctx, "cluster-app").Each(func(d kadm.FindCoordinatorResponse) {
			moved = d.Err == nil && d.NodeID != coord
		})
		return moved
	})
	// A new instance (franz-go keeps a stale coordinator whose broker left
	// the metadata): its InitProducerId on the new coordinator bumps the
	// epoch the loaded state has.
	prod.Close()
	prod = newProducer()
	txnOf("c3", true)
	check("c1", "c2", "c3")
}
