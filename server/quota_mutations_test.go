package server

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/kvlog/kvlog/internal/clock"
)

// TestControllerMutationQuota: controller_mutation_rate (KIP-599) on a
// client id of 0.1 partitions/s with a burst of 2 (2 windows of 10 s).
// Strict clients (CreateTopics v6+, CreatePartitions v3+, DeleteTopics
// v5+): the topic that empties the bucket is created, the next one fails
// with THROTTLING_QUOTA_EXCEEDED and the response's throttle time, and
// while the bucket is below zero CreatePartitions and DeleteTopics are
// refused too; ValidateOnly takes nothing; another client id is not
// limited. A permissive client (CreateTopics v5) is never refused, only
// throttled. The broker runs on a manual clock that stands still: the
// buckets do not refill during the test and the throttle times are exact.
func TestControllerMutationQuota(t *testing.T) {
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clock.NewManual(time.Now())}, "quota.window.num=2", "quota.window.size.seconds=10")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, client := range []string{"mut", "old"} {
		if code := alterQuota(t, b, ctx, alterQuotaReq(false, "client-id", kmsg.StringPtr(client), "controller_mutation_rate", 0.1, false)); code != 0 {
			t.Fatalf("setting controller_mutation_rate on %s: %v", client, kerr.ErrorForCode(code))
		}
	}
	// Each step on its own client: a throttled connection is muted.
	// "old" speaks Kafka 2.6's versions (CreateTopics v5, before KIP-599).
	as := func(clientID string) *kgo.Client {
		opts := []kgo.Opt{kgo.ClientID(clientID), kgo.RetryTimeout(time.Second)}
		if clientID == "old" {
			opts = append(opts, kgo.MaxVersions(kversion.V2_6_0()))
		}
		return b.client(t, opts...)
	}
	create := func(clientID string, validateOnly bool, names ...string) *kmsg.CreateTopicsResponse {
		t.Helper()
		req := kmsg.NewPtrCreateTopicsRequest()
		req.ValidateOnly, req.TimeoutMillis = validateOnly, 30000
		for _, n := range names {
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = n, 2, 1
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, as(clientID))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	codes := func(resp *kmsg.CreateTopicsResponse) map[string]int16 {
		out := map[string]int16{}
		for _, rt := range resp.Topics {
			out[rt.Topic] = rt.ErrorCode
		}
		return out
	}

	if resp := create("mut", true, "v1", "v2", "v3"); resp.Version < 6 || codes(resp)["v3"] != 0 || resp.ThrottleMillis != 0 {
		t.Fatalf("validate-only creations: %v, throttle %d; they take nothing", codes(resp), resp.ThrottleMillis)
	}
	resp := create("mut", false, "a", "b", "c")
	got := codes(resp)
	if got["a"] != 0 || got["b"] != 0 || got["c"] != kerr.ThrottlingQuotaExceeded.Code {
		t.Fatalf("strict creations of 3 × 2 partitions with a burst of 2: %v; want a and b created (b empties the bucket), c THROTTLING_QUOTA_EXCEEDED", got)
	}
	if m := resp.Topics[2].ErrorMessage; m == nil || *m != "The throttling quota has been exceeded." {
		t.Fatalf("c's message: %v", m)
	}
	if resp.ThrottleMillis != 20000 {
		t.Fatalf("throttle %d ms, want 20 s (2 partitions below zero at 0.1/s)", resp.ThrottleMillis)
	}
	if b.s.topic("c") != nil {
		t.Fatal("the refused topic c exists")
	}

	cp := kmsg.NewPtrCreatePartitionsRequest()
	cp.TimeoutMillis = 30000
	cpt := kmsg.NewCreatePartitionsRequestTopic()
	cpt.Topic, cpt.Count = "a", 3
	cp.Topics = append(cp.Topics, cpt)
	cpr, err := cp.RequestWith(ctx, as("mut"))
	if err != nil {
		t.Fatal(err)
	}
	if cpr.Topics[0].ErrorCode != kerr.ThrottlingQuotaExceeded.Code || cpr.ThrottleMillis == 0 {
		t.Fatalf("CreatePartitions v%d while over the quota: %v, throttle %d", cp.Version, kerr.ErrorForCode(cpr.Topics[0].ErrorCode), cpr.ThrottleMillis)
	}
	dt := kmsg.NewPtrDeleteTopicsRequest()
	dt.TimeoutMillis = 30000
	dtt := kmsg.NewDeleteTopicsRequestTopic()
	dtt.Topic = kmsg.StringPtr("a")
	dt.Topics = append(dt.Topics, dtt)
	dt.TopicNames = []string{"a"}
	dtr, err := dt.RequestWith(ctx, as("mut"))
	if err != nil {
		t.Fatal(err)
	}
	if dtr.Topics[0].ErrorCode != kerr.ThrottlingQuotaExceeded.Code {
		t.Fatalf("DeleteTopics v%d while over the quota: %v", dt.Version, kerr.ErrorForCode(dtr.Topics[0].ErrorCode))
	}
	if b.s.topic("a") == nil || len(b.s.topic("a").parts) != 2 {
		t.Fatal("topic a changed while its client was over its quota")
	}

	// Another client id has no quota.
	if resp := create("free", false, "f1", "f2", "f3"); codes(resp)["f3"] != 0 || resp.ThrottleMillis != 0 {
		t.Fatalf("client without a quota: %v, throttle %d", codes(resp), resp.ThrottleMillis)
	}
	// A permissive client (before CreateTopics v6) is throttled, not refused.
	resp = create("old", false, "o1", "o2", "o3")
	if got := codes(resp); resp.Version != 5 || got["o1"] != 0 || got["o2"] != 0 || got["o3"] != 0 || resp.ThrottleMillis != 40000 {
		t.Fatalf("permissive creations (v%d) of 3 × 2 partitions: %v, throttle %d ms; want all created and 40 s (4 partitions below zero at 0.1/s)", resp.Version, got, resp.ThrottleMillis)
	}
}

func alterQuota(t *testing.T, b *testBroker, ctx context.Context, q *kmsg.AlterClientQuotasRequest) int16 {
	t.Helper()
	resp, err := q.RequestWith(ctx, b.client(t))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Entries[0].ErrorCode
}
