package server

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	dto "github.com/prometheus/client_model/go"

	"github.com/kvlog/kvlog/engine/record"
)

func produceReq(version int16, acks int16, topic string, partition int32, records []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = version
	req.Acks = acks
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = records
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

func TestProduceValidation(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "plain", 1, nil)
	createTopic(t, b, "compacted", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")})
	createTopic(t, b, "strict-time", 1, map[string]*string{"message.timestamp.before.max.ms": kadm.StringPtr("60000")})
	createTopic(t, b, "two-replicas", 1, map[string]*string{"min.insync.replicas": kadm.StringPtr("2")})
	c := b.dial(t)

	good := testBatch(t, 2)
	zstd := testBatch(t, 1)
	zstd[record.OffAttributes+1] |= byte(record.CodecZstd) // attributes low byte (CRC now wrong too; the server checks first)
	control := testBatch(t, 1)
	control[record.OffAttributes+1] |= byte(record.AttrControl)
	old := testBatch(t, 1)
	oldTs := time.Now().Add(-time.Hour).UnixMilli()
	for _, off := range []int{record.OffBaseTimestamp, record.OffMaxTimestamp} {
		for i := 0; i < 8; i++ {
			old[off+i] = byte(oldTs >> (56 - 8*i))
		}
	}
	record.Batch(old).UpdateCRC()
	// An honest header over a record an hour old: every record is checked,
	// not only the header's timestamps.
	oldRecord := timedBatch(t, time.Now().UnixMilli(), 0, -time.Hour.Milliseconds())
	badCRC := testBatch(t, 1)
	badCRC[len(badCRC)-1] ^= 0xff
	nullKey := func() []byte {
		r := kmsg.NewRecord()
		r.Value = []byte("v")
		r.Key = nil
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		rb := kmsg.NewRecordBatch()
		rb.Magic = 2
		rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = -1, -1, -1
		rb.NumRecords = 1
		rb.Records = r.AppendTo(nil)
		raw := rb.AppendTo(nil)
		rb.Length = int32(len(raw) - 12)
		raw = rb.AppendTo(nil)
		putCRC(raw)
		return raw
	}()
	twoBatches := append(append([]byte{}, good...), good...)
	cases := []struct {
		name    string
		version int16
		acks    int16
		topic   string
		records []byte
		want    *kerr.Error
	}{
		{"ok", 7, 1, "plain", good, nil},
		{"bad-acks", 7, 2, "plain", good, kerr.InvalidRequiredAcks},
		{"unknown-topic", 7, 1, "nope", good, kerr.UnknownTopicOrPartition},
		{"no-batch", 7, 1, "plain", nil, kerr.InvalidRecord},
		{"two-batches", 7, 1, "plain", twoBatches, kerr.InvalidRecord},
		{"truncated", 7, 1, "plain", good[:len(good)-3], kerr.CorruptMessage},
		{"zstd-before-v7", 6, 1, "plain", zstd, kerr.UnsupportedCompressionType},
		{"control-batch", 7, 1, "plain", control, kerr.InvalidRecord},
		{"bad-crc", 8, 1, "plain", badCRC, kerr.CorruptMessage},
		{"null-key-compacted", 8, 1, "compacted", nullKey, kerr.InvalidRecord},
		{"old-timestamp", 8, 1, "strict-time", old, kerr.InvalidTimestamp},
		{"old-record-timestamp", 8, 1, "strict-time", oldRecord, kerr.InvalidTimestamp},
		{"min-insync", 8, -1, "two-replicas", testBatch(t, 1), kerr.NotEnoughReplicas},
		{"min-insync-acks1", 8, 1, "two-replicas", testBatch(t, 1), nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := produceReq(tc.version, tc.acks, tc.topic, 0, tc.records)
			c.send(req, int32(i))
			resp := c.recv(req, int32(i)).(*kmsg.ProduceResponse)
			p := resp.Topics[0].Partitions[0]
			if err := kerr.ErrorForCode(p.ErrorCode); err != tc.want && !(tc.want == nil && err == nil) {
				t.Fatalf("error %v, want %v (message %v)", err, tc.want, p.ErrorMessage)
			}
			if tc.want == nil && p.BaseOffset < 0 {
				t.Fatalf("base offset %d", p.BaseOffset)
			}
		})
	}
}

func putCRC(raw []byte) {
	c := crc32c(raw[21:])
	raw[17], raw[18], raw[19], raw[20] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
}

