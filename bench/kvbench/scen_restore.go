package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/kafkaproc"
)

// Scenario 12: restore of a Kafka Streams state store. compat/java's
// Streams application (StreamsApp, the entity-changelog app: a KTable of
// user profiles in the RocksDB store "profiles", re-keyed and aggregated)
// is started with an empty state directory in its restore mode, restores
// its stores from changelogs written beforehand, reports the records its
// StateRestoreListener saw restored and the time from the first
// partition's restore start to the last one's end, and exits.
//
// Data, written once per system into APP_ID-profiles-changelog (the topic
// the application restores "profiles" from), every cell and both systems
// at the same time: keys × updates records ("user-%08d" keys, each key
// updated `updates` times at evenly spread points of the write, values
// "region=rN;score=N;…" of about 100 bytes as the application's String
// serde writes them, one update in ten a tombstone), paced evenly over the
// write period, then left idle for the idle period, so that each broker's
// cleaner acts as it would on a changelog written over a while and then
// quiet. Cells:
//
//   - defaults: cleanup.policy=compact and nothing else, Kafka's and kvlog's
//     defaults (segment.bytes 1 GiB, segment.ms 7 days,
//     min.cleanable.dirty.ratio 0.5, delete.retention.ms 1 day); restored
//     under at_least_once;
//   - defaults, transactional: the same records written by a transactional
//     producer, one transaction per 100 ms of records (what a Streams
//     application under exactly_once_v2 commits with its default
//     commit.interval.ms), every tenth aborted; restored under
//     exactly_once_v2, i.e. read_committed (aborted records are fetched and
//     dropped by the restore consumer, never restored);
//   - short times (and in the full run short times, transactional): the
//     same with segment.ms and delete.retention.ms set (identically on both
//     systems) short enough to pass within the scaled-down run, so that
//     what the cleaners do with time — kvlog's roll of an idle active
//     segment and its bounded tombstone lifetime against Kafka's roll on
//     append only — shows in the records left to restore.
//
// The workload writes 1M keys × 10 updates over 10 minutes; the
// run scales the key count and the write period down (config restoreKeys,
// restoreWrite, restoreIdle) and says so in the report.

// restoreCell is one changelog configuration.
type restoreCell struct {
	name    string
	app     string // application.id: the changelog is app + "-profiles-changelog"
	txn     bool
	configs map[string]string
}

// restorePartitions is the partition count of the application's input
// topics and so of its changelogs.
const restorePartitions = 2

// restoreUpdates is how many times each key is written.
const restoreUpdates = 10

func restoreCells(c *config) []restoreCell {
	short := map[string]string{"cleanup.policy": "compact",
		"segment.ms":          strconv.FormatInt(c.restoreSegmentMs.Milliseconds(), 10),
		"delete.retention.ms": strconv.FormatInt(c.restoreSegmentMs.Milliseconds(), 10)}
	shortName := fmt.Sprintf("segment.ms and delete.retention.ms %v", c.restoreSegmentMs)
	def := map[string]string{"cleanup.policy": "compact"}
	cells := []restoreCell{
		{restoreDefaults, "restore-def", false, def},
		{"defaults, transactional 10% aborted", "restore-def-eos", true, def},
		{shortName, "restore-short", false, short},
		{shortName + ", transactional 10% aborted", "restore-short-eos", true, short},
	}
	if c.mode == "quick" {
		cells = cells[:3] // the quick run's budget
	}
	return cells
}

// restoreDefaults is the cell that decides the goal.
const restoreDefaults = "defaults"

