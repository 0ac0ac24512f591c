package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Scenario 9: many partitions on one broker (kvlog only). For each count
// P (10,000 and 30,000 in both runs, plus 5,000 where the previous build
// still works), a fresh kvlogd under this process's RLIMIT_NOFILE:
//
//   - creates P partitions (topics of 5,000, the most one CreateTopics
//     request may hold with room for the per-request record bound), timed;
//   - writes one 100-byte record to every partition (acks=1) and reads it
//     back (every partition readable and writable);
//   - reports the process's open descriptors (/proc/<pid>/fd), memory
//     mappings (/proc/<pid>/maps lines) and RSS;
//   - stops it (SIGTERM, shutdown timed) and restarts it: clean restart,
//     exec → serving, serving meaning a ListOffsets of every partition
//     answers each partition's end offset (the file systems are synced
//     before each restart, so the disk's write-back backlog is not timed);
//   - waits for a recovery-point checkpoint (interval 1 s), kills it
//     (SIGKILL) and restarts it: unclean restart, timed the same way.
//
// Before that, acks=all produce spread over P partitions (1, 1,000 and
// 10,000): kvlog (fsync before acknowledging, one group commit for every
// partition waiting) and kvlog-nofsync, each its own kvlogd, one topic of
// P partitions per system and count, the same records produced to it in
// alternating rounds, each round with both load generators (spreadProduce);
// the ratio is the median of the per-round ratios.
//
// "kvlog" is this tree; "kvlog-before" is kvlogd built from the git
// revision given with -baseline (the behaviour before the open-file
// budget), run the same way in the same run. A count the previous build
// cannot reach (EMFILE) is reported as failed, with the error.

// baselineBinary builds kvlog-before's kvlogd from the -baseline revision
// once, and returns it, or why there is none.
func (r *runner) baselineBinary() (bin, why string) {
	if r.baseline == "" {
		return "", "no -baseline revision given"
	}
	if r.baselineBin == "" && r.baselineErr == "" {
		if b, err := r.baselineBuild(r.baseline); err != nil {
			r.baselineErr = err.Error()
		} else {
			r.baselineBin = b
		}
	}
	return r.baselineBin, r.baselineErr
}

// baselineBuild builds kvlogd from git revision rev of the repository.
func (r *runner) baselineBuild(rev string) (string, error) {
	src := filepath.Join(r.tmp, "baseline-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.Command("git", "-C", r.root, "archive", rev)
	var tarball bytes.Buffer
	archive.Stdout = &tarball
	if err := archive.Run(); err != nil {
		return "", fmt.Errorf("git archive %s: %w", rev, err)
	}
	untar := exec.Command("tar", "-x", "-C", src)
	untar.Stdin = &tarball
	if out, err := untar.CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar: %v\n%s", err, out)
	}
	bin := filepath.Join(r.tmp, "bin", "kvlogd-baseline")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kvlogd")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the baseline kvlogd: %v\n%s", err, out)
	}
	return bin, nil
}

func scenPartitions(ctx context.Context, r *runner) error {
	type variant struct {
		name, bin string
	}
	vs := []variant{{"kvlog", r.bins.kvlogd}}
	if bin, why := r.baselineBinary(); why != "" {
		r.skip("partitions", "kvlog-before", "%s", why)
	} else {
		vs = append(vs, variant{"kvlog-before", bin})
	}
	var nofile string
	if b, err := exec.Command("sh", "-c", "ulimit -n").Output(); err == nil {
		nofile = strings.TrimSpace(string(b))
	}
	mapCount, _ := os.ReadFile("/proc/sys/vm/max_map_count")
	if len(r.cfg.spreadPartitions) == 0 {
		// -spread none
	} else if err := spreadProduce(ctx, r); err != nil {
		r.note("partitions", "spread produce failed: %s", firstLine(err.Error()))
	}
	r.note("partitions", "Process limits: RLIMIT_NOFILE %s, vm.max_map_count %s; kvlogd defaults otherwise (kvlog.max.open.files derived), log.flush.offset.checkpoint.interval.ms=1000.", nofile, strings.TrimSpace(string(mapCount)))
	for _, np := range r.cfg.manyPartitions {
		cell := fmt.Sprintf("P=%d", np)
		for _, v := range vs {
			if err := manyPartitions(ctx, r, cell, v.name, v.bin, np); err != nil {
				logf("  %s %s: %v", v.name, cell, err)
				r.note("partitions", "%s %s failed: %s", v.name, cell, firstLine(err.Error()))
			}
		}
	}
	return nil
}

