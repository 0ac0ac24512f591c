package client

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

type testRec struct {
	key, value []byte // nil: null
	offDelta   int64
	tsDelta    int64
	headers    int
}

// encodeBatch builds a record batch (magic 2) the way a broker returns it.
func encodeBatch(t *testing.T, base int64, attrs uint16, firstTS, maxTS int64, lastDelta int32, recs []testRec) []byte {
	t.Helper()
	var body []byte
	for _, r := range recs {
		rec := []byte{0}
		rec = binary.AppendVarint(rec, r.tsDelta)
		rec = binary.AppendVarint(rec, r.offDelta)
		for _, b := range [][]byte{r.key, r.value} {
			if b == nil {
				rec = binary.AppendVarint(rec, -1)
				continue
			}
			rec = binary.AppendVarint(rec, int64(len(b)))
			rec = append(rec, b...)
		}
		rec = binary.AppendVarint(rec, int64(r.headers))
		for range r.headers {
			rec = binary.AppendVarint(rec, 2)
			rec = append(rec, "hk"...)
			rec = binary.AppendVarint(rec, 3)
			rec = append(rec, "hv!"...)
		}
		body = binary.AppendVarint(body, int64(len(rec)))
		body = append(body, rec...)
	}
	if codec := attrs & attrCompression; codec != 0 {
		c, err := kgo.DefaultCompressor(map[uint16]kgo.CompressionCodec{1: kgo.GzipCompression(), 2: kgo.SnappyCompression(), 3: kgo.Lz4Compression(), 4: kgo.ZstdCompression()}[codec])
		if err != nil {
			t.Fatal(err)
		}
		out, got := c.Compress(new(bytes.Buffer), body)
		if uint16(got) != codec {
			t.Fatalf("compressed with codec %d, want %d", got, codec)
		}
		body = append([]byte(nil), out...)
	}
	b := make([]byte, batchHeaderLen, batchHeaderLen+len(body))
	binary.BigEndian.PutUint64(b, uint64(base))
	binary.BigEndian.PutUint32(b[8:], uint32(batchHeaderLen-batchLengthEnd+len(body)))
	b[batchMagic] = 2
	binary.BigEndian.PutUint16(b[batchAttrs:], attrs)
	binary.BigEndian.PutUint32(b[batchLastDelta:], uint32(lastDelta))
	binary.BigEndian.PutUint64(b[batchFirstTS:], uint64(firstTS))
	binary.BigEndian.PutUint64(b[batchMaxTS:], uint64(maxTS))
	binary.BigEndian.PutUint64(b[43:], ^uint64(0)) // producer ID -1
	binary.BigEndian.PutUint16(b[51:], 0xffff)     // producer epoch -1
	binary.BigEndian.PutUint32(b[53:], ^uint32(0)) // base sequence -1
	binary.BigEndian.PutUint32(b[batchNumRecords:], uint32(len(recs)))
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[batchCRC:], crc32.Checksum(b[batchAttrs:], castagnoli))
	return b
}

// decodeOne scans and decodes one partition's batches fetched from offset
// from, as the engine does.
func decodeOne(batches []byte, from int64) (*replayChunk, rawFetch, error) {
	f := rawFetch{}
	next := scanNext(batches, from)
	if next > from {
		f.parts = []rawPart{{part: 0, from: from, next: next, batches: batches}}
	}
	c := &replayChunk{}
	err := c.decode(f, kgo.DefaultDecompressor())
	return c, f, err
}

// scanNext is scanFetch's offset rule for one partition.
func scanNext(in []byte, from int64) int64 {
	next := from
	for len(in) > batchMagic {
		length := int64(int32(binary.BigEndian.Uint32(in[8:])))
		total := batchLengthEnd + length
		if length < 0 || int64(len(in)) < total || total < batchHeaderLen {
			break
		}
		base := int64(binary.BigEndian.Uint64(in))
		if end := base + int64(int32(binary.BigEndian.Uint32(in[batchLastDelta:]))) + 1; end > next {
			next = end
		}
		in = in[total:]
	}
	return next
}

type wantRec struct {
	key, value []byte
	offset     int64
	ts         int64
}

func checkDecoded(t *testing.T, c *replayChunk, want []wantRec) {
	t.Helper()
	if len(c.recs) != len(want) {
		t.Fatalf("decoded %d records, want %d", len(c.recs), len(want))
	}
	for i, w := range want {
		r := &c.recs[i]
		b := c.bufs[r.buf]
		k, v := sub(b, r.koff, r.klen), sub(b, r.voff, r.vlen)
		if !bytes.Equal(k, w.key) || (k == nil) != (w.key == nil) || !bytes.Equal(v, w.value) || (v == nil) != (w.value == nil) ||
			r.offset != w.offset || r.ts != w.ts || r.h != keyHash(w.key) {
			t.Errorf("record %d: key %q value %q offset %d ts %d, want %q %q %d %d", i, k, v, r.offset, r.ts, w.key, w.value, w.offset, w.ts)
		}
	}
}

