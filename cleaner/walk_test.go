package cleaner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
)

// benchBatches encodes n 100-record batches of the benchmark's records
// (13-byte keys over keys distinct ones, 100-byte values) from offset 0.
func benchBatches(tb testing.TB, n, keys int, codec record.Codec) []record.Batch {
	tb.Helper()
	var out []record.Batch
	var bl record.Builder
	i := 0
	for range n {
		bl.Reset()
		bl.Attributes = int16(codec)
		bl.BaseOffset = int64(i)
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
		bl.BaseTimestamp, bl.MaxTimestamp, bl.LastOffsetDelta = 1_700_000_000_000, -1, -1
		for k := range benchBatch {
			x := uint64(i) * 0x9E3779B97F4A7C15
			key := fmt.Appendf(nil, "key-%09d", (x^x>>29)%uint64(keys))
			val := fmt.Appendf(nil, `{"id":%d,"version":%d,"state":"active","tag":"%058d"}`, i, i, i)
			bl.Add(record.Record{OffsetDelta: int32(k), Key: key, Value: val[:100]})
			i++
		}
		b, err := bl.Build(nil)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, record.Batch(b))
	}
	return out
}

// BenchmarkScanBatch is the first map scan's work per record, in memory:
// CRC, walk, digests and puts (1,000 keys: the map stays in cache).
func BenchmarkScanBatch(b *testing.B) {
	batches := benchBatches(b, 200, 1000, record.CodecNone)
	w := newWorker(0, NewThrottle(0, nil, nil), nil)
	if err := w.ensureMap(128<<20, 0.9, nil); err != nil {
		b.Fatal(err)
	}
	w.stats = &PassStats{}
	total := int64(len(batches) * benchBatch)
	w.keep, w.tomb = w.keep.resize(total), w.tomb.resize(total)
	w.end, w.rng = total, allKeys
	b.SetBytes(int64(len(batches) * len(batches[0])))
	cpu := cpuClock()
	for b.Loop() {
		w.m.Clear()
		for _, bt := range batches {
			if err := bt.VerifyCRC(); err != nil {
				b.Fatal(err)
			}
			p, _ := w.section(bt)
			if _, _, err := w.mapSection(bt, p, true); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(cpu())/float64(int64(b.N)*total), "cpu-ns/record")
}

// cpuClock returns a function that reports the process's CPU time (user and
// system) since cpuClock was called: on a loaded machine, a steadier measure
// than the wall time benchmarks report.
func cpuClock() func() time.Duration {
	now := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	t0 := now()
	return func() time.Duration { return now() - t0 }
}

// randomBatch encodes a batch of random records: keys null, empty, short or
// past 63 bytes (two-byte lengths), values null or up to 300 bytes, headers,
// timestamp deltas of any size, offset deltas with gaps (as in a batch a
// pass thinned), any codec and either timestamp type.
func randomBatch(t testing.TB, rng *rand.Rand) record.Batch {
	t.Helper()
	var bl record.Builder
	bl.Attributes = int16(rng.IntN(5))
	if rng.IntN(4) == 0 {
		bl.Attributes |= record.AttrLogAppendTime
		bl.MaxTimestamp = 1_700_000_100_000
	} else {
		bl.MaxTimestamp = -1
	}
	bl.BaseOffset = int64(rng.IntN(1 << 40))
	bl.PartitionLeaderEpoch = int32(rng.IntN(10))
	bl.BaseTimestamp = 1_700_000_000_000
	bl.LastOffsetDelta = -1
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
	if rng.IntN(3) == 0 {
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = int64(rng.IntN(100)), 1, int32(rng.IntN(1000))
	}
	bytesOf := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	od := int32(-1)
	for range 1 + rng.IntN(60) {
		od += int32(1 + rng.IntN(3))
		if rng.IntN(20) == 0 {
			od += int32(rng.IntN(100_000))
		}
		r := record.Record{OffsetDelta: od, TimestampDelta: int64(rng.IntN(3)) * int64(rng.IntN(1<<rng.IntN(40)))}
		if rng.IntN(8) == 0 {
			r.TimestampDelta = -r.TimestampDelta
		}
		switch rng.IntN(6) {
		case 0: // null key
		case 1:
			r.Key = []byte{}
		case 2:
			r.Key = bytesOf(64 + rng.IntN(200))
		default:
			r.Key = bytesOf(1 + rng.IntN(20))
		}
		if rng.IntN(5) != 0 {
			r.Value = bytesOf(rng.IntN(300))
		}
		for range rng.IntN(3) {
			h := record.Header{Key: bytesOf(rng.IntN(5))}
			if rng.IntN(2) == 0 {
				h.Value = bytesOf(rng.IntN(10))
			}
			r.Headers = append(r.Headers, h)
		}
		bl.Add(r)
	}
	if rng.IntN(3) == 0 {
		bl.LastOffsetDelta = od + int32(rng.IntN(5)) // trailing records dropped earlier
	}
	b, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return record.Batch(b)
}

// TestWalkMatchesDecoder: walk reads of every record exactly what the
// record package's decoder does.
func TestWalkMatchesDecoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	w := newWorker(0, nil, nil)
	var dec record.Decoder
	for range 2000 {
		b := randomBatch(t, rng)
		p, err := w.section(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.walk(b, p, noHashing); err != nil {
			t.Fatalf("walk: %v", err)
		}
		k := 0
		err = dec.Records(b, func(r *record.Record) error {
			got := &w.recs[k]
			k++
			key := got.key(p)
			if got.off != b.RecordOffset(r) || got.ts != b.BaseTimestamp()+r.TimestampDelta ||
				(key == nil) != (r.Key == nil) || !bytes.Equal(key, r.Key) || got.tomb != r.IsTombstone() ||
				got.keyed() != (r.Key != nil) || p[got.attrAt] != byte(r.Attributes) {
				return fmt.Errorf("record %d: walk %+v, decoder %+v", k-1, *got, *r)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if k != len(w.recs) {
			t.Fatalf("walk read %d records, the decoder %d", len(w.recs), k)
		}
	}
}

// FuzzWalk: walk never panics on a mangled records section, and what it
// accepts the decoder accepts too.
func FuzzWalk(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 200 {
		// Small seeds: the fuzzer all but stops on inputs of many KiB.
		if b := randomBatch(f, rng); b.Codec() == record.CodecNone && len(b) < 1500 {
			f.Add([]byte(b))
		}
	}
	w := newWorker(0, nil, nil)
	var dec record.Decoder
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < record.HeaderSize {
			return
		}
		b := record.Batch(data)
		binary.BigEndian.PutUint32(b[record.OffLength:], uint32(len(b)-record.LogOverhead))
		b[record.OffMagic] = record.Magic
		b.SetAttributes(0)
		if w.walk(b, b.Records(), noHashing) == nil {
			if err := dec.Records(b, nil); err != nil {
				// The walk does not parse headers (nor what follows them in
				// a record's body); anything else it accepts must decode.
				if msg := err.Error(); !strings.Contains(msg, "header") && !strings.Contains(msg, "left over") {
					t.Fatalf("walk accepted what the decoder refuses: %v", err)
				}
			}
		}
	})
}

// TestRebuildMatchesBuilder: rebuild and emptied produce byte for byte the
// batch record.Builder makes of the same retained records (what passes wrote
// before they copied records' bytes), with the timestamp base kept, moved
// to a delete horizon, or moved to the smallest retained timestamp.
func TestRebuildMatchesBuilder(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	w := newWorker(0, nil, nil)
	w.stats = &PassStats{}
	var dec record.Decoder
	for i := range 1500 {
		b := randomBatch(t, rng)
		p, err := w.section(b)
		if err == nil {
			err = w.walk(b, p, noHashing)
		}
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		minTs := int64(math.MaxInt64)
		for k := range w.recs {
			w.recs[k].keep = rng.IntN(3) != 0
			if w.recs[k].keep {
				n++
				minTs = min(minTs, w.recs[k].ts)
			}
		}
		attrs, baseTs := b.Attributes(), b.BaseTimestamp()
		switch i % 3 {
		case 1:
			attrs |= record.AttrDeleteHorizon
			baseTs = 1_800_000_000_000 + int64(rng.IntN(1000))
		case 2:
			baseTs = minTs
		}
		var bl record.Builder
		bl.HeaderFrom(b)
		var got []byte
		if n == 0 {
			bl.Attributes = b.Attributes() &^ record.AttrDeleteHorizon
			bl.BaseTimestamp = record.NoTimestamp
			bl.MaxTimestamp = b.MaxTimestamp()
			got, _, err = w.emptied(b, true)
		} else {
			bl.Attributes, bl.BaseTimestamp = attrs, baseTs
			k := 0
			_ = dec.Records(b, func(r *record.Record) error {
				if ri := w.recs[k]; ri.keep {
					bl.AddAt(ri.off, ri.ts, *r)
				}
				k++
				return nil
			})
			got, err = w.rebuild(b, p, attrs, baseTs, n)
		}
		if err != nil {
			t.Fatal(err)
		}
		want, err := bl.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("batch %d (%s, %d of %d kept): rebuilt batch differs from the builder's", i, b.Codec(), n, len(w.recs))
		}
		if err := dec.ValidateStored(record.Batch(got)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHotLoopsNoAllocs: mapping a batch (walk, digests, puts) and filtering
// one (fast paths, and re-encoding a thinned uncompressed batch) allocate
// nothing once the worker's buffers have grown.
func TestHotLoopsNoAllocs(t *testing.T) {
	// 10 batches over 40 keys, superseded by the 20 after them (over 1000).
	batches := benchBatches(t, 10, 40, record.CodecNone)
	for _, b := range benchBatches(t, 20, 1000, record.CodecNone) {
		b.SetBaseOffset(b.BaseOffset() + int64(len(batches)*benchBatch))
		batches = append(batches, b)
	}
	w := newWorker(0, NewThrottle(0, nil, nil), nil)
	if err := w.ensureMap(1<<20, 0.9, nil); err != nil {
		t.Fatal(err)
	}
	w.stats = &PassStats{TombstoneHorizon: math.MaxInt64}
	total := int64(len(batches) * benchBatch)
	w.keep, w.tomb = w.keep.resize(total), w.tomb.resize(total)
	w.end, w.rng, w.last = total, allKeys, allKeys
	mapAll := func() {
		w.m.Clear()
		for _, b := range batches {
			p, _ := w.section(b)
			if _, _, err := w.mapSection(b, p, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := testing.AllocsPerRun(5, mapAll); n != 0 {
		t.Fatalf("%v allocations mapping %d records", n, total)
	}
	mapAll()
	filterAll := func() {
		for i, b := range batches {
			if _, _, err := w.filterBatch(b, i == len(batches)-1, nil, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	filterAll()
	if w.stats.BatchesRewritten == 0 || w.stats.BatchesDropped == 0 {
		t.Fatalf("the batches do not take both paths: %+v", *w.stats)
	}
	if n := testing.AllocsPerRun(5, filterAll); n != 0 {
		t.Fatalf("%v allocations filtering %d records", n, total)
	}
}
