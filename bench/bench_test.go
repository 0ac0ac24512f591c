package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	keyCount = 1000
	keyLen   = 13
	valueLen = 100
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// broker is one system under test.
type broker interface {
	name() string
	addr() string
	// cpuSeconds is the broker process's CPU time so far from
	// /proc/<pid>/stat (utime+stime, 10 ms ticks) and, more precisely,
	// the sum of its threads' /proc/<pid>/task/*/schedstat run times; ok
	// false when the broker shares the benchmark's process.
	cpuSeconds() (stat, sched float64, ok bool)
	close()
}

// --- kvlogd, a separate process ---

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// kvlogdBinary builds kvlogd once, without -race.
func kvlogdBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "kvlog-bench-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "kvlogd")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/kvlogd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building kvlogd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

type kvlogd struct {
	label  string
	cmd    *exec.Cmd
	listen string
	exited chan struct{}
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startKvlogd starts kvlogd with extra server.properties lines.
func startKvlogd(tb testing.TB, label string, props ...string) *kvlogd {
	tb.Helper()
	return startKvlogdListeners(tb, label, "", props...)
}

// startKvlogdListeners starts kvlogd with more listeners (",NAME://addr"
// after its PLAINTEXT one) and server.properties lines.
func startKvlogdListeners(tb testing.TB, label, more string, props ...string) *kvlogd {
	tb.Helper()
	k := &kvlogd{label: label, listen: freeAddr(tb), exited: make(chan struct{})}
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(cfg, []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	args := []string{"--config", cfg, "--listeners", "PLAINTEXT://" + k.listen + more, "--log-dirs", filepath.Join(dir, "data"), "--http", "", "--log-level", "warn"}
	k.cmd = exec.Command(kvlogdBinary(tb), args...)
	stderr, err := k.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := k.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		// Read stderr to its end before Wait (which closes the pipe).
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(os.Stderr, "kvlogd:", sc.Text())
		}
		k.cmd.Wait()
		close(k.exited)
	}()
	// --log-level warn hides the start-up line: wait for the port.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", k.listen, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-k.exited:
			tb.Fatalf("kvlogd exited at start-up")
		default:
		}
		if time.Now().After(deadline) {
			k.close()
			tb.Fatalf("kvlogd did not listen on %s: %v", k.listen, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return k
}

func (k *kvlogd) name() string { return k.label }
func (k *kvlogd) addr() string { return k.listen }

func (k *kvlogd) cpuSeconds() (float64, float64, bool) {
	s, err := procCPUSeconds(k.cmd.Process.Pid)
	if err != nil {
		return 0, 0, false
	}
	return s, procSchedSeconds(k.cmd.Process.Pid), true
}

// procSchedSeconds sums the run time (ns) of a process's live threads
// from /proc/<pid>/task/*/schedstat; 0 when unavailable.
func procSchedSeconds(pid int) float64 {
	paths, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var ns float64
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			ns += v
		}
	}
	return ns / 1e9
}

func (k *kvlogd) close() {
	k.cmd.Process.Signal(os.Interrupt)
	select {
	case <-k.exited:
	case <-time.After(30 * time.Second):
		k.cmd.Process.Kill()
		<-k.exited
	}
}

// procCPUSeconds is a process's user+system CPU time from /proc/<pid>/stat.
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces: fields restart after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(f[12], 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil // USER_HZ
}

// --- kfake, in this process ---

type fake struct {
	label string
	c     *kfake.Cluster
}

