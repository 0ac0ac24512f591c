// Command kvbench is kvlog's side-by-side benchmark: it builds kvlogd and
// kfaked, starts every system under test as its own process on loopback
// with a fresh temp data dir (kvlogd, franz-go's kfake in memory and with
// DataDir, nats-server -js with a file store, and a 3-broker kvlogd cluster
// through internal/testcluster), runs every scenario against each
// in alternating rounds, measures the machine's limits in the same run, and
// writes bench/results/<date>/report.md with PNG charts. See bench/doc.go.
//
//	make bench          # everything
//	make bench-quick    # the reduced run, a few minutes
//	go run . -root ../.. -quick -scenarios produce,consume
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type runner struct {
	cfg  *config
	root string // repository root
	out  string // results directory (report.md, PNGs)
	raw  string // out/raw: logs, profiles, results.json (git-ignored)
	tmp  string // temp root for data dirs and binaries
	bins struct{ kvlogd, kfaked, nats string }

	baseline string // git revision of kvlog-before (produce, consume, partitions, latency)
	// baselineBin is kvlog-before's kvlogd once built (baselineBinary),
	// baselineErr why it could not be.
	baselineBin, baselineErr string

	cleanerWired bool
	cleanerWhy   string
	natsVersion  string

	// Apache Kafka: the 4.x and 3.9 classpaths ("" when missing, with why).
	kafkaCP, kafka39CP           string
	kafkaWhy, kafka39Why         string
	kafkaVersion, kafka39Version string
	javaVersion                  string
	startups                     map[string]int // startup samples taken per system

	st       *store
	notes    map[string][]string // scenario → notes shown in its section
	notRun   []notRun
	profiles []profileTop
	charts   map[string][]string // scenario → PNG file names
	started  time.Time
	elapsed  time.Duration
	ranScen  []string
	durs     map[string]time.Duration
	env      map[string]string // machine and build facts for the report
}

type notRun struct{ Scenario, What, Why string }

type profileTop struct {
	Scenario, Name, File, Top string
	Util                      string // "Total samples" share: CPU used / wall time
	Seconds                   int    // the profile's duration (0: the run's profileSeconds)
	// System is the profiled system ("kvlog", "kafka", …; "client" for the
	// load generator); Wall, User and Sys the window's wall time and the
	// process's user and system CPU seconds in it (/proc); Frames the top
	// functions' flat and cumulative shares of the samples; Threads the
	// CPU (cores) per thread group of a JVM.
	System          string       `json:",omitempty"`
	Wall, User, Sys float64      `json:",omitempty"`
	Frames          []frameShare `json:",omitempty"`
	Threads         []frameShare `json:",omitempty"`
}

func (r *runner) note(scen, format string, args ...any) {
	r.notes[scen] = append(r.notes[scen], fmt.Sprintf(format, args...))
}