// TestReplayDecode: the engine's decoding of a partition's batches —
// records below the fetch offset skipped, control batches skipped, every
// compression codec, null keys and values, empty values, headers,
// log-append time, a partial batch at the end ignored, and the next offset
// taken from the last batch's header even when compaction emptied its end.
func TestReplayDecode(t *testing.T) {
	var in []byte
	// Offsets 0-4; the fetch starts at 2.
	in = append(in, encodeBatch(t, 0, 0, 1000, 1004, 4, []testRec{
		{key: []byte("a"), value: []byte("0")},
		{key: []byte("b"), value: []byte("1"), offDelta: 1, tsDelta: 1},
		{key: []byte("c"), value: []byte("2"), offDelta: 2, tsDelta: 2},
		{key: []byte("a"), value: nil, offDelta: 3, tsDelta: 3},
		{key: []byte("d"), value: []byte{}, offDelta: 4, tsDelta: 4, headers: 2},
	})...)
	// A transaction marker.
	in = append(in, encodeBatch(t, 5, attrControl|0x10, 2000, 2000, 0, []testRec{{key: []byte{0, 0, 0, 1}, value: []byte{0, 0, 0, 0, 0, 0}}})...)
	want := []wantRec{
		{[]byte("c"), []byte("2"), 2, 1002},
		{[]byte("a"), nil, 3, 1003},
		{[]byte("d"), []byte{}, 4, 1004},
	}
	for codec := uint16(1); codec <= 4; codec++ {
		base := int64(6 + 10*(codec-1))
		attrs := codec
		ts := int64(3000 + codec)
		if codec == 4 {
			attrs |= attrLogAppendTime // timestamps are the batch's max timestamp
		}
		// Compacted: offsets base, base+2 and base+5 left, the batch still
		// ending at base+9.
		in = append(in, encodeBatch(t, base, attrs, ts, ts+50, 9, []testRec{
			{key: fmt.Appendf(nil, "z%d", codec), value: []byte("zv"), headers: 1},
			{key: nil, value: []byte("null key"), offDelta: 2, tsDelta: 7},
			{key: []byte("a"), value: bytes.Repeat([]byte("long"), 300), offDelta: 5, tsDelta: 9},
		})...)
		wts := func(d int64) int64 {
			if codec == 4 {
				return ts + 50
			}
			return ts + d
		}
		want = append(want,
			wantRec{fmt.Appendf(nil, "z%d", codec), []byte("zv"), base, wts(0)},
			wantRec{nil, []byte("null key"), base + 2, wts(7)},
			wantRec{[]byte("a"), bytes.Repeat([]byte("long"), 300), base + 5, wts(9)},
		)
	}
	full := len(in)
	// A partial batch: what a size-limited fetch ends with.
	in = append(in, encodeBatch(t, 46, 0, 0, 0, 0, []testRec{{key: []byte("partial"), value: []byte("x")}})[:40]...)

	c, f, err := decodeOne(in, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkDecoded(t, c, want)
	if len(c.ends) != 1 || c.ends[0].next != 46 || f.parts[0].next != 46 {
		t.Errorf("next offset %v, want 46", c.ends)
	}

	// Into a table: the latest value per key.
	tbl := &Table{st: newState(0), next: map[int32]int64{0: 2}, changed: make(chan struct{})}
	if err := tbl.applyChunk(c); err != nil {
		t.Fatal(err)
	}
	model := map[string]string{"b": "1", "c": "2", "d": "", "z1": "zv", "z2": "zv", "z3": "zv", "z4": "zv", "": "null key", "a": string(bytes.Repeat([]byte("long"), 300))}
	delete(model, "b") // below the fetch offset
	if tbl.st.len() != len(model) {
		t.Errorf("%d keys, want %d", tbl.st.len(), len(model))
	}
	for k, v := range model {
		if got, ok := tbl.st.get([]byte(k)); !ok || string(got) != v {
			t.Errorf("%q = %q %v, want %q", k, got, ok, v)
		}
	}
	if tbl.next[0] != 46 || tbl.records != int64(len(want)) || tbl.tombs != 1 {
		t.Errorf("next %d records %d tombstones %d", tbl.next[0], tbl.records, tbl.tombs)
	}

	// A flipped bit fails the CRC.
	bad := bytes.Clone(in[:full])
	bad[100] ^= 1
	if _, _, err := decodeOne(bad, 0); err == nil {
		t.Error("corrupt batch decoded without error")
	}
}

// TestReplayDecodeHostile: garbage inside batches with valid CRCs and
// lengths never panics the decoder; it returns an error or records that lie
// inside the buffer.
func TestReplayDecodeHostile(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	clean := encodeBatch(t, 0, 0, 0, 0, 2, []testRec{
		{key: []byte("key-1"), value: []byte("value-1"), headers: 1},
		{key: []byte("key-2"), value: nil, offDelta: 1},
		{key: nil, value: []byte("v"), offDelta: 2},
	})
	for i := 0; i < 5000; i++ {
		b := bytes.Clone(clean)
		for range 1 + rng.IntN(4) {
			at := batchAttrs + 2 + rng.IntN(len(b)-batchAttrs-2)
			if rng.IntN(3) == 0 && at >= batchHeaderLen {
				b[at] = byte(rng.IntN(256))
			} else if at >= batchHeaderLen {
				b[at] ^= 1 << rng.IntN(8)
			} else if at >= batchNumRecords {
				b[at] = byte(rng.IntN(256)) // the record count
			}
		}
		binary.BigEndian.PutUint32(b[batchCRC:], crc32.Checksum(b[batchAttrs:], castagnoli))
		c, _, err := decodeOne(b, 0)
		if err != nil {
			continue
		}
		for _, r := range c.recs {
			buf := c.bufs[r.buf]
			_ = sub(buf, r.koff, r.klen)
			_ = sub(buf, r.voff, r.vlen)
		}
	}
}

// TestReplayChunksMatchModel: many random chunks over several partitions,
// with overwrites and tombstones, applied by the engine's path into a
// table, against a model.
func TestReplayChunksMatchModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	tbl := &Table{st: newState(4), next: map[int32]int64{0: 0, 1: 0, 2: 0}, changed: make(chan struct{})}
	model := map[string]string{}
	next := map[int32]int64{0: 0, 1: 0, 2: 0}
	var snaps []struct {
		s *Snapshot
		m map[string]string
	}
	for chunk := 0; chunk < 100; chunk++ {
		f := rawFetch{}
		for p := int32(0); p < 3; p++ {
			var in []byte
			for range rng.IntN(4) {
				var recs []testRec
				n := 1 + rng.IntN(30)
				for i := range n {
					k := fmt.Appendf(nil, "k%d-%d", p, rng.IntN(300)) // keys stay in their partition
					r := testRec{key: k, offDelta: int64(i)}
					if rng.IntN(4) != 0 {
						r.value = fmt.Appendf(nil, "v%d", rng.IntN(1e6))
						model[string(k)] = string(r.value)
					} else {
						delete(model, string(k))
					}
					recs = append(recs, r)
				}
				codec := uint16(0)
				if rng.IntN(3) == 0 {
					codec = uint16(1 + rng.IntN(4))
				}
				in = append(in, encodeBatch(t, next[p], codec, 0, 0, int32(n-1), recs)...)
				next[p] += int64(n)
			}
			if len(in) > 0 {
				f.parts = append(f.parts, rawPart{part: p, from: tbl.next[p], next: next[p], batches: in})
			}
		}
		c := &replayChunk{}
		if err := c.decode(f, kgo.DefaultDecompressor()); err != nil {
			t.Fatal(err)
		}
		if err := tbl.applyChunk(c); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(20) == 0 {
			tbl.mu.Lock()
			s := &Snapshot{st: tbl.st.snapshot()}
			tbl.mu.Unlock()
			snaps = append(snaps, struct {
				s *Snapshot
				m map[string]string
			}{s, maps.Clone(model)})
		}
		checkRefs(t, tbl.st)
		if t.Failed() {
			t.Fatalf("after chunk %d", chunk)
		}
	}
	snaps = append(snaps, struct {
		s *Snapshot
		m map[string]string
	}{&Snapshot{st: tbl.st}, model})
	for i, sn := range snaps {
		if sn.s.Len() != len(sn.m) {
			t.Fatalf("snapshot %d: %d keys, model %d", i, sn.s.Len(), len(sn.m))
		}
		for k, v := range sn.m {
			if got, ok := sn.s.Get([]byte(k)); !ok || string(got) != v {
				t.Fatalf("snapshot %d: %s = %q %v, model %q", i, k, got, ok, v)
			}
		}
	}
	for p, n := range next {
		if tbl.next[p] != n {
			t.Errorf("partition %d at %d, want %d", p, tbl.next[p], n)
		}
	}
}
