package server

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Wire-level tests of DescribeCluster, DescribeLogDirs, CreatePartitions
// and OffsetForLeaderEpoch at every served version; kadm sessions against
// the real binary are in cmd/kvlogd/admin_apis_test.go.

func TestDescribeClusterVersions(t *testing.T) {
	b := startBroker(t)
	c := b.dial(t)
	mreq := kmsg.NewPtrMetadataRequest()
	c.send(mreq, 100)
	mb := c.recv(mreq, 100).(*kmsg.MetadataResponse).Brokers[0]
	for v := int16(0); v <= 2; v++ {
		req := kmsg.NewPtrDescribeClusterRequest()
		req.Version = v
		req.IncludeClusterAuthorizedOperations = v == 1
		c.send(req, int32(v))
		resp := c.recv(req, int32(v)).(*kmsg.DescribeClusterResponse)
		if resp.ErrorCode != 0 || resp.ClusterID != b.s.ClusterID() || resp.ControllerID != 0 || len(resp.Brokers) != 1 {
			t.Fatalf("v%d: %+v", v, resp)
		}
		if got := resp.Brokers[0]; got.NodeID != mb.NodeID || got.Host != mb.Host || got.Port != mb.Port || got.Rack != nil {
			t.Fatalf("v%d broker %+v, Metadata says %+v", v, got, mb)
		}
		wantOps := int32(math.MinInt32)
		if req.IncludeClusterAuthorizedOperations {
			wantOps = 1<<5 | 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11 | 1<<12
		}
		if resp.ClusterAuthorizedOperations != wantOps {
			t.Fatalf("v%d operations %b, want %b", v, resp.ClusterAuthorizedOperations, wantOps)
		}
	}
	req := kmsg.NewPtrDescribeClusterRequest()
	req.Version = 1
	req.EndpointType = 2
	c.send(req, 9)
	if resp := c.recv(req, 9).(*kmsg.DescribeClusterResponse); resp.ErrorCode != kerr.UnsupportedEndpointType.Code || resp.ErrorMessage == nil {
		t.Fatalf("controllers endpoint: %+v", resp)
	}
}