func (r *runner) skip(scen, what, format string, args ...any) {
	r.notRun = append(r.notRun, notRun{scen, what, fmt.Sprintf(format, args...)})
	logf("%s: NOT RUN %s: %s", scen, what, fmt.Sprintf(format, args...))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

type scenario struct {
	id, title string
	run       func(ctx context.Context, r *runner) error
	report    func(r *runner, w *md)
}

// scenarios in the order of value for kvlog's claims.
var scenarios = []scenario{
	{"produce", "1. Produce throughput", scenProduce, reportProduce},
	{"consume", "2. Consume / replay from offset 0", scenConsume, reportConsume},
	{"latency", "3. End-to-end latency at fixed rates", scenLatency, reportLatency},
	{"rebuild", "4. State rebuild", scenRebuild, reportRebuild},
	{"compaction", "5. Compaction", scenCompaction, reportCompaction},
	{"recovery", "6. Recovery after kill -9", scenRecovery, reportRecovery},
	{"scale", "7. Scale: log size and partition count", scenScale, reportScale},
	{"replicated", "8. Replicated: 3 brokers, RF 3", scenReplicated, reportReplicated},
	{"partitions", "9. Many partitions per broker", scenPartitions, reportPartitions},
	{"lookup", "10. Key lookups without replay", scenLookup, reportLookup},
	{"txn", "11. Transactions", scenTxn, reportTxn},
	{"restore", "12. Restore of a Kafka Streams state store", scenRestore, reportRestore},
}

func main() {
	var (
		quick    = flag.Bool("quick", false, "the reduced run (make bench-quick)")
		tiny     = flag.Bool("tiny", false, "the smoke run: every scenario with Apache Kafka at the smallest sizes, to check the harness end to end (figures meaningless)")
		root     = flag.String("root", ".", "kvlog repository root")
		out      = flag.String("out", "", "results directory (default <root>/bench/results/<date>)")
		only     = flag.String("scenarios", "", "comma-separated scenario ids to run (default all): produce,consume,latency,rebuild,compaction,recovery,scale,replicated,partitions,lookup,txn,restore")
		base     = flag.String("baseline", "", "git revision whose kvlogd the produce, consume, partitions and latency scenarios run beside this tree's (kvlog-before)")
		reps     = flag.Int("reps", 0, "repetitions per measurement (default 3 quick, 5 full)")
		lkeys    = flag.Int("lookup-keys", 0, "lookup scenario: live keys loaded (default 200,000 quick, 1,000,000 full)")
		keepTmp  = flag.Bool("keep", false, "keep the temp directory")
		from     = flag.String("from", "", "only write the report and charts again from this results directory's raw data")
		kafkaAll = flag.Bool("kafka-everywhere", false, "quick run: Apache Kafka in every scenario, as in the full run")
		cells    = flag.String("cells", "", "produce cells instead of the mode's matrix, comma-separated partitions/valueBytes/keys/acks/codec (e.g. 8/1024/1000/all/none,1000/1024/1000/all/none)")
		producer = flag.String("producer", "", "produce scenario's load generator of Kafka-protocol systems: raw (pre-encoded requests, the default), kgo (franz-go's producer) or both (each run with both, alternating; the kgo figures are reported beside)")
		consumer = flag.String("consumer", "", "consume scenario's consumer of Kafka-protocol systems: raw (Fetch requests counting records from batch headers), kgo (franz-go's consumer) or both (the default: each read with both, alternating; the raw figures are the main ones, the kgo ones reported beside)")
		systems  = flag.String("systems", "", "comma-separated systems to run (default all), e.g. kvlog,kvlog-before,kafka,kafka-fsync")
		spread   = flag.String("spread", "", "partitions scenario: comma-separated partition counts of the acks=all spread cell instead of the mode's (e.g. 1,1000); none skips it")
		many     = flag.String("many", "", "partitions scenario: comma-separated partition counts of the many-partitions runs instead of the mode's; none skips them")
		latReps  = flag.Int("latency-reps", 0, "latency scenario: rounds of every cell, the goal's cell (50% of Apache Kafka's peak) included (default 2, the goal's cell 4 full, 2 quick)")
		latPeaks = flag.String("latency-peaks", "", "latency scenario: peak rates to take instead of measuring them, comma-separated system=records/s of kvlog, kafka, nats-js (e.g. kvlog=2029038,kafka=1440655)")
		latFracs = flag.String("latency-fractions", "", "latency scenario: comma-separated fractions of kvlog's peak instead of the mode's (e.g. 0.1,0.5); none runs only the goal's cell at 50% of Apache Kafka's peak")
	)
	flag.Parse()
	lookupKeysFlag = *lkeys
	latencyRepsFlag = *latReps
	latencyFractionsFlag = *latFracs
	var err error
	if latencyPeaksFlag, err = parseLatencyPeaks(*latPeaks); err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(2)
	}
	spreadFlag, manyFlag = *spread, *many
	if *from != "" {
		if err := regenerate(*from); err != nil {
			fmt.Fprintln(os.Stderr, "kvbench:", err)
			os.Exit(1)
		}
		return
	}
	mode := "full"
	switch {
	case *tiny:
		mode = "tiny"
	case *quick:
		mode = "quick"
	}
	if err := run(mode, *root, *out, *only, *reps, *keepTmp, *kafkaAll, *base, *cells, *systems, *producer, *consumer); err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(1)
	}
}