// measuredRestoreCells are the cells of the run's results (a report
// written again from raw data has them whatever the config says now).
func (r *runner) measuredRestoreCells() []restoreCell {
	var out []restoreCell
	for _, name := range r.st.cells("restore") {
		if name != "peak RSS" {
			out = append(out, restoreCell{name: name, txn: strings.Contains(name, "transactional")})
		}
	}
	// The changelogs were written concurrently: defaults first, plain
	// before transactional.
	rank := func(c restoreCell) int {
		n := 2
		if strings.HasPrefix(c.name, restoreDefaults) {
			n = 0
		}
		if c.txn {
			n++
		}
		return n
	}
	slices.SortStableFunc(out, func(a, b restoreCell) int { return rank(a) - rank(b) })
	return out
}

func (c restoreCell) guarantee() string {
	if c.txn {
		return "exactly_once_v2"
	}
	return "at_least_once"
}

// streamsClasspath is compat/java's classpath (its compiled classes and
// Kafka Streams 4.x), which `make tools-java` builds.
func streamsClasspath(root string) (string, error) {
	dir := filepath.Join(root, "compat", "java", "target")
	if _, err := os.Stat(filepath.Join(dir, "classes", "kvlog", "compat", "StreamsApp.class")); err != nil {
		return "", fmt.Errorf("compat/java is not built (make tools-java): %w", err)
	}
	cp, err := kafkaproc.ReadClasspath(filepath.Join(dir, "classpath-4.txt"))
	if err != nil {
		return "", fmt.Errorf("compat/java's classpath (make tools-java): %w", err)
	}
	return filepath.Join(dir, "classes") + ":" + cp, nil
}

func scenRestore(ctx context.Context, r *runner) error {
	if _, err := exec.LookPath("java"); err != nil {
		r.skip("restore", "whole scenario", "java is not installed (make tools-java)")
		return nil
	}
	cp, err := streamsClasspath(r.root)
	if err != nil {
		r.skip("restore", "whole scenario", "%v", err)
		return nil
	}
	specs := r.available("restore", "kvlog", "kafka")
	ins, err := r.startAll(specs, txnProps...)
	if err != nil {
		return err
	}
	defer r.stopAll("restore", ins)
	cells := restoreCells(r.cfg)
	keys := r.cfg.restoreKeys
	for _, in := range ins {
		addr := []string{in.addr}
		if err := createTopic(ctx, addr, streamsProfiles, restorePartitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
			return err
		}
		if err := createTopic(ctx, addr, streamsEvents, restorePartitions, 1, nil); err != nil {
			return err
		}
		for _, c := range cells {
			if err := createTopic(ctx, addr, c.app+"-profiles-changelog", restorePartitions, 1, c.configs); err != nil {
				return err
			}
		}
	}
	logf("restore: writing %d keys × %d updates into %d changelogs per system over %v, then idle %v", keys, restoreUpdates, len(cells), r.cfg.restoreWrite, r.cfg.restoreIdle)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		werr error
	)
	for _, in := range ins {
		for _, c := range cells {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w, err := writeChangelog(ctx, []string{in.addr}, c.app+"-profiles-changelog", keys, restoreUpdates, r.cfg.restoreWrite, c.txn)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					werr = fmt.Errorf("%s: writing %s: %w", in.spec.name, c.app, err)
					return
				}
				r.st.add("restore", c.name, in.spec.name, "written", "records", float64(w.written))
				r.st.add("restore", c.name, in.spec.name, "committed", "records", float64(w.committed))
				r.st.add("restore", c.name, in.spec.name, "write s", "s", w.elapsed.Seconds())
			}()
		}
	}
	wg.Wait()
	if werr != nil {
		return werr
	}
	// The idle period: nothing is written, each broker's cleaner does what
	// it does with a quiet changelog.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.cfg.restoreIdle):
	}
	for _, c := range cells {
		logf("restore cell %q (%s)", c.name, c.guarantee())
		err := rotate(r.cfg.restoreReps, ins, func(rep int, in *instance) error {
			res, err := r.streamsRestore(ctx, cp, in, c)
			if err != nil {
				return fmt.Errorf("%s %s: %w", in.spec.name, c.name, err)
			}
			r.st.add("restore", c.name, in.spec.name, "restore s", "s", res.RestoreMs/1000)
			r.st.add("restore", c.name, in.spec.name, "records", "records", float64(res.Records))
			r.st.add("restore", c.name, in.spec.name, "offsets", "offsets", float64(res.Offsets))
			r.st.add("restore", c.name, in.spec.name, "running s", "s", res.RunningMs/1000)
			r.st.add("restore", c.name, in.spec.name, "broker cpu", "CPU s", res.cpu)
			r.st.add("restore", c.name, in.spec.name, "app user s", "CPU s", res.appUser)
			r.st.add("restore", c.name, in.spec.name, "app sys s", "CPU s", res.appSys)
			r.st.add("restore", c.name, in.spec.name, "app wall s", "s", res.appWall)
			logf("  %-6s rep %d: restored %d records (%d offsets) in %.2f s; RUNNING %.1f s after start(); broker cpu %.2f s",
				in.spec.name, rep, res.Records, res.Offsets, res.RestoreMs/1000, res.RunningMs/1000, res.cpu)
			return nil
		})
		if err != nil {
			return err
		}
		if c.name == restoreDefaults {
			// The goal's cell, each broker profiled over one more restore
			// (kvlogd's pprof, Kafka's JFR), the window as long as the
			// application's run took in the measured rounds (its JVM start
			// and group join come before the restore itself).
			for _, in := range ins {
				secs := int(math.Ceil(median(r.st.get("restore", c.name, in.spec.name, "app wall s"))))
				secs = min(max(secs, r.cfg.profileSeconds), 120)
				r.profile(ctx, in, "restore", in.spec.name+" restore "+c.name, secs, func() error {
					_, err := r.streamsRestore(ctx, cp, in, c)
					return err
				})
			}
		}
	}
	return nil
}

