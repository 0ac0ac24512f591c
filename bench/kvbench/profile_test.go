package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The profile summaries and the explanations generated from them.

func TestParseJFRSamples(t *testing.T) {
	const text = `jdk.ExecutionSample {
  startTime = 23:12:08.938
  sampledThread = "main" (javaThreadId = 1)
  state = "STATE_RUNNABLE"
  stackTrace = [
    java.lang.String.hashCode() line: 2344
    Spin.work(int) line: 3
    Spin.main(String[]) line: 1
  ]
}

jdk.ExecutionSample {
  stackTrace = [
    Spin.work(int) line: 4
    Spin.work(int) line: 3
    Spin.main(String[]) line: 1
    ...
  ]
}
`
	n, fr := parseJFRSamples(strings.NewReader(text))
	if n != 2 {
		t.Fatalf("samples %d, want 2", n)
	}
	got := map[string]frameShare{}
	for _, f := range fr {
		got[f.Name] = f
	}
	// Spin.work is on top once, on both stacks (counted once per stack
	// though it is there twice).
	if w := got["Spin.work"]; w.Flat != 0.5 || w.Cum != 1 {
		t.Fatalf("Spin.work %+v, want flat 0.5 cum 1", w)
	}
	if m := got["Spin.main"]; m.Flat != 0 || m.Cum != 1 {
		t.Fatalf("Spin.main %+v", m)
	}
	if h := got["java.lang.String.hashCode"]; h.Flat != 0.5 {
		t.Fatalf("hashCode %+v", h)
	}
	if _, ok := got["..."]; ok {
		t.Fatal("the truncation mark counted as a frame")
	}
}

func TestPprofFrames(t *testing.T) {
	lines := strings.Split(`Type: cpu
Duration: 4s, Total samples = 1.20s (30.00%)
      flat  flat%   sum%        cum   cum%
     0.60s 50.00% 50.00%      0.60s 50.00%  internal/runtime/syscall.Syscall6
     0.30s 25.00% 75.00%      0.40s 33.33%  github.com/kvlog/kvlog/engine.(*Log).Append
      flat  flat%   sum%        cum   cum%
         0     0%     0%      1.10s 91.67%  github.com/kvlog/kvlog/wire.(*Conn).readLoop
     0.30s 25.00% 75.00%      0.40s 33.33%  github.com/kvlog/kvlog/engine.(*Log).Append`, "\n")
	fr := pprofFrames(lines)
	if len(fr) != 3 || fr[0].Name != "internal/runtime/syscall.Syscall6" || fr[0].Flat != 0.5 {
		t.Fatalf("frames %+v", fr)
	}
	for _, f := range fr {
		if strings.HasSuffix(f.Name, "readLoop") && (f.Flat != 0 || math.Abs(f.Cum-0.9167) > 1e-9) {
			t.Fatalf("readLoop %+v", f)
		}
	}
	if s := shortFrame(fr[1].Name); s != "engine.(*Log).Append" {
		t.Fatalf("short %q", s)
	}
	if s := shortFrame("org.apache.kafka.storage.internals.log.LogSegment.append"); s != "LogSegment.append" {
		t.Fatalf("short Java %q", s)
	}
}

// win is a profile window of busy cores with kernel share sys.
func win(system string, busy, sys float64, frames ...frameShare) *profileTop {
	return &profileTop{System: system, Wall: 10, User: 10 * busy * (1 - sys), Sys: 10 * busy * sys, Frames: frames}
}

func TestLimitOf(t *testing.T) {
	r := &runner{}
	fsync := frameShare{Name: "golang.org/x/sys/unix.Fdatasync", Flat: 0.1, Cum: 0.3}
	for _, c := range []struct {
		name          string
		kvlog, client *profileTop
		want          string
	}{
		{"client bound", win("kvlog", 0.3, 0.5), win("client", 0.95, 0.1), "client"},
		{"machine full", win("kvlog", 1.2, 0.2), win("client", 0.6, 0.1), "cores"},
		{"fsync wait", win("kvlog", 0.3, 0.3, fsync), win("client", 0.1, 0.1), "wait"},
		{"kernel", win("kvlog", 0.8, 0.7, frameShare{Name: "internal/poll.SendFile", Flat: 0.6, Cum: 0.7}), win("client", 0.3, 0.5), "kernel"},
		{"user", win("kvlog", 0.9, 0.1, frameShare{Name: "github.com/kvlog/kvlog/record.Decompress", Flat: 0.6, Cum: 0.6}), win("client", 0.2, 0.1), "user"},
	} {
		l := r.limitOf(&profilePair{kvlog: c.kvlog, client: c.client})
		if l.class != c.want || l.why == "" || l.next == "" {
			t.Errorf("%s: %+v, want class %s", c.name, l, c.want)
		}
	}
}

func TestWhyFromProfilesPairsKafka(t *testing.T) {
	r := &runner{profiles: []profileTop{
		{Scenario: "produce", System: "kvlog", Name: "kvlog produce 1p", Wall: 10, User: 2, Sys: 1, Frames: []frameShare{{Name: "syscall.Syscall6", Flat: 0.4, Cum: 0.4}}},
		{Scenario: "produce", System: "client", Name: "client (kvbench, the load generator) during kvlog produce 1p", Wall: 10, User: 9},
		{Scenario: "produce", System: "kafka-fsync", Name: "kafka-fsync produce 1p", Wall: 10, User: 3, Sys: 3, Frames: []frameShare{{Name: "org.apache.kafka.common.utils.Crc32C.compute", Flat: 0.2, Cum: 0.2}}},
		{Scenario: "consume", System: "kvlog", Name: "kvlog warm 1p", Wall: 10, User: 1},
	}}
	pairs := r.pairsOf("produce")
	if len(pairs) != 1 || pairs[0].client == nil || len(pairs[0].kafka) != 1 || pairs[0].key != "produce 1p" {
		t.Fatalf("pairs %+v", pairs)
	}
	s := r.whyFromProfiles(goal{profiles: []string{"produce"}})
	for _, want := range []string{"kafka-fsync 0.60 cores", "Crc32C.compute 20%", "load generator 0.90 cores", "**Limit:**", "**Next step"} {
		if !strings.Contains(s, want) {
			t.Errorf("explanation lacks %q:\n%s", want, s)
		}
	}
	if r.limitTag(goal{profiles: []string{"produce"}}) != "load generator" {
		t.Errorf("tag %q", r.limitTag(goal{profiles: []string{"produce"}}))
	}
	if r.whyFromProfiles(goal{profiles: []string{"rebuild"}}) != "" {
		t.Error("an explanation without profiles")
	}
}

