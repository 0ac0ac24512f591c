package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/replica"
)

// TestFollowerFetchSessions: two brokers replicating 20 partitions to each
// other fetch through one session each (the leader's cache holds the
// follower's session); acks=all produce to every partition goes on working
// through incremental fetches, and the ISRs stay full while idle (the
// leader counts the positions the session holds). Before, followers sent
// every partition in every fetch and no session was ever opened.
func TestFollowerFetchSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	c := startInprocCluster(t, 2, "min.insync.replicas=2", "default.replication.factor=2", "offsets.topic.replication.factor=2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(c.client())
	waitFor(t, 20*time.Second, "two brokers", func() bool {
		// A fresh client each time: kgo answers from its cache.
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...))
		if err != nil {
			return false
		}
		defer cl.Close()
		m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
		return err == nil && len(m.Brokers) == 2 && m.Controller >= 1
	})
	res, err := adm.CreateTopic(ctx, 20, 2, nil, "fs")
	if err != nil || res.Err != nil {
		t.Fatalf("create: %v %v", err, res.Err)
	}
	fullISRs := func() bool {
		m, err := adm.Metadata(ctx, "fs")
		if err != nil || len(m.Topics["fs"].Partitions) != 20 {
			return false
		}
		for _, p := range m.Topics["fs"].Partitions {
			if p.Leader < 0 || len(p.ISR) != 2 {
				return false
			}
		}
		return true
	}
	waitFor(t, 30*time.Second, "full ISRs", fullISRs)
	waitFor(t, 10*time.Second, "a follower session on each broker", func() bool {
		for _, b := range c.brokers {
			if b.s.fetchSessions.Len() != 1 {
				return false
			}
		}
		return true
	})
	prod := c.client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("fs"))
	for round := range 3 {
		for p := range int32(20) {
			r := &kgo.Record{Partition: p, Value: []byte(fmt.Sprintf("v%d", round))}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("round %d partition %d: acks=all produce: %v", round, p, err)
			}
		}
	}
	// Idle: the followers send nothing new, and the leaders count the
	// positions their sessions hold, so each follower is seen caught up
	// again and again. Wait for that on every partition, two lag windows
	// (replica.lag.time.max.ms 2 s) into the idle period; no ISR changed
	// meanwhile (any change bumps the partition state's version).
	type led struct {
		p        *replica.Partition
		follower int32
		version  int32
	}
	var leds []led
	for id, b := range c.brokers {
		for p := range int32(20) {
			rp := b.s.partition("fs", p).rep
			if rp.Role() != replica.RoleLeader {
				continue
			}
			st := rp.State()
			for _, r := range st.Replicas {
				if r != id {
					leds = append(leds, led{rp, r, st.ZkVersion})
				}
			}
		}
	}
	if len(leds) != 20 {
		t.Fatalf("%d led partitions with a follower, want 20", len(leds))
	}
	const lagMax = 2 * time.Second
	idle := time.Now()
	waitFor(t, 30*time.Second, "every follower seen caught up two lag windows into the idle period", func() bool {
		for _, l := range leds {
			if at, ok := l.p.FollowerCaughtUp(l.follower); !ok || at.Before(idle.Add(2*lagMax)) {
				return false
			}
		}
		return true
	})
	for _, l := range leds {
		if st := l.p.State(); len(st.ISR) != 2 || st.ZkVersion != l.version {
			t.Fatalf("%s: ISR %v at version %d while the followers were idle in their sessions, was full at version %d",
				l.p.Log().TopicPartition(), st.ISR, st.ZkVersion, l.version)
		}
	}
	for id, b := range c.brokers {
		if n := b.s.fetchSessions.Len(); n != 1 {
			t.Fatalf("broker %d holds %d fetch sessions, want 1 (its follower's)", id, n)
		}
	}
}
