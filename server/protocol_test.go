package server

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
)

func createTopic(t *testing.T, b *testBroker, name string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := b.admin(t).CreateTopic(ctxT(t), partitions, 1, configs, name)
	if err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", name, err, resp.Err)
	}
}

func produceN(t *testing.T, b *testBroker, topic string, n int, opts ...kgo.Opt) {
	produceTo(t, b, topic, 0, n, opts...)
}

func produceTo(t *testing.T, b *testBroker, topic string, partition int32, n int, opts ...kgo.Opt) {
	t.Helper()
	cl := b.client(t, append([]kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner())}, opts...)...)
	var rs []*kgo.Record
	for i := 0; i < n; i++ {
		rs = append(rs, &kgo.Record{Partition: partition, Key: []byte{byte(i)}, Value: bytes.Repeat([]byte{byte(i)}, 100), Timestamp: time.UnixMilli(int64(1000 * (i + 1)))})
	}
	if err := cl.ProduceSync(ctxT(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestPipelining sends several requests back to back, including an acks=0
// produce (no response), and checks the answers arrive in order.
func TestPipelining(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "pipe", 1, nil)
	c := b.dial(t)
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 1
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 0
	prod := kmsg.NewPtrProduceRequest()
	prod.Version = 7
	prod.Acks = 0
	prod.TimeoutMillis = 1000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "pipe"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = testBatch(t, 3)
	rt.Partitions = append(rt.Partitions, rp)
	prod.Topics = append(prod.Topics, rt)

	var all []byte
	all = append(all, frame(meta, 1, "p")...)
	all = append(all, frame(av, 2, "p")...)
	all = append(all, frame(prod, 3, "p")...)
	all = append(all, frame(meta, 4, "p")...)
	c.write(all)
	c.recv(meta, 1)
	c.recv(av, 2)
	m := c.recv(meta, 4).(*kmsg.MetadataResponse) // 3 has no response
	if len(m.Topics) != 1 || *m.Topics[0].Topic != "pipe" {
		t.Fatalf("metadata %+v", m.Topics)
	}
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "pipe"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = -1
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	// The high watermark passes the records once they are fsynced (the
	// fsync runs after the append, off the connection): poll for it.
	deadline := time.Now().Add(10 * time.Second)
	for corr := int32(5); ; corr++ {
		c.send(lo, corr)
		r := c.recv(lo, corr).(*kmsg.ListOffsetsResponse)
		if r.Topics[0].Partitions[0].Offset == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acks=0 produce not applied: %+v", r.Topics[0].Partitions[0])
		}
	}
}

// testBatch builds an uncompressed magic-2 batch of n records with kmsg.
func testBatch(t testing.TB, n int) []byte {
	var recs []byte
	for i := 0; i < n; i++ {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		r.Key = []byte{byte('a' + i)}
		r.Value = []byte("value")
		r.Length = int32(len(r.AppendTo(nil)) - 1) // Length is a varint: 0 takes one byte
		recs = append(recs, r.AppendTo(nil)...)
	}
	rb := kmsg.NewRecordBatch()
	rb.Magic = 2
	rb.LastOffsetDelta = int32(n - 1)
	rb.FirstTimestamp = time.Now().UnixMilli()
	rb.MaxTimestamp = rb.FirstTimestamp
	rb.ProducerID = -1
	rb.ProducerEpoch = -1
	rb.FirstSequence = -1
	rb.NumRecords = int32(n)
	rb.Records = recs
	raw := rb.AppendTo(nil)
	rb.Length = int32(len(raw) - 12)
	raw = rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[17:], crc32c(raw[21:]))
	return raw
}

