package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
// alternating rounds; the ratio is the median of the per-round ratios.
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
// fsync on and off (scenario comment).
func spreadProduce(ctx context.Context, r *runner) error {
	ins, err := r.startAll([]sysSpec{specOf("kvlog"), specOf("kvlog-nojournal"), specOf("kvlog-nofsync")})
	if err != nil {
		return err
	}
	defer r.stopAll("partitions-spread", ins)
	for _, np := range r.cfg.spreadPartitions {
		s := shape{partitions: int32(np), valueLen: 100, keys: 100_000, acks: "all", comp: "none"}
		cell := fmt.Sprintf("P=%d", np)
		topic := nextName("spread-")
		for _, in := range ins {
			if err := createGrown(ctx, in.addr, topic, np); err != nil {
				return fmt.Errorf("%s %s: %w", in.spec.name, cell, err)
			}
		}
		err := rotate(r.cfg.reps, ins, func(rep int, in *instance) error {
			n := r.cfg.spreadRecords
			if np >= 10_000 {
				n = min(n, r.cfg.scaleManyRecords)
			}
			st, err := kafkaProduce(ctx, []string{in.addr}, topic, s, 0, n, []int{in.p.pid})
			if err != nil {
				return fmt.Errorf("%s %s: %w", in.spec.name, cell, err)
			}
			r.st.add("partitions-spread", cell, in.spec.name, "rec/s", "rec/s", st.recPerSec())
			logf("  %-13s spread %s rep %d: %8.0f rec/s", in.spec.name, cell, rep, st.recPerSec())
			return nil
		})
		for _, in := range ins {
			deleteTopic(ctx, []string{in.addr}, topic)
		}
		if err != nil {
			return err
		}
	}
	return nil
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

// spreadRatio is the fsync-on/off ratio of cell (NaN when not measured).
func (r *runner) spreadRatio(cell string) float64 {
	return pairedRatio(r.st.get("partitions-spread", cell, "kvlog", "rec/s"), r.st.get("partitions-spread", cell, "kvlog-nofsync", "rec/s"))
}

// spreadNoJournalRatio is spreadRatio with kvlog.journal.enable=false.
func (r *runner) spreadNoJournalRatio(cell string) float64 {
	return pairedRatio(r.st.get("partitions-spread", cell, "kvlog-nojournal", "rec/s"), r.st.get("partitions-spread", cell, "kvlog-nofsync", "rec/s"))
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
	if cells := r.st.cells("partitions-spread"); len(cells) > 0 {
		w.p("acks=all produce of %d records (%d from 10,000 partitions up; 100-byte values, 100k keys, franz-go defaults) spread over P partitions: kvlog with fsync (its default: one group commit for every partition waiting, through the group-commit journal), the same without the journal (kvlog.journal.enable=false: the partitions' own files synced) and kvlog-nofsync, alternating rounds in this run; rec/s medians, ratio the median of per-round ratios (goal: ≥ 0.8 at 1,000 partitions, ≥ 0.5 at 10,000).", r.cfg.spreadRecords, min(r.cfg.spreadRecords, r.cfg.scaleManyRecords))
		var rows [][]string
		for _, c := range cells {
			if c == "peak RSS" {
				continue
			}
			rows = append(rows, []string{c, fnum(median(r.st.get("partitions-spread", c, "kvlog", "rec/s"))),
				fnum(median(r.st.get("partitions-spread", c, "kvlog-nojournal", "rec/s"))),
				fnum(median(r.st.get("partitions-spread", c, "kvlog-nofsync", "rec/s"))), fx(r.spreadRatio(c)), fx(r.spreadNoJournalRatio(c))})
		}
		w.table([]string{"Partitions", "kvlog rec/s (fsync, journal)", "kvlog-nojournal rec/s (fsync)", "kvlog-nofsync rec/s", "kvlog / nofsync", "nojournal / nofsync"}, rows)
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
