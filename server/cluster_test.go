package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/testcluster"
)

// An in-process cluster: a real ZooKeeper and three brokers in this process
// (the process-level tests with kill -9 are in internal/testcluster).

type inprocCluster struct {
	t       *testing.T
	connect string
	brokers map[int32]*testBroker
	dirs    map[int32]string
}

func startInprocCluster(t *testing.T, n int, extra ...string) *inprocCluster {
	t.Helper()
	zk := testcluster.StartZooKeeper(t)
	c := &inprocCluster{t: t, connect: zk.Addr + "/kvlog", brokers: map[int32]*testBroker{}, dirs: map[int32]string{}}
	for id := int32(1); id <= int32(n); id++ {
		c.dirs[id] = t.TempDir()
		c.start(id, extra...)
	}
	return c
}

func (c *inprocCluster) start(id int32, extra ...string) {
	c.t.Helper()
	props := append([]string{
		"zookeeper.connect=" + c.connect,
		fmt.Sprintf("broker.id=%d", id),
		"zookeeper.session.timeout.ms=4000",
		"zookeeper.connection.timeout.ms=30000",
		"replica.lag.time.max.ms=2000",
		"replica.fetch.wait.max.ms=100",
		"replica.fetch.backoff.ms=100",
		"controlled.shutdown.retry.backoff.ms=200",
		"kvlog.http.listener=",
	}, extra...)
	c.brokers[id] = startBrokerIn(c.t, c.dirs[id], props...)
}

func (c *inprocCluster) stop(id int32) {
	c.brokers[id].stop(c.t)
	delete(c.brokers, id)
}

func (c *inprocCluster) seeds() []string {
	var out []string
	for _, b := range c.brokers {
		out = append(out, b.addr)
	}
	return out
}

func (c *inprocCluster) client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.seeds()...), kgo.RetryTimeout(30 * time.Second)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClusterInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	c := startInprocCluster(t, 3, "min.insync.replicas=2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(c.client())
	var lastMeta string
	defer func() {
		if t.Failed() {
			t.Logf("last: %s", lastMeta)
			for id, b := range c.brokers {
				m := b.s.cluster.meta.Load()
				t.Logf("broker %d cache: controller %d brokers %v", id, m.controllerID, m.brokers)
			}
		}
	}()
	waitFor(t, 20*time.Second, "three brokers in metadata", func() bool {
		// A fresh client each time: kgo answers metadata requests for no
		// topics from its cache (metadata max age).
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...))
		if err != nil {
			return false
		}
		defer cl.Close()
		m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
		lastMeta = fmt.Sprintf("%v %d %v", m.Brokers, m.Controller, err)
		return err == nil && len(m.Brokers) == 3 && m.Controller >= 1
	})
	res, err := adm.CreateTopic(ctx, 3, 3, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "kv")
	if err != nil || res.Err != nil {
		t.Fatalf("create topic: %v %v", err, res.Err)
	}
	waitFor(t, 20*time.Second, "leaders and full ISRs", func() bool {
		m, err := adm.Metadata(ctx, "kv")
		if err != nil || len(m.Topics["kv"].Partitions) != 3 {
			return false
		}
		for _, p := range m.Topics["kv"].Partitions {
			if p.Leader < 1 || len(p.ISR) != 3 || p.Err != nil {
				return false
			}
		}
		return true
	})

	// Idempotent acks=all producer through any broker.
	prod := c.client(kgo.DefaultProduceTopic("kv"), kgo.RequiredAcks(kgo.AllISRAcks()))
	const n = 300
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%50)), Value: []byte(fmt.Sprintf("v%d", i))}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	// Every replica ends up with identical logs.
	waitFor(t, 20*time.Second, "replicas in sync", func() bool {
		for p := int32(0); p < 3; p++ {
			var leos []int64
			for _, b := range c.brokers {
				part := b.s.partition("kv", p)
				if part == nil {
					return false
				}
				leos = append(leos, int64(part.log.HighWatermark()))
			}
			if slices.Min(leos) != slices.Max(leos) {
				return false
			}
		}
		return true
	})
	got := consumeAll(t, c.client(kgo.ConsumeTopics("kv"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())), n)
	if len(got) != n {
		t.Fatalf("consumed %d, want %d", len(got), n)
	}

	// Kill the leader of partition 0 (hard stop: no controlled shutdown):
	// a new leader from the ISR, epoch bumped, writes continue.
	m, _ := adm.Metadata(ctx, "kv")
	p0 := m.Topics["kv"].Partitions[0]
	oldEpoch := p0.LeaderEpoch
	victim := p0.Leader
	c.brokers[victim].s.cluster.m.Fetchers().Close()
	c.brokers[victim].s.Close() // no controlled shutdown; its session ends
	delete(c.brokers, victim)
	prod2 := c.client(kgo.DefaultProduceTopic("kv"), kgo.RequiredAcks(kgo.AllISRAcks()))
	waitFor(t, 30*time.Second, "new leader for partition 0", func() bool {
		m, err := kadm.NewClient(prod2).Metadata(ctx, "kv")
		if err != nil {
			return false
		}
		p := m.Topics["kv"].Partitions[0]
		return p.Leader >= 1 && p.Leader != victim && p.LeaderEpoch > oldEpoch
	})
	for i := 0; i < 50; i++ {
		r := &kgo.Record{Key: []byte("after"), Value: []byte(fmt.Sprintf("a%d", i)), Partition: 0}
		if err := prod2.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce after leader loss: %v", err)
		}
	}
	// With 2 of 3 left and min.insync.replicas=2, acks=all still works;
	// restart the victim: it rejoins and catches up.
	c.start(victim, "min.insync.replicas=2")
	waitFor(t, 30*time.Second, "victim back in every ISR", func() bool {
		m, err := kadm.NewClient(prod2).Metadata(ctx, "kv")
		if err != nil {
			return false
		}
		for _, p := range m.Topics["kv"].Partitions {
			if !slices.Contains(p.ISR, victim) {
				return false
			}
		}
		return true
	})
	// Controlled shutdown of a broker moves its leadership away. No wait:
	// the controller answers ControlledShutdown only once the live brokers
	// have applied the moves (LeaderAndIsr, UpdateMetadata), so when stop
	// returns every remaining broker's metadata already names the new
	// leaders, also when the stopped broker was the controller.
	m, _ = adm.Metadata(ctx, "kv")
	leaderOf := map[int32]int32{}
	for _, p := range m.Topics["kv"].Partitions {
		leaderOf[p.Partition] = p.Leader
	}
	target := leaderOf[1]
	c.stop(target)
	m, err = kadm.NewClient(c.client()).Metadata(ctx, "kv")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Topics["kv"].Partitions {
		if p.Leader == target {
			t.Fatalf("partition %d still led by %d after its controlled shutdown", p.Partition, target)
		}
	}
	// Kill a second broker: one left, acks=all gets NOT_ENOUGH_REPLICAS.
	var last int32
	for id := range c.brokers {
		last = id
	}
	for id := range c.brokers {
		if id != last {
			c.brokers[id].s.Close()
			delete(c.brokers, id)
		}
	}
	prod3 := c.client(kgo.DefaultProduceTopic("kv"), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(0), kgo.RequestRetries(0))
	waitFor(t, 30*time.Second, "NOT_ENOUGH_REPLICAS", func() bool {
		sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
		defer scancel()
		err := prod3.ProduceSync(sctx, &kgo.Record{Value: []byte("x"), Partition: 0}).FirstErr()
		return errors.Is(err, kerr.NotEnoughReplicas) || errors.Is(err, kerr.NotEnoughReplicasAfterAppend)
	})
}