// TestMalformedFrames: every bad frame closes only its own connection.
func TestMalformedFrames(t *testing.T) {
	b := startBroker(t, "socket.request.max.bytes=1048576")
	healthy := b.dial(t)
	meta := kmsg.NewPtrMetadataRequest()
	meta.Version = 4
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	unknownKey := frame(meta, 1, "x")
	unknownKey[4], unknownKey[5] = 0x03, 0xe7 // key 999
	unservedVersion := frame(meta, 1, "x")
	unservedVersion[6], unservedVersion[7] = 0, 13 // Metadata v13
	// A key kvlog does not serve (no ACLs).
	unservedKey := kmsg.NewPtrElectLeadersRequest()
	unservedKey.Version = 1
	truncated := frame(meta, 1, "x")
	truncated = append(u32(uint32(len(truncated)-4-3)), truncated[4:len(truncated)-3]...)
	hugeArray := append(u32(14), 0, 3, 0, 4, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0)
	hugeArray = append(u32(uint32(len(hugeArray)-4)), hugeArray[4:]...)
	for name, payload := range map[string][]byte{
		"oversize":          u32(1<<20 + 1),
		"max-int":           u32(1<<31 - 1),
		"negative":          u32(0xffffffff),
		"zero":              u32(0),
		"short-header":      append(u32(3), 1, 2, 3),
		"garbage":           append(u32(12), []byte("hello world!")...),
		"unknown-key-999":   unknownKey,
		"unserved-version":  unservedVersion,
		"unserved-key":      frame(unservedKey, 1, "x"),
		"truncated-body":    truncated,
		"huge-array-count":  hugeArray,
		"client-id-overrun": append(u32(10), 0, 3, 0, 4, 0, 0, 0, 1, 0x7f, 0xff),
	} {
		t.Run(name, func(t *testing.T) {
			c := b.dial(t)
			c.write(payload)
			c.expectClosed()
			healthy.send(meta, 7)
			healthy.recv(meta, 7)
		})
	}
}

// TestFetchEncoding checks the spliced sendfile responses decode with kmsg
// and are byte-identical to kmsg's own encoding of the decoded content, at
// every served Fetch version.
func TestFetchEncoding(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "enc", 3, nil)
	for p := int32(0); p < 2; p++ {
		produceTo(t, b, "enc", p, 5)
	}
	c := b.dial(t)
	vr, _ := b.s.served(kmsg.Fetch.Int16())
	for v := vr.Min; v <= vr.Max; v++ {
		req := kmsg.NewPtrFetchRequest()
		req.Version = v
		req.ReplicaID = -1
		req.MaxBytes = 1 << 20
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "enc"
		for p := int32(0); p < 3; p++ {
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition = p
			rp.PartitionMaxBytes = 1 << 20
			rt.Partitions = append(rt.Partitions, rp)
		}
		missing := kmsg.NewFetchRequestTopic()
		missing.Topic = "nope"
		missing.Partitions = []kmsg.FetchRequestTopicPartition{kmsg.NewFetchRequestTopicPartition()}
		req.Topics = append(req.Topics, rt, missing)
		c.send(req, int32(v))
		raw, err := c.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = v
		body := raw[4:]
		if resp.IsFlexible() {
			body = body[1:]
		}
		if err := resp.ReadFrom(body); err != nil {
			t.Fatalf("v%d: decode: %v", v, err)
		}
		if again := resp.AppendTo(nil); !bytes.Equal(again, body) {
			t.Fatalf("v%d: kmsg re-encoding differs from the spliced response", v)
		}
		ps := resp.Topics[0].Partitions
		if len(ps) != 3 || resp.Topics[1].Partitions[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("v%d: response %+v", v, resp.Topics)
		}
		total := 0
		for _, p := range ps {
			if p.RecordBatches == nil || p.Partition < 2 && p.HighWatermark != 5 {
				t.Fatalf("v%d: partition %+v", v, p)
			}
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: "enc", Partition: p.Partition}, &p, kgo.DefaultDecompressor(), nil)
			if fp.Err != nil {
				t.Fatalf("v%d: records: %v", v, fp.Err)
			}
			total += len(fp.Records)
		}
		if total != 10 {
			t.Fatalf("v%d: %d records, want 10", v, total)
		}
	}
}

