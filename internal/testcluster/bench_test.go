package testcluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cluster benchmarks, on this machine (every broker, ZooKeeper and the
// client share its cores):
//
//   - BenchmarkProduce: produce throughput of one franz-go client against
//     three brokers (RF 3, min.insync.replicas 2) with acks=1 and acks=all,
//     and against a single standalone broker (RF 1), alternating the four
//     setups round by round in the same run.
//   - BenchmarkLeaderFailover: an idempotent acks=all producer writes to a
//     one-partition RF 3 topic while its leader is SIGKILLed (and restarted)
//     ten times; fail-over = last acknowledgement before the kill to the
//     first after it, i.e. the longest silence around the kill (responses
//     already on their way from the old leader arrive after the kill), with
//     zookeeper.session.timeout.ms=3000.
//   - BenchmarkFollowerCatchUp: a follower is killed, the leader takes a
//     1 GB lag, the follower restarts; catch-up = from its exec to back in
//     the ISR (plus the steady copy rate seen on its disk, 10% to 90%).
//
// Run: go test -run '^$' -bench . ./internal/testcluster
// Knobs (environment): KVLOG_BENCH_WINDOW (produce window per measurement,
// default 8s), KVLOG_BENCH_ROUNDS (5), KVLOG_BENCH_KILLS (10),
// KVLOG_BENCH_LAG_MB (1024). Each benchmark runs once (b.N is ignored)
// and reports its figures as metrics and a summary line.

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchCluster(b *testing.B, props ...string) *Cluster {
	b.Helper()
	if why := ZooKeeperAvailable(); why != "" {
		b.Skip("ZooKeeper unavailable: " + why)
	}
	if kvlogdBin == "" {
		b.Skip("kvlogd not built (-short?)")
	}
	return Start(b, Options{Bin: kvlogdBin, Props: props})
}

// benchTopic creates a topic on the cluster and waits for full ISRs.
func benchTopic(b *testing.B, c *Cluster, name string, partitions int32, rf int16, configs map[string]*string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Admin().CreateTopic(ctx, partitions, rf, configs, name)
	if err != nil || res.Err != nil {
		b.Fatalf("create %s: %v %v", name, err, res.Err)
	}
	benchWaitISR(b, c, name, len(c.IDs()), 60*time.Second)
}

// benchWaitISR waits until every partition of topic has a leader and n
// in-sync replicas.
func benchWaitISR(b *testing.B, c *Cluster, topic string, n int, timeout time.Duration) {
	b.Helper()
	c.WaitFor(timeout, topic+" leaders and full ISRs", func() bool {
		ps, err := partitions(c, topic)
		if err != nil || len(ps) == 0 {
			return false
		}
		for _, p := range ps {
			if p.Leader < 0 || len(p.ISR) != n {
				return false
			}
		}
		return true
	})
}

func benchLeader(b *testing.B, c *Cluster, topic string, p int32) (leader, epoch int32) {
	b.Helper()
	leader, epoch = -1, -1
	c.WaitFor(60*time.Second, "a leader of "+topic, func() bool {
		ps, err := partitions(c, topic)
		if err != nil || ps[p].Leader < 0 {
			return false
		}
		leader, epoch = ps[p].Leader, ps[p].LeaderEpoch
		return true
	})
	return leader, epoch
}

// ---- a standalone broker (embedded metadata, no ZooKeeper) ----

type singleBroker struct {
	Addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	log    strings.Builder
}

func startSingle(b *testing.B, props ...string) *singleBroker {
	b.Helper()
	port, err := FreePort()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	sb := &singleBroker{Addr: fmt.Sprintf("127.0.0.1:%d", port), exited: make(chan struct{})}
	lines := append([]string{
		"listeners=PLAINTEXT://" + sb.Addr,
		"log.dirs=" + filepath.Join(dir, "data"),
		"kvlog.http.listener=",
	}, props...)
	cfg := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	sb.cmd = exec.Command(kvlogdBin, "--config", cfg, "--log-level", "info")
	sb.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := sb.cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := sb.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sb.cmd.Process.Signal(syscall.SIGKILL)
		<-sb.exited
	})
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			sb.mu.Lock()
			if sb.log.Len() < 1<<20 {
				sb.log.WriteString(sc.Text() + "\n")
			}
			sb.mu.Unlock()
			if strings.Contains(sc.Text(), "kvlogd started") {
				once.Do(func() { close(started) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		sb.cmd.Wait()
		close(sb.exited)
	}()
	select {
	case <-started:
	case <-sb.exited:
		b.Fatalf("standalone broker exited:\n%s", sb.log.String())
	case <-time.After(60 * time.Second):
		b.Fatal("standalone broker did not start")
	}
	return sb
}

// ---- produce throughput ----

type produceResult struct {
	recs, bytes int64
	elapsed     time.Duration
	failed      int64
}

func (r produceResult) mbps() float64 {
	return float64(r.bytes) / r.elapsed.Seconds() / 1e6
}

func (r produceResult) rps() float64 { return float64(r.recs) / r.elapsed.Seconds() }

// produceFor writes keyed records with 256-byte random values (no
// compression) for d, then flushes; throughput counts acknowledged
// records over the whole time including the flush.
func produceFor(b *testing.B, seeds []string, topic string, acksAll bool, d time.Duration) produceResult {
	b.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5 * time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(50_000)}
	if acksAll {
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	} else {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	// Metadata first, so the window measures producing.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("warm-up"), Value: []byte("x")}).FirstErr(); err != nil {
		b.Fatal(err)
	}
	val := make([]byte, 256)
	rand.Read(val)
	var res produceResult
	var acked, bytes, failed atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; time.Now().Before(deadline); i++ {
		r := &kgo.Record{Key: fmt.Appendf(nil, "key-%08d", i%1_000_000), Value: val}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				return
			}
			acked.Add(1)
			bytes.Add(int64(len(r.Key) + len(r.Value)))
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	res.elapsed = time.Since(start)
	res.recs, res.bytes, res.failed = acked.Load(), bytes.Load(), failed.Load()
	if res.failed > 0 {
		b.Errorf("%d records failed", res.failed)
	}
	return res
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func BenchmarkProduce(b *testing.B) {
	window := time.Duration(benchEnv("KVLOG_BENCH_WINDOW", 8)) * time.Second
	rounds := benchEnv("KVLOG_BENCH_ROUNDS", 5)
	common := []string{"log.retention.check.interval.ms=5000"}
	c := benchCluster(b, append([]string{"min.insync.replicas=2", "default.replication.factor=3", "auto.leader.rebalance.enable=false"}, common...)...)
	single := startSingle(b, common...)
	topicCfg := map[string]*string{
		"cleanup.policy":  kadm.StringPtr("delete"),
		"segment.bytes":   kadm.StringPtr("67108864"),
		"retention.bytes": kadm.StringPtr("268435456"),
	}
	benchTopic(b, c, "tput", 3, 3, topicCfg)
	{
		cl, err := kgo.NewClient(kgo.SeedBrokers(single.Addr))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, topicCfg, "tput")
		cancel()
		cl.Close()
		if err != nil || res.Err != nil {
			b.Fatalf("create on the single broker: %v %v", err, res.Err)
		}
	}
	type setup struct {
		name    string
		seeds   []string
		acksAll bool
	}
	setups := []setup{
		{"single-rf1-acks1", []string{single.Addr}, false},
		{"cluster-rf3-acks1", c.AllSeeds(), false},
		{"single-rf1-acksall", []string{single.Addr}, true},
		{"cluster-rf3-acksall", c.AllSeeds(), true},
	}
	mb := map[string][]float64{}
	rps := map[string][]float64{}
	for round := 0; round < rounds; round++ {
		for _, s := range setups {
			r := produceFor(b, s.seeds, "tput", s.acksAll, window)
			mb[s.name] = append(mb[s.name], r.mbps())
			rps[s.name] = append(rps[s.name], r.rps())
			fmt.Printf("  round %d %-20s %8.1f MB/s %9.0f records/s (%d records in %v)\n", round, s.name, r.mbps(), r.rps(), r.recs, r.elapsed.Round(time.Millisecond))
		}
	}
	var summary []string
	for _, s := range setups {
		m := median(mb[s.name])
		b.ReportMetric(m, "MB/s-"+s.name)
		summary = append(summary, fmt.Sprintf("%s %.1f MB/s (%.0f rec/s)", s.name, m, median(rps[s.name])))
	}
	b.ReportMetric(0, "ns/op")
	fmt.Printf("produce throughput, median of %d rounds of %v, 256-byte values, 3 partitions: %s\n", rounds, window, strings.Join(summary, "; "))
}