// TestIdempotentDuplicate: a re-sent idempotent batch gets its original
// offset and is not appended again; a sequence gap is refused.
func TestIdempotentDuplicate(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "idem", 1, nil)
	c := b.dial(t)
	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.Version = 1
	c.send(ip, 1)
	ipr := c.recv(ip, 1).(*kmsg.InitProducerIDResponse)
	if ipr.ErrorCode != 0 || ipr.ProducerID < 0 {
		t.Fatalf("init producer id %+v", ipr)
	}
	batch := func(seq int32) []byte {
		raw := testBatch(t, 2)
		for i := 0; i < 8; i++ {
			raw[43+i] = byte(ipr.ProducerID >> (56 - 8*i))
		}
		raw[51], raw[52] = 0, 0 // epoch 0
		raw[53], raw[54], raw[55], raw[56] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
		putCRC(raw)
		return raw
	}
	send := func(corr int32, raw []byte) kmsg.ProduceResponseTopicPartition {
		req := produceReq(8, -1, "idem", 0, raw)
		c.send(req, corr)
		return c.recv(req, corr).(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	}
	if p := send(2, batch(0)); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("first %+v", p)
	}
	if p := send(3, batch(2)); p.ErrorCode != 0 || p.BaseOffset != 2 {
		t.Fatalf("second %+v", p)
	}
	if p := send(4, batch(2)); p.ErrorCode != 0 || p.BaseOffset != 2 {
		t.Fatalf("duplicate %+v", p)
	}
	if p := send(5, batch(9)); p.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("gap %+v", p)
	}
	if hw := b.s.partition("idem", 0).log.HighWatermark(); hw != 4 {
		t.Fatalf("high watermark %d, want 4", hw)
	}
	// Producer ids never repeat.
	c.send(ip, 6)
	if again := c.recv(ip, 6).(*kmsg.InitProducerIDResponse); again.ProducerID == ipr.ProducerID {
		t.Fatal("producer id reused")
	}
}