// spreadProduce measures acks=all produce rates over many partitions with
// fsync on and off (scenario comment), with two load generators, each run
// with both (alternating which goes first):
//
//   - the pre-encoded requests of a spread cell (rawgen.go,
//     buildRawSpreadCell): what a producer with the Java client's defaults
//     sends when it is ahead of the broker — each request up to 1 MiB
//     with a batch of every partition it has records for, 5 requests
//     outstanding on one connection. These are the cell's main figures:
//     the generator costs almost no CPU, so the rate is the broker's;
//   - franz-go's producer with its defaults (kafkaProduce: idempotent, at
//     most 5 requests in flight per broker, 50,000 records buffered),
//     reported beside them ("kgo"): its window is its buffer, so it reads
//     the latency of each request more than the broker's rate.
//
// Each run also reads the broker's flush histogram
// (kvlog_log_flush_duration_seconds: one observation per group commit
// through the journal, one per log synced otherwise) before and after,
// for the commits per run and their mean duration.
func spreadProduce(ctx context.Context, r *runner) error {
	// kvlog-before (with -baseline) runs beside them: this tree's group
	// commit against the revision's, in the same rounds.
	ins, err := r.startAll(r.available("partitions", "kvlog", "kvlog-before", "kvlog-nojournal", "kvlog-nofsync"))
	if err != nil {
		return err
	}
	defer r.stopAll("partitions-spread", ins)
	version, err := produceVersion(ctx, ins[0].addr)
	if err != nil {
		return fmt.Errorf("ApiVersions: %w", err)
	}
	for _, np := range r.cfg.spreadPartitions {
		s := shape{partitions: int32(np), valueLen: 100, keys: 100_000, acks: "all", comp: "none"}
		cell := fmt.Sprintf("P=%d", np)
		topic := rawTopicName() // the pre-encoded requests need its length
		n := r.cfg.spreadRecords
		if np >= 10_000 {
			n = min(n, r.cfg.scaleManyRecords)
		}
		c, err := rawSpreadCellFor(s, 0, n, version)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", cell, err)
		}
		for _, in := range ins {
			if err := createGrown(ctx, in.addr, topic, np); err != nil {
				return fmt.Errorf("%s %s: %w", in.spec.name, cell, err)
			}
		}
		err = rotate(r.cfg.reps, ins, func(rep int, in *instance) error {
			gens := []string{genRaw, genKgo}
			if rep%2 == 1 {
				gens = []string{genKgo, genRaw}
			}
			for _, gen := range gens {
				f0 := flushStats(in.http)
				var st runStats
				var err error
				if gen == genRaw {
					st, err = rawProduce(ctx, in.addr, c, version, topic, []int{in.p.pid})
				} else {
					st, err = kafkaProduce(ctx, []string{in.addr}, topic, s, 0, n, []int{in.p.pid})
				}
				if err != nil {
					return fmt.Errorf("%s %s (%s generator): %w", in.spec.name, cell, gen, err)
				}
				r.addSpread(cell, in.spec.name, gen, st, f0, flushStats(in.http))
				logf("  %-15s spread %s rep %d %s: %8.0f rec/s, %4.0f req, %.1f ms/req, %.1f in flight, broker %.2f cores, client %.2f",
					in.spec.name, cell, rep, gen, st.recPerSec(), float64(st.reqs), st.reqMs, st.inFlight, st.cpu/st.elapsed.Seconds(), st.clientCPU/st.elapsed.Seconds())
			}
			return nil
		})
		if err == nil && np == 1000 {
			// The goal's cell, profiled with its main generator: with
			// fsync (the journal) and without.
			for _, in := range ins {
				if in.spec.name == "kvlog-nojournal" || in.spec.name == "kvlog-before" {
					continue
				}
				r.profile(ctx, in, "partitions", fmt.Sprintf("%s spread %s pre-encoded", in.spec.name, cell), r.cfg.profileSeconds, func() error {
					_, err := rawProduce(ctx, in.addr, c, version, topic, nil)
					return err
				})
			}
		}
		for _, in := range ins {
			deleteTopic(ctx, []string{in.addr}, topic)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// spreadPrefix namespaces a spread generator's metrics: none for the
// pre-encoded requests (the main figures), "kgo " for franz-go's.
func spreadPrefix(gen string) string {
	if gen == genKgo {
		return "kgo "
	}
	return ""
}

// addSpread records one spread run of generator gen; f0 and f1 are the
// broker's flush histogram before and after it.
func (r *runner) addSpread(cell, sys, gen string, st runStats, f0, f1 flushCount) {
	pre := spreadPrefix(gen)
	add := func(m, unit string, v float64) { r.st.add("partitions-spread", cell, sys, pre+m, unit, v) }
	sec := st.elapsed.Seconds()
	add("rec/s", "rec/s", st.recPerSec())
	add("broker busy", "cores", st.cpu/sec)
	add("client busy", "cores", st.clientCPU/sec)
	add("req ms", "ms", st.reqMs)
	add("req KiB", "KiB", st.reqKB)
	if st.reqs > 0 {
		add("records/req", "", float64(st.records)/float64(st.reqs))
	}
	if st.inFlight > 0 {
		add("in flight", "", st.inFlight)
	}
	if f0.ok && f1.ok {
		n := f1.count - f0.count
		add("flushes/s", "1/s", n/sec)
		if n > 0 {
			add("flush ms", "ms", (f1.sum-f0.sum)/n*1000)
			add("records/flush", "", float64(st.records)/n)
		}
		// Flushes over 51.2 ms: a journal trim's file-system sync, a
		// stall of every commit behind it.
		add("slow flushes", "", n-(f1.fast-f0.fast))
	}
}

// flushCount is kvlogd's flush histogram (kvlog_log_flush_duration_seconds):
// observations and their sum in seconds.
type flushCount struct {
	count, sum float64
	fast       float64 // observations of at most 51.2 ms (a bucket bound)
	ok         bool
}

// flushStats reads the flush histogram from kvlogd's /metrics.
func flushStats(httpAddr string) flushCount {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return flushCount{}
	}
	defer resp.Body.Close()
	var f flushCount
	seen := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		var dst *float64
		switch {
		case strings.HasPrefix(l, "kvlog_log_flush_duration_seconds_count "):
			dst = &f.count
		case strings.HasPrefix(l, "kvlog_log_flush_duration_seconds_sum "):
			dst = &f.sum
		case strings.HasPrefix(l, `kvlog_log_flush_duration_seconds_bucket{le="0.0512"} `):
			dst = &f.fast
		default:
			continue
		}
		fs := strings.Fields(l)
		if v, err := strconv.ParseFloat(fs[len(fs)-1], 64); err == nil {
			*dst = v
			seen++
		}
	}
	f.ok = seen == 3
	return f
}

