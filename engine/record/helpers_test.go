package record

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// allCodecs lists every codec, for table tests.
var allCodecs = []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

// owned deep-copies a decoded record so it outlives the callback.
func owned(r *Record) Record {
	o := Record{
		Attributes:     r.Attributes,
		TimestampDelta: r.TimestampDelta,
		OffsetDelta:    r.OffsetDelta,
		Key:            bytes.Clone(r.Key),
		Value:          bytes.Clone(r.Value),
	}
	if r.Headers != nil {
		o.Headers = make([]Header, len(r.Headers))
		for i, h := range r.Headers {
			o.Headers[i] = Header{Key: bytes.Clone(h.Key), Value: bytes.Clone(h.Value)}
		}
	}
	return o
}

// collect decodes every record of b with a fresh decoder.
func collect(t testing.TB, b Batch) []Record {
	t.Helper()
	var d Decoder
	var out []Record
	if err := d.Records(b, func(r *Record) error { out = append(out, owned(r)); return nil }); err != nil {
		t.Fatalf("Records: %v", err)
	}
	return out
}

// sameRecords compares records with nil/empty distinctions, treating a nil
// header key as the empty key it is encoded as.
func sameRecords(t testing.TB, got, want []Record) {
	t.Helper()
	norm := func(rs []Record) []Record {
		out := make([]Record, len(rs))
		for i, r := range rs {
			out[i] = r
			if r.Headers != nil {
				out[i].Headers = make([]Header, len(r.Headers))
				for j, h := range r.Headers {
					if h.Key == nil {
						h.Key = []byte{}
					}
					out[i].Headers[j] = h
				}
			}
			if len(r.Headers) == 0 {
				out[i].Headers = nil
			}
		}
		return out
	}
	g, w := norm(got), norm(want)
	if len(g) != len(w) {
		t.Fatalf("got %d records, want %d", len(g), len(w))
	}
	for i := range g {
		if !reflect.DeepEqual(g[i], w[i]) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, fmtRecord(g[i]), fmtRecord(w[i]))
		}
	}
}

func fmtRecord(r Record) string {
	q := func(b []byte) string {
		if b == nil {
			return "null"
		}
		return fmt.Sprintf("%q", b)
	}
	s := fmt.Sprintf("{attrs=%d ts=%d off=%d key=%s value=%s headers=[", r.Attributes, r.TimestampDelta, r.OffsetDelta, q(r.Key), q(r.Value))
	for _, h := range r.Headers {
		s += fmt.Sprintf("%s:%s ", q(h.Key), q(h.Value))
	}
	return s + "]}"
}

// sampleRecords makes n records with OffsetDelta 0..n-1 covering null and
// empty keys and values, headers with null and empty values, negative and
// large timestamp deltas, and compressible values.
func sampleRecords(seed uint64, n int) []Record {
	rng := rand.New(rand.NewPCG(seed, 7))
	rs := make([]Record, n)
	for i := range rs {
		r := Record{OffsetDelta: int32(i), TimestampDelta: int64(i) * 3}
		switch i % 5 {
		case 0:
			r.Key = []byte(fmt.Sprintf("user-%06d", rng.IntN(1000)))
			r.Value = []byte(fmt.Sprintf(`{"id":%d,"name":"name-%d","email":"u%d@example.com","n":%d}`, i, i, i, rng.IntN(1<<20)))
		case 1:
			r.Key = []byte(fmt.Sprintf("user-%06d", rng.IntN(1000)))
			r.Value = nil // tombstone
		case 2:
			r.Key = []byte{}
			r.Value = []byte{}
			r.TimestampDelta = -int64(rng.IntN(1 << 40))
		case 3:
			r.Key = nil
			r.Value = bytes.Repeat([]byte{byte(i)}, rng.IntN(300))
			r.Attributes = int8(rng.IntN(256) - 128)
		case 4:
			r.Key = []byte("k")
			r.Value = []byte("v")
			r.TimestampDelta = 1 << 50
			r.Headers = []Header{
				{Key: []byte("trace-id"), Value: []byte(fmt.Sprint(rng.Uint64()))},
				{Key: []byte(""), Value: nil},
				{Key: []byte("empty"), Value: []byte{}},
			}
		}
		rs[i] = r
	}
	return rs
}

// buildBatch builds a batch from records with the given attributes.
func buildBatch(t testing.TB, attrs int16, base int64, rs []Record) Batch {
	t.Helper()
	bl := Builder{
		BaseOffset:           base,
		PartitionLeaderEpoch: 7,
		Attributes:           attrs,
		LastOffsetDelta:      -1,
		BaseTimestamp:        1_700_000_000_000,
		MaxTimestamp:         NoTimestamp,
		ProducerID:           4242,
		ProducerEpoch:        3,
		BaseSequence:         100,
	}
	for _, r := range rs {
		bl.Add(r)
	}
	out, err := bl.Build(nil)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return Batch(out)
}
