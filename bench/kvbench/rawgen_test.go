package main

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka's own murmur2 vectors (its UtilsTest), and franz-go's key
// partitioner agreeing with kafkaPartition: the pre-encoded generator puts
// every record in the partition the kgo producer would.
func TestMurmur2MatchesKafka(t *testing.T) {
	for s, want := range map[string]int32{
		"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
		"a-little-bit-longer-string": -1486304829, "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107,
	} {
		if got := int32(murmur2([]byte(s))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", s, got, want)
		}
	}
	p := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for i := 0; i < 1000; i++ {
		k := keyOf(i)
		if got, want := kafkaPartition(k, 8), int32(p.Partition(&kgo.Record{Key: k}, 8)); got != want {
			t.Fatalf("key %s: partition %d, kgo %d", k, got, want)
		}
	}
}

// The batches decode as v2 record batches with a valid CRC, the records of
// the cell in order, and no producer id.
func TestRawCellBatches(t *testing.T) {
	for _, comp := range []string{"none", "lz4", "zstd"} {
		s := shape{partitions: 3, valueLen: 100, keys: 1000, acks: "all", comp: comp}
		const n = 25_000 // more than one batch per partition
		c, err := buildRawCell(s, 0, n, 8)
		if err != nil {
			t.Fatal(err)
		}
		if c.records != n || c.bytes != int64(n*s.recordBytes()) || len(c.warm) != 3 {
			t.Fatalf("%s: %d records, %d bytes, %d warm-up batches", comp, c.records, c.bytes, len(c.warm))
		}
		perPart := map[int32]int{}
		for _, b := range c.batches {
			perPart[b.partition] += b.records
			req := kmsg.NewPtrProduceRequest()
			req.Version = 8
			// Skip length, key, version, correlation id and client id.
			body := b.req[4+2+2+4+2+len("kvbench"):]
			if err := req.ReadFrom(body); err != nil {
				t.Fatalf("%s: request: %v", comp, err)
			}
			if req.Acks != -1 || len(req.Topics) != 1 || req.Topics[0].Topic != rawTopicPlaceholder || req.Topics[0].Partitions[0].Partition != b.partition {
				t.Fatalf("%s: request %+v", comp, req)
			}
			var rb kmsg.RecordBatch
			raw := req.Topics[0].Partitions[0].Records
			if err := rb.ReadFrom(raw); err != nil {
				t.Fatal(err)
			}
			if int(rb.Length)+12 != len(raw) || rb.Magic != 2 || rb.ProducerID != -1 || rb.FirstSequence != -1 || int(rb.NumRecords) != b.records || int(rb.LastOffsetDelta) != b.records-1 {
				t.Fatalf("%s: batch header %+v", comp, rb)
			}
			if uint32(rb.CRC) != crc32.Checksum(raw[21:], castagnoli) {
				t.Fatalf("%s: bad CRC", comp)
			}
			fb := kgo.ProcessFetchPartitionOpts{Topic: "t", Partition: b.partition}
			recs, _ := kgo.ProcessFetchPartition(fb, &kmsg.FetchResponseTopicPartition{Partition: b.partition, RecordBatches: raw, HighWatermark: 1 << 40}, kgo.DefaultDecompressor(), nil)
			if len(recs.Records) != b.records {
				t.Fatalf("%s: %d records decoded of %d (%v)", comp, len(recs.Records), b.records, recs.Err)
			}
			for _, r := range recs.Records {
				if kafkaPartition(r.Key, 3) != b.partition || len(r.Value) != 100 {
					t.Fatalf("%s: record %s in partition %d", comp, r.Key, b.partition)
				}
			}
		}
		total := 0
		for _, v := range perPart {
			total += v
		}
		if total != n || len(perPart) != 3 {
			t.Fatalf("%s: per partition %v", comp, perPart)
		}
	}
}

