package testcluster

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTransactionsAcrossKills: franz-go's GroupTransactSession consumes
// "in" and writes each record to "out" (compacted) in transactions that
// also commit the group's offsets, on three brokers, while the leader of
// an output partition and then the transaction coordinator's broker are
// SIGKILLed (and restarted). A read_committed consumer of the output sees
// every input record exactly once, in input order per key.
func TestTransactionsAcrossKills(t *testing.T) {
	c := startCluster(t,
		"transaction.state.log.num.partitions=3", "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=2",
		"offsets.topic.num.partitions=3", "offsets.topic.replication.factor=3",
		"transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
		"group.initial.rebalance.delay.ms=0")
	createTopic(t, c, "in", 3)
	createTopic(t, c, "out", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const (
		n    = 600
		keys = 20
	)
	prod := c.Client(kgo.DefaultProduceTopic("in"), kgo.RequiredAcks(kgo.AllISRAcks()))
	for i := 0; i < n; i += 4 {
		var recs []*kgo.Record
		for j := i; j < i+4; j++ {
			recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(j%keys)), Value: []byte(strconv.Itoa(j / keys))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	var rounds atomic.Int64
	finished := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(finished)
		clusterTransform(t, c, ctx, n, &rounds)
	}()
	waitRounds := func(k int64) bool {
		want := rounds.Load() + k
		for rounds.Load() < want {
			select {
			case <-finished:
				return false
			case <-time.After(20 * time.Millisecond):
			}
		}
		return true
	}
	var coord int32 = -1
	kills := 0
	for step := 0; step < 2; step++ {
		if !waitRounds(5) {
			break
		}
		victim, _ := leaderOf(t, c, "out", 0)
		what := "the leader of out-0"
		if step == 1 {
			c.Admin().FindTxnCoordinators(ctx, "eos-cluster").Each(func(d kadm.FindCoordinatorResponse) {
				if d.Err == nil {
					coord = d.NodeID
				}
			})
			if coord < 0 {
				t.Fatal("no transaction coordinator for eos-cluster")
			}
			victim, what = coord, "the transaction coordinator"
		}
		t.Logf("SIGKILL broker %d, %s, after %d rounds", victim, what, rounds.Load())
		c.Kill(victim)
		kills++
		waitRounds(3) // progress without it
		c.StartBroker(victim)
		waitFullISR(t, c, "out", 60*time.Second)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if kills < 2 {
		t.Errorf("the session finished after %d kills", kills)
	}

	// Every input exactly once, in order per key.
	cons := c.Client(kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	perKey := map[string][]int{}
	total := 0
	for ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		fs := cons.PollFetches(pctx)
		pcancel()
		if fs.NumRecords() == 0 && total >= n {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			v, _ := strconv.Atoi(string(r.Value))
			perKey[string(r.Key)] = append(perKey[string(r.Key)], v)
			total++
		})
	}
	for k := 0; k < keys; k++ {
		vs := perKey["k"+strconv.Itoa(k)]
		ok := len(vs) == n/keys
		for i := 0; ok && i < len(vs); i++ {
			ok = vs[i] == i
		}
		if !ok {
			t.Errorf("key k%d: output %v, want 0..%d once each, in order", k, vs, n/keys-1)
		}
	}
	if total != n {
		t.Errorf("%d output records, want %d", total, n)
	}
	t.Logf("%d session rounds, %d kills", rounds.Load(), kills)
}

// clusterTransform is the consume-transform-produce loop; it returns once
// the group's committed offsets reach n. A session whose transactional id
// entered a fatal state (PRODUCER_FENCED: its transaction outlived its
// timeout during a fail-over and the coordinator aborted it) is replaced
// by a new one, as an application restarts its producer; the new
// instance resumes from the committed offsets.
func clusterTransform(t *testing.T, c *Cluster, ctx context.Context, n int, rounds *atomic.Int64) {
	adm := c.Admin()
	for restarts := 0; restarts < 5 && ctx.Err() == nil; restarts++ {
		done, err := clusterSession(t, c, ctx, adm, n, rounds)
		if done {
			return
		}
		t.Logf("session ended (%v); starting a new instance", err)
	}
	t.Errorf("the transform did not finish: %v", ctx.Err())
}

func clusterSession(t *testing.T, c *Cluster, ctx context.Context, adm *kadm.Client, n int, rounds *atomic.Int64) (bool, error) {
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(c.AllSeeds()...),
		kgo.TransactionalID("eos-cluster"),
		kgo.TransactionTimeout(30*time.Second),
		kgo.ConsumerGroup("eos-cluster-group"),
		kgo.ConsumeTopics("in"),
		kgo.DefaultProduceTopic("out"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(300),
		kgo.SessionTimeout(10*time.Second),
		kgo.RetryTimeout(60*time.Second),
	)
	if err != nil {
		return false, err
	}
	defer sess.Close()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := sess.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			offs, err := adm.FetchOffsets(ctx, "eos-cluster-group")
			if err == nil {
				var sum int64
				offs.Each(func(o kadm.OffsetResponse) {
					if o.Topic == "in" && o.Err == nil {
						sum += o.At
					}
				})
				if sum == int64(n) {
					return true, nil
				}
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
		// No End error is retryable (franz-go): the instance is replaced.
		if _, err := sess.End(ctx, kgo.TransactionEndTry(failed == nil)); err != nil {
			return false, err
		}
		rounds.Add(1)
	}
	return false, ctx.Err()
}
