package testcluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestMetadataNotAheadOfLeaders: three topics of 200 RF-3 partitions are
// created in one request; from then on, every partition Metadata names a
// leader for accepts a produce at that leader (the controller publishes
// the metadata of new partitions once their leaders have applied their
// LeaderAndIsr). Before, the controller sent UpdateMetadata first, and
// Metadata named leaders that answered NOT_LEADER_OR_FOLLOWER or
// UNKNOWN_TOPIC_OR_PARTITION for a while. Then the controller is killed:
// every partition accepts produce again after the fail-over.
func TestMetadataNotAheadOfLeaders(t *testing.T) {
	c := startCluster(t, "auto.create.topics.enable=false", "min.insync.replicas=1")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 4
	req.TimeoutMillis = 60_000
	var topics []string
	for i := range 3 {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic = fmt.Sprintf("wide-%d", i)
		rt.NumPartitions = 200
		rt.ReplicationFactor = 3
		req.Topics = append(req.Topics, rt)
		topics = append(topics, rt.Topic)
	}
	resp, err := c.RequestTo(c.IDs()[0], req, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.(*kmsg.CreateTopicsResponse).Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			t.Fatalf("create %s: %v", rt.Topic, err)
		}
	}
	premature, err := allAcceptProduce(ctx, c, topics, -1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if premature > 0 {
		t.Fatalf("%d partitions were named led by a broker that refused a produce as not leading them", premature)
	}

	ctl := controllerID(t, c)
	c.Kill(ctl)
	if _, err := allAcceptProduce(ctx, c, topics, ctl, 2*time.Minute); err != nil {
		t.Fatalf("after the controller's fail-over: %v", err)
	}
}
