package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// produceConsume creates a topic, produces n keyed records and reads them
// back from offset 0.
func produceConsume(t *testing.T, b *testBroker, topic string, n int, opts ...kgo.Opt) {
	t.Helper()
	ctx := ctxT(t)
	adm := b.admin(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic); err != nil {
		t.Fatal(err)
	}
	cl := b.client(t, append([]kgo.Opt{kgo.DefaultProduceTopic(topic)}, opts...)...)
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%10)), Value: []byte(fmt.Sprintf("v%d", i))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	cons := b.client(t, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", len(seen), n, err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	for i := 0; i < n; i++ {
		if !seen[fmt.Sprintf("v%d", i)] {
			t.Fatalf("record v%d missing", i)
		}
	}
}

func TestProduceConsume(t *testing.T) {
	b := startBroker(t)
	t.Run("latest", func(t *testing.T) { produceConsume(t, b, "latest", 50) })
	t.Run("minimal-tier", func(t *testing.T) {
		// The non-flexible versions of the reference's minimal tier.
		v := kversion.V2_3_0()
		produceConsume(t, b, "minimal", 50, kgo.MaxVersions(v))
	})
	t.Run("codecs", func(t *testing.T) {
		for name, c := range map[string]kgo.CompressionCodec{
			"gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
		} {
			produceConsume(t, b, "codec-"+name, 30, kgo.ProducerBatchCompression(c), kgo.ProducerLinger(5*time.Millisecond))
		}
	})
}

func TestApiVersions(t *testing.T) {
	b := startBroker(t)
	c := b.dial(t)
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName = "test"
	req.ClientSoftwareVersion = "1"
	c.send(req, 1)
	resp := c.recv(req, 1).(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != 0 {
		t.Fatalf("error %d", resp.ErrorCode)
	}
	got := map[int16][2]int16{}
	for _, k := range resp.ApiKeys {
		got[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	for k, h := range handlers {
		if got[k] != [2]int16{h.advMin, h.versions.Max} {
			t.Errorf("key %d advertised %v, registered %v (advertised from %d)", k, got[k], h.versions, h.advMin)
		}
	}
	if len(got) != len(handlers) {
		t.Errorf("advertised %d keys, registered %d", len(got), len(handlers))
	}
	if got[kmsg.Produce.Int16()] != [2]int16{0, 12} {
		t.Errorf("Produce advertised %v, want 0-12 (docs/protocol.md#librdkafka-and-produce-v0)", got[kmsg.Produce.Int16()])
	}
	// The group coordinator's keys (flexible tier, no topic ids).
	for key, want := range map[kmsg.Key][2]int16{
		kmsg.OffsetCommit: {0, 9}, kmsg.OffsetFetch: {0, 7}, kmsg.FindCoordinator: {0, 6},
		kmsg.JoinGroup: {0, 9}, kmsg.Heartbeat: {0, 4}, kmsg.LeaveGroup: {0, 5}, kmsg.SyncGroup: {0, 5},
		kmsg.DescribeGroups: {0, 5}, kmsg.ListGroups: {0, 5}, kmsg.DeleteGroups: {0, 2}, kmsg.OffsetDelete: {0, 0},
		// The transaction keys (docs/transactions.md): Kafka 3.9's, but
		// AddPartitionsToTxn's client form only.
		kmsg.InitProducerID: {0, 5}, kmsg.AddPartitionsToTxn: {0, 3}, kmsg.AddOffsetsToTxn: {0, 4}, kmsg.EndTxn: {0, 4},
		kmsg.WriteTxnMarkers: {0, 1}, kmsg.TxnOffsetCommit: {0, 4}, kmsg.DescribeProducers: {0, 0},
		kmsg.DescribeTransactions: {0, 0}, kmsg.ListTransactions: {0, 1},
	} {
		if got[key.Int16()] != want {
			t.Errorf("%s advertised %v, want %v", kmsg.NameForKey(key.Int16()), got[key.Int16()], want)
		}
	}

	// Too new: a v0 answer with UNSUPPORTED_VERSION, and the connection stays.
	b2 := frame(req, 2, "test")
	b2[6], b2[7] = 0, 99 // version field
	c.write(b2)
	raw, err := c.readFrame()
	if err != nil {
		t.Fatal(err)
	}
	v0 := kmsg.NewPtrApiVersionsResponse()
	v0.Version = 0
	if err := v0.ReadFrom(raw[4:]); err != nil {
		t.Fatal(err)
	}
	if v0.ErrorCode != kerr.UnsupportedVersion.Code || len(v0.ApiKeys) == 0 {
		t.Fatalf("v0 answer %+v", v0)
	}
	req.Version = 0
	c.send(req, 3)
	if resp := c.recv(req, 3).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("after retry: error %d", resp.ErrorCode)
	}
}
