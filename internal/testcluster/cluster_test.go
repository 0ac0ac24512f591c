package testcluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/record"
)

// Process-level cluster tests: a real ZooKeeper and three kvlogd processes,
// faults injected with signals. Each test starts its own
// cluster; the whole file runs in a few minutes.

var kvlogdBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if ZooKeeperAvailable() != "" || testing.Short() {
		os.Exit(m.Run()) // tests skip themselves
	}
	dir, err := os.MkdirTemp("", "kvlog-testcluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// KVLOG_TEST_KVLOGD runs the tests and benchmarks against a given
	// kvlogd binary (e.g. a previous revision's, for a same-run
	// before/after comparison) instead of building this checkout's.
	if bin := os.Getenv("KVLOG_TEST_KVLOGD"); bin != "" {
		kvlogdBin = bin
	} else {
		kvlogdBin, err = BuildKvlogd(dir, os.Getenv("KVLOG_RACE") != "")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fastProps make failure detection and ISR changes quick.
var fastProps = []string{
	"zookeeper.session.timeout.ms=3000",
	"replica.lag.time.max.ms=2000",
	"replica.fetch.wait.max.ms=100",
	"replica.fetch.backoff.ms=200",
	"controlled.shutdown.retry.backoff.ms=200",
	"min.insync.replicas=2",
	"default.replication.factor=3",
	"auto.leader.rebalance.enable=false",
	"log.cleaner.backoff.ms=1000",
}

func startCluster(t *testing.T, extra ...string) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("process cluster tests are not short")
	}
	if why := ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	return Start(t, Options{Bin: kvlogdBin, Props: append(slices.Clone(fastProps), extra...)})
}

// createTopic creates a compacted RF-3 topic and waits for leaders and full ISRs.
func createTopic(t *testing.T, c *Cluster, name string, partitions int32) {
	t.Helper()
	createTopicWithin(t, c, name, partitions, 30*time.Second)
}

// createTopicWithin is createTopic with a timeout for the creation and for
// the full ISRs each.
func createTopicWithin(t *testing.T, c *Cluster, name string, partitions int32, timeout time.Duration) {
	t.Helper()
	adm := c.Admin()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := adm.CreateTopic(ctx, partitions, 3, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, name)
	if err != nil || res.Err != nil {
		t.Fatalf("create %s: %v %v", name, err, res.Err)
	}
	waitFullISR(t, c, name, timeout)
}

// partitions asks a running broker directly (no client caching).
func partitions(c *Cluster, topic string) (kadm.PartitionDetails, error) {
	m, err := c.Metadata(topic)
	if err != nil {
		return nil, err
	}
	if len(m.Topics) != 1 {
		return nil, fmt.Errorf("topic %s missing", topic)
	}
	td := m.Topics[0]
	if err := kerr.ErrorForCode(td.ErrorCode); err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	out := kadm.PartitionDetails{}
	for _, p := range td.Partitions {
		out[p.Partition] = kadm.PartitionDetail{Topic: topic, Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
			Replicas: p.Replicas, ISR: p.ISR, OfflineReplicas: p.OfflineReplicas, Err: kerr.ErrorForCode(p.ErrorCode)}
	}
	return out, nil
}

func waitFullISR(t *testing.T, c *Cluster, topic string, timeout time.Duration) {
	t.Helper()
	n := len(c.IDs())
	c.WaitFor(timeout, topic+" leaders and full ISRs", func() bool {
		ps, err := partitions(c, topic)
		if err != nil || len(ps) == 0 {
			return false
		}
		for _, p := range ps {
			if p.Leader < 0 || len(p.ISR) != n {
				return false
			}
		}
		return true
	})
}

func leaderOf(t *testing.T, c *Cluster, topic string, p int32) (int32, int32) {
	t.Helper()
	var leader, epoch int32 = -1, -1
	c.WaitFor(30*time.Second, "a leader", func() bool {
		ps, err := partitions(c, topic)
		if err != nil {
			return false
		}
		pd, ok := ps[p]
		if !ok || pd.Leader < 0 {
			return false
		}
		leader, epoch = pd.Leader, pd.LeaderEpoch
		return true
	})
	return leader, epoch
}

func checkWorkload(t *testing.T, c *Cluster, w *Workload, topic string) Report {
	t.Helper()
	rep := w.Check(ReadAll(t, c, topic))
	t.Logf("checker: %s", rep)
	if !rep.OK() {
		t.Errorf("anomalies: %s\n%s", rep, strings.Join(rep.Examples, "\n"))
	}
	return rep
}