// createGrown creates topic with n partitions: maxPartitionsPerCreate at
// creation, the rest added in steps (createTopic).
func createGrown(ctx context.Context, addr, topic string, n int) error {
	first := min(n, maxPartitionsPerCreate)
	if err := createMany(ctx, addr, topic, first); err != nil {
		return err
	}
	if n <= first {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestTimeoutOverhead(10*time.Minute))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32((10 * time.Minute).Milliseconds()))
	return growPartitions(ctx, adm, topic, int32(first), int32(n))
}

// spreadRatio is the fsync-on/off ratio of cell with the pre-encoded
// requests (NaN when not measured).
func (r *runner) spreadRatio(cell string) float64 { return r.spreadRatioOf(cell, "kvlog", genRaw) }

// spreadRatioOf is sys's rate over kvlog-nofsync's in cell with generator
// gen, the median of the per-round ratios.
func (r *runner) spreadRatioOf(cell, sys, gen string) float64 {
	m := spreadPrefix(gen) + "rec/s"
	return pairedRatio(r.st.get("partitions-spread", cell, sys, m), r.st.get("partitions-spread", cell, "kvlog-nofsync", m))
}

// spreadFlag and manyFlag are -spread and -many (empty: the mode's counts).
var spreadFlag, manyFlag string

// parseCounts parses a comma-separated list of positive counts.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// procCounts are a process's descriptors, mappings and RSS.
func procCounts(pid int) (fds, maps int, rssMB float64) {
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		fds = len(ents)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid)); err == nil {
		maps = bytes.Count(b, []byte{'\n'})
	}
	return fds, maps, pidUsage(pid).rssMB
}

