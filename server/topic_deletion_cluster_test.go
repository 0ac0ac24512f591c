package server

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cluster mode: deleting a topic removes its committed offsets from the
// groups of whichever broker coordinates them (the UpdateMetadata that
// drops the topic), so a re-created topic of the same name starts with
// none.
func TestClusterDeletedTopicLosesOffsets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	c := startInprocCluster(t, 2, "offsets.topic.replication.factor=2", "offsets.topic.num.partitions=4")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(c.client())
	waitFor(t, 30*time.Second, "two brokers and a controller", func() bool {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.seeds()...))
		if err != nil {
			return false
		}
		defer cl.Close()
		m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
		return err == nil && len(m.Brokers) == 2 && m.Controller >= 1
	})
	if r, err := adm.CreateTopic(ctx, 2, 2, nil, "orders"); err != nil || r.Err != nil {
		t.Fatalf("create: %v %v", err, r.Err)
	}
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 20, LeaderEpoch: -1})
	commit.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 7, LeaderEpoch: -1})
	waitFor(t, 60*time.Second, "offsets committed", func() bool {
		r, err := adm.CommitOffsets(ctx, "billing", commit)
		return err == nil && r.Error() == nil
	})
	committed := func() int {
		offs, err := adm.FetchOffsets(ctx, "billing")
		if err != nil || offs.Error() != nil {
			return -1
		}
		n := 0
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Topic == "orders" && o.At >= 0 {
				n++
			}
		})
		return n
	}
	if n := committed(); n != 2 {
		t.Fatalf("%d offsets committed, want 2", n)
	}
	rs, err := adm.DeleteTopics(ctx, "orders")
	if err != nil || rs.Error() != nil {
		t.Fatalf("delete: %v %v", err, rs.Error())
	}
	waitFor(t, 60*time.Second, "the deleted topic's offsets removed", func() bool { return committed() == 0 })
	// The re-created topic (once the deletion finished) has no offsets.
	waitFor(t, 60*time.Second, "re-creation", func() bool {
		r, err := adm.CreateTopic(ctx, 2, 2, nil, "orders")
		return err == nil && r.Err == nil
	})
	if n := committed(); n != 0 {
		t.Fatalf("re-created topic starts with %d committed offsets", n)
	}
}
