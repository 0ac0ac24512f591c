package testbroker

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ReadTopic reads every partition of topic from its start offsets to its
// end offsets with franz-go, the reference client of the compatibility
// suites, failing the test after a minute.
func (b *Broker) ReadTopic(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	ctx := Context(t, time.Minute)
	adm := b.Admin(t)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s-%d: %v", topic, o.Partition, o.Err)
		}
		s, _ := starts.Lookup(topic, o.Partition)
		want += o.Offset - s.Offset
	})
	cl := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	var out []*kgo.Record
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("franz-go read %d of %d records of %s", len(out), want, topic)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("franz-go fetching %s-%d: %v", tp, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// StoredCodecs returns the compression codec (the attributes' low three
// bits: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd) of every record batch
// stored in a partition, read with a raw Fetch: batches are stored as the
// producer compressed them.
func (b *Broker) StoredCodecs(t testing.TB, topic string, partition int32) []int8 {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.MaxWaitMillis = 100
	req.MaxBytes = 64 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.PartitionMaxBytes = 64 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(Context(t, 30*time.Second), b.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("raw fetch %s-%d: %+v", topic, partition, resp)
	}
	var codecs []int8
	for raw := resp.Topics[0].Partitions[0].RecordBatches; len(raw) >= 61; {
		n := 12 + int(int32(binary.BigEndian.Uint32(raw[8:])))
		if n > len(raw) {
			break // a partial batch at the end of the response
		}
		codecs = append(codecs, int8(raw[22]&0x07))
		raw = raw[n:]
	}
	return codecs
}