func manyPartitions(ctx context.Context, r *runner, cell, name, bin string, np int) error {
	spec := specOf("kvlog")
	spec.name = name
	in, err := r.start(spec, "log.flush.offset.checkpoint.interval.ms=1000", "kvlog.fsync.acks.all=false")
	if err != nil {
		return err
	}
	if bin != r.bins.kvlogd {
		// Relaunch the same data dir and ports with the other binary.
		in.p.stop(60 * time.Second)
		in.bin = bin
		if err := in.launch(); err != nil {
			os.RemoveAll(in.root)
			return err
		}
	}
	defer in.stop()
	const perTopic = 5000
	var topics []string
	start := time.Now()
	for created := 0; created < np; created += perTopic {
		n := min(perTopic, np-created)
		topic := nextName("many-")
		if err := createMany(ctx, in.addr, topic, n); err != nil {
			fds, _, _ := procCounts(in.p.pid)
			return fmt.Errorf("creating partitions %d-%d (%d descriptors open): %w", created, created+n, fds, err)
		}
		topics = append(topics, topic)
	}
	create := time.Since(start)
	r.st.add("partitions", cell, name, "create s", "s", create.Seconds())
	fds, maps, rss := procCounts(in.p.pid)
	r.st.add("partitions", cell, name, "fds created", "", float64(fds))
	r.st.add("partitions", cell, name, "maps created", "", float64(maps))
	r.st.add("partitions", cell, name, "rss created MB", "MB", rss)
	logf("  %-12s %s: created in %.1f s; %d fds, %d maps, %.0f MB RSS", name, cell, create.Seconds(), fds, maps, rss)

	// One record to every partition, then read back.
	start = time.Now()
	if err := writeEvery(ctx, in.addr, topics, np); err != nil {
		return fmt.Errorf("writing every partition: %w", err)
	}
	r.st.add("partitions", cell, name, "write all s", "s", time.Since(start).Seconds())
	fds, maps, rss = procCounts(in.p.pid)
	r.st.add("partitions", cell, name, "fds written", "", float64(fds))
	r.st.add("partitions", cell, name, "maps written", "", float64(maps))
	r.st.add("partitions", cell, name, "rss written MB", "MB", rss)
	start = time.Now()
	if err := allAt(ctx, in.addr, topics, 1); err != nil {
		return fmt.Errorf("reading every partition: %w", err)
	}
	st, err := kafkaConsume(ctx, []string{in.addr}, topics[0], nil, nil, nil)
	if err != nil || st.records != int64(min(perTopic, np)) {
		return fmt.Errorf("consuming %s: %d records, %v", topics[0], st.records, err)
	}
	r.st.add("partitions", cell, name, "read s", "s", time.Since(start).Seconds())
	logf("  %-12s %s: written and read; %d fds, %d maps, %.0f MB RSS", name, cell, fds, maps, rss)

	// Clean restart. The disk's write-back of the shutdown is waited for
	// (sync) before the restart is timed, for both builds alike.
	start = time.Now()
	in.p.stop(10 * time.Minute)
	r.st.add("partitions", cell, name, "shutdown s", "s", time.Since(start).Seconds())
	syscall.Sync()
	serve, err := restartUntil(ctx, in, topics, 1)
	if err != nil {
		return fmt.Errorf("clean restart: %w", err)
	}
	r.st.add("partitions", cell, name, "clean restart s", "s", serve.Seconds())
	fds, maps, rss = procCounts(in.p.pid)
	r.st.add("partitions", cell, name, "fds restarted", "", float64(fds))
	r.st.add("partitions", cell, name, "maps restarted", "", float64(maps))
	r.st.add("partitions", cell, name, "rss restarted MB", "MB", rss)

	// Unclean restart: after a checkpoint, kill -9.
	time.Sleep(2500 * time.Millisecond)
	in.p.kill()
	syscall.Sync()
	userv, err := restartUntil(ctx, in, topics, 1)
	if err != nil {
		return fmt.Errorf("unclean restart: %w", err)
	}
	r.st.add("partitions", cell, name, "unclean restart s", "s", userv.Seconds())
	logf("  %-12s %s: clean restart %.2f s, unclean %.2f s", name, cell, serve.Seconds(), userv.Seconds())
	return nil
}

// createMany creates a topic of n partitions, waiting as long as the broker
// takes: a client-side timeout and retry would find the topic created by
// the first attempt (TOPIC_ALREADY_EXISTS), which counts as created when
// every partition is there.
func createMany(ctx context.Context, addr, topic string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequestTimeoutOverhead(10*time.Minute))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32((10 * time.Minute).Milliseconds()))
	resp, err := adm.CreateTopic(ctx, int32(n), 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return err
	}
	if td, ok := md.Topics[topic]; !ok || len(td.Partitions) != n {
		return fmt.Errorf("topic %s: %d partitions after creation, want %d", topic, len(td.Partitions), n)
	}
	return nil
}