func startKfake(tb testing.TB, disk bool) *fake {
	tb.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	label := "kfake-mem"
	if disk {
		opts = append(opts, kfake.DataDir(tb.TempDir()))
		label = "kfake-disk"
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return &fake{label: label, c: c}
}

func (f *fake) name() string                         { return f.label }
func (f *fake) addr() string                         { return f.c.ListenAddrs()[0] }
func (f *fake) cpuSeconds() (float64, float64, bool) { return 0, 0, false }
func (f *fake) close()                               { f.c.Close() }

// --- one round: produce a fresh topic, then consume it from 0 ---

type roundResult struct {
	produceRate, consumeRate     float64 // records per second
	produceCPUSec, consumeCPUSec float64 // broker CPU seconds (/proc stat); -1 unknown
	produceSched, consumeSched   float64 // the same from schedstat
}

// workload is the records of one round: keys over keyCount distinct
// values, incompressible values.
type workload struct {
	keys   [][]byte
	values [][]byte
}

func newWorkload() *workload {
	w := &workload{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < keyCount; i++ {
		w.keys = append(w.keys, fmt.Appendf(nil, "user-%08d", i)) // 13 bytes
	}
	for i := 0; i < 4096; i++ {
		v := make([]byte, valueLen)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		w.values = append(w.values, v)
	}
	return w
}

func runRound(tb testing.TB, b broker, w *workload, topic string, partitions int32, n int) roundResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	seed := []kgo.Opt{kgo.SeedBrokers(b.addr())}
	if s, ok := b.(interface{ clientOpts() []kgo.Opt }); ok {
		seed = append(seed, s.clientOpts()...)
	}

	adm, err := kgo.NewClient(seed...)
	if err != nil {
		tb.Fatal(err)
	}
	defer adm.Close()
	resp, err := kadm.NewClient(adm).CreateTopic(ctx, partitions, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err != nil || resp.Err != nil {
		tb.Fatalf("%s: create %s: %v %v", b.name(), topic, err, resp.Err)
	}

	// Producer: franz-go's defaults (idempotent, acks=all, linger 10ms)
	// without compression. One record first, untimed: connections,
	// metadata and the producer id.
	prod, err := kgo.NewClient(append(seed, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		tb.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: w.keys[0], Value: w.values[0]}).FirstErr(); err != nil {
		tb.Fatalf("%s: warm-up produce: %v", b.name(), err)
	}
	recs := make([]kgo.Record, n)
	for i := range recs {
		recs[i] = kgo.Record{Key: w.keys[(i*7919)%keyCount], Value: w.values[i%len(w.values)]}
	}
	var (
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	wg.Add(n)
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
		wg.Done()
	}
	cpu0, sched0, cpuOK := b.cpuSeconds()
	start := time.Now()
	for i := range recs {
		prod.Produce(ctx, &recs[i], done)
	}
	wg.Wait()
	produceTime := time.Since(start)
	cpu1, sched1, _ := b.cpuSeconds()
	if p := firstErr.Load(); p != nil {
		tb.Fatalf("%s: produce: %v", b.name(), *p)
	}
	total := n + 1

	// Consumer: from offset 0 to the end.
	cons, err := kgo.NewClient(append(seed, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		tb.Fatal(err)
	}
	defer cons.Close()
	got := 0
	start = time.Now()
	for got < total {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("%s: consumed %d of %d", b.name(), got, total)
		}
		fs.EachError(func(t string, p int32, err error) { tb.Fatalf("%s: fetch %s-%d: %v", b.name(), t, p, err) })
		got += fs.NumRecords()
	}
	consumeTime := time.Since(start)
	cpu2, sched2, _ := b.cpuSeconds()
	if got != total {
		tb.Fatalf("%s: consumed %d records, produced %d", b.name(), got, total)
	}

	r := roundResult{
		produceRate:   float64(n) / produceTime.Seconds(),
		consumeRate:   float64(total) / consumeTime.Seconds(),
		produceCPUSec: -1,
		consumeCPUSec: -1,
	}
	if cpuOK {
		r.produceCPUSec, r.produceSched = cpu1-cpu0, sched1-sched0
		r.consumeCPUSec, r.consumeSched = cpu2-cpu1, sched2-sched1
	}
	return r
}

// logf logs a line: to stderr in benchmarks (whose logs the testing
// package shortens), to the test log otherwise.
func logf(tb testing.TB, format string, args ...any) {
	if _, ok := tb.(*testing.B); ok {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		return
	}
	tb.Logf(format, args...)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// results are every round's results of one broker, plus its CPU totals.
type results struct {
	rounds []roundResult
	// totals over the rounds, for the per-GB CPU figures
	produceCPU, consumeCPU     float64
	produceSched, consumeSched float64
	prodGB, fetchGB            float64
}

// compare runs an untimed warm-up round on every broker, then rounds of
// the workload, rotating the order each round.
func compare(tb testing.TB, brokers []broker, partitions int32, n, rounds int) map[string]*results {
	tb.Helper()
	w := newWorkload()
	for _, b := range brokers {
		runRound(tb, b, w, fmt.Sprintf("warmup-%s-p%d", b.name(), partitions), partitions, min(n, 20_000))
	}
	out := map[string]*results{}
	for _, b := range brokers {
		out[b.name()] = &results{}
	}
	for r := 0; r < rounds; r++ {
		for i := range brokers {
			b := brokers[(i+r)%len(brokers)]
			topic := fmt.Sprintf("bench-%s-p%d-r%d", b.name(), partitions, r)
			res := runRound(tb, b, w, topic, partitions, n)
			o := out[b.name()]
			o.rounds = append(o.rounds, res)
			gb := float64(n*(keyLen+valueLen)) / 1e9
			o.produceCPU += res.produceCPUSec
			o.consumeCPU += res.consumeCPUSec
			o.produceSched += res.produceSched
			o.consumeSched += res.consumeSched
			o.prodGB += gb
			o.fetchGB += gb * float64(n+1) / float64(n)
			logf(tb, "round %d %-14s p=%d produce %9.0f rec/s consume %9.0f rec/s broker cpu produce %.3f s fetch %.3f s",
				r, b.name(), partitions, res.produceRate, res.consumeRate, res.produceSched, res.consumeSched)
		}
	}
	return out
}

// BenchmarkVsKfake runs kvlogd against kfake in memory and with
// DataDir, 1 and 4 partitions, alternating rounds, medians and same-run
// ratios (per round, then the median), plus kvlogd's CPU per GB. kvlogd
// runs twice: as configured by default (fsync before acknowledging
// acks=all, which kfake never does) and with kvlog.fsync.acks.all=false.
func BenchmarkVsKfake(b *testing.B) {
	n := envInt("KVLOG_BENCH_RECORDS", 300_000)
	rounds := envInt("KVLOG_BENCH_ROUNDS", 7)
	for _, partitions := range []int32{1, 4} {
		b.Run(fmt.Sprintf("partitions=%d", partitions), func(b *testing.B) {
			for b.Loop() {
				brokers := []broker{
					startKvlogd(b, "kvlogd"),
					startKvlogd(b, "kvlogd-nofsync", "kvlog.fsync.acks.all=false"),
					startKfake(b, false),
					startKfake(b, true),
				}
				res := compare(b, brokers, partitions, n, rounds)
				for _, br := range brokers {
					br.close()
				}
				report(b, res)
			}
		})
	}
}

func report(b *testing.B, res map[string]*results) {
	prod := func(r roundResult) float64 { return r.produceRate }
	cons := func(r roundResult) float64 { return r.consumeRate }
	med := func(name string, f func(roundResult) float64) float64 {
		var xs []float64
		for _, r := range res[name].rounds {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	for _, name := range []string{"kvlogd", "kvlogd-nofsync", "kfake-mem", "kfake-disk"} {
		b.ReportMetric(med(name, prod), name+"-produce-rec/s")
		b.ReportMetric(med(name, cons), name+"-consume-rec/s")
	}
	for _, k := range []string{"kvlogd", "kvlogd-nofsync"} {
		for _, peer := range []string{"kfake-mem", "kfake-disk"} {
			var pr, cr []float64
			for i, r := range res[k].rounds {
				pr = append(pr, r.produceRate/res[peer].rounds[i].produceRate)
				cr = append(cr, r.consumeRate/res[peer].rounds[i].consumeRate)
			}
			b.ReportMetric(median(pr), k+"/"+peer+"-produce-x")
			b.ReportMetric(median(cr), k+"/"+peer+"-consume-x")
		}
		r := res[k]
		b.ReportMetric(r.produceCPU/r.prodGB, k+"-cpu-s/GB-produced")
		b.ReportMetric(r.consumeCPU/r.fetchGB, k+"-cpu-s/GB-fetched")
		b.ReportMetric(r.produceSched/r.prodGB, k+"-schedstat-cpu-s/GB-produced")
		b.ReportMetric(r.consumeSched/r.fetchGB, k+"-schedstat-cpu-s/GB-fetched")
	}
}

// TestHarnessKfake runs the harness briefly against both kfakes, so the
// benchmark code stays working without building kvlogd.
func TestHarnessKfake(t *testing.T) {
	mem := startKfake(t, false)
	defer mem.close()
	disk := startKfake(t, true)
	defer disk.close()
	res := compare(t, []broker{mem, disk}, 4, 2000, 2)
	for name, r := range res {
		if len(r.rounds) != 2 || r.rounds[0].produceRate <= 0 || r.rounds[0].consumeRate <= 0 {
			t.Fatalf("%s: %+v", name, r.rounds)
		}
	}
}

func TestProcCPUSeconds(t *testing.T) {
	s, err := procCPUSeconds(os.Getpid())
	if err != nil || s < 0 {
		t.Fatalf("%v %v", s, err)
	}
}