// TestLongPoll: a fetch at the end parks until data arrives or its MaxWait
// deadline passes. Each step waits on the parked fetch itself (registered
// on the partition), not on a guessed delay; the connection's deadline
// (dial) is only a hang guard.
func TestLongPoll(t *testing.T) {
	clk := clock.NewManual(time.Now()) // the parked fetches' deadlines run on it
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk})
	createTopic(t, b, "poll", 1, nil)
	c := b.dial(t)
	fetch := func(corr int32, offset int64, wait int32) {
		req := kmsg.NewPtrFetchRequest()
		req.Version = 11
		req.ReplicaID = -1
		req.MinBytes = 1
		req.MaxWaitMillis = wait
		req.MaxBytes = 1 << 20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "poll"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rp.FetchOffset = offset
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		c.send(req, corr)
	}
	read := func(corr int32) *kmsg.FetchResponse {
		t.Helper()
		raw, err := c.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		if got := int32(binary.BigEndian.Uint32(raw)); got != corr {
			t.Fatalf("correlation id %d, want %d", got, corr)
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.Version = 11
		if err := resp.ReadFrom(raw[4:]); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	const forever = 10 * 60 * 1000 // MaxWait the clock never reaches: only an event answers
	// Nothing arrives: the fetch parks; when its deadline comes on the
	// broker's clock (not before) it is answered, empty.
	fetch(1, 0, 60_000) // longer than the connection's read deadline: only the clock answers it
	waitParked(t, b, "poll", 0)
	clk.Advance(time.Minute - time.Millisecond)
	if !clk.AwaitCallbacks(10 * time.Second) {
		t.Fatal("timer callbacks did not return")
	}
	if n := parkedFetches(b, "poll", 0); n != 1 {
		t.Fatalf("%d fetches parked 1 ms before the MaxWait ends, want 1", n)
	}
	clk.Advance(time.Millisecond)
	if resp := read(1); len(resp.Topics[0].Partitions[0].RecordBatches) != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("expired long poll: %+v", resp.Topics[0].Partitions[0])
	}
	if n := parkedFetches(b, "poll", 0); n != 0 {
		t.Fatalf("%d fetches still registered after the answer", n)
	}
	// A short MaxWait is answered by its own timer, empty.
	fetch(2, 0, 10)
	waitParked(t, b, "poll", 0)
	clk.Advance(10 * time.Millisecond)
	if resp := read(2); len(resp.Topics[0].Partitions[0].RecordBatches) != 0 {
		t.Fatal("records in an empty partition")
	}
	// Data arrives: the produce wakes the parked fetch (its deadline is
	// far beyond the connection's hang guard).
	fetch(3, 0, forever)
	waitParked(t, b, "poll", 0)
	produceN(t, b, "poll", 1)
	if resp := read(3); len(resp.Topics[0].Partitions[0].RecordBatches) == 0 {
		t.Fatal("woken fetch returned no records")
	}
	// Shutdown answers a parked fetch (empty) instead of waiting for it; a
	// fetch still parked at the end of b.stop's 10 s shutdown context would
	// have its connection closed unanswered, and read fails.
	fetch(4, 1, forever) // at the log end
	waitParked(t, b, "poll", 0)
	done := make(chan struct{})
	go func() { b.stop(t); close(done) }()
	if resp := read(4); len(resp.Topics[0].Partitions[0].RecordBatches) != 0 {
		t.Fatal("records past the log end")
	}
	<-done
}

// parkedFetches counts the fetches parked on a partition.
func parkedFetches(b *testBroker, topic string, partition int32) int {
	p := b.s.partition(topic, partition)
	if p == nil || p.rep == nil {
		return 0
	}
	return p.rep.Parked()
}

// waitParked waits until exactly one fetch is parked on a partition.
func waitParked(t *testing.T, b *testBroker, topic string, partition int32) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); parkedFetches(b, topic, partition) != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no fetch parked on %s-%d", topic, partition)
		}
		time.Sleep(time.Millisecond)
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
