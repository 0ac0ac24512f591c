package testcluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// Consumer groups in cluster mode: the coordinator of a group is the leader
// of its __consumer_offsets partition (RF 3), commits are acknowledged once
// replicated, and when the coordinator is SIGKILLed the group moves to the
// partition's new leader, which replays the partition and serves the
// committed offsets: the consumer that stays, and a new one, resume there.

const (
	groupTopic  = "ledger"
	groupName   = "g-failover"
	offsetParts = 12 // offsets.topic.num.partitions in this test
)

// findCoordinator asks broker id directly where groupName is coordinated.
func findCoordinator(c *Cluster, id int32, g string) (int32, error) {
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.Version = 3
	req.CoordinatorKey = g
	resp, err := c.RequestTo(id, req, 5*time.Second)
	if err != nil {
		return -1, err
	}
	r := resp.(*kmsg.FindCoordinatorResponse)
	if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
		return -1, err
	}
	return r.NodeID, nil
}

// offsetFetchAt sends OffsetFetch for g straight to broker id and returns
// the group-level error.
func offsetFetchAt(c *Cluster, id int32, g string) error {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 5
	req.Group = g
	resp, err := c.RequestTo(id, req, 5*time.Second)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.(*kmsg.OffsetFetchResponse).ErrorCode)
}

// committedAt returns g's committed offsets of groupTopic as kadm reads them.
func committedAt(t *testing.T, c *Cluster, g string) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	c.WaitFor(60*time.Second, "committed offsets", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := c.Admin().FetchOffsets(ctx, g)
		if err != nil || res.Error() != nil {
			return false
		}
		clear(out)
		res.Each(func(o kadm.OffsetResponse) {
			if o.Topic == groupTopic {
				out[o.Partition] = o.At
			}
		})
		return true
	})
	return out
}

func committedOf(cl *kgo.Client) map[int32]int64 {
	out := map[int32]int64{}
	for p, eo := range cl.CommittedOffsets()[groupTopic] {
		out[p] = eo.Offset
	}
	return out
}

// commit commits what cl polled, retrying while the coordinator moves.
func commit(t *testing.T, c *Cluster, cl *kgo.Client) {
	t.Helper()
	var last error
	c.WaitFor(60*time.Second, "a successful commit", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		last = cl.CommitUncommittedOffsets(ctx)
		if last != nil {
			t.Logf("commit: %v (retrying)", last)
		}
		return last == nil
	})
}