// Basic cluster behaviour: produce/consume through any broker, metadata
// shows leaders and ISRs, config changes and deletion propagate.
func TestClusterBasics(t *testing.T) {
	c := startCluster(t)
	createTopic(t, c, "users", 3)
	ps, err := partitions(c, "users")
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]bool{}
	for _, p := range ps {
		leaders[p.Leader] = true
		if len(p.Replicas) != 3 {
			t.Fatalf("partition %d replicas %v", p.Partition, p.Replicas)
		}
	}
	if len(leaders) != 3 {
		t.Errorf("leaders not spread over the brokers: %v", ps)
	}
	w := StartWorkload(c, "users", 20, 16)
	c.WaitFor(30*time.Second, "200 acknowledgements", func() bool { return w.Acked() >= 200 })
	w.Stop()
	checkWorkload(t, c, w, "users")

	// A config change through broker 1 is seen by broker 3.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl1 := kadm.NewClient(c.Client(kgo.SeedBrokers(c.Broker(1).Addr)))
	if _, err := cl1.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "min.compaction.lag.ms", Value: kadm.StringPtr("1234")}}, "users"); err != nil {
		t.Fatal(err)
	}
	direct3 := c.Client(kgo.SeedBrokers(c.Broker(3).Addr))
	c.WaitFor(10*time.Second, "config change on broker 3", func() bool {
		req := newDescribeConfigs("users")
		resp, err := req.RequestWith(ctx, direct3.Broker(3))
		if err != nil || len(resp.Resources) != 1 {
			return false
		}
		for _, cfg := range resp.Resources[0].Configs {
			if cfg.Name == "min.compaction.lag.ms" && cfg.Value != nil && *cfg.Value == "1234" {
				return true
			}
		}
		return false
	})

	// Deletion removes the replicas everywhere.
	if _, err := c.Admin().DeleteTopics(ctx, "users"); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(20*time.Second, "replica directories deleted on every broker", func() bool {
		for _, id := range c.IDs() {
			matches, _ := filepath.Glob(filepath.Join(c.Broker(id).Dir, "data", "users-*"))
			for _, m := range matches {
				if !strings.Contains(m, ".delete") && !strings.HasSuffix(m, "-delete") {
					return false
				}
			}
		}
		return true
	})
}

// R1: an idempotent acks=all producer writes keyed records while the leader
// of partition 0 is SIGKILLed and restarted three times; every acknowledged
// record is read back exactly once, in order within its key, at the offset
// it was acknowledged at.
func TestLeaderKillLoop(t *testing.T) {
	c := startCluster(t)
	createTopic(t, c, "orders", 3)
	w := StartWorkload(c, "orders", 50, 32)
	c.WaitFor(30*time.Second, "first acknowledgements", func() bool { return w.Acked() >= 100 })
	var gaps []time.Duration
	for round := 0; round < 3; round++ {
		leader, epoch := leaderOf(t, c, "orders", 0)
		killedAt := time.Now()
		c.Kill(leader)
		t.Logf("round %d: killed leader %d of orders-0 (epoch %d)", round, leader, epoch)
		c.WaitFor(30*time.Second, "a new leader for orders-0", func() bool {
			ps, err := partitions(c, "orders")
			return err == nil && ps[0].Leader >= 0 && ps[0].Leader != leader && ps[0].LeaderEpoch > epoch
		})
		acked := w.Acked()
		c.WaitFor(30*time.Second, "writes to resume", func() bool { return w.Acked() > acked+50 })
		c.WaitFor(30*time.Second, "writes to orders-0 to resume", func() bool { return w.AckGapAfter(0, killedAt) > 0 })
		gap := w.AckGapAfter(0, killedAt)
		gaps = append(gaps, gap)
		t.Logf("round %d: writes resumed; orders-0 fail-over (last ack before the kill to first ack after) %v", round, gap)
		c.StartBroker(leader)
		waitFullISR(t, c, "orders", 60*time.Second)
	}
	c.WaitFor(10*time.Second, "more acknowledgements", func() bool { return w.Acked() > 500 })
	w.Stop()
	checkWorkload(t, c, w, "orders")
	// Session timeout (3 s) plus a few seconds.
	for i, g := range gaps {
		if g > 3*time.Second+7*time.Second {
			t.Errorf("round %d: writes stalled %v after the leader was killed", i, g)
		}
	}
}