// The Streams application's input topics (StreamsApp.java).
const (
	streamsProfiles = "user-profiles"
	streamsEvents   = "user-events"
)

// written is what writeChangelog wrote.
type written struct {
	written, committed int64
	elapsed            time.Duration
}

// restoreValue is update j's value: the Streams application's profile
// string, padded to about 100 bytes.
func restoreValue(j int, pad []byte) []byte {
	return fmt.Appendf(make([]byte, 0, 32+len(pad)), "region=r%d;score=%d;%s", j%8, (j*7919)%1000, pad)
}

// restoreTombstone: one update in ten deletes its key.
func restoreTombstone(j int) bool { return (uint64(j)*2654435761>>7)%10 == 0 }

// writeChangelog writes keys × updates records to topic, evenly paced over
// d (behind schedule it writes as fast as it can). Record j updates key
// keyIndex(j, keys), so each cycle of `keys` records writes every key once.
// A transactional writer commits one transaction per 100 ms of records and
// aborts every tenth.
func writeChangelog(ctx context.Context, addr []string, topic string, keys, updates int, d time.Duration, txn bool) (written, error) {
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks())}
	if txn {
		opts = append(opts, kgo.TransactionalID(nextName("kvbench-restore-")), kgo.TransactionTimeout(time.Minute))
	}
	cl, err := kafkaClient(addr, opts...)
	if err != nil {
		return written{}, err
	}
	defer cl.Close()
	n := keys * updates
	const tick = 100 * time.Millisecond
	chunk := max(1, int(int64(n)*int64(tick)/int64(max(d, tick))))
	ks, pads := keySet(keys), valuePool(80)
	var (
		w        written
		firstErr atomic.Pointer[error]
		pending  sync.WaitGroup
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
		pending.Done()
	}
	start := time.Now()
	for j, t := 0, 0; j < n; t++ {
		if wait := time.Until(start.Add(time.Duration(int64(d) * int64(j) / int64(n)))); wait > 0 {
			select {
			case <-ctx.Done():
				return w, ctx.Err()
			case <-time.After(wait):
			}
		}
		if txn {
			if err := cl.BeginTransaction(); err != nil {
				return w, err
			}
		}
		k := min(chunk, n-j)
		pending.Add(k)
		for i := 0; i < k; i, j = i+1, j+1 {
			rec := &kgo.Record{Key: ks[keyIndex(j, keys)]}
			if !restoreTombstone(j) {
				rec.Value = restoreValue(j, pads[j%len(pads)])
			}
			cl.Produce(ctx, rec, promise)
		}
		w.written += int64(k)
		if !txn {
			continue
		}
		if err := cl.Flush(ctx); err != nil {
			return w, err
		}
		pending.Wait()
		if p := firstErr.Load(); p != nil {
			return w, fmt.Errorf("transactional produce to %s: %w", topic, *p)
		}
		commit := kgo.TryCommit
		if t%10 == 9 {
			commit = kgo.TryAbort
		} else {
			w.committed += int64(k)
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			return w, fmt.Errorf("end transaction %d on %s: %w", t, topic, err)
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return w, err
	}
	pending.Wait()
	if p := firstErr.Load(); p != nil {
		return w, fmt.Errorf("produce to %s: %w", topic, *p)
	}
	if !txn {
		w.committed = w.written
	}
	w.elapsed = time.Since(start)
	return w, nil
}

