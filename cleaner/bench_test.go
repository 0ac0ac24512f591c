package cleaner

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cleaner benchmarks: one clean to convergence of a compacted
// partition holding 113-byte records (13-byte key, 100-byte value) in
// 100-record batches, over 1,000 / 100,000 / 10,000,000 distinct keys,
// uncompressed, lz4 and zstd; beside it, in the same run, franz-go's kfake
// Compact() on the same records and the machine's memmove and CRC32C rates.
//
//	go test -run '^$' -bench BenchmarkClean -benchtime 1x -count 3 -timeout 60m ./cleaner/
//
// KVLOG_BENCH_RECORDS sets the record count of the 1k and 100k key sets
// (default 2,000,000); the 10M key set holds every key once plus 20% random
// updates (12,000,000 records). KVLOG_BENCH_KEYS limits the key sets (e.g.
// "1000,100000"). Fixtures are written once under
// $TMPDIR/kvlog-cleaner-bench and copied for each iteration.
// Reported: MB/s and records/s of the log as it was before cleaning (the
// same input for both), passes, offset-map bytes and heap growth.

const benchBatch = 100

func benchRecords() int { return envInt("KVLOG_BENCH_RECORDS", 2_000_000) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchKeySets() []int {
	sets := []int{1_000, 100_000, 10_000_000}
	if v := os.Getenv("KVLOG_BENCH_KEYS"); v != "" {
		sets = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(f); err == nil {
				sets = append(sets, n)
			}
		}
	}
	return sets
}

// genRecords calls fn with every record of the data set, in order: with
// keys < the record budget, keys drawn uniformly; otherwise every key once in
// order and then 20% random updates. Values are 100 bytes of JSON-like text
// (compressible like real changelog values).
func genRecords(keys int, fn func(key, value []byte)) int {
	return genRecordsN(benchRecords(), keys, fn)
}

// genRecordsN is genRecords with a record budget of n.
func genRecordsN(n, keys int, fn func(key, value []byte)) int {
	budget := n
	rng := rand.New(rand.NewPCG(uint64(keys), 42))
	if keys >= n {
		n = keys + keys/5
	}
	key := make([]byte, 0, 13)
	val := make([]byte, 0, 100)
	const hex = "0123456789abcdef"
	for i := 0; i < n; i++ {
		k := rng.IntN(keys)
		if keys >= budget && i < keys {
			k = i
		}
		key = fmt.Appendf(key[:0], "key-%09d", k)
		val = fmt.Appendf(val[:0], `{"id":%d,"version":%d,"state":"active","tag":"`, k, i)
		for len(val) < 98 {
			val = append(val, hex[rng.IntN(16)])
		}
		val = append(val, '"', '}')
		fn(key, val)
	}
	return n
}

type benchFixture struct {
	dir          string // log dir holding the partition
	bytes        int64  // size of the log before cleaning
	records      int
	segmentBytes int64
}

// fixture writes (once) the data set as an engine log: 1 GiB segments, all
// rolled, high watermark at the end.
func fixture(b *testing.B, keys int, codec record.Codec) benchFixture {
	return fixtureOf(b, benchRecords(), keys, codec, benchEngineConfig().SegmentBytes)
}

// fixtureOf is fixture for records records (when fewer than keys: every key
// once plus 20%) and segments of segmentBytes.
func fixtureOf(b *testing.B, records, keys int, codec record.Codec, segmentBytes int64) benchFixture {
	b.Helper()
	name := fmt.Sprintf("v1-%d-%d-%s", records, keys, codec)
	if segmentBytes != benchEngineConfig().SegmentBytes {
		name = fmt.Sprintf("v1-%d-%d-%s-seg%d", records, keys, codec, segmentBytes)
	}
	root := filepath.Join(os.TempDir(), "kvlog-cleaner-bench", name)
	meta := filepath.Join(root, "done")
	if data, err := os.ReadFile(meta); err == nil {
		var fx benchFixture
		if _, err := fmt.Sscan(string(data), &fx.bytes, &fx.records); err == nil {
			fx.dir, fx.segmentBytes = filepath.Join(root, "data"), segmentBytes
			return fx
		}
	}
	_ = os.RemoveAll(root)
	dir := filepath.Join(root, "data")
	cfg := benchEngineConfig()
	cfg.SegmentBytes = segmentBytes
	em, err := engine.OpenManager(engine.ManagerOptions{Dirs: []string{dir}, Logger: quietLogger, ConfigFor: func(engine.TopicPartition) engine.Config { return cfg }})
	if err != nil {
		b.Fatal(err)
	}
	l, err := em.CreateLog(testTP, cfg)
	if err != nil {
		b.Fatal(err)
	}
	var bl record.Builder
	var buf []byte
	ts := time.Now().UnixMilli()
	flush := func() {
		if bl.Len() == 0 {
			return
		}
		if buf, err = bl.Build(buf[:0]); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Append(buf, 0); err != nil {
			b.Fatal(err)
		}
		bl.Reset()
	}
	n := genRecordsN(records, keys, func(k, v []byte) {
		if bl.Len() == 0 {
			bl.Attributes = int16(codec)
			bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
			bl.BaseTimestamp, bl.MaxTimestamp, bl.LastOffsetDelta = ts, -1, -1
		}
		bl.Add(record.Record{OffsetDelta: int32(bl.Len()), Key: k, Value: v})
		if bl.Len() == benchBatch {
			flush()
		}
	})
	flush()
	if err := l.Roll(); err != nil {
		b.Fatal(err)
	}
	l.SetHighWatermark(l.LogEndOffset())
	size := l.Size()
	if err := em.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(meta, fmt.Appendf(nil, "%d %d", size, n), 0o644); err != nil {
		b.Fatal(err)
	}
	return benchFixture{dir: dir, bytes: size, records: n, segmentBytes: segmentBytes}
}

