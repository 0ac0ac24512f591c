package engine

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"golang.org/x/sys/unix"
)

// benchBatch builds an uncompressed batch of 100-byte-value records totalling
// about size bytes, as a producer would send it.
func benchBatch(tb testing.TB, size int) []byte {
	n := size / 125
	recs := make([]testRecord, n)
	for i := range recs {
		recs[i] = testRecord{key: []byte(fmt.Sprintf("key-%08d", i)), value: bytes.Repeat([]byte{'v'}, 100), ts: 1_700_000_000_000}
	}
	return makeBatch(tb, record.CodecNone, recs)
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkAppendVsFile appends 100-byte records in 16 KiB and 1 MiB batches
// through Log.Append and, in the same run, writes the same bytes with a plain
// sequential os.File write loop; runs alternate (A B A B …) and the medians
// and their ratio are reported.
func BenchmarkAppendVsFile(b *testing.B) {
	for _, size := range []int{16 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("batch=%dKiB", size>>10), func(b *testing.B) {
			batch := benchBatch(b, size)
			const total = 256 << 20
			count := total / len(batch)
			var eng, file []float64
			// runEngine appends count batches with writers goroutines as a
			// leader does (full produce validation), or as a follower does
			// (replicated: CRC only, offsets already in the batch).
			runEngine := func(dir string, writers int, replicated bool) float64 {
				l, err := OpenLog(filepath.Join(dir, "bench-0"), TopicPartition{Topic: "bench"}, DefaultConfig(), LogOptions{Logger: quietLogger})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				start := time.Now()
				var wg sync.WaitGroup
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						mine := append([]byte(nil), batch...)
						rb := record.Batch(mine)
						for i := w; i < count; i += writers {
							var err error
							if replicated {
								rb.SetBaseOffset(int64(l.LogEndOffset()))
								_, err = l.AppendReplicated(mine)
							} else {
								_, err = l.Append(mine, 0)
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				return float64(count*len(batch)) / time.Since(start).Seconds() / 1e6
			}
			runFile := func(dir string) float64 {
				f, err := os.Create(filepath.Join(dir, "plain"))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				start := time.Now()
				for i := 0; i < count; i++ {
					if _, err := f.Write(batch); err != nil {
						b.Fatal(err)
					}
				}
				return float64(count*len(batch)) / time.Since(start).Seconds() / 1e6
			}
			var eng2, repl []float64
			for rep := 0; rep < max(3, b.N); rep++ {
				// Rotate which run goes first, and start each with no dirty
				// pages so writeback of one run does not tax the next.
				for k := 0; k < 4; k++ {
					dir := b.TempDir()
					unix.Sync()
					switch (rep + k) % 4 {
					case 0:
						eng = append(eng, runEngine(dir, 1, false))
					case 1:
						file = append(file, runFile(dir))
					case 2:
						eng2 = append(eng2, runEngine(dir, 2, false))
					case 3:
						repl = append(repl, runEngine(dir, 1, true))
					}
					os.RemoveAll(dir)
				}
			}
			b.ReportMetric(median(eng2), "engine-2writers-MB/s")
			b.ReportMetric(median(repl), "replicated-MB/s")
			b.ReportMetric(median(eng2)/median(file), "ratio-2writers")
			b.ReportMetric(median(repl)/median(file), "ratio-replicated")
			b.ReportMetric(median(eng), "engine-MB/s")
			b.ReportMetric(median(file), "file-MB/s")
			b.ReportMetric(median(eng)/median(file), "ratio")
			b.ReportMetric(median(eng)*1e6/125, "records/s")
		})
	}
}

// buildLog appends batches of batchSize bytes until the log holds size bytes.
func buildLog(tb testing.TB, dir string, size int64, batchSize int) *Log {
	cfg := DefaultConfig()
	l, err := OpenLog(dir, TopicPartition{Topic: "bench"}, cfg, LogOptions{Logger: quietLogger})
	if err != nil {
		tb.Fatal(err)
	}
	batch := benchBatch(tb, batchSize)
	for l.Size() < size {
		if _, err := l.Append(batch, 0); err != nil {
			tb.Fatal(err)
		}
	}
	return l
}

// BenchmarkLocateRead measures locating and reading the first batch at a
// random offset of a 1 GB and a 10 GB log (set KVLOG_BENCH_BIG_GB to change
// the larger size), with the segment files' pages first dropped from the page
// cache (cold: every read goes to the device, whatever the log size) and then
// as they are after building the log (warm: depends on how much of the log
// the machine's page cache holds). Latency should not grow with the log
// size beyond what the page cache explains.
func BenchmarkLocateRead(b *testing.B) {
	big := int64(10)
	if v, err := strconv.Atoi(os.Getenv("KVLOG_BENCH_BIG_GB")); err == nil {
		big = int64(v)
	}
	for _, gb := range []int64{1, big} {
		dir := filepath.Join(b.TempDir(), "bench-0")
		// 16 KiB batches: far more distinct batches than reads, so cold
		// reads stay cold at both sizes.
		l := buildLog(b, dir, gb<<30, 16<<10)
		for _, mode := range []string{"cold", "warm"} {
			b.Run(fmt.Sprintf("log=%dGB/%s", gb, mode), func(b *testing.B) {
				if mode == "cold" {
					dropCache(b, dir)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				leo := int64(l.LogEndOffset())
				hdr := make([]byte, record.HeaderSize)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					off := Offset(rng.Int64N(leo))
					r, err := l.Read(off, 1<<20, l.LogEndOffset())
					if err != nil {
						b.Fatal(err)
					}
					if _, err := r.Ranges[0].File.ReadAt(hdr, r.Ranges[0].Position); err != nil {
						b.Fatal(err)
					}
					r.Release()
				}
				b.StopTimer()
				b.ReportMetric(float64(rss())/(1<<20), "rss-MiB")
			})
		}
		l.Close()
	}
}

// dropCache asks the kernel to drop dir's .log pages from the page cache.
func dropCache(b *testing.B, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		_ = f.Sync()
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
	}
}

// BenchmarkRecovery measures the unclean-recovery scan rate over a 1 GB log
// (CRC check of every batch, index rebuild) and, in the same run, the
// machine's CRC32C rate and page-cache read rate over the same bytes.
func BenchmarkRecovery(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "bench-0")
	l := buildLog(b, dir, 1<<30, 1<<20)
	size := l.Size()
	crashClose(l)
	buf := make([]byte, 1<<20)
	table := crc32.MakeTable(crc32.Castagnoli)
	var rec, crc, read []float64
	for rep := 0; rep < max(3, b.N); rep++ {
		start := time.Now()
		l, err := OpenLog(dir, TopicPartition{Topic: "bench"}, DefaultConfig(), LogOptions{Logger: quietLogger, RecoveryPoint: 0, LogStartOffset: -1})
		if err != nil {
			b.Fatal(err)
		}
		rec = append(rec, float64(size)/time.Since(start).Seconds()/1e9)
		crashClose(l)

		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		start = time.Now()
		var sum uint32
		var n int64
		for _, p := range files {
			f, _ := os.Open(p)
			for {
				m, err := f.Read(buf)
				n += int64(m)
				if err == io.EOF {
					break
				}
			}
			f.Close()
		}
		read = append(read, float64(n)/time.Since(start).Seconds()/1e9)
		start = time.Now()
		for i := int64(0); i < n; i += int64(len(buf)) {
			sum = crc32.Update(sum, table, buf)
		}
		crc = append(crc, float64(n)/time.Since(start).Seconds()/1e9)
	}
	b.ReportMetric(median(rec), "recovery-GB/s")
	b.ReportMetric(median(crc), "crc32c-GB/s")
	b.ReportMetric(median(read), "pagecache-read-GB/s")
	b.ReportMetric(median(rec)/median(crc), "ratio-vs-crc")
	b.ReportMetric(median(rec)/median(read), "ratio-vs-read")
}

