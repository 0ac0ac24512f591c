package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
)

// quotaAuthzCases are the client-quota APIs' rows of the authorization
// matrix.
func quotaAuthzCases(caf int16) []authzCase {
	clusterN := func(op kmsg.ACLOperation) need { return need{kmsg.ACLResourceTypeCluster, "kafka-cluster", op} }
	return []authzCase{
		{name: "DescribeClientQuotas", needs: clusterN(kmsg.ACLOperationDescribeConfigs), allowed: 0, denied: caf,
			req:  func(string) kmsg.Request { return kmsg.NewPtrDescribeClientQuotasRequest() },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DescribeClientQuotasResponse).ErrorCode }},
		{name: "AlterClientQuotas", needs: clusterN(kmsg.ACLOperationAlterConfigs), allowed: 0, denied: caf,
			req: func(string) kmsg.Request {
				return alterQuotaReq(true, "client-id", kmsg.StringPtr("mx-client"), "producer_byte_rate", 1024, false)
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.AlterClientQuotasResponse).Entries[0].ErrorCode }},
	}
}

// alterQuotaReq builds an AlterClientQuotas request for one entity part
// and op.
func alterQuotaReq(validateOnly bool, typ string, name *string, key string, value float64, remove bool) *kmsg.AlterClientQuotasRequest {
	q := kmsg.NewPtrAlterClientQuotasRequest()
	q.ValidateOnly = validateOnly
	e := kmsg.NewAlterClientQuotasRequestEntry()
	ee := kmsg.NewAlterClientQuotasRequestEntryEntity()
	ee.Type, ee.Name = typ, name
	e.Entity = append(e.Entity, ee)
	op := kmsg.NewAlterClientQuotasRequestEntryOp()
	op.Key, op.Value, op.Remove = key, value, remove
	e.Ops = append(e.Ops, op)
	q.Entries = append(q.Entries, e)
	return q
}