// restoreResult is StreamsApp's RESTORED line, and the broker's CPU over
// the application's run.
type restoreResult struct {
	Records    int64   `json:"records"`
	Partitions int     `json:"partitions"`
	Offsets    int64   `json:"offsets"`
	RestoreMs  float64 `json:"restore_ms"`
	RunningMs  float64 `json:"running_ms"`
	cpu        float64
	// appUser, appSys: the Streams application's own user and system CPU
	// seconds over its whole run (JVM start included), and appWall its
	// wall time, for the explanation of a miss.
	appUser, appSys, appWall float64
}

// streamsRestore runs StreamsApp in restore mode for cell c against in
// with a fresh state directory and returns its report.
func (r *runner) streamsRestore(ctx context.Context, cp string, in *instance, c restoreCell) (restoreResult, error) {
	state, err := os.MkdirTemp(r.tmp, "streams-state-")
	if err != nil {
		return restoreResult{}, err
	}
	defer os.RemoveAll(state)
	logFile, err := os.OpenFile(filepath.Join(r.raw, "logs", "streams-restore.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return restoreResult{}, err
	}
	defer logFile.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(rctx, "java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", cp, "kvlog.compat.StreamsApp",
		in.addr, c.app, state, c.guarantee(), "restore", strconv.Itoa(restorePartitions))
	fmt.Fprintf(logFile, "==== %s %s %s on %s\n", time.Now().Format(time.RFC3339Nano), in.spec.name, c.name, in.addr)
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return restoreResult{}, err
	}
	m := meterCPU(in.p.pid)
	appStart := time.Now()
	if err := cmd.Start(); err != nil {
		return restoreResult{}, fmt.Errorf("starting the Streams application: %w", err)
	}
	var (
		res   restoreResult
		found bool
		other []string
	)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := sc.Text()
		fmt.Fprintln(logFile, l)
		if rest, ok := strings.CutPrefix(l, "RESTORED "); ok {
			found = json.Unmarshal([]byte(rest), &res) == nil
			continue
		}
		if len(other) < 20 {
			other = append(other, l)
		}
	}
	werr := cmd.Wait()
	res.cpu = m.seconds()
	if ps := cmd.ProcessState; ps != nil {
		res.appUser, res.appSys = ps.UserTime().Seconds(), ps.SystemTime().Seconds()
	}
	res.appWall = time.Since(appStart).Seconds()
	switch {
	case !found:
		return res, fmt.Errorf("the Streams application ended without reporting its restore (%v; log in raw/logs/streams-restore.log): %s", werr, strings.Join(other, "\n"))
	case res.Partitions != restorePartitions || res.Records <= 0 || math.IsNaN(res.RestoreMs):
		return res, fmt.Errorf("the Streams application restored %d records of %d partitions, want all %d partitions", res.Records, res.Partitions, restorePartitions)
	}
	return res, nil
}

