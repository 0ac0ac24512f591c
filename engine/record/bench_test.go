package record

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
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

// produceBatch builds an uncompressed batch of about size bytes shaped like
// the produce load of the broker profile: 13-byte keys, 100-byte values,
// timestamp deltas growing by one per record.
func produceBatch(b *testing.B, codec Codec, size int) (Batch, int) {
	bl := Builder{Attributes: int16(codec), BaseTimestamp: 1_700_000_000_000, ProducerID: -1, BaseSequence: -1}
	value := []byte(strings.Repeat("v", 100))
	n := 0
	for ; bl.UncompressedSize() < size; n++ {
		bl.Add(Record{OffsetDelta: int32(n), TimestampDelta: int64(n), Key: fmt.Appendf(nil, "key-%09d", n), Value: value})
	}
	out, err := bl.Build(nil)
	if err != nil {
		b.Fatal(err)
	}
	return Batch(out), n
}

// cpuTime is the process's user+system CPU time. Benchmarks report it per
// record beside the wall-clock figure: on a loaded machine the benchmark
// goroutine is descheduled for part of the wall time, not of its CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkValidateProduce compares, in one run, the produce check the
// engine made before ValidateProduce (ValidateEach with a key-requiring
// callback: "old") with ValidateProduce(b, true) ("new"), whole (CRC
// included) and for the record walk alone ("walk-old" is Decoder.walk with
// the callback, "walk-new" validProduceRecords), on the broker's produce
// shape (16 KiB and 1 MiB uncompressed batches) and on a compressed batch.
func BenchmarkValidateProduce(b *testing.B) {
	type shape struct {
		name  string
		codec Codec
		size  int
	}
	for _, s := range []shape{{"none-16KiB", CodecNone, 16 << 10}, {"none-1MiB", CodecNone, 1 << 20}, {"lz4-1MiB", CodecLZ4, 1 << 20}} {
		batch, n := produceBatch(b, s.codec, s.size)
		var d Decoder
		p, err := d.section(batch)
		if err != nil {
			b.Fatal(err)
		}
		p = append([]byte(nil), p...)
		keyCheck := func(r *Record) error {
			if r.Key == nil {
				return errNullKey
			}
			return nil
		}
		run := func(name string, fn func() error) {
			b.Run(s.name+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(len(batch)))
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cpuTime()
				for range b.N {
					if err := fn(); err != nil {
						b.Fatal(err)
					}
				}
				cpu = cpuTime() - cpu
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/record")
			})
		}
		run("old", func() error { return d.ValidateEach(batch, ModeProduce, keyCheck) })
		run("new", func() error { return d.ValidateProduce(batch, true) })
		run("walk-old", func() error { return d.walk(batch, p, ModeProduce, keyCheck) })
		run("walk-new", func() error {
			if _, ok := validProduceRecords(p, batch.NumRecords(), true, newDeltaSpan(batch.BaseTimestamp())); !ok {
				return errors.New("refused")
			}
			return nil
		})
	}
}