func run(mode string, root, out, only string, reps int, keepTmp, kafkaAll bool, baseline, cells, systems, producer, consumer string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.Contains(string(b), "module github.com/kvlog/kvlog\n") {
		return fmt.Errorf("%s is not the kvlog repository root (-root)", root)
	}
	cfg := configFor(mode)
	if reps > 0 {
		cfg.reps = reps
	}
	switch latencyFractionsFlag {
	case "":
	case "none":
		cfg.latencyFractions = nil
	default:
		cfg.latencyFractions = nil
		for _, f := range strings.Split(latencyFractionsFlag, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || v <= 0 || v > 1 {
				return fmt.Errorf("-latency-fractions %q: fractions in (0, 1], or none", f)
			}
			cfg.latencyFractions = append(cfg.latencyFractions, v)
		}
	}
	if latencyRepsFlag > 0 {
		cfg.latencyReps, cfg.latencyGoalReps = latencyRepsFlag, latencyRepsFlag
	}
	if lookupKeysFlag > 0 {
		if def := cfg.lookupKeys; lookupKeysFlag > def && def > 0 && cfg.budget != nil {
			// Loading and measuring grow with the keys.
			cfg.budget["lookup"] = cfg.budget["lookup"] * time.Duration(lookupKeysFlag/def)
		}
		cfg.lookupKeys = lookupKeysFlag
	}
	if spreadFlag == "none" {
		cfg.spreadPartitions = nil
	} else if spreadFlag != "" {
		if cfg.spreadPartitions, err = parseCounts(spreadFlag); err != nil {
			return fmt.Errorf("-spread: %w", err)
		}
	}
	if manyFlag == "none" {
		cfg.manyPartitions = nil
	} else if manyFlag != "" {
		if cfg.manyPartitions, err = parseCounts(manyFlag); err != nil {
			return fmt.Errorf("-many: %w", err)
		}
	}
	if kafkaAll {
		cfg.kafkaEverywhere = true
	}
	switch consumer {
	case "":
	case genRaw, genKgo, genBoth:
		cfg.consumer = consumer
	default:
		return fmt.Errorf("-consumer %q: raw, kgo or both", consumer)
	}
	switch producer {
	case "":
	case genRaw, genKgo, genBoth:
		cfg.producer = producer
	default:
		return fmt.Errorf("-producer %q: raw, kgo or both", producer)
	}
	if cells != "" {
		if cfg.produceCells, err = parseCells(cells); err != nil {
			return err
		}
	}
	for _, s := range strings.Split(systems, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.systems = append(cfg.systems, s)
		}
	}
	r := &runner{cfg: cfg, root: root, baseline: baseline, st: newStore(), notes: map[string][]string{}, charts: map[string][]string{}, started: time.Now(), durs: map[string]time.Duration{}, startups: map[string]int{}}
	if out == "" {
		out = filepath.Join(root, "bench", "results", r.started.Format("2006-01-02"))
	}
	r.out, _ = filepath.Abs(out)
	r.raw = filepath.Join(r.out, "raw")
	for _, d := range []string{r.out, filepath.Join(r.raw, "logs"), filepath.Join(r.raw, "profiles")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Data dirs go under the system temp dir (same file system as the
	// machine-limit files, which the report states).
	if r.tmp, err = os.MkdirTemp("", "kvbench-"); err != nil {
		return err
	}
	if !keepTmp {
		defer os.RemoveAll(r.tmp)
	}
	logf("kvbench %s: results in %s, temp %s", cfg.mode, r.out, r.tmp)
	if t := cfg.totalBudget(); t > 0 {
		logf("expected duration on a quiet machine: %v (each scenario cut at %.1f× its share)", t, budgetCap)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(r.tmp, &fs); err == nil {
		free, need := int64(fs.Bavail)*int64(fs.Bsize), cfg.diskNeed()
		if free < need {
			logf("WARNING: %s has %.1f GB free, the run's largest data sizes need about %.1f GB: the recovery or scale scenario will fail for space (free some, or choose -scenarios)", r.tmp, float64(free)/1e9, float64(need)/1e9)
			r.note("machine", "the temp dir had %.1f GB free at the start, the run's largest data sizes need about %.1f GB", float64(free)/1e9, float64(need)/1e9)
		}
	}
	if err := r.build(); err != nil {
		return err
	}
	r.collectEnv()

	want := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	ctx := context.Background()
	machine := func(i int) {
		logf("machine limits (%d of 5)", i)
		if err := r.measureMachine(); err != nil {
			r.note("machine", "measurement %d failed: %v", i, err)
		}
	}
	machine(1)
	for _, sc := range scenarios {
		if len(want) > 0 && !want[sc.id] {
			r.skip(sc.id, "whole scenario", "not selected (-scenarios %s)", only)
			continue
		}
		switch sc.id {
		case "latency":
			machine(2)
		case "compaction":
			machine(3)
		case "scale":
			machine(4)
		}
		r.st.add("load", sc.id, "machine", "load1", "", loadAvg())
		logf("=== scenario %s (load average %.1f)", sc.id, loadAvg())
		start := time.Now()
		timeout := cfg.scenarioTimeout
		if b := cfg.budget[sc.id]; b > 0 {
			timeout = min(timeout, time.Duration(budgetCap*float64(b)))
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		err := safeRun(func() error { return sc.run(sctx, r) })
		cancel()
		r.durs[sc.id] = time.Since(start)
		r.ranScen = append(r.ranScen, sc.id)
		if err != nil {
			logf("scenario %s failed: %v", sc.id, err)
			r.skip(sc.id, "remaining measurements", "failed: %v", err)
		}
		r.elapsed = time.Since(r.started)
		r.st.writeJSON(filepath.Join(r.raw, "results.json"))
		r.saveState()
	}
	machine(5)
	r.st.add("load", "end", "machine", "load1", "", loadAvg())
	r.elapsed = time.Since(r.started)
	if err := r.st.writeJSON(filepath.Join(r.raw, "results.json")); err != nil {
		logf("raw results: %v", err)
	}
	if err := r.saveState(); err != nil {
		logf("raw state: %v", err)
	}
	path, err := r.writeReport()
	if err != nil {
		return err
	}
	logf("report: %s (%v)", path, time.Since(r.started).Round(time.Second))
	return nil
}

// safeRun turns a panic in a scenario into its error.
func safeRun(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			buf := make([]byte, 8<<10)
			buf = buf[:runtime.Stack(buf, false)]
			err = fmt.Errorf("panic: %v\n%s", p, buf)
		}
	}()
	return fn()
}

// build compiles kvlogd (the main module, without -race) and kfaked (this
// module, kfake from the module proxy), finds nats-server and checks whether
// kvlogd links the cleaner.
func (r *runner) build() error {
	bin := filepath.Join(r.tmp, "bin")
	r.bins.kvlogd = filepath.Join(bin, "kvlogd")
	r.bins.kfaked = filepath.Join(bin, "kfaked")
	logf("building kvlogd and kfaked")
	cmds := []*exec.Cmd{
		exec.Command("go", "build", "-o", r.bins.kvlogd, "./cmd/kvlogd"),
		exec.Command("go", "build", "-o", r.bins.kfaked, "./kfaked"),
	}
	cmds[0].Dir = r.root
	cmds[1].Dir = filepath.Join(r.root, "bench", "kvbench")
	for _, c := range cmds {
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(c.Args, " "), err, out)
		}
	}
	c := exec.Command("go", "list", "-deps", "./cmd/kvlogd")
	c.Dir = r.root
	deps, err := c.Output()
	if err != nil {
		return fmt.Errorf("go list -deps ./cmd/kvlogd: %v", err)
	}
	r.cleanerWired = slices.Contains(strings.Fields(string(deps)), "github.com/kvlog/kvlog/cleaner")
	if !r.cleanerWired {
		if _, err := os.Stat(filepath.Join(r.root, "cleaner")); err != nil {
			r.cleanerWhy = "the cleaner/ package is not in the tree"
		} else {
			r.cleanerWhy = "cleaner/ exists but kvlogd does not link it yet (`go list -deps ./cmd/kvlogd` has no github.com/kvlog/kvlog/cleaner): the broker never compacts"
		}
	}
	r.findKafka()
	if p, err := exec.LookPath("nats-server"); err == nil {
		r.bins.nats = p
		if v, err := exec.Command(p, "--version").Output(); err == nil {
			r.natsVersion = strings.TrimSpace(string(v))
		}
	}
	return nil
}

