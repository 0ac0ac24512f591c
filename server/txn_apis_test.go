package server

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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