// restoreFigures gives, for a cell, kvlog / kafka paired ratios of the
// restore time and of the records restored, and the medians behind them.
func (r *runner) restoreFigures(cell string) (timeRatio, recRatio float64, text string) {
	kt, ft := r.st.get("restore", cell, "kvlog", "restore s"), r.st.get("restore", cell, "kafka", "restore s")
	kr, fr := r.st.get("restore", cell, "kvlog", "records"), r.st.get("restore", cell, "kafka", "records")
	timeRatio, recRatio = pairedRatio(kt, ft), pairedRatio(kr, fr)
	text = fmt.Sprintf("%s: %s s vs %s s = %s; records restored %s vs %s = %s", cell, fnum(median(kt)), fnum(median(ft)), fx(timeRatio),
		fnum(median(kr)), fnum(median(fr)), fx(recRatio))
	return
}

// restoreGoal is the goals line against Apache Kafka: the defaults cell
// decides, the others are shown beside it.
func (r *runner) restoreGoal() goal {
	g := goal{goal: "Restore of a Kafka Streams state store (the entity-changelog app, keys × 10 updates with tombstones, written over a period then idle), both at default topic configs: restore time kvlog / Kafka; records restored on each",
		target: "≤ 0.5×", profiles: []string{"restore"}}
	cells := r.measuredRestoreCells()
	var parts []string
	var ok, ran bool
	for _, c := range cells {
		tr, _, text := r.restoreFigures(c.name)
		if math.IsNaN(tr) {
			continue
		}
		if c.name == restoreDefaults {
			ran, ok = true, tr <= 0.5
		}
		parts = append(parts, text)
	}
	if !ran {
		g.measured, g.verdict = "not run (see the restore scenario)", "not run"
		return g
	}
	keys := r.st.get("restore", restoreDefaults, "kvlog", "written")
	g.measured = strings.Join(parts, "; ") + fmt.Sprintf(" (%s records written per changelog over %v, idle %v: the issue's 1M keys over 10 minutes scaled down)",
		fnum(median(keys)), r.cfg.restoreWrite, r.cfg.restoreIdle)
	g.verdict = verdict(ok, ran)
	if !ok {
		c := restoreDefaults
		kr, fr := median(r.st.get("restore", c, "kvlog", "records")), median(r.st.get("restore", c, "kafka", "records"))
		if kr >= fr {
			g.measured += fmt.Sprintf(". Why: at default configs kvlog leaves no fewer records (neither cleaner touches a changelog in its active segment: segment.bytes 1 GiB, segment.ms 7 days), and the restore is bound by the Streams client, not the broker (broker CPU over the application's run %s s on kvlog, %s s on Kafka)",
				fnum(median(r.st.get("restore", c, "kvlog", "broker cpu"))), fnum(median(r.st.get("restore", c, "kafka", "broker cpu"))))
		}
	}
	return g
}