// R3: a follower SIGSTOPped past replica.lag.time.max.ms leaves the ISR
// while the HW keeps moving; after SIGCONT it catches up and rejoins.
func TestFollowerPauseShrinksAndExpandsISR(t *testing.T) {
	c := startCluster(t, "zookeeper.session.timeout.ms=10000")
	createTopic(t, c, "events", 1)
	leader, _ := leaderOf(t, c, "events", 0)
	ctlID := controllerID(t, c)
	var follower int32 = -1
	for _, id := range c.IDs() {
		if id != leader && id != ctlID {
			follower = id
		}
	}
	if follower < 0 {
		for _, id := range c.IDs() {
			if id != leader {
				follower = id
			}
		}
	}
	w := StartWorkload(c, "events", 10, 8)
	c.WaitFor(30*time.Second, "acknowledgements", func() bool { return w.Acked() >= 50 })
	c.Pause(follower)
	pausedAt := time.Now()
	c.WaitFor(2*time.Second+5*time.Second, "ISR shrink", func() bool {
		ps, err := partitions(c, "events")
		return err == nil && !slices.Contains(ps[0].ISR, follower)
	})
	t.Logf("ISR shrank %v after the pause", time.Since(pausedAt))
	acked := w.Acked()
	c.WaitFor(10*time.Second, "HW moving without the paused follower", func() bool { return w.Acked() > acked+50 })
	c.Resume(follower)
	resumedAt := time.Now()
	c.WaitFor(30*time.Second, "ISR expand", func() bool {
		ps, err := partitions(c, "events")
		return err == nil && slices.Contains(ps[0].ISR, follower)
	})
	t.Logf("follower rejoined the ISR %v after resuming", time.Since(resumedAt))
	w.Stop()
	checkWorkload(t, c, w, "events")
}

// R4: with two of three brokers killed, acks=all gets NOT_ENOUGH_REPLICAS,
// nothing is acknowledged and the HW does not move; restarting them
// restores service.
func TestKillTwoOfThree(t *testing.T) {
	c := startCluster(t)
	createTopic(t, c, "ledger", 1)
	w := StartWorkload(c, "ledger", 10, 8)
	c.WaitFor(30*time.Second, "acknowledgements", func() bool { return w.Acked() >= 50 })
	w.Stop()
	leader, _ := leaderOf(t, c, "ledger", 0)
	var killed []int32
	for _, id := range c.IDs() {
		if id != leader {
			c.Kill(id)
			killed = append(killed, id)
		}
	}
	c.WaitFor(30*time.Second, "ISR down to the leader", func() bool {
		ps, err := partitions(c, "ledger")
		return err == nil && len(ps[0].ISR) == 1
	})
	hwBefore := endOffset(t, c, "ledger")
	for i := 0; i < 5; i++ {
		err := produceRaw(t, c, leader, "ledger", 0, -1)
		if !errors.Is(err, kerr.NotEnoughReplicas) {
			t.Fatalf("acks=all with one replica: %v, want NOT_ENOUGH_REPLICAS", err)
		}
	}
	if hw := endOffset(t, c, "ledger"); hw != hwBefore {
		t.Fatalf("high watermark moved from %d to %d without enough replicas", hwBefore, hw)
	}
	for _, id := range killed {
		c.StartBroker(id)
	}
	waitFullISR(t, c, "ledger", 60*time.Second)
	w2 := StartWorkload(c, "ledger", 10, 8)
	c.WaitFor(30*time.Second, "service resumed", func() bool { return w2.Acked() >= 50 })
	w2.Stop()
	rep := w2.Check(ReadAll(t, c, "ledger"))
	if rep.Lost != 0 || rep.InconsistentOffsets != 0 {
		t.Errorf("after restart: %s", rep)
	}
	rep1 := w.Check(ReadAll(t, c, "ledger"))
	if !rep1.OK() {
		t.Errorf("first workload: %s", rep1)
	}
}