// available filters specs to the systems that can run here.
func (r *runner) available(scen string, names ...string) []sysSpec {
	var out []sysSpec
	for _, n := range names {
		s := specOf(n)
		if len(r.cfg.systems) > 0 && !slices.Contains(r.cfg.systems, n) {
			r.skip(scen, n, "not selected (-systems)")
			continue
		}
		if s.impl == "nats" && r.bins.nats == "" {
			r.skip(scen, n, "nats-server not installed (make tools-bench)")
			continue
		}
		if s.name == "kvlog-before" {
			if _, why := r.baselineBinary(); why != "" {
				r.skip(scen, n, "%s", why)
				continue
			}
		}
		if s.impl == "kafka" && r.kafkaCP == "" {
			r.skip(scen, n, "Apache Kafka unavailable: %s", r.kafkaWhy)
			continue
		}
		if s.impl == "kafka" && !r.cfg.kafkaEverywhere && !slices.Contains([]string{"produce", "consume", "latency", "txn", "restore"}, scen) {
			r.skip(scen, n, "the quick run has Apache Kafka in its produce, consume, latency, txn and restore cells only")
			continue
		}
		out = append(out, s)
	}
	return out
}

// rotate runs fn for every instance in every repetition, the order rotating
// each round (A B C, B C A, C A B, …) so that drift hits all alike.
func rotate[T any](reps int, items []T, fn func(rep int, it T) error) error {
	for rep := 0; rep < reps; rep++ {
		for i := range items {
			if err := fn(rep, items[(i+rep)%len(items)]); err != nil {
				return err
			}
		}
	}
	return nil
}