func TestListOffsetsAndDeleteRecords(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "lo", 1, nil)
	produceN(t, b, "lo", 10) // timestamps 1000..10000 ms
	adm := b.admin(t)
	ctx := ctxT(t)
	byTime, err := adm.ListOffsetsAfterMilli(ctx, 3500, "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := byTime.Lookup("lo", 0); o.Offset != 3 || o.Timestamp != 4000 {
		t.Fatalf("offset for time 3500: %+v", o)
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, 99999, "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := after.Lookup("lo", 0); o.Offset != 10 && o.Offset != -1 {
		t.Fatalf("offset after the last timestamp: %+v", o)
	}
	maxTs, err := adm.ListMaxTimestampOffsets(ctx, "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := maxTs.Lookup("lo", 0); o.Timestamp != 10000 {
		t.Fatalf("max timestamp: %+v", o)
	}

	dr, err := adm.DeleteRecords(ctx, kadm.Offsets{"lo": {0: {At: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup("lo", 0); r.Err != nil || r.LowWatermark != 4 {
		t.Fatalf("delete records %+v", r)
	}
	starts, err := adm.ListStartOffsets(ctx, "lo")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := starts.Lookup("lo", 0); o.Offset != 4 {
		t.Fatalf("start offset %+v", o)
	}
	dr, _ = adm.DeleteRecords(ctx, kadm.Offsets{"lo": {0: {At: 11}}})
	if r, _ := dr.Lookup("lo", 0); r.Err != kerr.OffsetOutOfRange {
		t.Fatalf("delete beyond the high watermark: %+v", r)
	}
	// A fetch below the log start is out of range.
	cl := b.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"lo": {0: kgo.NewOffset().At(1)}}), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := cl.PollFetches(ctx)
	var first int64 = -1
	fs.EachRecord(func(r *kgo.Record) {
		if first < 0 {
			first = r.Offset
		}
	})
	if first != 4 {
		t.Fatalf("first offset consumed after reset: %d", first)
	}
}

func TestTopicsAdmin(t *testing.T) {
	b := startBroker(t, "num.partitions=3")
	adm := b.admin(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		want *kerr.Error
	}{
		{"bad/name", kerr.InvalidTopicException},
		{"a.b", nil},
		{"a_b", kerr.InvalidTopicException}, // collides with a.b
		{string(make([]byte, 250)), kerr.InvalidTopicException},
	} {
		name, want := tc.name, tc.want
		r, err := adm.CreateTopic(ctx, 1, 1, nil, name)
		if err != nil && want == nil {
			t.Fatal(err)
		}
		if r.Err != want && !(want == nil && r.Err == nil) {
			t.Errorf("create %q: %v, want %v", name, r.Err, want)
		}
	}
	if r, _ := adm.CreateTopic(ctx, 1, 1, nil, "a.b"); r.Err != kerr.TopicAlreadyExists {
		t.Errorf("duplicate: %v", r.Err)
	}
	if r, _ := adm.CreateTopic(ctx, 1, 3, nil, "rf3"); r.Err != kerr.InvalidReplicationFactor {
		t.Errorf("rf 3: %v", r.Err)
	}
	if r, _ := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.bytes": kadm.StringPtr("x")}, "badcfg"); r.Err != kerr.InvalidConfig {
		t.Errorf("bad config: %v", r.Err)
	}
	if r, _ := adm.CreateTopic(ctx, 1, 1, map[string]*string{"no.such.config": kadm.StringPtr("1")}, "badcfg"); r.Err != kerr.InvalidConfig {
		t.Errorf("unknown config: %v", r.Err)
	}
	if r, _ := adm.ValidateCreateTopics(ctx, 1, 1, nil, "validate-only"); r.Error() != nil {
		t.Errorf("validate only: %v", r.Error())
	}
	// -1 defaults (KIP-464).
	if r, err := adm.CreateTopic(ctx, -1, -1, nil, "defaults"); err != nil || r.Err != nil || r.NumPartitions != 3 {
		t.Errorf("defaults: %+v %v", r, err)
	}
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has("validate-only") || !topics.Has("defaults") || len(topics["defaults"].Partitions) != 3 {
		t.Fatalf("topics %v", topics.Names())
	}

	// Auto-creation through Metadata.
	cl := b.client(t, kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("auto"))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if b.s.topic("auto") == nil || len(b.s.topic("auto").parts) != 3 {
		t.Fatal("auto topic not created with num.partitions")
	}

	// Delete, then the topic is unknown to produce.
	if r, err := adm.DeleteTopics(ctx, "auto"); err != nil || r.Error() != nil {
		t.Fatalf("delete: %v %v", err, r.Error())
	}
	c := b.dial(t)
	req := produceReq(7, 1, "auto", 0, testBatch(t, 1))
	c.send(req, 1)
	if p := c.recv(req, 1).(*kmsg.ProduceResponse).Topics[0].Partitions[0]; p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce to deleted topic: %d", p.ErrorCode)
	}
	if r, _ := adm.DeleteTopics(ctx, "auto"); r.Error() == nil {
		t.Fatal("deleting an unknown topic succeeded")
	}
	// Re-create with the same name: empty.
	createTopic(t, b, "auto", 1, nil)
	if leo := b.s.partition("auto", 0).log.LogEndOffset(); leo != 0 {
		t.Fatalf("re-created topic has log end %d", leo)
	}
}

func TestConfigsLive(t *testing.T) {
	b := startBroker(t, "log.retention.hours=2")
	createTopic(t, b, "cfg", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")})
	adm := b.admin(t)
	ctx := ctxT(t)
	log := b.s.partition("cfg", 0).log
	if !log.Config().Compact || log.Config().RetentionTime != 2*time.Hour {
		t.Fatalf("engine config %+v", log.Config())
	}
	// Incremental: APPEND to a list, SET a value.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("delete")},
		{Name: "segment.ms", Value: kadm.StringPtr("60000")},
	}, "cfg"); err != nil {
		t.Fatal(err)
	}
	if c := log.Config(); !c.Compact || !c.Delete || c.SegmentTime != time.Minute {
		t.Fatalf("after alter: %+v", c)
	}
	// Describe with synonyms: retention.ms comes from log.retention.hours.
	rcs, err := adm.DescribeTopicConfigs(ctx, "cfg")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("cfg", nil)
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			if c.MaybeValue() != "7200000" || c.Source != kmsg.ConfigSourceStaticBrokerConfig || len(c.Synonyms) != 2 {
				t.Fatalf("retention.ms %+v", c)
			}
		}
	}
	// Dynamic cluster default for a broker key reaches the topic.
	if _, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.retention.ms", Value: kadm.StringPtr("1000")}}); err != nil {
		t.Fatal(err)
	}
	if c := log.Config(); c.RetentionTime != time.Second {
		t.Fatalf("dynamic default not applied: %v", c.RetentionTime)
	}
	// Cleaner keys are dynamic and reported.
	if _, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.cleaner.threads", Value: kadm.StringPtr("2")}}); err != nil {
		t.Fatal(err)
	}
	brc, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range brc {
		for _, c := range r.Configs {
			if c.Key == "log.cleaner.threads" {
				found = c.MaybeValue() == "2" && c.Source == kmsg.ConfigSourceDynamicDefaultBrokerConfig
			}
		}
	}
	if !found {
		t.Fatalf("log.cleaner.threads not reported as dynamic default 2: %+v", brc)
	}
	// Static keys cannot change at runtime.
	if rs, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.dirs", Value: kadm.StringPtr("/x")}}); err == nil && rs[0].Err == nil {
		t.Fatal("static key altered")
	}

	// Everything survives a restart.
	b.stop(t)
	b2 := startBrokerIn(t, b.dir, "log.retention.hours=2")
	c := b2.s.partition("cfg", 0).log.Config()
	if !c.Compact || !c.Delete || c.SegmentTime != time.Minute || c.RetentionTime != time.Second {
		t.Fatalf("after restart: %+v", c)
	}
}