func TestParseSizes(t *testing.T) {
	v, err := parseSizes("512M, 2G,1.5g")
	if err != nil || len(v) != 3 || v[0] != 512<<20 || v[1] != 2<<30 || v[2] != 3<<29 {
		t.Fatalf("%v %v", v, err)
	}
	if _, err := parseSizes("2X"); err == nil {
		t.Fatal("2X accepted")
	}
}

// TestSliced checks the flatness probe's slicing: the two sides alternate
// ABBA (each slice swaps which side goes first, and so does each round),
// and each side's runs add up.
func TestSliced(t *testing.T) {
	for rep := 0; rep < 2; rep++ {
		var order []string
		a := func(i int) (runStats, error) {
			order = append(order, "a")
			return runStats{records: 1, bytes: 10, elapsed: time.Second}, nil
		}
		b := func(i int) (runStats, error) {
			order = append(order, "b")
			return runStats{records: 2, bytes: 20, elapsed: 2 * time.Second}, nil
		}
		ra, rb, err := sliced(rep, 4, a, b)
		if err != nil {
			t.Fatal(err)
		}
		want := "abbaabba"
		if rep == 1 {
			want = "baabbaab"
		}
		if got := strings.Join(order, ""); got != want {
			t.Fatalf("round %d order %s, want %s", rep, got, want)
		}
		if ra.records != 4 || ra.bytes != 40 || ra.elapsed != 4*time.Second || rb.bytes != 80 || rb.elapsed != 8*time.Second {
			t.Fatalf("sums %+v %+v", ra, rb)
		}
	}
}

func TestParseThreadNames(t *testing.T) {
	const dump = `12345:
2026-12-07 23:40:00
Full thread dump OpenJDK 64-Bit Server VM (17.0.15+6-Debian-1deb12u1 mixed mode, sharing):

"data-plane-kafka-request-handler-3" #61 daemon prio=5 os_prio=0 cpu=812.50ms elapsed=95.20s tid=0x00007f0c3c0b6000 nid=0x5f1a waiting on condition  [0x00007f0bd97fe000]
   java.lang.Thread.State: TIMED_WAITING (parking)

"GC Thread#1" os_prio=0 cpu=120.00ms elapsed=94.00s tid=0x00007f0c1c001000 nid=0x5e03 runnable
`
	names := parseThreadNames(dump)
	if names[0x5f1a] != "data-plane-kafka-request-handler-3" || names[0x5e03] != "GC Thread#1" || len(names) != 2 {
		t.Fatalf("%v", names)
	}
	if g := threadNum.ReplaceAllString(names[0x5f1a], "N"); g != "data-plane-kafka-request-handler-N" {
		t.Fatalf("group %q", g)
	}
}

// TestExplainFlatness checks the flatness row's explanation is generated
// from the rounds: noise when the rounds of an out-of-band figure bracket
// 1, waiting when they agree with the broker's CPU per GB unchanged, the
// broker's work when its CPU per GB grows.
func TestExplainFlatness(t *testing.T) {
	for _, c := range []struct {
		name     string
		tail     []float64
		tailCPU  float64
		want     string
		unwanted string
	}{
		{"noise", []float64{0.5, 1.3, 0.7}, 1, "shared machine's noise", "does no more work per byte"},
		{"waiting", []float64{0.8, 0.82, 0.79}, 1.01, "does no more work per byte", "shared machine's noise"},
		{"broker", []float64{0.8, 0.82, 0.79}, 1.3, "broker's own work grows", "does no more work per byte"},
	} {
		r := &runner{st: newStore()}
		for i, v := range c.tail {
			r.st.add("scale-size", "6 GiB", "kvlog", "produce vs fresh", "×", 1+0.01*float64(i))
			r.st.add("scale-size", "6 GiB", "kvlog", "produce cpu vs fresh", "×", 1)
			r.st.add("scale-size", "6 GiB", "kvlog", "fetch tail vs fresh", "×", v)
			r.st.add("scale-size", "6 GiB", "kvlog", "fetch tail cpu vs fresh", "×", c.tailCPU)
		}
		s := r.explainFlatness()
		if !strings.Contains(s, c.want) || strings.Contains(s, c.unwanted) || !strings.Contains(s, "**Next step:**") {
			t.Errorf("%s: %s", c.name, s)
		}
	}
}

// TestProfileFileIsSafeForJcmd: a window named with a quote, a '%' and
// parentheses (the latency goal cell's) gets a file name jcmd accepts.
func TestProfileFileIsSafeForJcmd(t *testing.T) {
	r := &runner{raw: "raw"}
	got := r.profileFile("latency", "kafka at 50% of Kafka's peak (one more run, untimed)", ".jfr")
	if want := filepath.Join("raw", "profiles", "latency-kafka_at_50__of_Kafkas_peak_one_more_run__untimed.jfr"); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