// ---- leader fail-over ----

func BenchmarkLeaderFailover(b *testing.B) {
	kills := benchEnv("KVLOG_BENCH_KILLS", 10)
	c := benchCluster(b, fastProps...)
	benchTopic(b, c, "failover", 1, 3, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")})
	w := StartWorkload(c, "failover", 100, 32)
	c.WaitFor(30*time.Second, "first acknowledgements", func() bool { return w.Acked() >= 100 })
	var gaps []float64
	var maxGap time.Duration
	for i := 0; i < kills; i++ {
		leader, epoch := benchLeader(b, c, "failover", 0)
		acked := w.Acked()
		c.WaitFor(10*time.Second, "acknowledgements before the kill", func() bool { return w.Acked() > acked+20 })
		killedAt := time.Now()
		c.Kill(leader)
		var next, nextEpoch int32
		c.WaitFor(60*time.Second, "a new leader", func() bool {
			ps, err := partitions(c, "failover")
			if err != nil || ps[0].Leader < 0 || ps[0].Leader == leader || ps[0].LeaderEpoch <= epoch {
				return false
			}
			next, nextEpoch = ps[0].Leader, ps[0].LeaderEpoch
			return true
		})
		elected := time.Now()
		acked = w.Acked()
		c.WaitFor(60*time.Second, "writes to resume on the new leader", func() bool { return w.Acked() > acked+20 })
		// Responses the old leader sent just before dying arrive just
		// after the kill: the stall is the longest silence around it.
		gap := w.maxAckGap(0, killedAt.Add(-time.Second), time.Now())
		gaps = append(gaps, gap.Seconds())
		maxGap = max(maxGap, gap)
		fmt.Printf("  kill %d: leader %d (epoch %d) → %d (epoch %d) seen after %v; fail-over %v\n", i+1, leader, epoch, next, nextEpoch,
			elected.Sub(killedAt).Round(time.Millisecond), gap.Round(time.Millisecond))
		c.StartBroker(leader)
		benchWaitISR(b, c, "failover", 3, 60*time.Second)
	}
	w.Stop()
	rep := w.Check(ReadAll(b, c, "failover"))
	if !rep.OK() {
		b.Errorf("anomalies: %s\n%s", rep, strings.Join(rep.Examples, "\n"))
	}
	med := time.Duration(median(gaps) * float64(time.Second))
	b.ReportMetric(med.Seconds(), "s-median-failover")
	b.ReportMetric(maxGap.Seconds(), "s-max-failover")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("leader fail-over over %d SIGKILLs (zookeeper.session.timeout.ms=3000): median %v, max %v; checker: %s\n",
		kills, med.Round(time.Millisecond), maxGap.Round(time.Millisecond), rep)
}

// maxAckGap is the longest time between consecutive acknowledgements of
// partition within [from, to] (the bounds count as acknowledgements).
func (w *Workload) maxAckGap(partition int32, from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var gap time.Duration
	prev := from
	for _, at := range w.ackTimes[partition] {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

// ---- follower catch-up ----

// logBytes sums the sizes of the .log files under dir.
func logBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(path, ".log") {
			n += info.Size()
		}
		return nil
	})
	return n
}