// TestHandlerPanic: a panicking handler closes only its connection.
func TestHandlerPanic(t *testing.T) {
	b := startBroker(t)
	hook := func(r *request) bool {
		if r.hdr.key == kmsg.DescribeConfigs.Int16() && r.hdr.corr == 1 {
			panic("boom")
		}
		return false
	}
	b.s.requestHook.Store(&hook)
	c := b.dial(t)
	req := kmsg.NewPtrDescribeConfigsRequest()
	c.send(req, 1)
	c.expectClosed()
	c2 := b.dial(t)
	c2.send(req, 2)
	c2.recv(req, 2)
	if n := testutilCount(b.s.metrics.Panics); n != 1 {
		t.Fatalf("panics metric %v", n)
	}
}

func testutilCount(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

// timedBatch is a CreateTime batch of len(deltas) records whose timestamps
// are base+deltas[i], with an honest header.
func timedBatch(t *testing.T, base int64, deltas ...int64) []byte {
	t.Helper()
	bl := record.Builder{BaseTimestamp: base, MaxTimestamp: record.NoTimestamp, LastOffsetDelta: -1, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
	for i, d := range deltas {
		bl.Add(record.Record{OffsetDelta: int32(i), TimestampDelta: d, Key: []byte{byte('a' + i)}, Value: []byte("v")})
	}
	b, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProduceMaxTimestampFromRecords: a batch whose header MaxTimestamp
// does not match its records is stored with the records' largest
// timestamp, as Kafka's leader rewrites it; the time index and ListOffsets
// by time then answer from real record timestamps.
func TestProduceMaxTimestampFromRecords(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "lying", 1, nil)
	c := b.dial(t)
	now := time.Now().UnixMilli()
	for i, lie := range []int64{now + 100*365*24*3600*1000, now - 3600*1000} {
		batch := timedBatch(t, now, 0, 5, 10)
		record.Batch(batch).SetMaxTimestamp(lie)
		record.Batch(batch).UpdateCRC()
		req := produceReq(8, -1, "lying", 0, batch)
		c.send(req, int32(i))
		if p := c.recv(req, int32(i)).(*kmsg.ProduceResponse).Topics[0].Partitions[0]; p.ErrorCode != 0 {
			t.Fatalf("produce with MaxTimestamp %d: %v %v", lie, kerr.ErrorForCode(p.ErrorCode), p.ErrorMessage)
		}
	}
	lo := kmsg.NewListOffsetsRequest()
	lo.Version = 7
	lo.ReplicaID = -1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "lying"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = -3 // the record with the largest timestamp
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	c.send(&lo, 9)
	p := c.recv(&lo, 9).(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.Timestamp != now+10 || p.Offset != 2 {
		t.Fatalf("ListOffsets max timestamp: offset %d timestamp %d error %d; want offset 2 timestamp %d (the first batch's last record)", p.Offset, p.Timestamp, p.ErrorCode, now+10)
	}
	cl := b.client(t, kgo.ConsumeTopics("lying"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got int
	for got < 6 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if want := time.UnixMilli(now + int64(r.Offset%3)*5); !r.Timestamp.Equal(want) {
				t.Errorf("offset %d: timestamp %v, want %v", r.Offset, r.Timestamp, want)
			}
			got++
		})
	}
	if got != 6 {
		t.Fatalf("consumed %d of 6 records", got)
	}
}