func mustCreateTopic(t *testing.T, b *testBroker, name string, partitions int32) {
	t.Helper()
	if _, err := b.s.createTopic(newTopicSpec{name: name, partitions: partitions, rf: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestDescribeLogDirsVersions(t *testing.T) {
	b := startBroker(t)
	mustCreateTopic(t, b, "a", 2)
	mustCreateTopic(t, b, "b", 1)
	produceTo(t, b, "a", 0, 20)
	absDir, _ := filepath.Abs(b.dir)
	c := b.dial(t)
	for v := int16(0); v <= 5; v++ {
		// All partitions.
		req := kmsg.NewPtrDescribeLogDirsRequest()
		req.Version = v
		c.send(req, int32(v))
		resp := c.recv(req, int32(v)).(*kmsg.DescribeLogDirsResponse)
		if resp.ErrorCode != 0 || len(resp.Dirs) != 1 {
			t.Fatalf("v%d: %+v", v, resp)
		}
		d := resp.Dirs[0]
		if d.ErrorCode != 0 || d.Dir != absDir {
			t.Fatalf("v%d dir %q error %d, want %q", v, d.Dir, d.ErrorCode, absDir)
		}
		if v >= 4 && (d.TotalBytes <= 0 || d.UsableBytes < 0 || d.UsableBytes > d.TotalBytes) {
			t.Fatalf("v%d volume total %d usable %d", v, d.TotalBytes, d.UsableBytes)
		}
		sizes := map[string]int64{}
		for _, dt := range d.Topics {
			for _, dp := range dt.Partitions {
				if dp.OffsetLag != 0 || dp.IsFuture {
					t.Fatalf("v%d %s-%d: %+v", v, dt.Topic, dp.Partition, dp)
				}
				sizes[dt.Topic+"-"+string(rune('0'+dp.Partition))] = dp.Size
			}
		}
		if len(sizes) != 3 || sizes["a-0"] <= 0 || sizes["a-1"] != 0 || sizes["b-0"] != 0 {
			t.Fatalf("v%d sizes %v", v, sizes)
		}
		if want := b.s.partition("a", 0).log.Size(); sizes["a-0"] != want {
			t.Fatalf("v%d a-0 size %d, log size %d", v, sizes["a-0"], want)
		}

		// Named partitions: unknown ones are left out.
		req = kmsg.NewPtrDescribeLogDirsRequest()
		req.Version = v
		for _, tp := range []struct {
			topic string
			parts []int32
		}{{"a", []int32{1, 7}}, {"missing", []int32{0}}} {
			rt := kmsg.NewDescribeLogDirsRequestTopic()
			rt.Topic, rt.Partitions = tp.topic, tp.parts
			req.Topics = append(req.Topics, rt)
		}
		c.send(req, 10+int32(v))
		resp = c.recv(req, 10+int32(v)).(*kmsg.DescribeLogDirsResponse)
		if ts := resp.Dirs[0].Topics; len(ts) != 1 || ts[0].Topic != "a" || len(ts[0].Partitions) != 1 || ts[0].Partitions[0].Partition != 1 {
			t.Fatalf("v%d filtered: %+v", v, ts)
		}
	}
}

func TestCreatePartitionsVersions(t *testing.T) {
	b := startBroker(t)
	c := b.dial(t)
	corr := int32(0)
	call := func(v int16, validate bool, topics ...kmsg.CreatePartitionsRequestTopic) map[string]*kmsg.CreatePartitionsResponseTopic {
		t.Helper()
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.Version = v
		req.ValidateOnly = validate
		req.Topics = topics
		corr++
		c.send(req, corr)
		resp := c.recv(req, corr).(*kmsg.CreatePartitionsResponse)
		out := map[string]*kmsg.CreatePartitionsResponseTopic{}
		for i := range resp.Topics {
			out[resp.Topics[i].Topic] = &resp.Topics[i]
		}
		return out
	}
	rt := func(topic string, count int32, assignment ...[]int32) kmsg.CreatePartitionsRequestTopic {
		r := kmsg.NewCreatePartitionsRequestTopic()
		r.Topic, r.Count = topic, count
		for _, a := range assignment {
			ra := kmsg.NewCreatePartitionsRequestTopicAssignment()
			ra.Replicas = a
			r.Assignment = append(r.Assignment, ra)
		}
		return r
	}
	expect := func(v int16, got *kmsg.CreatePartitionsResponseTopic, want *kerr.Error) {
		t.Helper()
		code := int16(0)
		if want != nil {
			code = want.Code
		}
		if got == nil || got.ErrorCode != code || (want != nil && got.ErrorMessage == nil) {
			t.Fatalf("v%d: %+v, want %v", v, got, want)
		}
	}
	parts := func(topic string) int { return len(b.s.topic(topic).parts) }
	for v := int16(0); v <= 3; v++ {
		name := "cp" + string(rune('0'+v))
		mustCreateTopic(t, b, name, 1)
		expect(v, call(v, true, rt(name, 4))[name], nil)
		if parts(name) != 1 {
			t.Fatalf("v%d: validate-only changed the count to %d", v, parts(name))
		}
		expect(v, call(v, false, rt(name, 2))[name], nil)
		if parts(name) != 2 {
			t.Fatalf("v%d: %d partitions after increase", v, parts(name))
		}
		expect(v, call(v, false, rt(name, 2))[name], kerr.InvalidPartitions)
		expect(v, call(v, false, rt(name, 1))[name], kerr.InvalidPartitions)
		expect(v, call(v, false, rt("missing", 3))["missing"], kerr.UnknownTopicOrPartition)
		expect(v, call(v, false, rt(name, 4, []int32{0}))[name], kerr.InvalidReplicaAssignment)    // 1 assignment for 2 new partitions
		expect(v, call(v, false, rt(name, 3, []int32{1}))[name], kerr.InvalidReplicaAssignment)    // unknown broker
		expect(v, call(v, false, rt(name, 3, []int32{0, 0}))[name], kerr.InvalidReplicaAssignment) // duplicate / rf 2
		expect(v, call(v, false, rt(name, 3, []int32{0}))[name], nil)
		dup := call(v, false, rt(name, 5), rt(name, 6))
		expect(v, dup[name], kerr.InvalidRequest)
		if parts(name) != 3 {
			t.Fatalf("v%d: %d partitions, want 3", v, parts(name))
		}
	}

	// The new partitions serve produce and fetch, and survive a restart.
	produceTo(t, b, "cp3", 2, 5)
	dir := b.dir
	b.stop(t)
	b = startBrokerIn(t, dir)
	if got := len(b.s.topic("cp3").parts); got != 3 {
		t.Fatalf("%d partitions after restart", got)
	}
	if leo := b.s.partition("cp3", 2).log.LogEndOffset(); leo != 5 {
		t.Fatalf("cp3-2 log end %d after restart", leo)
	}

	// Internal topics keep their count.
	if b.s.topic("__consumer_offsets") == nil {
		mustCreateTopic(t, b, "__consumer_offsets", 1)
	}
	c = b.dial(t)
	n := int32(parts("__consumer_offsets"))
	expect(3, call(3, false, rt("__consumer_offsets", n+1))["__consumer_offsets"], kerr.InvalidRequest)
}

func TestOffsetForLeaderEpochVersions(t *testing.T) {
	b := startBroker(t)
	mustCreateTopic(t, b, "e", 2)
	produceTo(t, b, "e", 0, 10)
	c := b.dial(t)
	type ask struct {
		partition, current, epoch int32
	}
	type answer struct {
		code  int16
		epoch int32
		end   int64
	}
	for v := int16(0); v <= 4; v++ {
		asks := []ask{
			{0, -1, 0}, // current epoch: the log end
			{1, -1, 0}, // empty partition, current epoch: its log end (0)
			{0, -1, 1}, // newer than the broker's: undefined
			{0, 0, 0},  // current leader epoch matches
			{0, 1, 0},  // client ahead of the broker (v2+)
			{5, -1, 0}, // unknown partition
		}
		want := []answer{
			{0, 0, 10},
			{0, 0, 0},
			{0, -1, -1},
			{0, 0, 10},
			{kerr.UnknownLeaderEpoch.Code, -1, -1},
			{kerr.UnknownTopicOrPartition.Code, -1, -1},
		}
		if v < 2 { // no CurrentLeaderEpoch: not checked
			want[4] = answer{0, 0, 10}
		}
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.Version = v
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = "e"
		for _, a := range asks {
			rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
			rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = a.partition, a.current, a.epoch
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		unknown := kmsg.NewOffsetForLeaderEpochRequestTopic()
		unknown.Topic = "missing"
		unknown.Partitions = []kmsg.OffsetForLeaderEpochRequestTopicPartition{kmsg.NewOffsetForLeaderEpochRequestTopicPartition()}
		req.Topics = append(req.Topics, unknown)
		c.send(req, int32(v))
		resp := c.recv(req, int32(v)).(*kmsg.OffsetForLeaderEpochResponse)
		if len(resp.Topics) != 2 || len(resp.Topics[0].Partitions) != len(asks) {
			t.Fatalf("v%d: %+v", v, resp)
		}
		for i, got := range resp.Topics[0].Partitions {
			w := want[i]
			if v == 0 && w.code == 0 {
				w.epoch = -1 // v0 responses carry no epoch
			}
			if got.Partition != asks[i].partition || got.ErrorCode != w.code || got.LeaderEpoch != w.epoch || got.EndOffset != w.end {
				t.Errorf("v%d ask %+v: got code %d epoch %d end %d, want %+v", v, asks[i], got.ErrorCode, got.LeaderEpoch, got.EndOffset, w)
			}
		}
		if p := resp.Topics[1].Partitions; len(p) != 1 || p[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("v%d unknown topic: %+v", v, p)
		}
	}
}

// TestProduceAdvertisedFromV0 checks the arrangement of docs/protocol.md#librdkafka-and-produce-v0: Produce is
// advertised from v0 so librdkafka compresses, but v0-2 requests are still
// refused (connection closed), and v3 is served.
func TestProduceAdvertisedFromV0(t *testing.T) {
	b := startBroker(t)
	for v := int16(0); v <= 2; v++ {
		c := b.dial(t)
		req := kmsg.NewPtrProduceRequest()
		req.Version = v
		req.Acks = 1
		req.TimeoutMillis = 1000
		c.send(req, 1)
		c.expectClosed()
	}
	c := b.dial(t)
	req := kmsg.NewPtrProduceRequest()
	req.Version = 3
	req.Acks = 1
	req.TimeoutMillis = 1000
	c.send(req, 2)
	if resp := c.recv(req, 2).(*kmsg.ProduceResponse); len(resp.Topics) != 0 {
		t.Fatalf("empty v3 produce: %+v", resp)
	}
}
