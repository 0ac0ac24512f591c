package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// keyBatches builds uncompressed batches of about 16 KiB (100-byte values)
// whose keys cycle through nkeys distinct keys.
func keyBatches(tb testing.TB, total, nkeys int) [][]byte {
	const perBatch = 128
	var out [][]byte
	for i := 0; i < total; i += perBatch {
		recs := make([]testRecord, 0, perBatch)
		for j := i; j < min(i+perBatch, total); j++ {
			recs = append(recs, testRecord{key: []byte(fmt.Sprintf("user-%09d", j%nkeys)), value: bytes.Repeat([]byte{'v'}, 100), ts: 1_700_000_000_000})
		}
		out = append(out, makeBatch(tb, record.CodecNone, recs))
	}
	return out
}

func benchKeys() int {
	if v, err := strconv.Atoi(os.Getenv("KVLOG_BENCH_KEYS")); err == nil && v > 0 {
		return v
	}
	return 1_000_000
}

// BenchmarkKeyIndexAppend appends 400k records (100-byte values, 16 KiB
// batches, the high watermark following each append as a single-node
// leader moves it) to a compacted log with the key index loaded and, in
// the same run, alternating, to one with kvlog.key.index.enable=false;
// it reports the medians and their ratio (goal: ≥ 0.95; appends do no
// index work, lookups catch the index up).
//
// BenchmarkKeyIndexCatchUp is that work: records read into the index per
// second by a lookup after 400k appends.
func BenchmarkKeyIndexAppend(b *testing.B) {
	const total = 400_000
	batches := keyBatches(b, total, 200_000)
	run := func(dir string, index bool) float64 {
		cfg := DefaultConfig()
		cfg.Compact, cfg.Delete, cfg.KeyIndex = true, false, index
		l, err := OpenLog(filepath.Join(dir, "bench-0"), TopicPartition{Topic: "bench"}, cfg, LogOptions{Logger: quietLogger})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		if index {
			if err := l.LoadKeyIndex(); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		for _, bt := range batches {
			mine := append([]byte(nil), bt...)
			if _, err := l.Append(mine, 0); err != nil {
				b.Fatal(err)
			}
			l.SetHighWatermark(l.LogEndOffset())
		}
		return float64(total) / time.Since(start).Seconds()
	}
	var on, off []float64
	for rep := 0; rep < max(3, b.N); rep++ {
		for k := 0; k < 2; k++ {
			dir := b.TempDir()
			unix.Sync()
			if (rep+k)%2 == 0 {
				on = append(on, run(dir, true))
			} else {
				off = append(off, run(dir, false))
			}
			os.RemoveAll(dir)
		}
	}
	b.ReportMetric(median(on), "index-on-records/s")
	b.ReportMetric(median(off), "index-off-records/s")
	b.ReportMetric(median(on)/median(off), "ratio")
}

// BenchmarkKeyIndexLookup builds a compacted log of KVLOG_BENCH_KEYS
// (default 1M) keys, then reports lookup latency percentiles over random
// live keys (warm page cache), RAM per key, and the time to the first
// lookup after a clean restart (checkpoint + tail) and after an unclean
// one (the same checkpoint, recovery of the active segment), and with no
// checkpoint (index rebuilt by reading the log).
func BenchmarkKeyIndexLookup(b *testing.B) {
	n := benchKeys()
	dir := filepath.Join(b.TempDir(), "bench-0")
	cfg := DefaultConfig()
	cfg.Compact, cfg.Delete = true, false
	cfg.SegmentBytes = 256 << 20
	open := func(clean bool, rp Offset) *Log {
		l, err := OpenLog(dir, TopicPartition{Topic: "bench"}, cfg, LogOptions{Logger: quietLogger, CleanShutdown: clean, RecoveryPoint: rp, LogStartOffset: -1})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	l := open(true, -1)
	for _, bt := range keyBatches(b, n, n) {
		if _, err := l.Append(bt, 0); err != nil {
			b.Fatal(err)
		}
	}
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.LoadKeyIndex(); err != nil {
		b.Fatal(err)
	}
	st := l.KeyIndexStats()
	b.ReportMetric(float64(st.Bytes)/float64(st.Entries), "RAM-bytes/key")
	lat := func(l *Log, count int) []time.Duration {
		rng := rand.New(rand.NewPCG(1, 2))
		out := make([]time.Duration, count)
		for i := range out {
			key := []byte(fmt.Sprintf("user-%09d", rng.IntN(n)))
			start := time.Now()
			res, err := l.Lookup(key)
			out[i] = time.Since(start)
			if err != nil || !res.Found {
				b.Fatalf("lookup %s: %+v %v", key, res, err)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out
	}
	d := lat(l, max(200_000, b.N))
	pct := func(p float64) float64 { return float64(d[int(float64(len(d)-1)*p)].Microseconds()) }
	b.ReportMetric(pct(0.5), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(pct(0.999), "p99.9-µs")
	var total time.Duration
	for _, x := range d {
		total += x
	}
	b.ReportMetric(float64(len(d))/total.Seconds(), "lookups/s")
	leo := l.LogEndOffset()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	firstLookup := func(l *Log) float64 {
		start := time.Now()
		if res, err := l.Lookup([]byte("user-000000001")); err != nil || !res.Found {
			b.Fatalf("first lookup: %+v %v", res, err)
		}
		return time.Since(start).Seconds()
	}
	start := time.Now()
	l = open(true, leo)
	b.ReportMetric(time.Since(start).Seconds()+firstLookup(l), "clean-restart-to-lookup-s")
	crashClose(l)
	start = time.Now()
	l = open(false, 0)
	b.ReportMetric(time.Since(start).Seconds()+firstLookup(l), "unclean-restart-to-lookup-s")
	crashClose(l)
	os.Remove(KeyIndexFileName(dir))
	start = time.Now()
	l = open(true, leo)
	b.ReportMetric(time.Since(start).Seconds()+firstLookup(l), "rebuild-to-lookup-s")
	l.Close()
}

func BenchmarkKeyIndexCatchUp(b *testing.B) {
	const total = 400_000
	batches := keyBatches(b, total, 200_000)
	var rates []float64
	for rep := 0; rep < max(3, b.N); rep++ {
		cfg := DefaultConfig()
		cfg.Compact, cfg.Delete = true, false
		l, err := OpenLog(filepath.Join(b.TempDir(), "bench-0"), TopicPartition{Topic: "bench"}, cfg, LogOptions{Logger: quietLogger})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.LoadKeyIndex(); err != nil {
			b.Fatal(err)
		}
		for _, bt := range batches {
			if _, err := l.Append(append([]byte(nil), bt...), 0); err != nil {
				b.Fatal(err)
			}
		}
		l.SetHighWatermark(l.LogEndOffset())
		start := time.Now()
		if _, err := l.Lookup([]byte("user-000000001")); err != nil {
			b.Fatal(err)
		}
		rates = append(rates, float64(total)/time.Since(start).Seconds())
		l.Close()
	}
	b.ReportMetric(median(rates), "records/s")
}

// BenchmarkKeyIndexCheckpointLoad loads a checkpoint of KVLOG_BENCH_KEYS
// (default 1M) random digests written as version 2 (the table's layout,
// placed slot by slot) and as version 1 (entries inserted one by one into
// a table sized for them, 80% full), alternating, then puts one new key
// (a catch-up's first: the version-1 table grows), and reports the median CPU time of each load (the
// process's, page cache warm: the machine may be shared) and their ratio.
func BenchmarkKeyIndexCheckpointLoad(b *testing.B) {
	n := benchKeys()
	rng := rand.New(rand.NewPCG(5, 6))
	var tab digestTable
	for i := 0; i < n; i++ {
		tab.put(rng.Uint64(), encodeEntry(Offset(i), false))
	}
	dir := b.TempDir()
	v2 := filepath.Join(dir, "v2")
	if err := writeKeyIndexCheckpoint(vfs.Default, v2, keyDigestID, Offset(n), append([]digestSlot(nil), tab.slots...), tab.len()); err != nil {
		b.Fatal(err)
	}
	v1 := filepath.Join(dir, "v1")
	{
		f, err := os.Create(v1)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		h := make([]byte, keyIndexV1HeaderSize)
		copy(h, keyIndexMagic)
		binary.BigEndian.PutUint16(h[4:], keyIndexV1)
		binary.BigEndian.PutUint16(h[6:], uint16(keyDigestID))
		binary.BigEndian.PutUint64(h[8:], uint64(n))
		binary.BigEndian.PutUint64(h[16:], uint64(tab.len()))
		crc := crc32.Update(0, castagnoliTable, h)
		w.Write(h)
		e := make([]byte, keyIndexEntrySize)
		tab.each(func(d, v uint64) {
			binary.BigEndian.PutUint64(e, d)
			binary.BigEndian.PutUint64(e[8:], v)
			crc = crc32.Update(crc, castagnoliTable, e)
			w.Write(e)
		})
		w.Write(binary.BigEndian.AppendUint32(nil, crc))
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	tab = digestTable{}
	load := func(path string) float64 {
		runtime.GC()
		var t digestTable
		minOff := Offset(math.MaxInt64)
		start := processCPU()
		if _, err := readKeyIndexCheckpoint(vfs.Default, path, keyDigestID, Offset(n), &t, &minOff); err != nil {
			b.Fatal(err)
		}
		// The catch-up after it puts the tail's keys: one new key here.
		t.put(rng.Uint64(), encodeEntry(Offset(n), false))
		el := processCPU() - start
		if t.len() != n+1 {
			b.Fatalf("%s: %d entries, want %d", path, t.len(), n)
		}
		return el
	}
	var s1, s2 []float64
	for rep := 0; rep < max(5, b.N); rep++ {
		if rep%2 == 0 {
			s2 = append(s2, load(v2))
			s1 = append(s1, load(v1))
		} else {
			s1 = append(s1, load(v1))
			s2 = append(s2, load(v2))
		}
	}
	b.ReportMetric(median(s2), "v2-load-cpu-s")
	b.ReportMetric(median(s1), "v1-load-cpu-s")
	b.ReportMetric(median(s1)/median(s2), "v1/v2")
}

// BenchmarkKeyIndexLookupSkips: lookups of random keys among
// KVLOG_BENCH_KEYS (default 1M) in 16 KiB batches (warm page cache), with
// the batches' skips and without (walking from the batch start),
// alternating rounds; medians of the CPU time per lookup (the process's:
// the machine may be shared) and their ratio.
func BenchmarkKeyIndexLookupSkips(b *testing.B) {
	n := benchKeys()
	cfg := DefaultConfig()
	cfg.Compact, cfg.Delete = true, false
	l, err := OpenLog(filepath.Join(b.TempDir(), "bench-0"), TopicPartition{Topic: "bench"}, cfg, LogOptions{Logger: quietLogger})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for _, bt := range keyBatches(b, n, n) {
		if _, err := l.Append(bt, 0); err != nil {
			b.Fatal(err)
		}
	}
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.LoadKeyIndex(); err != nil {
		b.Fatal(err)
	}
	defer func() { lookupSkips = true }()
	round := func(skips bool, seed uint64) float64 {
		lookupSkips = skips
		rng := rand.New(rand.NewPCG(seed, 9))
		const count = 200_000
		keys := make([][]byte, count)
		for i := range keys {
			keys[i] = []byte(fmt.Sprintf("user-%09d", rng.IntN(n)))
		}
		start := processCPU()
		for _, key := range keys {
			if res, err := l.Lookup(key); err != nil || !res.Found {
				b.Fatalf("lookup %s: %+v %v", key, res, err)
			}
		}
		return (processCPU() - start) * 1e9 / count
	}
	round(true, 0) // notes every batch's skips
	var on, off []float64
	for rep := 0; rep < max(5, b.N); rep++ {
		if rep%2 == 0 {
			on = append(on, round(true, uint64(rep)))
			off = append(off, round(false, uint64(rep)))
		} else {
			off = append(off, round(false, uint64(rep)))
			on = append(on, round(true, uint64(rep)))
		}
	}
	b.ReportMetric(median(on), "skips-ns/lookup")
	b.ReportMetric(median(off), "walk-ns/lookup")
	b.ReportMetric(median(off)/median(on), "walk/skips")
}

// processCPU is the CPU time this process used, in seconds.
func processCPU() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
