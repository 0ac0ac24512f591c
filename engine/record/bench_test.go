package record

import (
	"fmt"
	"testing"
)

// benchRecords makes n changelog records: 13-byte keys over 1,000 entities
// and ~100-byte JSON values (the shape performance-anchors.md measures).
func benchRecords(n int) []Record {
	rs := make([]Record, n)
	for i := range rs {
		id := i * 7919 % 1000
		rs[i] = Record{
			OffsetDelta:    int32(i),
			TimestampDelta: int64(i),
			Key:            []byte(fmt.Sprintf("user-%08d", id)),
			Value:          []byte(fmt.Sprintf(`{"id":%d,"name":"user %d","email":"user%d@example.com","v":%08d}`, id, id, id, i)),
		}
	}
	return rs
}

// batchOfSize builds an uncompressed batch of about size bytes.
func batchOfSize(b *testing.B, size int) Batch {
	var bl Builder
	for i, r := range benchRecords(size / 100) {
		if bl.UncompressedSize() >= size {
			break
		}
		r.OffsetDelta = int32(i)
		bl.Add(r)
	}
	out, err := bl.Build(nil)
	if err != nil {
		b.Fatal(err)
	}
	return Batch(out)
}

func BenchmarkVerifyCRC(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 20} {
		batch := batchOfSize(b, size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(batch)))
			for b.Loop() {
				if err := batch.VerifyCRC(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecords iterates a 1,000-record batch (~120 KiB uncompressed)
// and reports the cost per record, decompression included.
func BenchmarkRecords(b *testing.B) {
	const n = 1000
	rs := benchRecords(n)
	for _, c := range allCodecs {
		batch := buildBatch(b, int16(c), 0, rs)
		b.Run(c.String(), func(b *testing.B) {
			var d Decoder
			var keyBytes int
			fn := func(r *Record) error { keyBytes += len(r.Key); return nil }
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Records(batch, fn); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}

// BenchmarkValidate is the produce-path check (CRC + full decode).
func BenchmarkValidate(b *testing.B) {
	rs := benchRecords(1000)
	for _, c := range []Codec{CodecNone, CodecLZ4, CodecZstd} {
		batch := buildBatch(b, int16(c), 0, rs)
		b.Run(c.String(), func(b *testing.B) {
			var d Decoder
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Validate(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/record")
		})
	}
}

// BenchmarkBuild encodes and compresses a 1,000-record batch.
func BenchmarkBuild(b *testing.B) {
	const n = 1000
	rs := benchRecords(n)
	for _, c := range allCodecs {
		b.Run(c.String(), func(b *testing.B) {
			bl := Builder{Attributes: int16(c), BaseTimestamp: 1_700_000_000_000}
			var out []byte
			b.ReportAllocs()
			for b.Loop() {
				bl.Reset()
				bl.Attributes = int16(c)
				for _, r := range rs {
					bl.Add(r)
				}
				var err error
				if out, err = bl.Build(out[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
			b.ReportMetric(float64(bl.UncompressedSize())/float64(len(out)), "ratio")
		})
	}
}