func benchEngineConfig() engine.Config {
	cfg := engine.DefaultConfig()
	cfg.Compact, cfg.Delete = true, false
	cfg.FileDeleteDelay = 0
	return cfg
}

// copyTree copies a fixture directory.
func copyTree(b *testing.B, src, dst string) {
	b.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		t := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(t, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(t)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkClean(b *testing.B) {
	codecs := []record.Codec{record.CodecNone, record.CodecLZ4, record.CodecZstd}
	b.Run("baseline", benchBaseline)
	for _, keys := range benchKeySets() {
		for _, codec := range codecs {
			b.Run(fmt.Sprintf("keys=%d/%s", keys, codec), func(b *testing.B) {
				fx := fixture(b, keys, codec)
				b.Run("kvlog", func(b *testing.B) { benchKvlog(b, fx, DefaultConfig().DedupeBufferSize) })
				b.Run("kfake", func(b *testing.B) { benchKfake(b, fx, keys, codec) })
			})
		}
	}
	// The broker scenario of a dedupe buffer too small for the dirty
	// section: 1M records over 200k keys in 16 MiB segments, cleaned with a
	// map of 50k entries (buffer 50k × 24 / 0.9 bytes) and with the default
	// 128 MiB one. small-map/large-map records/s is the cost of the
	// overflow.
	for _, codec := range []record.Codec{record.CodecNone, record.CodecLZ4} {
		b.Run(fmt.Sprintf("overflow/keys=200000/%s", codec), func(b *testing.B) {
			fx := fixtureOf(b, 1_000_000, 200_000, codec, 16<<20)
			b.Run("map=large", func(b *testing.B) { benchKvlog(b, fx, DefaultConfig().DedupeBufferSize) })
			b.Run("map=50k", func(b *testing.B) { benchKvlog(b, fx, 50_000*EntrySize*10/9) })
		})
	}
}

// benchBaseline measures the machine's memmove and CRC32C rates on 64 MiB
// buffers (warmed, 16 rounds per iteration, so that -benchtime 1x works).
func benchBaseline(b *testing.B) {
	src := make([]byte, 64<<20)
	for i := range src {
		src[i] = byte(i * 7)
	}
	dst := make([]byte, len(src))
	copy(dst, src)
	const rounds = 16
	b.Run("memmove", func(b *testing.B) {
		b.SetBytes(rounds * int64(len(src)))
		for b.Loop() {
			for range rounds {
				copy(dst, src)
			}
		}
	})
	tab := crc32.MakeTable(crc32.Castagnoli)
	b.Run("crc32c", func(b *testing.B) {
		b.SetBytes(rounds * int64(len(src)))
		for b.Loop() {
			for range rounds {
				_ = crc32.Checksum(src, tab)
			}
		}
	})
}

func benchKvlog(b *testing.B, fx benchFixture, dedupeBytes int64) {
	var passes, fullPasses int
	var mapBytes int
	var heapGrowth, heapMap uint64
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		copyTree(b, fx.dir, dir)
		cfg := benchEngineConfig()
		cfg.SegmentBytes = fx.segmentBytes
		em, err := engine.OpenManager(engine.ManagerOptions{Dirs: []string{dir}, Logger: quietLogger, ConfigFor: func(engine.TopicPartition) engine.Config { return cfg }})
		if err != nil {
			b.Fatal(err)
		}
		ccfg := DefaultConfig() // 128 MiB dedupe buffer, 1 thread, load factor 0.9
		ccfg.DedupeBufferSize = dedupeBytes
		// A ratio of 0 cleans to the end even after a pass whose map
		// filled: the time measured is that of a full compaction, like
		// kfake's.
		full := func(engine.TopicPartition, engine.Config) TopicConfig {
			return TopicConfig{MinCleanableRatio: 0, DeleteRetention: 24 * time.Hour}
		}
		cm, err := New(Options{Engine: em, Config: &ccfg, TopicConfig: full, Logger: quietLogger, Clock: clock.Real})
		if err != nil {
			b.Fatal(err)
		}
		// The thread's map is allocated once when the thread starts, not
		// per pass: do it before timing.
		cm.syncW = newWorker(-1, cm.throttle, cm.elapsed)
		if err := cm.syncW.ensureMap(ccfg.mapBytes(), ccfg.LoadFactor, nil); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		start := time.Now()
		b.StartTimer()
		for {
			res, ok := cm.RunOnce(context.Background())
			if !ok {
				break
			}
			if res.Err != nil {
				b.Fatal(res.Err)
			}
			passes++
			if res.Stats.MapFull {
				fullPasses++
			}
		}
		b.StopTimer()
		total += time.Since(start)
		runtime.ReadMemStats(&ms1)
		heapGrowth = max(heapGrowth, ms1.HeapAlloc-min(ms0.HeapAlloc, ms1.HeapAlloc))
		heapMap = max(heapMap, ms1.HeapAlloc)
		mapBytes = cm.syncW.m.Bytes()
		l, _ := em.Log(testTP)
		if l.Size() >= fx.bytes {
			b.Fatalf("log not compacted: %d bytes of %d", l.Size(), fx.bytes)
		}
		_ = cm.Close()
		_ = em.Close()
	}
	sec := total.Seconds() / float64(b.N)
	b.ReportMetric(float64(fx.bytes)/1e6/sec, "MB/s")
	b.ReportMetric(float64(fx.records)/sec, "records/s")
	b.ReportMetric(float64(passes)/float64(b.N), "passes")
	b.ReportMetric(float64(fullPasses)/float64(b.N), "full-map-passes")
	b.ReportMetric(float64(mapBytes)/(1<<20), "map-MiB")
	b.ReportMetric(float64(heapGrowth)/(1<<20), "heap-growth-MiB")
	b.ReportMetric(float64(heapMap)/(1<<20), "heap-MiB")
}

// benchKfake produces the same records to an in-memory kfake cluster (same
// codec, ~100-record batches) and times Cluster.Compact().
func benchKfake(b *testing.B, fx benchFixture, keys int, codec record.Codec) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			b.Fatal(err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(testTP.Topic),
			kgo.ProducerBatchCompression(kgoCodec(codec)), kgo.ProducerBatchMaxBytes(100*130),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(1<<20), kgo.ProducerLinger(5*time.Millisecond),
			kgo.DisableIdempotentWrite(), kgo.RequiredAcks(kgo.LeaderAck()))
		if err != nil {
			b.Fatal(err)
		}
		adm := kadm.NewClient(cl)
		compact := "compact"
		if _, err := adm.CreateTopic(context.Background(), 1, 1, map[string]*string{"cleanup.policy": &compact}, testTP.Topic); err != nil {
			b.Fatal(err)
		}
		var perr atomic.Pointer[error]
		genRecords(keys, func(k, v []byte) {
			cl.Produce(context.Background(), &kgo.Record{Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)}, func(_ *kgo.Record, err error) {
				if err != nil {
					perr.CompareAndSwap(nil, &err)
				}
			})
		})
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := perr.Load(); err != nil {
			b.Fatal(*err)
		}
		start := time.Now()
		b.StartTimer()
		c.Compact()
		b.StopTimer()
		total += time.Since(start)
		cl.Close()
		c.Close()
		runtime.GC()
	}
	sec := total.Seconds() / float64(b.N)
	b.ReportMetric(float64(fx.bytes)/1e6/sec, "MB/s")
	b.ReportMetric(float64(fx.records)/sec, "records/s")
}

func kgoCodec(c record.Codec) kgo.CompressionCodec {
	switch c {
	case record.CodecLZ4:
		return kgo.Lz4Compression()
	case record.CodecZstd:
		return kgo.ZstdCompression()
	case record.CodecGzip:
		return kgo.GzipCompression()
	case record.CodecSnappy:
		return kgo.SnappyCompression()
	}
	return kgo.NoCompression()
}