func reportRestore(r *runner, w *md) {
	w.p("compat/java's Kafka Streams %s application (StreamsApp: the KTable of user profiles in the RocksDB store \"profiles\", re-keyed and aggregated) started with an empty state directory restores its stores from changelogs written beforehand and exits; the time is its StateRestoreListener's, from the first partition's restore start to the last one's end (JVM start, group join and assignment excluded; they are in \"RUNNING after\", the time from start() to RUNNING, which on kvlog includes the group's initial rebalance delay, group.initial.rebalance.delay.ms 3 s by default, while the Kafka node runs with 0 as Kafka's shipped server.properties sets it). "+
		"Each changelog (%d partitions) got %s keys × %d updates, one in ten a tombstone, values of about 100 bytes, written evenly over %v into every changelog of both systems at once, then left idle %v (the issue's 1M keys written over 10 minutes, scaled down) so each cleaner did what it does with a quiet changelog. "+
		"Records restored are the listener's totals (tombstones included; under exactly_once_v2 the restore consumer reads committed data only, so aborted records are fetched and dropped, not restored); offsets is the restored offset range. kvlog and Kafka alternate per round; ratios are medians of per-round ratios. Kafka's and kvlog's default topic configs: segment.bytes 1 GiB, segment.ms 7 days, min.cleanable.dirty.ratio 0.5, delete.retention.ms 1 day.",
		r.kafkaVersion, restorePartitions, countName(r.cfg.restoreKeys), restoreUpdates, r.cfg.restoreWrite, r.cfg.restoreIdle)
	var rows [][]string
	for _, c := range r.measuredRestoreCells() {
		for _, sys := range r.st.systems("restore", c.name) {
			rows = append(rows, []string{c.name, c.guarantee(), sys,
				fnum(median(r.st.get("restore", c.name, sys, "written"))), fnum(median(r.st.get("restore", c.name, sys, "committed"))),
				fnum(median(r.st.get("restore", c.name, sys, "offsets"))), fnum(median(r.st.get("restore", c.name, sys, "records"))),
				mr(r.st.get("restore", c.name, sys, "restore s")), fnum(median(r.st.get("restore", c.name, sys, "running s"))),
				fnum(median(r.st.get("restore", c.name, sys, "broker cpu")))})
		}
		if tr, rr, _ := r.restoreFigures(c.name); !math.IsNaN(tr) {
			rows = append(rows, []string{c.name, "", "**kvlog / kafka**", "", "", "", fx(rr), fx(tr), "", ""})
		}
	}
	w.table([]string{"Changelog", "Guarantee", "System", "written", "committed", "offsets restored", "records restored", "restore s", "RUNNING after s", "broker CPU s"}, rows)
	w.p("The default-config cells decide the goal. With segment.bytes 1 GiB and segment.ms 7 days a changelog smaller than a segment stays in its active segment on both systems, which neither cleaner touches, so both restore every record written (committed ones under exactly_once_v2) and the difference is the restore path alone; the issue's full size (about 1.2 GB) would roll one segment, which both cleaners compact alike, and leave the rest in the active segment on both. The short-times cells show what each cleaner does with time once segment.ms and delete.retention.ms pass: Kafka rolls a segment only on append, so the last one stays uncleaned while the changelog is quiet, and a tombstone goes only in a pass after its horizon, which a quiet changelog below the dirty ratio may never get; kvlog rolls an idle active segment and cleans it, and expires tombstones of a quiet partition (kvlog.cleaner.bounded.tombstones).")
	r.rssTable(w, "restore")
}

// reportTxnRestore is the transactional restore figures in the
// transactions section.
func reportTxnRestore(r *runner, w *md) {
	var rows [][]string
	for _, c := range r.measuredRestoreCells() {
		if !c.txn {
			continue
		}
		for _, sys := range r.st.systems("restore", c.name) {
			rows = append(rows, []string{c.name, sys, fnum(median(r.st.get("restore", c.name, sys, "written"))), fnum(median(r.st.get("restore", c.name, sys, "committed"))),
				fnum(median(r.st.get("restore", c.name, sys, "records"))), mr(r.st.get("restore", c.name, sys, "restore s"))})
		}
		if tr, rr, _ := r.restoreFigures(c.name); !math.IsNaN(tr) {
			rows = append(rows, []string{c.name, "**kvlog / kafka**", "", "", fx(rr), fx(tr)})
		}
	}
	if len(rows) == 0 {
		return
	}
	w.h(3, "Restore of a Streams changelog with aborted transactions")
	w.p("From the restore scenario (section 12): a Kafka Streams application under exactly_once_v2 (read_committed) restores its state store from a changelog written transactionally, every tenth transaction aborted.")
	w.table([]string{"Changelog", "System", "written", "committed", "records restored", "restore s"}, rows)
}