func consumeAll(t *testing.T, cl *kgo.Client, want int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// Brokers refuse inter-broker requests from an older controller
// (STALE_CONTROLLER_EPOCH) or for an earlier incarnation of themselves
// (STALE_BROKER_EPOCH).
func TestClusterStaleEpochsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	c := startInprocCluster(t, 1)
	b := c.brokers[1]
	waitFor(t, 20*time.Second, "controller epoch seen", func() bool { return b.s.cluster.m.ControllerEpoch() >= 1 })
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	epoch := b.s.cluster.m.ControllerEpoch()
	brokerEpoch := b.s.cluster.m.BrokerEpoch()

	um := kmsg.NewPtrUpdateMetadataRequest()
	um.Version = 6
	um.ControllerID, um.ControllerEpoch, um.BrokerEpoch = 1, epoch-1, brokerEpoch
	resp, err := um.RequestWith(ctx, cl)
	if err != nil || resp.ErrorCode != kerr.StaleControllerEpoch.Code {
		t.Fatalf("UpdateMetadata from an older controller: %v %+v", err, resp)
	}
	la := kmsg.NewPtrLeaderAndISRRequest()
	la.Version = 4
	la.ControllerID, la.ControllerEpoch, la.BrokerEpoch = 1, epoch, brokerEpoch-1
	lresp, err := la.RequestWith(ctx, cl)
	if err != nil || lresp.ErrorCode != kerr.StaleBrokerEpoch.Code {
		t.Fatalf("LeaderAndIsr for an earlier incarnation: %v %+v", err, lresp)
	}
	sr := kmsg.NewPtrStopReplicaRequest()
	sr.Version = 3
	sr.ControllerID, sr.ControllerEpoch, sr.BrokerEpoch = 1, epoch-1, brokerEpoch
	sresp, err := sr.RequestWith(ctx, cl)
	if err != nil || sresp.ErrorCode != kerr.StaleControllerEpoch.Code {
		t.Fatalf("StopReplica from an older controller: %v %+v", err, sresp)
	}

	// Epochs ZooKeeper has not reached, another controller id or no broker
	// epoch are refused too, and the bogus epoch is not adopted: the real
	// controller's requests still apply.
	for _, f := range []struct {
		ctl, epoch int32
		be         int64
		want       *kerr.Error
	}{
		{1, math.MaxInt32, brokerEpoch, kerr.StaleControllerEpoch},
		{1, epoch + 1, brokerEpoch, kerr.StaleControllerEpoch},
		{2, epoch, brokerEpoch, kerr.StaleControllerEpoch},
		{1, epoch, -1, kerr.StaleBrokerEpoch},
		{1, epoch, brokerEpoch + 1, kerr.StaleBrokerEpoch},
	} {
		sr := kmsg.NewPtrStopReplicaRequest()
		sr.Version = 3
		sr.ControllerID, sr.ControllerEpoch, sr.BrokerEpoch = f.ctl, f.epoch, f.be
		sresp, err := sr.RequestWith(ctx, cl)
		if err != nil || sresp.ErrorCode != f.want.Code {
			t.Fatalf("StopReplica from controller %d epoch %d broker epoch %d: %v %+v, want %v", f.ctl, f.epoch, f.be, err, sresp, f.want)
		}
	}
	if got := b.s.cluster.m.ControllerEpoch(); got != epoch {
		t.Fatalf("controller epoch %d after forged requests, want %d", got, epoch)
	}
	um = kmsg.NewPtrUpdateMetadataRequest()
	um.Version = 6
	um.ControllerID, um.ControllerEpoch, um.BrokerEpoch = 1, epoch, brokerEpoch
	resp, err = um.RequestWith(ctx, cl)
	if err != nil || resp.ErrorCode != 0 {
		t.Fatalf("UpdateMetadata from the controller: %v %+v", err, resp)
	}
}
