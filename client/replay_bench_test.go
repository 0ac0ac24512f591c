package client

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/client/clienttest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The replay benchmark: time to rebuild the state of a changelog topic, the
// library's Table against a raw franz-go consume loop, in the same run, on
// the same broker and data.
//
//	go test -run '^$' -bench Replay -benchtime 1x -count 5 ./client/
//
// (-count repeats the whole sequence, so the variants alternate; compare
// medians: the machines this runs on are shared.)
//
// Data: KVLOG_BENCH_KEYS live keys (default 100,000; the figure is
// 1,000,000), 13-byte keys and 100-byte values, 3 partitions:
//   - "live": every key written once: what a compacted topic holds;
//   - "updates": KVLOG_BENCH_UPDATES records (default 10 × keys) cycling over
//     the keys, uncompacted: the history a replay reads when the cleaner has
//     not run.
//
// Variants per topic:
//   - library: client.Open(..., ReplayOnly()) building the latest-value map;
//   - raw: a kgo consume loop to the high watermarks counting records (the
//     floor: fetch and decode only);
//   - raw+map: the same loop storing the latest value per key in a
//     map[string][]byte (what an application writes by hand).

type benchData struct {
	b     *clienttest.Broker
	keys  int
	sizes map[string]int // topic → records
}

var (
	benchOnce sync.Once
	bench     *benchData
	benchErr  error
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchKey(i int) []byte { return fmt.Appendf(nil, "user-%08d", i) } // 13 bytes

// loadBench starts a broker for the whole benchmark binary and writes both
// topics once.
func loadBench(b *testing.B) *benchData {
	benchOnce.Do(func() {
		keys := envInt("KVLOG_BENCH_KEYS", 100_000)
		updates := envInt("KVLOG_BENCH_UPDATES", 10*keys)
		// The broker must outlive this sub-benchmark: stopped by TestMain.
		br := clienttest.Start(clienttest.Long(b))
		bench = &benchData{b: br, keys: keys, sizes: map[string]int{}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr), kgo.RecordPartitioner(Partitioner()),
			kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(200_000))
		if err != nil {
			benchErr = err
			return
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		value := make([]byte, 100)
		for i := range value {
			value[i] = 'a' + byte(i%26)
		}
		for _, tc := range []struct {
			topic string
			n     int
		}{{"live", keys}, {"updates", updates}} {
			policy := "compact"
			if tc.topic == "updates" {
				policy = "delete" // history kept: no cleaner runs on it
			}
			if _, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"cleanup.policy": &policy}, tc.topic); err != nil {
				benchErr = err
				return
			}
			start := time.Now()
			var perr error
			var mu sync.Mutex
			for i := 0; i < tc.n; i++ {
				cl.Produce(ctx, &kgo.Record{Topic: tc.topic, Key: benchKey(i % keys), Value: value}, func(_ *kgo.Record, err error) {
					if err != nil {
						mu.Lock()
						perr = err
						mu.Unlock()
					}
				})
			}
			if err := cl.Flush(ctx); err != nil {
				benchErr = err
				return
			}
			if perr != nil {
				benchErr = perr
				return
			}
			bench.sizes[tc.topic] = tc.n
			fmt.Fprintf(os.Stderr, "loaded %s: %d records over %d keys in %v\n", tc.topic, tc.n, keys, time.Since(start).Round(time.Millisecond))
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return bench
}

func BenchmarkReplay(b *testing.B) {
	d := loadBench(b)
	b.Cleanup(func() {}) // keep the broker; stopped by TestMain
	for _, topic := range []string{"live", "updates"} {
		n := d.sizes[topic]
		b.Run(topic+"/library", func(b *testing.B) {
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			for b.Loop() {
				opts := []Option{ReplayOnly()}
				if topic == "updates" {
					opts = append(opts, AllowUncompacted())
				}
				tbl, err := Open(context.Background(), d.b.Brokers(), topic, opts...)
				if err != nil {
					b.Fatal(err)
				}
				st := tbl.Stats()
				tbl.Close()
				if st.Records != int64(n) || st.LiveKeys != d.keys {
					b.Fatalf("replayed %d records, %d keys; want %d, %d", st.Records, st.LiveKeys, n, d.keys)
				}
			}
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			reportAllocs(b, &m0, &m1, n)
		})
		for _, withMap := range []bool{false, true} {
			name := topic + "/raw"
			if withMap {
				name += "+map"
			}
			b.Run(name, func(b *testing.B) {
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				for b.Loop() {
					got, keys := rawReplay(b, d.b.Addr, topic, withMap)
					if got != n || (withMap && keys != d.keys) {
						b.Fatalf("raw replay read %d records, %d keys; want %d, %d", got, keys, n, d.keys)
					}
				}
				runtime.ReadMemStats(&m1)
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
				reportAllocs(b, &m0, &m1, n)
			})
		}
	}
}

// reportAllocs reports the client's heap allocations per replayed record
// between two MemStats (the broker is another process: these are the
// replaying client's alone).
func reportAllocs(b *testing.B, m0, m1 *runtime.MemStats, records int) {
	per := float64(b.N) * float64(records)
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/per, "allocs/record")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/per, "B/record")
}