// rss returns the process's resident set size in bytes.
func rss() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// BenchmarkRollStall measures what rolling costs the append that rolls:
// 64 KiB batches into 32 MiB segments, with a Sync after every append (as
// fsync before acknowledging acks=all does) and with none (no flush
// policy: the rolled segment is all dirty page cache). Reported per mode:
// the median latency of the appends that rolled and of the others, and the
// append rate; the modes alternate run by run, each starting with no
// dirty pages.
func BenchmarkRollStall(b *testing.B) {
	batch := benchBatch(b, 64<<10)
	const total = 128 << 20
	cfg := DefaultConfig()
	cfg.SegmentBytes = 32 << 20
	run := func(dir string, fsync bool) (rolls, others []float64, mbps float64) {
		l, err := OpenLog(filepath.Join(dir, "bench-0"), TopicPartition{Topic: "bench"}, cfg, LogOptions{Logger: quietLogger})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		start := time.Now()
		for n := 0; n < total/len(batch); n++ {
			segs := len(l.segments())
			t0 := time.Now()
			if _, err := l.Append(batch, 0); err != nil {
				b.Fatal(err)
			}
			d := float64(time.Since(t0).Microseconds())
			if len(l.segments()) != segs {
				rolls = append(rolls, d)
			} else {
				others = append(others, d)
			}
			if fsync {
				if err := l.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		}
		return rolls, others, float64(total) / time.Since(start).Seconds() / 1e6
	}
	var rolls, others, rate [2][]float64 // [0] fsync on, [1] off
	for rep := 0; rep < max(3, b.N); rep++ {
		for k := 0; k < 2; k++ {
			mode := (rep + k) % 2
			dir := b.TempDir()
			unix.Sync()
			r, o, mbps := run(dir, mode == 0)
			rolls[mode] = append(rolls[mode], r...)
			others[mode] = append(others[mode], o...)
			rate[mode] = append(rate[mode], mbps)
			os.RemoveAll(dir)
		}
	}
	for mode, name := range []string{"fsync", "nofsync"} {
		b.ReportMetric(median(rolls[mode])/1e3, name+"-roll-append-ms")
		b.ReportMetric(median(others[mode]), name+"-append-us")
		b.ReportMetric(median(rate[mode]), name+"-MB/s")
	}
}
