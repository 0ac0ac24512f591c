package cleaner

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// TestCodecsAndBatchFields cleans logs written with every codec, with
// headers, with CreateTime and LogAppendTime, and with an idempotent producer,
// and checks batch by batch what compaction keeps:
//
//   - a batch whose records are all still live is copied byte for byte;
//   - a thinned batch is re-encoded with its own codec, keeping base and last
//     offset, leader epoch, producer fields, timestamp type and (for
//     LogAppendTime) MaxTimestamp; record timestamps and headers survive;
//   - a batch that first retains a tombstone gets the delete-horizon flag and
//     BaseTimestamp = pass time + delete.retention.ms, record timestamps
//     unchanged;
//   - the idempotent producer's last batch, all of whose records are
//     superseded, stays as an empty 61-byte batch with its producer id,
//     epoch, base sequence and last offset.
func TestCodecsAndBatchFields(t *testing.T) {
	for _, appendTime := range []bool{false, true} {
		for c := record.CodecNone; c <= record.CodecZstd; c++ {
			t.Run(fmt.Sprintf("%s/logAppendTime=%v", c, appendTime), func(t *testing.T) {
				testCodec(t, c, appendTime)
			})
		}
	}
}

func testCodec(t *testing.T, codec record.Codec, appendTime bool) {
	e := newEnv(t)
	e.ecfg.LogAppendTime = appendTime
	e.ecfg.SegmentBytes = 1 << 20
	retention := 3 * time.Hour
	e.topics.set(testTP, TopicConfig{DeleteRetention: retention})
	l := e.log(testTP)
	hdr := func(i int) []record.Header {
		return []record.Header{{Key: []byte("trace"), Value: []byte(fmt.Sprint("t", i))}, {Key: []byte("null")}}
	}
	var hist []rec
	put := func(p *producer, kvs ...string) engine.Offset {
		t.Helper()
		recs := make([]rec, 0, len(kvs)/2)
		for i := 0; i < len(kvs); i += 2 {
			e.clk.Advance(time.Millisecond)
			r := rec{key: []byte(kvs[i]), ts: e.clk.Now().UnixMilli() - 5000, headers: hdr(len(hist) + i)}
			if kvs[i+1] != "" {
				r.value = bytes.Repeat([]byte(kvs[i+1]), 30) // compressible
			}
			recs = append(recs, r)
		}
		recs = appendRecs(t, l, codec, p, recs)
		hist = append(hist, recs...)
		return recs[0].offset
	}
	p := &producer{id: 11, epoch: 3, seq: 100}
	b1 := put(p, "a", "1", "b", "1", "c", "1") // superseded entirely; the producer's last batch
	b2 := put(nil, "d", "1", "e", "1")         // all live: copied byte for byte
	b3 := put(nil, "h", "1", "a", "2", "i", "1", "b", "2")
	b4 := put(nil, "c", "2", "g", "") // a tombstone: stamped
	b5 := put(nil, "h", "2", "f", "1")
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	_, before := readLog(t, l)
	byBase := func(bs []record.Batch) map[int64]record.Batch {
		m := map[int64]record.Batch{}
		for _, b := range bs {
			m[b.BaseOffset()] = b
		}
		return m
	}
	old := byBase(before)
	passAt := e.clk.Now()
	res, ok := e.runOnce()
	if !ok {
		t.Fatal("no pass")
	}
	got, after := readLog(t, l)
	now := byBase(after)

	// b1: empty, producer fields and last offset kept.
	eb := now[int64(b1)]
	if eb == nil || eb.NumRecords() != 0 || len(eb) != record.HeaderSize || eb.LastOffset() != old[int64(b1)].LastOffset() ||
		eb.ProducerID() != 11 || eb.ProducerEpoch() != 3 || eb.BaseSequence() != 100 || eb.Codec() != record.CodecNone ||
		eb.MaxTimestamp() != old[int64(b1)].MaxTimestamp() || eb.LogAppendTime() != appendTime {
		t.Fatalf("producer's last batch not kept as an empty batch: %v", describe(eb))
	}
	// b2: byte for byte.
	if !bytes.Equal(now[int64(b2)], old[int64(b2)]) {
		t.Fatal("an unchanged batch was not copied byte for byte")
	}
	// b3 thinned (its h is superseded), b4 stamped.
	for _, base := range []engine.Offset{b3, b4} {
		nb, ob := now[int64(base)], old[int64(base)]
		if nb == nil {
			t.Fatalf("batch %d gone", base)
		}
		if nb.Codec() != codec || nb.LastOffset() != ob.LastOffset() || nb.PartitionLeaderEpoch() != ob.PartitionLeaderEpoch() ||
			nb.ProducerID() != ob.ProducerID() || nb.LogAppendTime() != appendTime {
			t.Fatalf("batch %d rewritten with different fields: %s, was %s", base, describe(nb), describe(ob))
		}
		if appendTime && nb.MaxTimestamp() != ob.MaxTimestamp() {
			t.Fatalf("LogAppendTime batch %d: MaxTimestamp %d, was %d", base, nb.MaxTimestamp(), ob.MaxTimestamp())
		}
	}
	if nb := now[int64(b3)]; nb.NumRecords() != 3 || nb.HasDeleteHorizon() {
		t.Fatalf("thinned batch: %s", describe(nb))
	}
	if nb := now[int64(b4)]; !nb.HasDeleteHorizon() || nb.BaseTimestamp() != passAt.Add(retention).UnixMilli() || nb.NumRecords() != 2 {
		t.Fatalf("tombstone batch not stamped: %s", describe(nb))
	}
	if !bytes.Equal(now[int64(b5)], old[int64(b5)]) {
		t.Fatal("an unchanged batch was not copied byte for byte")
	}
	// Every surviving record is exactly what was written (timestamps,
	// headers), and the survivors are the latest of each key.
	latest := map[string]engine.Offset{}
	for _, r := range hist {
		latest[string(r.key)] = r.offset
	}
	if len(got) != len(latest) {
		t.Fatalf("%d records survive, want %d", len(got), len(latest))
	}
	for _, r := range got {
		if !sameRec(r, hist[r.offset]) || latest[string(r.key)] != r.offset {
			t.Fatalf("survivor %v differs from %v", r, hist[r.offset])
		}
	}
	if res.Stats.BatchesEmptied != 1 || res.Stats.HorizonsStamped != 1 {
		t.Fatalf("stats %+v", res.Stats)
	}
	// The producer continues where it left off after a restart.
	e.restart()
	l = e.log(testTP)
	if r, err := l.Append(batch(t, codec, p, []rec{{key: []byte("a"), value: []byte("3"), ts: e.clk.Now().UnixMilli()}}), 1); err != nil || r.Duplicate {
		t.Fatalf("producer append after compaction: %v %+v", err, r)
	}
}

func describe(b record.Batch) string {
	if b == nil {
		return "<nil>"
	}
	return fmt.Sprintf("base %d last %d n %d codec %s attrs %#x baseTs %d maxTs %d pid %d epoch %d seq %d len %d",
		b.BaseOffset(), b.LastOffset(), b.NumRecords(), b.Codec(), b.Attributes(), b.BaseTimestamp(), b.MaxTimestamp(),
		b.ProducerID(), b.ProducerEpoch(), b.BaseSequence(), len(b))
}