// A raw run against an in-process kfake acknowledges every record, which a
// consumer then reads.
func TestRawProduceKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Skipf("kfake: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := c.ListenAddrs()[0]
	s := shape{partitions: 4, valueLen: 1024, keys: 1000, acks: "all", comp: "lz4"}
	v, err := produceVersion(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	cell, err := rawCellFor(s, 0, 5000, v)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the same requests twice, to two topics
		topic := rawTopicName()
		if err := createTopic(ctx, []string{addr}, topic, 4, 1, nil); err != nil {
			t.Fatal(err)
		}
		st, err := rawProduce(ctx, addr, cell, v, topic, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.records != 5000 || st.bytes != int64(5000*s.recordBytes()) {
			t.Fatalf("run %d: %+v", i, st)
		}
		ends, err := endOffsets(ctx, []string{addr}, topic)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, e := range ends {
			sum += e
		}
		if sum != 5000+4 { // the records and one warm-up record per partition
			t.Fatalf("run %d: end offsets %v", i, ends)
		}
	}
}

// The batch-counting consumer reads every record a raw run wrote, and
// counts only whole batches from the fetch offset.
func TestRawConsumeKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Skipf("kfake: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := c.ListenAddrs()[0]
	s := shape{partitions: 3, valueLen: 100, keys: 1000, acks: "all", comp: "zstd"}
	v, err := produceVersion(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	cell, err := buildRawCell(s, 0, 30_000, v)
	if err != nil {
		t.Fatal(err)
	}
	topic := rawTopicName()
	if err := createTopic(ctx, []string{addr}, topic, 3, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := rawProduce(ctx, addr, cell, v, topic, nil); err != nil {
		t.Fatal(err)
	}
	ends, err := endOffsets(ctx, []string{addr}, topic)
	if err != nil {
		t.Fatal(err)
	}
	st, err := rawConsume(ctx, addr, topic, ends, s.recordBytes(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.records != 30_000+3 || st.bytes != st.records*int64(s.recordBytes()) {
		t.Fatalf("read %d records, %d bytes", st.records, st.bytes)
	}
	kt, err := kafkaConsume(ctx, []string{addr}, topic, nil, nil, nil)
	if err != nil || kt.records != st.records {
		t.Fatalf("franz-go read %d records (%v), raw %d", kt.records, err, st.records)
	}
	// Batch headers alone: two batches of 5 (offsets 10-14, 15-19) and a
	// partial third.
	var b []byte
	for _, base := range []int64{10, 15} {
		h := make([]byte, 61)
		binary.BigEndian.PutUint64(h, uint64(base))
		binary.BigEndian.PutUint32(h[8:], 49)
		h[16] = 2
		binary.BigEndian.PutUint32(h[23:], 4)
		binary.BigEndian.PutUint32(h[57:], 5)
		b = append(b, h...)
	}
	b = append(b, make([]byte, 30)...)
	if n, next, err := countBatches(b, 10, 100); n != 10 || next != 20 || err != nil {
		t.Fatalf("countBatches: %d records, next %d, %v", n, next, err)
	}
	if n, next, _ := countBatches(b, 10, 15); n != 5 || next != 20 {
		t.Fatalf("countBatches to 15: %d records, next %d", n, next)
	}
}

// A spread cell's requests hold a batch of each partition with records in
// their stretch of the key sequence, partitions ascending, at most
// rawSpreadRequestBytes each; together they hold every record once, each
// partition's in sequence order, each in the partition franz-go would pick;
// the warm-up holds one record of every partition.
func TestRawSpreadCell(t *testing.T) {
	s := shape{partitions: 1000, valueLen: 100, keys: 100_000, acks: "all", comp: "none"}
	const n = 50_000
	c, err := buildRawSpreadCell(s, 0, n, 9)
	if err != nil {
		t.Fatal(err)
	}
	if c.records != n || c.bytes != int64(n*s.recordBytes()) || c.conns != 1 || c.inFlight != 5 {
		t.Fatalf("%d records, %d bytes, %d conns, %d in flight", c.records, c.bytes, c.conns, c.inFlight)
	}
	if len(c.batches) < 5 || len(c.batches) > 8 { // about 6 MiB of records in requests of ≤ 1 MiB
		t.Fatalf("%d requests", len(c.batches))
	}
	decode := func(rb *rawBatch, keyed bool) [][]*kgo.Record {
		t.Helper()
		if len(rb.req) > rawSpreadRequestBytes {
			t.Fatalf("request of %d bytes", len(rb.req))
		}
		req := kmsg.NewPtrProduceRequest()
		req.Version = 9
		// Skip length, key, version, correlation id, client id and the
		// flexible header's tags.
		if err := req.ReadFrom(rb.req[4+2+2+4+2+len("kvbench")+1:]); err != nil {
			t.Fatalf("request: %v", err)
		}
		if req.Acks != -1 || len(req.Topics) != 1 || req.Topics[0].Topic != rawTopicPlaceholder || len(req.Topics[0].Partitions) != len(rb.parts) {
			t.Fatalf("request %d topics, %d partitions listed", len(req.Topics), len(rb.parts))
		}
		var out [][]*kgo.Record
		records := 0
		for i, p := range req.Topics[0].Partitions {
			if p.Partition != rb.parts[i] || i > 0 && p.Partition <= rb.parts[i-1] {
				t.Fatalf("partition %d at %d of %v", p.Partition, i, rb.parts[:i+1])
			}
			fb := kgo.ProcessFetchPartitionOpts{Topic: "t", Partition: p.Partition}
			recs, _ := kgo.ProcessFetchPartition(fb, &kmsg.FetchResponseTopicPartition{Partition: p.Partition, RecordBatches: p.Records, HighWatermark: 1 << 40}, kgo.DefaultDecompressor(), nil)
			if recs.Err != nil || len(recs.Records) == 0 {
				t.Fatalf("partition %d: %d records, %v", p.Partition, len(recs.Records), recs.Err)
			}
			for _, r := range recs.Records {
				if keyed && kafkaPartition(r.Key, s.partitions) != p.Partition || len(r.Value) != 100 {
					t.Fatalf("record %s in partition %d", r.Key, p.Partition)
				}
			}
			records += len(recs.Records)
			out = append(out, recs.Records)
		}
		if records != rb.records {
			t.Fatalf("%d records decoded, %d counted", records, rb.records)
		}
		return out
	}
	// Each partition's records, in the order of the key sequence.
	want := map[int32][]string{}
	keys := keySet(s.keys)
	for i := range n {
		k := keys[keyIndex(i, s.keys)]
		p := kafkaPartition(k, s.partitions)
		want[p] = append(want[p], string(k))
	}
	got := map[int32][]string{}
	for i := range c.batches {
		for _, recs := range decode(&c.batches[i], true) {
			for _, r := range recs {
				got[r.Partition] = append(got[r.Partition], string(r.Key))
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d partitions written, want %d", len(got), len(want))
	}
	for p, ks := range want {
		if !slices.Equal(got[p], ks) {
			t.Fatalf("partition %d: %d records, want %d (or out of order)", p, len(got[p]), len(ks))
		}
	}
	warmed := map[int32]int{}
	for i := range c.warm {
		for _, recs := range decode(&c.warm[i], false) { // keys[0] to every partition
			warmed[recs[0].Partition] += len(recs)
		}
	}
	if len(warmed) != int(s.partitions) {
		t.Fatalf("warm-up covers %d partitions", len(warmed))
	}
	for p, k := range warmed {
		if k != 1 {
			t.Fatalf("warm-up: %d records to partition %d", k, p)
		}
	}
}

// A spread cell's run against an in-process kfake acknowledges every
// record, on one connection with several requests outstanding.
func TestRawSpreadProduceKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Skipf("kfake: %v", err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := c.ListenAddrs()[0]
	s := shape{partitions: 300, valueLen: 100, keys: 100_000, acks: "all", comp: "none"}
	v, err := produceVersion(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	cell, err := rawSpreadCellFor(s, 0, 30_000, v)
	if err != nil {
		t.Fatal(err)
	}
	topic := rawTopicName()
	if err := createTopic(ctx, []string{addr}, topic, s.partitions, 1, nil); err != nil {
		t.Fatal(err)
	}
	st, err := rawProduce(ctx, addr, cell, v, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.records != 30_000 || st.reqs != len(cell.batches) {
		t.Fatalf("%d records in %d requests (of %d)", st.records, st.reqs, len(cell.batches))
	}
	ends, err := endOffsets(ctx, []string{addr}, topic)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, e := range ends {
		sum += e
	}
	if sum != 30_000+300 { // the records and one warm-up record per partition
		t.Fatalf("end offsets sum to %d", sum)
	}
}

// checkProduce refuses a response to a multi-partition request that fails
// a partition or leaves one out.
func TestCheckProduceSpread(t *testing.T) {
	rb := &rawBatch{partition: 1, parts: []int32{1, 2}}
	resp := func(codes ...int16) []byte {
		r := kmsg.NewPtrProduceResponse()
		r.Version = 9
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = "t"
		for i, code := range codes {
			p := kmsg.NewProduceResponseTopicPartition()
			p.Partition, p.ErrorCode = int32(i+1), code
			rt.Partitions = append(rt.Partitions, p)
		}
		r.Topics = append(r.Topics, rt)
		return r.AppendTo(nil)
	}
	if err := checkProduce(resp(0, 0), 9, "t", rb); err != nil {
		t.Fatal(err)
	}
	if err := checkProduce(resp(0, 6), 9, "t", rb); err == nil {
		t.Fatal("a partition error passed")
	}
	if err := checkProduce(resp(0), 9, "t", rb); err == nil {
		t.Fatal("a missing partition passed")
	}
}
