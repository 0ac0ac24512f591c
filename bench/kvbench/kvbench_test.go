package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Unit tests of the harness's pure pieces (cd bench/kvbench && go test .);
// the scenarios themselves run under make bench-quick.

func TestStats(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatalf("median %v", m)
	}
	if m := median([]float64{math.NaN(), 5}); m != 5 {
		t.Fatalf("median ignores NaN: %v", m)
	}
	if !math.IsNaN(median(nil)) {
		t.Fatal("median of nothing")
	}
	// Paired: per-round ratios 2, 4, 1 → median 2 (the ratio of medians would be 1.5).
	if r := pairedRatio([]float64{2, 8, 3}, []float64{1, 2, 3}); r != 2 {
		t.Fatalf("paired ratio %v", r)
	}
	xs := []float64{}
	for i := 1; i <= 1000; i++ {
		xs = append(xs, float64(i))
	}
	p := percentiles(xs, 0.5, 0.99, 0.999, 1)
	if p[0] != 500 || p[1] != 990 || p[2] != 999 || p[3] != 1000 {
		t.Fatalf("percentiles %v", p)
	}
}

func TestStore(t *testing.T) {
	s := newStore()
	s.add("a", "c1", "x", "m", "u", 1)
	s.add("a", "c1", "y", "m", "u", 2)
	s.add("a", "c2", "x", "m", "u", 3)
	s.add("a", "c1", "x", "m", "u", 4)
	if got := s.get("a", "c1", "x", "m"); len(got) != 2 || got[1] != 4 {
		t.Fatalf("get %v", got)
	}
	if c := s.cells("a"); len(c) != 2 || c[0] != "c1" {
		t.Fatalf("cells %v", c)
	}
	if sy := s.systems("a", "c1"); len(sy) != 2 || sy[1] != "y" {
		t.Fatalf("systems %v", sy)
	}
}

