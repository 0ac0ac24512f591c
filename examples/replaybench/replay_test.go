package replaybench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/client"
	"github.com/kvlog/kvlog/client/clienttest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { os.Exit(clienttest.Main(m)) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func key(i int) string { return fmt.Sprintf("user-%08d", i) } // 13 bytes

var value = func() []byte {
	v := make([]byte, 100)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}()

type setup struct {
	keys   int
	kvlog  *clienttest.Broker
	natsKV jetstream.KeyValue
	nc     *nats.Conn
}

var (
	once   sync.Once
	env    *setup
	envErr error
)

func freeAddr() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return ln.Addr().String()
}

func load(b *testing.B) *setup {
	once.Do(func() { env, envErr = doLoad(b) })
	if envErr != nil {
		b.Fatal(envErr)
	}
	return env
}

func doLoad(b *testing.B) (*setup, error) {
	s := &setup{keys: envInt("KVLOG_BENCH_KEYS", 100_000)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// What is started here outlives this benchmark: stopped by TestMain.
	long := clienttest.Long(b)

	// kvlog: a compacted topic, every key once.
	s.kvlog = clienttest.Start(long)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kvlog.Addr), kgo.RecordPartitioner(client.Partitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "live"); err != nil {
		return nil, err
	}
	start := time.Now()
	var perr error
	var mu sync.Mutex
	for i := 0; i < s.keys; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: "live", Key: []byte(key(i)), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				perr = err
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil || perr != nil {
		return nil, fmt.Errorf("loading kvlog: %v %v", err, perr)
	}
	fmt.Fprintf(os.Stderr, "kvlog: loaded %d keys in %v\n", s.keys, time.Since(start).Round(time.Millisecond))

	// NATS JetStream KV: a file-backed bucket with history 1, same keys.
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats-server not installed (apt-get install -y nats-server): NATS runs skipped")
		return s, nil
	}
	addr := freeAddr()
	host, port, _ := net.SplitHostPort(addr)
	dir := long.TempDir()
	srv := exec.Command(bin, "-js", "-a", host, "-p", port, "-sd", dir)
	if err := srv.Start(); err != nil {
		return nil, err
	}
	long.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.nc, err = nats.Connect("nats://" + addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("nats-server did not start: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	long.Cleanup(s.nc.Close)
	js, err := jetstream.New(s.nc, jetstream.WithDefaultTimeout(5*time.Minute))
	if err != nil {
		return nil, err
	}
	s.natsKV, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "live", History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, err
	}
	start = time.Now()
	ajs, err := jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	for i := 0; i < s.keys; i++ {
		if _, err := ajs.PublishAsync("$KV.live."+key(i), value, jetstream.WithStallWait(time.Minute)); err != nil {
			return nil, err
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if st, err := s.natsKV.Status(ctx); err != nil || st.Values() != uint64(s.keys) {
		return nil, fmt.Errorf("nats bucket holds %v values (err %v), want %d", st, err, s.keys)
	}
	fmt.Fprintf(os.Stderr, "nats: loaded %d keys in %v\n", s.keys, time.Since(start).Round(time.Millisecond))
	return s, nil
}

// BenchmarkRebuild rebuilds the same KVLOG_BENCH_KEYS keys three ways, in
// alternating order for KVLOG_BENCH_ROUNDS rounds (default 5), and reports
// each one's median time and keys/s.
//
//	go test -run '^$' -bench Rebuild -benchtime 1x
func BenchmarkRebuild(b *testing.B) {
	s := load(b)
	rounds := envInt("KVLOG_BENCH_ROUNDS", 5)
	type variant struct {
		name string
		run  func() int // returns the keys rebuilt
	}
	variants := []variant{
		{"kvlog-library", func() int {
			tbl, err := client.Open(context.Background(), s.kvlog.Brokers(), "live", client.ReplayOnly())
			if err != nil {
				b.Fatal(err)
			}
			defer tbl.Close()
			return tbl.Len()
		}},
		{"kvlog-raw-franz-go+map", func() int { return rawReplay(b, s.kvlog.Addr, "live") }},
	}
	if s.natsKV != nil {
		variants = append(variants, variant{"nats-kv-watchall", func() int {
			// The legacy push subscription under WatchAll bounds consumer
			// creation by the context's deadline (5s when it has none),
			// which nats-server 2.9 exceeds on a 1M-key bucket.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			w, err := s.natsKV.WatchAll(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Stop()
			m := make(map[string][]byte)
			for e := range w.Updates() {
				if e == nil { // every current value delivered
					break
				}
				if e.Operation() == jetstream.KeyValuePut {
					m[e.Key()] = e.Value()
				} else {
					delete(m, e.Key())
				}
			}
			return len(m)
		}})
	} else {
		b.Log("nats-server not installed: NATS not measured")
	}
	times := make([][]time.Duration, len(variants))
	for b.Loop() {
		for r := 0; r < rounds; r++ {
			for i := range variants {
				v := (i + r) % len(variants)
				runtime.GC()
				start := time.Now()
				if got := variants[v].run(); got != s.keys {
					b.Fatalf("%s rebuilt %d keys, want %d", variants[v].name, got, s.keys)
				}
				times[v] = append(times[v], time.Since(start))
			}
		}
	}
	for i, ts := range times {
		slices.Sort(ts)
		med := ts[len(ts)/2]
		b.ReportMetric(float64(med.Milliseconds()), variants[i].name+"-ms")
		fmt.Fprintf(os.Stderr, "%-24s %d keys: median %v (%.0f keys/s) of %v\n", variants[i].name, s.keys, med.Round(time.Millisecond), float64(s.keys)/med.Seconds(), ts)
	}
}

// rawReplay is a hand-written franz-go loop building the same map.
func rawReplay(b *testing.B, addr, topic string) int {
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
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	m := make(map[string][]byte)
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			b.Fatal(err)
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if r.Value == nil {
					delete(m, string(r.Key))
				} else {
					m[string(r.Key)] = r.Value
				}
			}
			if len(p.Records) > 0 && p.Records[len(p.Records)-1].Offset+1 >= remaining[p.Partition] {
				delete(remaining, p.Partition)
			}
		})
	}
	return len(m)
}
