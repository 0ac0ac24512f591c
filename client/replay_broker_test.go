package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/client/clienttest"
	"github.com/kvlog/kvlog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceModel writes n random records to topic through a producer using
// codec — overwrites, empty values, tombstones, headers, batches of many
// sizes — and updates the model.
func produceModel(t *testing.T, ctx context.Context, b *clienttest.Broker, topic string, codec kgo.CompressionCodec, rng *rand.Rand, n, keys int, model map[string]string) {
	t.Helper()
	cl := b.Client(t, kgo.RecordPartitioner(Partitioner()), kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(time.Millisecond))
	var recs []*kgo.Record
	for i := range n {
		k := fmt.Sprintf("key-%03d", rng.IntN(keys))
		r := &kgo.Record{Topic: topic, Key: []byte(k)}
		switch rng.IntN(6) {
		case 0: // tombstone
			delete(model, k)
		case 1:
			r.Value = []byte{}
			model[k] = ""
		default:
			r.Value = fmt.Appendf(nil, "v%d-%s", i, strings.Repeat("x", rng.IntN(300)))
			model[k] = string(r.Value)
		}
		if rng.IntN(3) == 0 {
			r.Headers = []kgo.RecordHeader{{Key: "h", Value: []byte("hv")}}
		}
		recs = append(recs, r)
	}
	for len(recs) > 0 { // in groups of random sizes: batches of many sizes
		g := min(len(recs), 1+rng.IntN(100))
		if err := cl.ProduceSync(ctx, recs[:g]...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		recs = recs[g:]
	}
	cl.Close()
}

func engineRecords(tbl *Table) int64 {
	tbl.mu.RLock()
	defer tbl.mu.RUnlock()
	return tbl.engineRecords
}

// TestTableReplayEngineMatchesModel: a topic over 4 partitions written with
// every compression codec is replayed by the engine — in large fetches and
// in many small ones, which end in partial batches — and by franz-go's
// consumer (read_committed turns the engine off); every replay matches the
// model, and the engine replayed every record itself.
func TestTableReplayEngineMatchesModel(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 120*time.Second)
	if _, err := b.Admin(t).CreateTopic(ctx, 4, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "engine"); err != nil {
		t.Fatal(err)
	}
	model := map[string]string{}
	rng := rand.New(rand.NewPCG(21, 22))
	total := 0
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		produceModel(t, ctx, b, "engine", codec, rng, 400, 250, model)
		total += 400
	}
	for _, v := range []struct {
		name   string
		opts   []Option
		engine bool
	}{
		{"engine", nil, true},
		{"engine small fetches", []Option{WithFetchSizes(2048, 1024)}, true},
		{"consumer", []Option{WithKgoOptions(kgo.FetchIsolationLevel(kgo.ReadCommitted()))}, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			tbl, err := Open(ctx, b.Brokers(), "engine", append(v.opts, ReplayOnly())...)
			if err != nil {
				t.Fatal(err)
			}
			defer tbl.Close()
			checkModel(t, tbl, model)
			st := tbl.Stats()
			if st.Records != int64(total) || st.Bytes == 0 {
				t.Errorf("replayed %d records (%d bytes), want %d", st.Records, st.Bytes, total)
			}
			want := int64(0)
			if v.engine {
				want = int64(total)
			}
			if got := engineRecords(tbl); got != want {
				t.Errorf("the engine replayed %d records, want %d", got, want)
			}
		})
	}
}

// TestTableReplayEngineHandsOver: when the engine gives up part-way (here
// forced at its third fetch), the franz-go consumer continues from the
// positions it reached; the table matches the model and then tails.
func TestTableReplayEngineHandsOver(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 120*time.Second)
	if _, err := b.Admin(t).CreateTopic(ctx, 3, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "handover"); err != nil {
		t.Fatal(err)
	}
	model := map[string]string{}
	rng := rand.New(rand.NewPCG(31, 32))
	produceModel(t, ctx, b, "handover", kgo.Lz4Compression(), rng, 1500, 400, model)

	replayFault = func(fetch int) error {
		if fetch == 2 {
			return errors.New("injected")
		}
		return nil
	}
	defer func() { replayFault = nil }()
	tbl, err := Open(ctx, b.Brokers(), "handover", WithFetchSizes(4096, 2048))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	checkModel(t, tbl, model)
	st := tbl.Stats()
	if er := engineRecords(tbl); er == 0 || er >= st.Records || st.Records != 1500 {
		t.Errorf("engine %d of %d records, want some of 1500", er, st.Records)
	}
	pos, err := tbl.Put(ctx, []byte("after"), []byte("replay"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.WaitFor(ctx, pos); err != nil {
		t.Fatal(err)
	}
	model["after"] = "replay"
	checkModel(t, tbl, model)
}

// TestTableReplayEndsAtTransactionMarker: a partition whose log ends with a
// transaction's commit marker is replayed to its high watermark, not
// declared stalled. Positions advance to the end of each fetched batch,
// control batches included; they used to advance to the last record
// applied, which never reached the marker's offset, so the replay waited
// out the stall timeout and reported the partition stalled.
func TestTableReplayEndsAtTransactionMarker(t *testing.T) {
	b := clienttest.Start(t)
	ctx := testbroker.Context(t, 60*time.Second)
	if _, err := b.Admin(t).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "txn"); err != nil {
		t.Fatal(err)
	}
	cl := b.Client(t, kgo.TransactionalID("replay-txn"), kgo.DefaultProduceTopic("txn"))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// The marker is written once the transaction completes: wait for the
	// high watermark to pass it.
	adm := b.Admin(t)
	for i := 0; ; i++ {
		ends, err := adm.ListEndOffsets(ctx, "txn")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := ends.Lookup("txn", 0); o.Offset == 2 {
			break
		}
		if i == 500 {
			t.Fatalf("high watermark %+v, want 2 (the record and the commit marker)", ends)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	tbl, err := Open(ctx, b.Brokers(), "txn", ReplayOnly(), WithStallTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	st := tbl.Stats()
	if len(st.StalledPartitions) != 0 || st.Partitions[0].Position != st.Partitions[0].Target || st.Partitions[0].Target != 2 {
		t.Errorf("progress %+v, stalled %v: want partition 0 at its target 2", st.Partitions, st.StalledPartitions)
	}
	if v, ok := tbl.Get([]byte("k")); !ok || string(v) != "v" {
		t.Errorf("k = %q %v", v, ok)
	}
}