func TestParseStatCPU(t *testing.T) {
	line := []byte("123 (kvl ogd) S 1 123 123 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0")
	v, err := parseStatCPU(line)
	if err != nil || v != 3 {
		t.Fatalf("%v %v", v, err)
	}
	if _, err := procCPUSeconds(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestKeyIndexCoversKeys(t *testing.T) {
	for _, keys := range []int{1000, 7919 * 2, 100_000} {
		seen := make([]bool, keys)
		for i := 0; i < keys; i++ {
			seen[keyIndex(i, keys)] = true
		}
		for k, ok := range seen {
			if !ok {
				t.Fatalf("keys=%d: key %d never written in the first cycle", keys, k)
			}
		}
	}
	if len(keyOf(99_999_999)) != keyLen || len(keySet(10)[9]) != keyLen {
		t.Fatal("key length")
	}
	for _, n := range []int{100, 1024} {
		for _, v := range valuePool(n) {
			if len(v) != n {
				t.Fatalf("value length %d, want %d", len(v), n)
			}
		}
	}
}

func TestRescanBytes(t *testing.T) {
	dir := t.TempDir()
	pd := filepath.Join(dir, "rec-0")
	os.MkdirAll(pd, 0o755)
	for name, size := range map[string]int{"00000000000000000000.log": 100, "00000000000000000010.log": 200, "00000000000000000020.log": 50, "00000000000000000020.index": 999} {
		os.WriteFile(filepath.Join(pd, name), make([]byte, size), 0o644)
	}
	if got := rescanBytes(dir, "rec-0"); got != 350 {
		t.Fatalf("no checkpoint: %d", got)
	}
	os.WriteFile(filepath.Join(dir, "recovery-point-offset-checkpoint"), []byte("0\n2\nother 0 99\nrec 0 15\n"), 0o644)
	if got := rescanBytes(dir, "rec-0"); got != 250 {
		t.Fatalf("rp 15: %d", got)
	}
	os.WriteFile(filepath.Join(dir, "recovery-point-offset-checkpoint"), []byte("0\n1\nrec 0 25\n"), 0o644)
	if got := rescanBytes(dir, "rec-0"); got != 50 {
		t.Fatalf("rp 25: %d", got)
	}
}

func TestFnum(t *testing.T) {
	for v, want := range map[float64]string{1234567: "1,234,567", 123.4: "123", 12.34: "12.3", 1.234: "1.23", 0.1234: "0.123", 0: "0"} {
		if got := fnum(v); got != want {
			t.Errorf("fnum(%v) = %q, want %q", v, got, want)
		}
	}
	if fnum(math.NaN()) != "–" {
		t.Error("NaN")
	}
}

func TestRunTB(t *testing.T) {
	cleaned := false
	skipped, err := runTB("x", t.TempDir(), t.Logf, func(tb *benchTB) {
		tb.Cleanup(func() { cleaned = true })
		tb.TempDir()
		tb.Fatalf("boom %d", 1)
	})
	if skipped || err == nil || err.Error() != "boom 1" || !cleaned {
		t.Fatalf("fatal: %v %v %v", skipped, err, cleaned)
	}
	skipped, err = runTB("x", t.TempDir(), t.Logf, func(tb *benchTB) { tb.Skip("no zk") })
	if !skipped || err == nil {
		t.Fatalf("skip: %v %v", skipped, err)
	}
	if _, err = runTB("x", t.TempDir(), t.Logf, func(tb *benchTB) {}); err != nil {
		t.Fatal(err)
	}
}

func TestWriteJSONWithNaN(t *testing.T) {
	s := newStore()
	s.add("a", "c", "x", "m", "u", math.NaN())
	s.add("a", "c", "x", "m", "u", 2)
	p := filepath.Join(t.TempDir(), "r.json")
	if err := s.writeJSON(p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), "null") || !strings.Contains(string(b), "2") {
		t.Fatalf("%s", b)
	}
	back := newStore()
	if err := back.readJSON(p); err != nil {
		t.Fatal(err)
	}
	if v := back.get("a", "c", "x", "m"); len(v) != 2 || !math.IsNaN(v[0]) || v[1] != 2 {
		t.Fatalf("read back %v", v)
	}
}

func TestCPUMeter(t *testing.T) {
	m := meterCPU(os.Getpid())
	x := 0
	for i := 0; i < 50_000_000; i++ {
		x += i % 7
	}
	_ = x
	if s := m.seconds(); s <= 0 || s > 10 {
		t.Fatalf("cpu %v", s)
	}
	a := cpuSnap{stat: 1, tasks: map[int]float64{1: 1, 2: 2}}
	if d := a.delta(cpuSnap{stat: 2, tasks: map[int]float64{1: 1.5, 2: 2.25, 3: 0.1}}); math.Abs(d-0.85) > 1e-9 {
		t.Fatalf("delta %v", d)
	}
	if d := a.delta(cpuSnap{stat: 3, tasks: map[int]float64{1: 1.5}}); d != 2 {
		t.Fatalf("exited thread: %v", d)
	}
}

func TestPairedAlternatesOrder(t *testing.T) {
	for rep, want := range []string{"ab", "ba", "ab"} {
		got := ""
		err := paired(rep, func() error { got += "a"; return nil }, func() error { got += "b"; return nil })
		if err != nil || got != want {
			t.Fatalf("rep %d: ran %q (%v), want %q", rep, got, err, want)
		}
	}
	ran := false
	if err := paired(1, func() error { ran = true; return nil }, func() error { return errors.New("first fails") }); err == nil || ran {
		t.Fatalf("error %v, second ran %v", err, ran)
	}
}

// TestKafkaCleanerStats: the passes of one topic and the seconds Kafka's
// LogCleaner reported for them are read from log-cleaner.log after a byte
// offset; other topics' passes and grouping commas are handled.
func TestKafkaCleanerStats(t *testing.T) {
	file := filepath.Join(t.TempDir(), "log-cleaner.log")
	old := "[2026-01-01 00:00:00,000] INFO [kafka-log-cleaner-thread-0]: Log cleaner thread 0 cleaned log t-0 (dirty section = [0, 10])\n\t1.0 MB of log processed in 9.0 seconds (0.1 MB/sec).\n"
	body := "[2026-01-01 00:00:01,000] INFO [kafka-log-cleaner-thread-0]: Log cleaner thread 0 cleaned log t-0 (dirty section = [10, 20])\n" +
		"\t1,200.0 MB of log processed in 1,234.5 seconds (1.0 MB/sec).\n\tBuffer utilization: 0.1%\n" +
		"[2026-01-01 00:00:02,000] INFO [kafka-log-cleaner-thread-0]: Log cleaner thread 0 cleaned log t2-0 (dirty section = [0, 5])\n" +
		"\t1.0 MB of log processed in 7.0 seconds (0.1 MB/sec).\n" +
		"[2026-01-01 00:00:03,000] INFO [kafka-log-cleaner-thread-0]: Log cleaner thread 0 cleaned log t-0 (dirty section = [20, 30])\n" +
		"\t0.5 MB of log processed in 0.5 seconds (1.0 MB/sec).\n"
	if err := os.WriteFile(file, []byte(old+body), 0o644); err != nil {
		t.Fatal(err)
	}
	passes, secs, end := kafkaCleanerStats(file, "t", int64(len(old)))
	if passes != 2 || secs != 1235 || end != int64(len(old)+len(body)) {
		t.Fatalf("passes %d seconds %v end %d", passes, secs, end)
	}
	if p, _, _ := kafkaCleanerStats(filepath.Join(t.TempDir(), "none"), "t", 0); p != 0 {
		t.Fatal("passes in a missing file")
	}
}

// TestKafkaPropsAndCheckpoint: kvlog-only settings are not given to
// Kafka; the cleaner checkpoint of a partition is read from Kafka's file.
func TestKafkaPropsAndCheckpoint(t *testing.T) {
	got := kafkaProps([]string{"kvlog.fsync.acks.all=false", "log.cleaner.backoff.ms=100"})
	if len(got) != 1 || got[0] != "log.cleaner.backoff.ms=100" {
		t.Fatalf("kafkaProps %v", got)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cleaner-offset-checkpoint"), []byte("0\n2\ncompact-1 0 974673\nother 0 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := kafkaCleanerCheckpoint(dir, "compact-1", 0); v != 974673 {
		t.Fatalf("checkpoint %d", v)
	}
	if v := kafkaCleanerCheckpoint(dir, "compact-2", 0); v != -1 {
		t.Fatalf("absent partition %d", v)
	}
	if v := jarVersion("/m/a.jar:/m/kafka_2.13-4.4.0.jar:/m/b.jar", "kafka_2.13-"); v != "4.4.0" {
		t.Fatalf("jarVersion %q", v)
	}
}

// TestRestoreWorkload checks the restore scenario's changelog shape: about
// one update in ten a tombstone, values parsed by the Streams application
// (a region field, about 100 bytes), and one application id per cell.
func TestRestoreWorkload(t *testing.T) {
	const n = 100_000
	tombs := 0
	for j := 0; j < n; j++ {
		if restoreTombstone(j) {
			tombs++
		}
	}
	if tombs < n/12 || tombs > n/8 {
		t.Fatalf("%d tombstones in %d updates, want about a tenth", tombs, n)
	}
	v := restoreValue(12345, valuePool(80)[0])
	if !strings.HasPrefix(string(v), "region=r1;score=") || len(v) < 90 || len(v) > 120 {
		t.Fatalf("value %q", v)
	}
	apps := map[string]bool{}
	for _, cfg := range []*config{quickConfig(), fullConfig()} {
		for _, c := range restoreCells(cfg) {
			if apps[cfg.mode+c.app] || c.configs["cleanup.policy"] != "compact" {
				t.Fatalf("%s cell %q: application id %q reused, or not compacted", cfg.mode, c.name, c.app)
			}
			apps[cfg.mode+c.app] = true
		}
		if cfg.restoreKeys <= 0 || cfg.restoreWrite <= 0 || cfg.restoreReps <= 0 {
			t.Fatalf("%s: restore sizes unset", cfg.mode)
		}
	}
}

// A Kafka restart whose JVM start varied more than its scan took used to
// print a negative scan rate (-0.0077 GB/s in a smoke run); it has no rate.
func TestScanRate(t *testing.T) {
	if v := scanRate(1000, 2, 1); v != 1 {
		t.Fatalf("1000 MB in 1 s beyond empty: %v GB/s", v)
	}
	for _, c := range [][3]float64{{34, 18.6, 23.0}, {34, 5, 5}, {0, 5, 1}, {math.NaN(), 5, 1}, {34, 5, math.NaN()}} {
		if v := scanRate(c[0], c[1], c[2]); !math.IsNaN(v) {
			t.Fatalf("scanRate%v = %v, want NaN", c, v)
		}
	}
}

// The full run's budget covers every scenario and fits the 61-minute quiet
// window; its largest data sizes need the disk space the Makefile states.
func TestFullBudget(t *testing.T) {
	c := fullConfig()
	if tot := c.totalBudget(); tot > 62*time.Minute {
		t.Fatalf("full run budget %v > 62 min", tot)
	}
	for _, sc := range scenarios {
		if c.budget[sc.id] <= 0 {
			t.Errorf("scenario %s has no budget", sc.id)
		}
	}
	if need := c.diskNeed(); need != 35*gb {
		t.Errorf("disk need %d GiB, the Makefile says 35 GiB", need/gb)
	}
	r := &runner{cfg: c, durs: map[string]time.Duration{"produce": 17 * time.Minute, "consume": time.Minute}}
	got := r.budgetList()
	if !strings.Contains(got, "produce 11m0s / 17m0s (cut)") || !strings.Contains(got, "consume 2m30s / 1m0s,") || !strings.Contains(got, "rebuild 2m0s / not run") {
		t.Fatalf("budget list %q", got)
	}
}

// TestConsumeReadsWhatWasWritten: kvlogd runs the consume scenario without
// its idle-segment compaction (a 1,000-key cell read after the roll was
// 1,000 records timed as a full read), Kafka gets no kvlog-only key, and a
// Kafka-protocol read short of the written records is an error.
func TestConsumeReadsWhatWasWritten(t *testing.T) {
	if !slices.Contains(consumeProps, "kvlog.cleaner.idle.roll.ms=0") {
		t.Fatalf("consume props %v keep kvlogd's idle roll", consumeProps)
	}
	if got := kafkaProps(consumeProps); len(got) != 0 {
		t.Fatalf("Kafka gets %v", got)
	}
	if err := checkReadAll(kafkaKind, 1000, 2_375_535); err == nil {
		t.Fatal("a read of 1,000 of 2,375,535 records passed")
	}
	if err := checkReadAll(kafkaKind, 2_375_536, 2_375_535); err != nil {
		t.Fatal(err)
	}
	if err := checkReadAll(natsKind, 10, 200_000); err != nil {
		t.Fatal(err)
	}
}

func TestParseLatencyPeaks(t *testing.T) {
	got, err := parseLatencyPeaks("kvlog=2029038, kafka=1440655")
	if err != nil || got["kvlog"] != 2029038 || got["kafka"] != 1440655 || len(got) != 2 {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"kafka", "kafka=0", "kafka=x", "kfake=1"} {
		if _, err := parseLatencyPeaks(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