// Controller SIGKILL and SIGSTOP past its session: a new controller with a
// higher epoch each time; leader epochs only increase; the old controller,
// resumed, is not a controller any more.
func TestControllerFailover(t *testing.T) {
	c := startCluster(t)
	createTopic(t, c, "audit", 3)
	zkc := c.ZKConn()
	epochOf := func() int {
		data, _, err := zkc.Get("/kvlog/controller_epoch")
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(string(data))
		return n
	}
	leaderEpochs := func() map[int32]int32 {
		ps, err := partitions(c, "audit")
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]int32{}
		for _, p := range ps {
			out[p.Partition] = p.LeaderEpoch
		}
		return out
	}
	w := StartWorkload(c, "audit", 20, 16)
	defer w.Stop()

	old := controllerID(t, c)
	e0 := epochOf()
	le0 := leaderEpochs()
	c.Kill(old)
	var next int32
	c.WaitFor(30*time.Second, "a new controller", func() bool {
		next = controllerIDNow(c)
		return next >= 0 && next != old
	})
	if e := epochOf(); e <= e0 {
		t.Fatalf("controller epoch %d after %d", e, e0)
	}
	c.StartBroker(old)
	waitFullISR(t, c, "audit", 60*time.Second)
	le1 := leaderEpochs()
	for p, e := range le1 {
		if e < le0[p] {
			t.Fatalf("partition %d leader epoch went from %d to %d", p, le0[p], e)
		}
	}

	// Pause the controller past its session.
	ctl := controllerID(t, c)
	e1 := epochOf()
	c.Pause(ctl)
	c.WaitFor(30*time.Second, "another controller while the old one is paused", func() bool {
		id := controllerIDNow(c)
		return id >= 0 && id != ctl
	})
	if e := epochOf(); e <= e1 {
		t.Fatalf("controller epoch %d after %d", e, e1)
	}
	c.Resume(ctl)
	waitFullISR(t, c, "audit", 60*time.Second)
	c.WaitFor(20*time.Second, "resumed broker not acting as controller", func() bool {
		return metric(c.Broker(ctl).HTTP, "kvlog_controller_active") == "0"
	})
	le2 := leaderEpochs()
	for p, e := range le2 {
		if e < le1[p] {
			t.Fatalf("partition %d leader epoch went from %d to %d", p, le1[p], e)
		}
	}
	acked := w.Acked()
	c.WaitFor(30*time.Second, "writes after both failovers", func() bool { return w.Acked() > acked+50 })
	w.Stop()
	checkWorkload(t, c, w, "audit")
}

func controllerIDNow(c *Cluster) int32 {
	m, err := c.Metadata()
	if err != nil {
		return -1
	}
	return m.ControllerID
}

func controllerID(t *testing.T, c *Cluster) int32 {
	t.Helper()
	var id int32 = -1
	c.WaitFor(30*time.Second, "a controller", func() bool {
		id = controllerIDNow(c)
		return id >= 0
	})
	return id
}

func endOffset(t *testing.T, c *Cluster, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := c.Admin().ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("end offsets: %v %v", err, ends.Error())
	}
	o, _ := ends.Lookup(topic, 0)
	return o.Offset
}

// produceRaw sends one Produce with a single-record batch straight to
// broker id and returns the partition's error.
func produceRaw(t *testing.T, c *Cluster, id int32, topic string, partition int32, acks int16) error {
	t.Helper()
	var bl record.Builder
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
	bl.BaseTimestamp = time.Now().UnixMilli()
	bl.LastOffsetDelta, bl.MaxTimestamp = -1, -1
	bl.Add(record.Record{Key: []byte("k"), Value: []byte("refused")})
	batch, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Version = 8
	req.Acks = acks
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := c.RequestTo(id, req, 10*time.Second)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode)
}

// kcat (librdkafka) produces through one broker and consumes through
// another, keys and values intact.
func TestKcatThroughAnyBroker(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Skip("kcat not installed (make tools)")
	}
	c := startCluster(t)
	createTopic(t, c, "kc", 2)
	var in strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&in, "key%d:value%d\n", i%10, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prod := exec.CommandContext(ctx, "kcat", "-b", c.Broker(1).Addr, "-t", "kc", "-P", "-K:", "-X", "acks=all", "-X", "enable.idempotence=true")
	prod.Stdin = strings.NewReader(in.String())
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}
	cons := exec.CommandContext(ctx, "kcat", "-b", c.Broker(3).Addr, "-t", "kc", "-C", "-e", "-q", "-f", "%k=%s\n")
	out, err := cons.Output()
	if err != nil {
		t.Fatalf("kcat consume: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 100 {
		t.Fatalf("kcat consumed %d records, want 100:\n%s", len(lines), out)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		seen[l] = true
	}
	for i := 0; i < 100; i++ {
		if want := fmt.Sprintf("key%d=value%d", i%10, i); !seen[want] {
			t.Fatalf("missing %q", want)
		}
	}
}