// TestClientQuotaAPIs: AlterClientQuotas validates entities, keys and
// values as Kafka (INVALID_REQUEST per entry), stores the valid ones (they
// survive a restart), ValidateOnly stores nothing; DescribeClientQuotas
// filters by exact name, default and any, strict or not.
func TestClientQuotaAPIs(t *testing.T) {
	b := startBroker(t)
	cl := b.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	s := kmsg.StringPtr
	alter := func(q *kmsg.AlterClientQuotasRequest) int16 {
		resp, err := q.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Entries[0].ErrorCode
	}
	inv := kerr.InvalidRequest.Code
	for name, c := range map[string]struct {
		q    *kmsg.AlterClientQuotasRequest
		want int16
	}{
		"user":                 {alterQuotaReq(false, "user", s("alice"), "producer_byte_rate", 1048576, false), 0},
		"default user":         {alterQuotaReq(false, "user", nil, "consumer_byte_rate", 2097152, false), 0},
		"client":               {alterQuotaReq(false, "client-id", s("app"), "request_percentage", 50.5, false), 0},
		"ip":                   {alterQuotaReq(false, "ip", s("10.0.0.1"), "connection_creation_rate", 10, false), 0},
		"validate only":        {alterQuotaReq(true, "client-id", s("dry"), "producer_byte_rate", 1, false), 0},
		"unknown key":          {alterQuotaReq(false, "user", s("alice"), "bogus_rate", 1, false), inv},
		"ip key on user":       {alterQuotaReq(false, "user", s("alice"), "connection_creation_rate", 1, false), inv},
		"fractional byte rate": {alterQuotaReq(false, "user", s("alice"), "producer_byte_rate", 1.5, false), inv},
		"negative":             {alterQuotaReq(false, "user", s("alice"), "producer_byte_rate", -1, false), inv},
		"unknown entity type":  {alterQuotaReq(false, "group", s("g"), "producer_byte_rate", 1, false), inv},
	} {
		if got := alter(c.q); got != c.want {
			t.Errorf("%s: %v, want %v", name, codeName(got), codeName(c.want))
		}
	}
	both := alterQuotaReq(false, "user", s("alice"), "producer_byte_rate", 4096, false)
	cid := kmsg.NewAlterClientQuotasRequestEntryEntity()
	cid.Type, cid.Name = "client-id", s("app")
	both.Entries[0].Entity = append(both.Entries[0].Entity, cid)
	if got := alter(both); got != 0 {
		t.Errorf("user and client: %v", codeName(got))
	}

	describe := func(strict bool, comps ...kmsg.DescribeClientQuotasRequestComponent) map[string]map[string]float64 {
		q := kmsg.NewPtrDescribeClientQuotasRequest()
		q.Strict, q.Components = strict, comps
		resp, err := q.RequestWith(ctx, cl)
		if err != nil || resp.ErrorCode != 0 {
			t.Fatalf("describe: %v %v", err, resp.ErrorCode)
		}
		out := map[string]map[string]float64{}
		for _, e := range resp.Entries {
			key := ""
			for _, p := range e.Entity {
				n := "<default>"
				if p.Name != nil {
					n = *p.Name
				}
				key += p.Type + "=" + n + ";"
			}
			out[key] = map[string]float64{}
			for _, v := range e.Values {
				out[key][v.Key] = v.Value
			}
		}
		return out
	}
	comp := func(typ string, mt kmsg.QuotasMatchType, match *string) kmsg.DescribeClientQuotasRequestComponent {
		c := kmsg.NewDescribeClientQuotasRequestComponent()
		c.EntityType, c.MatchType, c.Match = typ, mt, match
		return c
	}
	// No match: an empty list, not null (null is for errors; the Java
	// client fails on it).
	none := kmsg.NewPtrDescribeClientQuotasRequest()
	none.Components = []kmsg.DescribeClientQuotasRequestComponent{comp("client-id", kmsg.QuotasMatchTypeExact, s("nobody"))}
	if resp, err := none.RequestWith(ctx, cl); err != nil || resp.Entries == nil {
		t.Errorf("describe matching nothing: %v, entries %#v", err, resp.Entries)
	}
	if got := describe(false); len(got) != 5 {
		t.Errorf("all: %v", got)
	}
	if got := describe(false, comp("user", kmsg.QuotasMatchTypeExact, s("alice"))); len(got) != 2 || got["user=alice;"]["producer_byte_rate"] != 1048576 {
		t.Errorf("user alice: %v", got)
	}
	if got := describe(true, comp("user", kmsg.QuotasMatchTypeExact, s("alice"))); len(got) != 1 {
		t.Errorf("user alice, strict: %v", got)
	}
	if got := describe(false, comp("user", kmsg.QuotasMatchTypeDefault, nil)); len(got) != 1 || got["user=<default>;"]["consumer_byte_rate"] != 2097152 {
		t.Errorf("default user: %v", got)
	}
	if got := describe(true, comp("client-id", kmsg.QuotasMatchTypeAny, nil)); len(got) != 1 || got["client-id=app;"]["request_percentage"] != 50.5 {
		t.Errorf("any client, strict: %v", got)
	}
	// kadm reads the same.
	if res, err := adm.DescribeClientQuotas(ctx, false, nil); err != nil || len(res) != 5 {
		t.Errorf("kadm: %v %v", res, err)
	}
	// Removal, then a restart keeps the rest.
	if got := alter(alterQuotaReq(false, "ip", s("10.0.0.1"), "connection_creation_rate", 0, true)); got != 0 {
		t.Errorf("remove: %v", codeName(got))
	}
	b.stop(t)
	b2 := startBrokerIn(t, b.dir)
	cl = b2.client(t)
	if got := describe(false); len(got) != 4 {
		t.Errorf("after a restart: %v", got)
	}
}