func TestConsumerGroupCoordinatorFailover(t *testing.T) {
	c := startCluster(t, "group.initial.rebalance.delay.ms=0", fmt.Sprintf("offsets.topic.num.partitions=%d", offsetParts))
	defer checkNoRaces(t, c)
	createTopic(t, c, groupTopic, 3)

	// 3,000 records, acknowledged by every replica.
	prod := c.Client(kgo.DefaultProduceTopic(groupTopic), kgo.RequiredAcks(kgo.AllISRAcks()))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const total = 3000
	for i := 0; i < total; i += 100 {
		var recs []*kgo.Record
		for j := i; j < i+100; j++ {
			recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%03d", j%64), Value: fmt.Appendf(nil, "v%d", j)})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ends := map[int32]int64{}
	ps, err := partitions(c, groupTopic)
	if err != nil {
		t.Fatal(err)
	}
	endRes, err := c.Admin().ListEndOffsets(ctx, groupTopic)
	if err != nil {
		t.Fatal(err)
	}
	endRes.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	t.Logf("end offsets %v over %d partitions", ends, len(ps))

	groupOpts := []kgo.Opt{
		kgo.ConsumerGroup(groupName), kgo.ConsumeTopics(groupTopic), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(200 * time.Millisecond), kgo.FetchMaxPartitionBytes(4 << 10),
		kgo.SessionTimeout(30 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond),
	}
	c1 := c.Client(groupOpts...)
	seen1 := map[int32][]int64{}
	poll := func(cl *kgo.Client, seen map[int32][]int64, atLeast int) int {
		n := 0
		c.WaitFor(90*time.Second, fmt.Sprintf("%d records polled", atLeast), func() bool {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			defer pcancel()
			fs := cl.PollRecords(pctx, 200)
			fs.EachRecord(func(r *kgo.Record) {
				seen[r.Partition] = append(seen[r.Partition], r.Offset)
				n++
			})
			return n >= atLeast
		})
		return n
	}
	poll(c1, seen1, 1000)
	commit(t, c, c1)
	committed1 := committedOf(c1)
	if got := committedAt(t, c, groupName); !equalOffsets(got, committed1) {
		t.Fatalf("OffsetFetch %v, client committed %v", got, committed1)
	}
	t.Logf("committed %v", committed1)

	// The coordinator is the leader of the group's partition, on every
	// broker's word; the others answer group requests NOT_COORDINATOR.
	op, err := partitions(c, group.OffsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	if len(op) != offsetParts {
		t.Fatalf("%s has %d partitions", group.OffsetsTopic, len(op))
	}
	gp := group.PartitionFor(groupName, offsetParts)
	coord := op[gp].Leader
	if len(op[gp].Replicas) != 3 || len(op[gp].ISR) != 3 {
		t.Fatalf("%s-%d replicas %v ISR %v, want 3 of each", group.OffsetsTopic, gp, op[gp].Replicas, op[gp].ISR)
	}
	for _, id := range c.IDs() {
		got, err := findCoordinator(c, id, groupName)
		if err != nil || got != coord {
			t.Fatalf("broker %d: coordinator %d (%v), want the leader %d of %s-%d", id, got, err, coord, group.OffsetsTopic, gp)
		}
		err = offsetFetchAt(c, id, groupName)
		if id == coord && err != nil {
			t.Fatalf("coordinator %d: OffsetFetch %v", id, err)
		}
		if id != coord && err != kerr.NotCoordinator {
			t.Fatalf("broker %d: OffsetFetch %v, want NOT_COORDINATOR", id, err)
		}
	}

	// Kill the coordinator; the member keeps consuming and committing.
	killedAt := time.Now()
	c.Kill(coord)
	t.Logf("killed coordinator %d (leader of %s-%d)", coord, group.OffsetsTopic, gp)
	var next int32 = -1
	c.WaitFor(60*time.Second, "a new coordinator", func() bool {
		for _, id := range c.IDs() {
			if id == coord {
				continue
			}
			if got, err := findCoordinator(c, id, groupName); err == nil && got != coord {
				next = got
				return true
			}
		}
		return false
	})
	t.Logf("group moved to broker %d after %v", next, time.Since(killedAt).Round(time.Millisecond))
	c.WaitFor(30*time.Second, "the new coordinator to load the group's partition", func() bool {
		return strings.Contains(c.Broker(next).Logs(), fmt.Sprintf("msg=\"coordinating groups\" component=cluster partition=%d ", gp))
	})
	after := map[int32][]int64{}
	poll(c1, after, 1000)
	for p, offs := range after {
		for _, o := range offs {
			if o < committed1[p] {
				t.Fatalf("partition %d: polled offset %d after committing %d", p, o, committed1[p])
			}
		}
	}
	commit(t, c, c1)
	committed2 := committedOf(c1)
	if got := committedAt(t, c, groupName); !equalOffsets(got, committed2) {
		t.Fatalf("after the move: OffsetFetch %v, client committed %v", got, committed2)
	}
	t.Logf("committed on the new coordinator %v (%v after the kill)", committed2, time.Since(killedAt).Round(time.Millisecond))
	c1.Close() // leaves the group; nothing more committed

	// A new member resumes exactly at the committed offsets and reads to
	// the end without gaps.
	c2 := c.Client(groupOpts...)
	seen2 := map[int32][]int64{}
	remaining := 0
	for p, end := range ends {
		remaining += int(end - committed2[p])
	}
	if remaining > 0 {
		poll(c2, seen2, remaining)
	}
	for p, end := range ends {
		offs := seen2[p]
		want := committed2[p]
		for _, o := range offs {
			if o != want {
				t.Fatalf("partition %d: second member read %d, want %d (committed %d, end %d)", p, o, want, committed2[p], end)
			}
			want++
		}
		if want != end {
			t.Fatalf("partition %d: second member stopped at %d, end %d", p, want, end)
		}
	}

	// The killed broker comes back as a follower of the partition and the
	// group stays where it is.
	c.StartBroker(coord)
	waitFullISR(t, c, group.OffsetsTopic, 60*time.Second)
	commit(t, c, c2)
	if got := committedAt(t, c, groupName); !equalOffsets(got, ends) {
		t.Fatalf("final OffsetFetch %v, want the end offsets %v", got, ends)
	}
}

// offsets.topic.replication.factor is enforced as in Kafka since KIP-115:
// with fewer live brokers __consumer_offsets is not created and
// FindCoordinator answers COORDINATOR_NOT_AVAILABLE; once enough brokers
// are up it is created with the full replication factor.
func TestOffsetsTopicReplicationFactor(t *testing.T) {
	if testing.Short() {
		t.Skip("process cluster tests are not short")
	}
	if why := ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	c := Start(t, Options{Brokers: 2, Bin: kvlogdBin, Props: append(slices.Clone(fastProps), fmt.Sprintf("offsets.topic.num.partitions=%d", offsetParts))})
	defer checkNoRaces(t, c)
	for _, id := range c.IDs() {
		if _, err := findCoordinator(c, id, groupName); err != kerr.CoordinatorNotAvailable {
			t.Fatalf("broker %d with 2 of 3 brokers: FindCoordinator %v, want COORDINATOR_NOT_AVAILABLE", id, err)
		}
	}
	if m, err := c.Metadata(group.OffsetsTopic); err == nil && len(m.Topics) == 1 && m.Topics[0].ErrorCode == 0 {
		t.Fatalf("%s created with 2 live brokers", group.OffsetsTopic)
	}
	c.AddBroker(3)
	c.WaitBrokers(3, 30*time.Second)
	var coord int32 = -1
	c.WaitFor(30*time.Second, "a coordinator", func() bool {
		var err error
		coord, err = findCoordinator(c, 1, groupName)
		return err == nil
	})
	op, err := partitions(c, group.OffsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range op {
		if len(p.Replicas) != 3 {
			t.Fatalf("%s-%d replicas %v, want 3", group.OffsetsTopic, p.Partition, p.Replicas)
		}
	}
	if gp := group.PartitionFor(groupName, offsetParts); op[gp].Leader != coord {
		t.Fatalf("coordinator %d, leader of %s-%d %d", coord, group.OffsetsTopic, gp, op[gp].Leader)
	}
}

// offsetCommitAt sends a simple (generation -1) OffsetCommit of
// groupTopic-0 straight to broker id.
func offsetCommitAt(c *Cluster, id int32, g string, offset int64) (int16, error) {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group = g
	req.Generation = -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = groupTopic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition = 0
	rp.Offset = offset
	rp.LeaderEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := c.RequestTo(id, req, 20*time.Second)
	if err != nil {
		return -1, err
	}
	return resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode, nil
}

// An offset commit is acknowledged only once the in-sync replicas of its
// __consumer_offsets partition have it: with both followers stopped it
// fails (the ISR shrinks below min.insync.replicas while it waits), and it
// succeeds again once they are back.
func TestOffsetCommitWaitsForReplicas(t *testing.T) {
	c := startCluster(t, fmt.Sprintf("offsets.topic.num.partitions=%d", offsetParts), "zookeeper.session.timeout.ms=10000")
	defer checkNoRaces(t, c)
	createTopic(t, c, groupTopic, 1)
	const g = "g-acks"
	var coord int32 = -1
	c.WaitFor(30*time.Second, "a coordinator", func() bool {
		var err error
		coord, err = findCoordinator(c, 1, g)
		return err == nil
	})
	waitFullISR(t, c, group.OffsetsTopic, 30*time.Second)
	c.WaitFor(30*time.Second, "a first commit", func() bool {
		code, err := offsetCommitAt(c, coord, g, 5)
		return err == nil && code == 0
	})
	gp := group.PartitionFor(g, offsetParts)
	op, err := partitions(c, group.OffsetsTopic)
	if err != nil {
		t.Fatal(err)
	}
	if op[gp].Leader != coord {
		t.Fatalf("coordinator %d, leader of %s-%d %d", coord, group.OffsetsTopic, gp, op[gp].Leader)
	}
	var followers []int32
	for _, id := range op[gp].Replicas {
		if id != coord {
			followers = append(followers, id)
			c.Pause(id)
		}
	}
	for _, id := range followers {
		waitStopped(t, c, id) // SIGSTOP takes effect asynchronously
	}
	start := time.Now()
	code, err := offsetCommitAt(c, coord, g, 7)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 {
		t.Fatalf("commit acknowledged with both followers %v stopped (after %v)", followers, took)
	}
	t.Logf("commit with followers %v stopped: %v after %v", followers, kerr.ErrorForCode(code), took.Round(time.Millisecond))
	for _, id := range followers {
		c.Resume(id)
	}
	waitFullISR(t, c, group.OffsetsTopic, 60*time.Second)
	c.WaitFor(30*time.Second, "a commit after the followers came back", func() bool {
		code, err := offsetCommitAt(c, coord, g, 9)
		return err == nil && code == 0
	})
	if got := committedAt(t, c, g); got[0] != 9 {
		t.Fatalf("committed %v, want 9", got)
	}
}

// waitStopped waits until every thread of broker id's process is stopped.
func waitStopped(t *testing.T, c *Cluster, id int32) {
	t.Helper()
	b := c.Broker(id)
	b.mu.Lock()
	pid := b.cmd.Process.Pid
	b.mu.Unlock()
	c.WaitFor(10*time.Second, fmt.Sprintf("broker %d stopped", id), func() bool {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return false
		}
		for _, task := range tasks {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				return false
			}
			// pid (comm) state ...: comm may hold spaces, the state follows ") ".
			i := strings.LastIndex(string(st), ") ")
			if i < 0 || i+2 >= len(st) || (st[i+2] != 'T' && st[i+2] != 't') {
				return false
			}
		}
		return true
	})
}

// checkNoRaces fails the test if a broker built with KVLOG_RACE reported a
// data race.
func checkNoRaces(t *testing.T, c *Cluster) {
	t.Helper()
	for _, id := range c.IDs() {
		if logs := c.Broker(id).Logs(); strings.Contains(logs, "WARNING: DATA RACE") {
			i := strings.Index(logs, "WARNING: DATA RACE")
			t.Errorf("broker %d reported a data race:\n%s", id, logs[i:min(len(logs), i+6000)])
		}
	}
}

func equalOffsets(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for p, o := range a {
		if b[p] != o {
			return false
		}
	}
	return true
}