// rawReplay is the hand-written franz-go loop an application would use:
// list the end offsets, consume every partition from the start with the same
// fetch sizes as the library, stop at the end offsets.
func rawReplay(b *testing.B, addr, topic string, withMap bool) (records, keys int) {
	ctx := context.Background()
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		b.Fatal(err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	adm.Close()
	if err != nil {
		b.Fatal(err)
	}
	remaining := map[int32]int64{}
	parts := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		parts[o.Partition] = kgo.NewOffset().AtStart()
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var m map[string][]byte
	if withMap {
		m = make(map[string][]byte)
	}
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			b.Fatal(err)
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if withMap {
					if r.Value == nil {
						delete(m, string(r.Key))
					} else {
						m[string(r.Key)] = r.Value
					}
				}
			}
			records += len(p.Records)
			if len(p.Records) > 0 && p.Records[len(p.Records)-1].Offset+1 >= remaining[p.Partition] {
				delete(remaining, p.Partition)
			}
		})
	}
	return records, len(m)
}

// BenchmarkReplayCompare runs the three variants in alternating order,
// KVLOG_BENCH_ROUNDS times (default 5), and reports each variant's median
// replay time and the library's ratio to the raw loop that builds the same
// map: the same-run comparison, robust to a shared machine's drift.
//
//	go test -run '^$' -bench ReplayCompare -benchtime 1x ./client/
func BenchmarkReplayCompare(b *testing.B) {
	d := loadBench(b)
	rounds := envInt("KVLOG_BENCH_ROUNDS", 5)
	for _, topic := range []string{"live", "updates"} {
		n := d.sizes[topic]
		b.Run(topic, func(b *testing.B) {
			variants := []struct {
				name string
				run  func()
			}{
				{"library", func() {
					opts := []Option{ReplayOnly()}
					if topic == "updates" {
						opts = append(opts, AllowUncompacted())
					}
					tbl, err := Open(context.Background(), d.b.Brokers(), topic, opts...)
					if err != nil {
						b.Fatal(err)
					}
					if tbl.Len() != d.keys {
						b.Fatalf("library: %d keys, want %d", tbl.Len(), d.keys)
					}
					tbl.Close()
				}},
				{"raw", func() {
					if got, _ := rawReplay(b, d.b.Addr, topic, false); got != n {
						b.Fatalf("raw: %d records, want %d", got, n)
					}
				}},
				{"raw+map", func() {
					if _, keys := rawReplay(b, d.b.Addr, topic, true); keys != d.keys {
						b.Fatalf("raw+map: %d keys, want %d", keys, d.keys)
					}
				}},
			}
			times := make([][]time.Duration, len(variants))
			for b.Loop() {
				for r := 0; r < rounds; r++ {
					for i := range variants {
						v := (i + r) % len(variants) // rotate the order each round
						runtime.GC()
						start := time.Now()
						variants[v].run()
						times[v] = append(times[v], time.Since(start))
					}
				}
			}
			med := make([]time.Duration, len(variants))
			for i, ts := range times {
				slices.Sort(ts)
				med[i] = ts[len(ts)/2]
				b.ReportMetric(float64(med[i].Milliseconds()), variants[i].name+"-ms")
				fmt.Fprintf(os.Stderr, "%s %-8s %d records over %d keys: median %v of %v\n", topic, variants[i].name, n, d.keys, med[i].Round(time.Millisecond), ts)
			}
			b.ReportMetric(float64(med[0])/float64(med[2]), "library/raw+map")
			b.ReportMetric(float64(med[0])/float64(med[1]), "library/raw")
		})
	}
}