// writeEvery writes one 100-byte record to every partition of topics.
func writeEvery(ctx context.Context, addr string, topics []string, np int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	val := bytes.Repeat([]byte("v"), 100)
	var recs []*kgo.Record
	for i, topic := range topics {
		n := min(5000, np-i*5000)
		for p := 0; p < n; p++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(p), Key: []byte(fmt.Sprint(p)), Value: val})
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return cl.ProduceSync(wctx, recs...).FirstErr()
}

// allAt checks that every partition of topics ends at offset end.
func allAt(ctx context.Context, addr string, topics []string, end int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RetryTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	qctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(qctx, topics...)
	if err != nil {
		return err
	}
	n := 0
	var bad error
	ends.Each(func(o kadm.ListedOffset) {
		n++
		if o.Err != nil || o.Offset != end {
			bad = fmt.Errorf("%s-%d: offset %d, %v", o.Topic, o.Partition, o.Offset, o.Err)
		}
	})
	if bad != nil {
		return bad
	}
	if n == 0 {
		return fmt.Errorf("no partitions listed")
	}
	return nil
}

// restartUntil starts in's process again and times exec → every partition
// listing its end offset.
func restartUntil(ctx context.Context, in *instance, topics []string, end int64) (time.Duration, error) {
	p, err := startProc(in.spec.name, in.bin, in.args, filepath.Join(in.r.raw, "logs", in.spec.name+".log"))
	if err != nil {
		return 0, err
	}
	in.p = p
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if kafkaPing(ctx, in.addr) == nil && allAt(ctx, in.addr, topics, end) == nil {
			return time.Since(p.start), nil
		}
		if !p.running() {
			return 0, fmt.Errorf("process exited:\n%s", p.tail.String())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("not serving after 10 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func reportPartitions(r *runner, w *md) {
	cells := slices.DeleteFunc(r.st.cells("partitions-spread"), func(c string) bool { return c == "peak RSS" })
	if len(cells) > 0 {
		w.p("acks=all produce of %d records (%d from 10,000 partitions up; 100-byte values, 100k keys) spread over P partitions: kvlog with fsync (its default: one group commit for every partition waiting, through the group-commit journal), the same without the journal (kvlog.journal.enable=false: the partitions' own files synced) and kvlog-nofsync, alternating rounds in this run; rec/s medians, ratios the median of per-round ratios (goal: ≥ 0.8 at 1,000 partitions, ≥ 0.5 at 10,000). "+
			"Two generators, each round running both (alternating which goes first), the same for every system: **pre-encoded** (the goal's figures) is what a producer with the Java client's defaults sends when it is ahead of the broker — the records cut in order into Produce requests of at most %s, each holding a batch of every partition it has records for, %d request(s) outstanding on %d connection (max.in.flight.requests.per.connection=%d), encoded before the clock so that the generator costs almost no CPU and the rate is the broker's; **franz-go** is franz-go's producer with its defaults (idempotent, at most 5 requests in flight per broker, 50,000 records buffered): its window is its buffer, so a longer round trip (the group commit's write and fsync) lowers its rate even when the broker is idle — the figure the previous reports gave.",
			r.cfg.spreadRecords, min(r.cfg.spreadRecords, r.cfg.scaleManyRecords), sizeName(rawSpreadRequestBytes), rawSpreadInFlight, rawSpreadConns, rawSpreadInFlight)
		g := func(c, sys, m string) string { return fnum(median(r.st.get("partitions-spread", c, sys, m))) }
		var rows [][]string
		for _, c := range cells {
			rows = append(rows, []string{c, g(c, "kvlog", "rec/s"), g(c, "kvlog-nojournal", "rec/s"), g(c, "kvlog-nofsync", "rec/s"),
				fx(r.spreadRatio(c)), fx(r.spreadRatioOf(c, "kvlog-nojournal", genRaw)),
				g(c, "kvlog", "kgo rec/s"), g(c, "kvlog-nofsync", "kgo rec/s"), fx(r.spreadRatioOf(c, "kvlog", genKgo)), fx(r.spreadRatioOf(c, "kvlog-nojournal", genKgo))})
		}
		w.table([]string{"Partitions", "kvlog rec/s (fsync, journal)", "kvlog-nojournal rec/s (fsync)", "kvlog-nofsync rec/s", "kvlog / nofsync", "nojournal / nofsync",
			"franz-go: kvlog rec/s", "franz-go: nofsync rec/s", "franz-go: kvlog / nofsync", "franz-go: nojournal / nofsync"}, rows)
		w.p("What set each rate (medians of the runs): the broker's and the generator's share of a core, the Produce requests (records per request, round trip as the generator saw it, requests outstanding as each was written — franz-go's, measured with its hooks; the pre-encoded generator keeps %d), and the broker's flushes from its kvlog_log_flush_duration_seconds histogram (with the journal: one per group commit, and a journal trim's file-system sync; without it: one per log synced or file-system sync; none with fsync off).", rawSpreadInFlight)
		var drows [][]string
		for _, c := range cells {
			for _, gen := range []string{genRaw, genKgo} {
				pre := spreadPrefix(gen)
				name := map[string]string{genRaw: "pre-encoded", genKgo: "franz-go"}[gen]
				for _, sys := range []string{"kvlog", "kvlog-before", "kvlog-nojournal", "kvlog-nofsync"} {
					if len(r.st.get("partitions-spread", c, sys, pre+"rec/s")) == 0 {
						continue
					}
					inflight := g(c, sys, pre+"in flight")
					if gen == genRaw {
						inflight = fmt.Sprint(rawSpreadInFlight)
					}
					drows = append(drows, []string{c, name, sys, g(c, sys, pre+"rec/s"), g(c, sys, pre+"broker busy"), g(c, sys, pre+"client busy"),
						g(c, sys, pre+"records/req"), g(c, sys, pre+"req ms"), inflight, g(c, sys, pre+"flushes/s"), g(c, sys, pre+"flush ms"), g(c, sys, pre+"records/flush"), g(c, sys, pre+"slow flushes")})
				}
			}
		}
		if r.baseline != "" {
			var brows [][]string
			for _, c := range cells {
				if len(r.st.get("partitions-spread", c, "kvlog-before", "rec/s")) == 0 {
					continue
				}
				pair := func(sys, gen string) string {
					m := spreadPrefix(gen) + "rec/s"
					return fx(pairedRatio(r.st.get("partitions-spread", c, sys, m), r.st.get("partitions-spread", c, "kvlog-before", m)))
				}
				brows = append(brows, []string{c, pair("kvlog", genRaw), fx(r.spreadRatioOf(c, "kvlog-before", genRaw)), fx(r.spreadRatio(c)),
					pair("kvlog", genKgo), fx(r.spreadRatioOf(c, "kvlog-before", genKgo)), fx(r.spreadRatioOf(c, "kvlog", genKgo))})
			}
			w.p("This tree's kvlog against kvlog-before (kvlogd of %s, defaults: fsync and the journal), in the same rounds: ratios the medians of per-round ratios.", r.baseline)
			w.table([]string{"Partitions", "kvlog / kvlog-before", "kvlog-before / nofsync", "kvlog / nofsync", "franz-go: kvlog / kvlog-before", "franz-go: kvlog-before / nofsync", "franz-go: kvlog / nofsync"}, brows)
		}
		w.table([]string{"Partitions", "Generator", "System", "rec/s", "broker cores", "generator cores", "records/request", "request ms", "requests outstanding", "flushes/s", "flush ms", "records/flush", "flushes > 51 ms per run"}, drows)
	}
	w.p("Fresh kvlogd per count and build; one record written to and read from every partition. Restart: exec → every partition's end offset listed.")
	var rows [][]string
	for _, c := range r.st.cells("partitions") {
		for _, sys := range r.st.systems("partitions", c) {
			g := func(m string) string { return fnum(median(r.st.get("partitions", c, sys, m))) }
			rows = append(rows, []string{c, sys, g("create s"), g("fds created"), g("maps created"), g("fds written"), g("maps written"), g("rss written MB"),
				g("write all s"), g("shutdown s"), g("clean restart s"), g("unclean restart s"), g("fds restarted")})
		}
	}
	w.table([]string{"Partitions", "Build", "create s", "fds after create", "maps after create", "fds after writes", "maps after writes", "RSS MB", "write all s", "shutdown s", "clean restart s", "unclean restart s", "fds after restart"}, rows)
}