// profile captures a CPU profile of a kvlogd instance over seconds while
// work runs in a loop (work is called until the profile is done), and keeps
// `go tool pprof -top` of it for the report.
func (r *runner) profile(ctx context.Context, in *instance, scen, name string, seconds int, work func() error) {
	if in.spec.impl == "kafka" {
		r.profileKafka(ctx, in, scen, name, seconds, work)
		return
	}
	if in.spec.impl != "kvlogd" {
		return
	}
	file := r.profileFile(scen, name, ".pprof")
	// The load generator (this process: franz-go or the pre-encoded
	// requests) is profiled over the same window: when it, not kvlogd,
	// sets the rate, its profile says so.
	clientFile := strings.TrimSuffix(file, ".pprof") + "-client.pprof"
	var clientOut *os.File
	if f, err := os.Create(clientFile); err == nil {
		if pprof.StartCPUProfile(f) == nil {
			clientOut = f
		} else {
			f.Close()
		}
	}
	stopClient := func() {
		if clientOut != nil {
			pprof.StopCPUProfile()
			clientOut.Close()
			clientOut = nil
		}
	}
	defer stopClient()
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", in.http, seconds))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(file)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		f.Close()
		done <- err
	}()
	var perr error
	win, cwin, begin := startWindow(in.p.pid), startWindow(os.Getpid()), time.Now()
loop:
	for {
		select {
		case perr = <-done:
			break loop
		default:
		}
		if err := work(); err != nil {
			perr = err
			<-done
			break
		}
		if ctx.Err() != nil {
			perr = ctx.Err()
			<-done
			break
		}
	}
	stopClient()
	wall := time.Since(begin)
	bw, cw := win.end(wall), cwin.end(wall)
	if perr != nil {
		r.note(scen, "profile %s failed: %v", name, perr)
		return
	}
	if self, err := os.Executable(); err == nil {
		cw.System = "client"
		r.keepProfile(scen, "client (kvbench, the load generator) during "+name, self, clientFile, seconds, cw)
	}
	bw.System = in.spec.name
	r.keepProfile(scen, name, r.bins.kvlogd, file, seconds, bw)
}

// profileFile is where a profile of scen's window name goes: the name kept
// to letters, digits, '.', '-' and '_', since jcmd parses its filename
// argument (a quote, a '%' or a parenthesis in it fails the JFR dump).
func (r *runner) profileFile(scen, name, ext string) string {
	safe := strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
			return c
		case c == '=' || c == '\'' || c == '(' || c == ')':
			return -1
		}
		return '_'
	}, scen+"-"+name)
	return filepath.Join(r.raw, "profiles", safe+ext)
}

// keepProfile keeps `go tool pprof -top` (flat, then -cum) of a CPU profile
// of bin for the report.
func (r *runner) keepProfile(scen, name, bin, file string, seconds int, win profileTop) {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", bin, file).CombinedOutput()
	if err != nil {
		r.note(scen, "go tool pprof %s failed: %v", name, err)
		return
	}
	cum, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=25", bin, file).CombinedOutput()
	if err == nil {
		// The cumulative view without its repeated header.
		lines := strings.Split(string(cum), "\n")
		for i, l := range lines {
			if strings.Contains(l, "flat%") {
				out = append(append(out, "\n"...), strings.Join(lines[i:], "\n")...)
				break
			}
		}
	}
	// Keep the header and the top lines.
	var lines []string
	util := ""
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") {
			continue
		}
		if i := strings.Index(l, "Total samples = "); i >= 0 {
			if j := strings.Index(l[i:], "("); j >= 0 {
				util = strings.TrimSuffix(l[i+j+1:], ")")
			}
		}
		lines = append(lines, l)
	}
	win.Scenario, win.Name, win.File, win.Top, win.Util, win.Seconds = scen, name, filepath.Base(file), strings.Join(lines, "\n"), util, seconds
	if win.Wall > 0 {
		win.Top += "\nCPU from /proc over the window: " + win.cpuLine()
	}
	win.Frames = pprofFrames(lines)
	r.profiles = append(r.profiles, win)
}

// loadAvg is the 1-minute load average (/proc/loadavg).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	var v float64
	fmt.Sscan(string(b), &v)
	return v
}