// TestProduceQuotaThrottles: a producer over its producer_byte_rate
// (client-id quota) is told to back off (KIP-219 throttle_time_ms) for
// exactly the time its measured rate needs to fall back to the quota; a
// producer with another client id is never throttled; once the measured
// window has passed on the broker's clock, the producer is within its
// quota again. The broker runs on a manual clock, so the rates and
// throttle times are exact (how a throttled client converges on its quota
// is tested on a fake clock in server/quota).
func TestProduceQuotaThrottles(t *testing.T) {
	clk := clock.NewManual(time.Now())
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk}, "quota.window.num=2", "quota.window.size.seconds=1", "kvlog.fsync.acks.all=false")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const quotaRate = 256 << 10 // bytes/s
	setup := b.client(t)
	if resp, err := alterQuotaReq(false, "client-id", kmsg.StringPtr("throttled"), "producer_byte_rate", quotaRate, false).RequestWith(ctx, setup); err != nil || resp.Entries[0].ErrorCode != 0 {
		t.Fatalf("setting the quota: %v %+v", err, resp)
	}
	if _, err := kadm.NewClient(setup).CreateTopic(ctx, 1, 1, nil, "quota-topic"); err != nil {
		t.Fatal(err)
	}
	// produce sends one Produce (v9, a KIP-219 client) of a record of
	// valueSize bytes as clientID on a connection of its own (a throttled
	// connection is muted for the throttle time); it returns the
	// throttle time and the request's size (what the quota counts).
	corr := int32(0)
	produce := func(clientID string, valueSize int) (throttleMs int32, size int) {
		t.Helper()
		r := kmsg.NewRecord()
		r.Value = make([]byte, valueSize)
		rand.Read(r.Value)
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		rb := kmsg.NewRecordBatch()
		rb.Magic, rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence, rb.NumRecords = 2, -1, -1, -1, 1
		rb.FirstTimestamp = time.Now().UnixMilli()
		rb.MaxTimestamp = rb.FirstTimestamp
		rb.Records = r.AppendTo(nil)
		rb.Length = int32(len(rb.AppendTo(nil)) - 12)
		raw := rb.AppendTo(nil)
		binary.BigEndian.PutUint32(raw[17:], crc32c(raw[21:]))
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, 1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "quota-topic"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = raw
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		corr++
		f := frame(req, corr, clientID)
		c := b.dial(t)
		c.write(f)
		resp := c.recv(req, corr).(*kmsg.ProduceResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("produce as %s: %v", clientID, kerr.ErrorForCode(code))
		}
		c.nc.Close()
		return resp.ThrottleMillis, len(f) - 4
	}
	// The rate is measured over at least quota.window.num-1 windows (1 s
	// here); all the produces below happen at one instant of the clock.
	want := func(total int) int32 {
		if total <= quotaRate {
			return 0
		}
		return int32(time.Duration(float64(total-quotaRate) / quotaRate * float64(time.Second)).Round(time.Millisecond).Milliseconds())
	}
	ms, first := produce("throttled", 64<<10)
	if ms != 0 {
		t.Fatalf("within the quota (%d B in the window): throttled %d ms", first, ms)
	}
	ms, second := produce("throttled", 512<<10)
	if w := want(first + second); w == 0 || ms != w {
		t.Fatalf("%d B in the window at %d B/s: throttled %d ms, want %d", first+second, quotaRate, ms, w)
	}
	if ms, size := produce("free", 768<<10); ms != 0 {
		t.Fatalf("a client without a quota (%d B) throttled %d ms", size, ms)
	}
	// Both windows passed: what was measured is forgotten.
	clk.Advance(2 * time.Second)
	if ms, size := produce("throttled", 64<<10); ms != 0 {
		t.Fatalf("two windows later, within the quota (%d B): throttled %d ms", size, ms)
	}
}

// TestConnectionCreationRate: an IP address over its
// connection_creation_rate quota has its new connections closed at once;
// the others are served.
func TestConnectionCreationRate(t *testing.T) {
	b := startBroker(t, "quota.window.num=2")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if resp, err := alterQuotaReq(false, "ip", nil, "connection_creation_rate", 2, false).RequestWith(ctx, b.client(t)); err != nil || resp.Entries[0].ErrorCode != 0 {
		t.Fatalf("setting the quota: %v %+v", err, resp)
	}
	served, closed := 0, 0
	for i := 0; i < 10; i++ {
		c := b.dial(t)
		req := kmsg.NewPtrApiVersionsRequest()
		c.send(req, 1)
		c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.readFrame(); err != nil {
			closed++
		} else {
			served++
		}
		c.nc.Close()
	}
	if served == 0 || closed == 0 || served > 4 {
		t.Errorf("%d connections served, %d closed; want the first few served, then closed", served, closed)
	}
}
