package groupclients

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// member is one franz-go group member polling and committing in a loop.
type member struct {
	cl   *kgo.Client
	stop chan struct{}
	done chan struct{}
}

// consumption collects what the members read.
type consumption struct {
	mu   sync.Mutex
	seen map[string]int
}

func (c *consumption) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func startMember(t *testing.T, p *testbroker.Broker, group, topic string, into *consumption) *member {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(p.Addr),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(500*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	m := &member{cl: cl, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			fs := cl.PollFetches(ctx)
			cancel()
			fs.EachRecord(func(r *kgo.Record) {
				into.mu.Lock()
				into.seen[string(r.Value)]++
				into.mu.Unlock()
			})
			// Commit what was read; during a rebalance this may be refused
			// (the next owner then reads those records again).
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			cl.CommitUncommittedOffsets(cctx)
			ccancel()
		}
	}()
	return m
}

// leave stops the member, which leaves the group.
func (m *member) leave() {
	close(m.stop)
	<-m.done
	m.cl.Close()
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stableGroup reports whether group is Stable with members members and a
// chosen protocol.
func stableGroup(t *testing.T, adm *kadm.Client, group string, members int) bool {
	dg, err := adm.DescribeGroups(testbroker.Context(t, 10*time.Second), group)
	g := dg[group]
	return err == nil && g.State == "Stable" && len(g.Members) == members && g.Protocol != ""
}

// caughtUp reports whether the group's committed offset of every partition
// of topic is the partition's end offset.
func caughtUp(t *testing.T, p *testbroker.Broker, group, topic string) bool {
	cm, e := committed(t, p, group, topic)
	if len(cm) != len(e) {
		return false
	}
	for part, off := range e {
		if cm[part] != off {
			return false
		}
	}
	return true
}

// resume runs one new member until want records arrived and checks they
// are exactly values [from, from+want): committed offsets are honoured.
func resume(t *testing.T, p *testbroker.Broker, group, topic string, from, want int) {
	t.Helper()
	c := &consumption{seen: map[string]int{}}
	m := startMember(t, p, group, topic, c)
	waitFor(t, "the resumed member to read the new records", 60*time.Second, func() bool { return c.distinct() >= want })
	// The member commits what it read after each poll: once the group's
	// commits reach every partition's end it has read all it was going to
	// (older records, had the committed offsets been behind, included).
	waitFor(t, "the resumed member to commit up to the end", 60*time.Second, func() bool { return caughtUp(t, p, group, topic) })
	m.leave()
	c.mu.Lock()
	defer c.mu.Unlock()
	for v, n := range c.seen {
		if i := valueIndex(t, v); i < from || i >= from+want || n != 1 {
			t.Fatalf("resumed member read %s %d times (want only v%d..v%d, once)", v, n, from, from+want-1)
		}
	}
	if len(c.seen) != want {
		t.Fatalf("resumed member read %d records, want %d", len(c.seen), want)
	}
}

// TestFranzGroupRebalanceAndRestarts: a group of three franz-go consumers
// rebalancing while members join and leave reads everything; the
// committed offsets are where a new member resumes, also after a SIGTERM
// and after a SIGKILL restart of the broker (replayed from
// __consumer_offsets).
func TestFranzGroupRebalanceAndRestarts(t *testing.T) {
	p := startKvlogd(t)
	const topic, group = "orders", "order-processors"
	createTopic(t, p, topic, 6)

	c := &consumption{seen: map[string]int{}}
	adm := p.Admin(t)
	var members []*member
	total := 0
	for i := 0; i < 3; i++ {
		members = append(members, startMember(t, p, group, topic, c))
		produce(t, p, topic, total, 100)
		total += 100
		// Each join is a rebalance of its own: the next member starts
		// once this one is in a stable generation.
		waitFor(t, fmt.Sprintf("a stable group of %d", i+1), 60*time.Second, func() bool { return stableGroup(t, adm, group, i+1) })
	}
	// Churn: one member leaves, another joins, records keep coming.
	members[1].leave()
	produce(t, p, topic, total, 100)
	total += 100
	members[1] = startMember(t, p, group, topic, c)
	produce(t, p, topic, total, 100)
	total += 100
	members[0].leave()
	members[0] = startMember(t, p, group, topic, c)
	produce(t, p, topic, total, 100)
	total += 100

	waitFor(t, "every record to be consumed", 90*time.Second, func() bool { return c.distinct() == total })
	waitFor(t, "a stable group of three", 60*time.Second, func() bool { return stableGroup(t, adm, group, 3) })
	waitFor(t, "the group to commit up to the end", 60*time.Second, func() bool { return caughtUp(t, p, group, topic) })
	for _, m := range members {
		m.leave()
	}
	waitFor(t, "the group to be empty", 30*time.Second, func() bool {
		dg, err := adm.DescribeGroups(testbroker.Context(t, 10*time.Second), group)
		return err == nil && dg[group].State == "Empty"
	})
	before := requireCaughtUp(t, p, group, topic)

	// Clean restart.
	p.Term()
	p.Restart()
	if after := requireCaughtUp(t, p, group, topic); len(after) != len(before) {
		t.Fatalf("after SIGTERM restart: %v, before %v", after, before)
	}
	dg, err := p.Admin(t).DescribeGroups(testbroker.Context(t, 10*time.Second), group)
	if g := dg[group]; err != nil || g.State != "Empty" || g.ProtocolType != "consumer" {
		t.Fatalf("group after restart: %+v %v", g, err)
	}
	produce(t, p, topic, total, 50)
	resume(t, p, group, topic, total, 50)
	total += 50
	requireCaughtUp(t, p, group, topic)

	// Crash: SIGKILL right after the commits; they were acknowledged, so
	// they are replayed.
	produce(t, p, topic, total, 50)
	resume(t, p, group, topic, total, 50)
	total += 50
	before = requireCaughtUp(t, p, group, topic)
	p.Kill()
	p.Restart()
	if after := requireCaughtUp(t, p, group, topic); len(after) != len(before) {
		t.Fatalf("after SIGKILL restart: %v, before %v", after, before)
	}
	produce(t, p, topic, total, 30)
	resume(t, p, group, topic, total, 30)
	p.Term()
}