func BenchmarkFollowerCatchUp(b *testing.B) {
	lagMB := benchEnv("KVLOG_BENCH_LAG_MB", 1024)
	c := benchCluster(b, fastProps...)
	benchTopic(b, c, "catchup", 1, 3, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")})
	leader, _ := benchLeader(b, c, "catchup", 0)
	m, err := c.Metadata()
	if err != nil {
		b.Fatal(err)
	}
	follower := int32(-1)
	for _, id := range c.IDs() {
		if id != leader && (follower < 0 || id != m.ControllerID) {
			follower = id
		}
	}
	c.Kill(follower)
	c.WaitFor(30*time.Second, "ISR shrink", func() bool {
		ps, err := partitions(c, "catchup")
		return err == nil && !slices.Contains(ps[0].ISR, follower)
	})

	// The lag: lagMB of 1 KiB records, acks=all (leader and the other
	// follower), so the high watermark is the leader's log end.
	cl := c.Client(kgo.DefaultProduceTopic("catchup"), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(50_000))
	val := make([]byte, 1024)
	rand.Read(val)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := lagMB << 10
	var failed atomic.Int64
	prodStart := time.Now()
	for i := 0; i < n; i++ {
		cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "key-%08d", i), Value: val}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil || failed.Load() > 0 {
		b.Fatalf("producing the lag: %v, %d failed", err, failed.Load())
	}
	prodTook := time.Since(prodStart)
	lagBytes := logBytes(filepath.Join(c.Broker(leader).Dir, "data", "catchup-0"))
	b.Logf("lag of %d records, %.0f MB on the leader's disk, written in %v", n, float64(lagBytes)/1e6, prodTook.Round(time.Millisecond))

	dir := filepath.Join(c.Broker(follower).Dir, "data", "catchup-0")
	base := logBytes(dir)
	t0 := time.Now() // from exec: start-up and re-registration count
	c.StartBroker(follower)
	b.Logf("follower %d serving after %v, %.0f MB copied by then", follower, time.Since(t0).Round(time.Millisecond), float64(logBytes(dir)-base)/1e6)
	type sample struct {
		at time.Time
		n  int64
	}
	var samples []sample
	c.WaitFor(10*time.Minute, "the follower back in the ISR", func() bool {
		samples = append(samples, sample{time.Now(), logBytes(dir) - base})
		ps, err := partitions(c, "catchup")
		return err == nil && slices.Contains(ps[0].ISR, follower)
	})
	took := time.Since(t0)
	copied := logBytes(dir) - base
	// Steady copy rate: between 10% and 90% of the bytes on its disk.
	var steady float64
	var s10, s90 *sample
	for i := range samples {
		if s10 == nil && samples[i].n >= copied/10 {
			s10 = &samples[i]
		}
		if s90 == nil && samples[i].n >= copied*9/10 {
			s90 = &samples[i]
		}
	}
	if s10 != nil && s90 != nil && s90.at.After(s10.at) {
		steady = float64(s90.n-s10.n) / s90.at.Sub(s10.at).Seconds() / 1e6
	}
	rate := float64(copied) / took.Seconds() / 1e6
	b.ReportMetric(rate, "MB/s-catchup")
	b.ReportMetric(steady, "MB/s-steady-copy")
	b.ReportMetric(took.Seconds(), "s-to-isr")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("follower catch-up: %.0f MB lag (1 partition, 1 KiB records) back in the ISR %v after exec: %.1f MB/s overall, %.1f MB/s steady copy\n",
		float64(copied)/1e6, took.Round(time.Millisecond), rate, steady)
}
