package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Apache Kafka's side of the profiles: Java Flight Recorder (JDK 17's
// built-in sampling profiler). With -kafka-jfr (the default), every Kafka
// node starts a recording with JFR's "default" settings (a Java stack
// sample of the running threads every 20 ms; the JDK documents this
// profile at about 1% overhead) after its start-up sample and stops it
// again before its JIT warm-up (the first start initialises JFR in the
// JVM, seconds on a loaded machine; that stays out of the start-up figures
// and the measured rounds). Each profile window starts the recording,
// runs the work, dumps the window (jcmd JFR.dump begin=…) and stops it,
// so the measured rounds carry none of its cost (-kafka-jfr-always keeps
// it running through them instead). A window's dump is summarised from its
// jdk.ExecutionSample events: the top frames (flat: the frame on CPU) and
// the frames on the most stacks (cumulative), beside kvlogd's pprof.
// Threads in native code (sendfile, fsync, socket copies) are not in
// ExecutionSample; the kernel's share is in the user/system split of the
// process's CPU read from /proc, and the CPU per Kafka thread group (from
// /proc/<pid>/task: network threads, request handlers, GC, JIT) says which
// threads spent it.

var (
	kafkaJFR       = flag.Bool("kafka-jfr", true, "profile Apache Kafka nodes with Java Flight Recorder (default settings) during the profile windows and summarise its samples beside kvlogd's profiles")
	kafkaJFRAlways = flag.Bool("kafka-jfr-always", false, "keep Kafka's JFR recording running through the measured rounds too (by default it runs only in the profile windows, so measured rounds carry none of its cost)")
)

const jfrRecording = "kvbench"

// jcmd runs `jcmd pid args…` with a deadline.
func jcmd(pid int, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "jcmd", append([]string{fmt.Sprint(pid)}, args...)...).CombinedOutput()
	if err == nil && strings.Contains(string(out), "Exception") {
		err = fmt.Errorf("%s", strings.TrimSpace(string(out)))
	}
	return string(out), err
}

// startJFR starts the continuous recording of a Kafka node (no-op when off,
// not Kafka, or already recording). The RSS the recording adds is kept
// (metric "jfr rss MB").
func (r *runner) startJFR(in *instance) {
	if !*kafkaJFR || in.spec.impl != "kafka" || in.jfrPID == in.p.pid {
		return
	}
	before := in.p.usage().rssMB
	start := time.Now()
	out, err := jcmd(in.p.pid, 2*time.Minute, "JFR.start", "name="+jfrRecording, "settings=default", "maxage=15m", "disk=true")
	if err != nil && !strings.Contains(out, "already") {
		r.note("startup", "%s: JFR.start failed (no Kafka profile): %v %s", in.spec.name, err, strings.TrimSpace(out))
		return
	}
	first := in.jfrPID != -in.p.pid // not a restart after jfrOverhead's stop
	in.jfrPID = in.p.pid
	if !first {
		return
	}
	r.st.add("jfr", "start", in.spec.name, "rss MB", "MB", in.p.usage().rssMB-before)
	r.st.add("jfr", "start", in.spec.name, "start s", "s", time.Since(start).Seconds())
	logf("  %s: JFR recording started in %.1f s (RSS +%.0f MB)", in.spec.name, time.Since(start).Seconds(), in.p.usage().rssMB-before)
}

// stopJFR stops the recording (a later startJFR starts it again).
func (r *runner) stopJFR(in *instance) {
	if in.jfrPID != in.p.pid {
		return
	}
	if out, err := jcmd(in.p.pid, 2*time.Minute, "JFR.stop", "name="+jfrRecording); err != nil {
		r.note("startup", "%s: JFR.stop failed: %v %s", in.spec.name, err, strings.TrimSpace(out))
		return
	}
	in.jfrPID = -in.p.pid
}

// dumpJFR writes the recording from begin to now into file.
func dumpJFR(in *instance, begin time.Time, file string) error {
	out, err := jcmd(in.p.pid, 2*time.Minute, "JFR.dump", "name="+jfrRecording, "begin="+begin.UTC().Format(time.RFC3339), "filename="+file)
	if err != nil {
		return fmt.Errorf("JFR.dump of %s: %v %s", in.spec.name, err, strings.TrimSpace(out))
	}
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("JFR.dump of %s wrote nothing: %s", in.spec.name, strings.TrimSpace(out))
	}
	return nil
}

// frameShare is one function's share of a profile's samples: flat (on
// top of the stack) and cumulative (anywhere on it).
type frameShare struct {
	Name      string
	Flat, Cum float64
}

var jfrArgs = regexp.MustCompile(`\(.*$`)

// jfrSamples summarises a recording's jdk.ExecutionSample events: the
// number of samples and every frame's flat and cumulative share.
func jfrSamples(file string) (int, []frameShare, error) {
	cmd := exec.Command("jfr", "print", "--stack-depth", "64", "--events", "jdk.ExecutionSample", file)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	n, out := parseJFRSamples(pipe)
	if err := cmd.Wait(); err != nil {
		return 0, nil, fmt.Errorf("jfr print %s: %w", filepath.Base(file), err)
	}
	return n, out, nil
}

// parseJFRSamples reads `jfr print --events jdk.ExecutionSample` text: the
// number of samples and every frame's flat share (top of a stack) and
// cumulative share (on a stack, counted once per stack), by flat share.
func parseJFRSamples(rd io.Reader) (int, []frameShare) {
	flat, cum := map[string]int{}, map[string]int{}
	n := 0
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in, first := false, true
	seen := map[string]bool{}
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "stackTrace = ["):
			in, first = true, true
			clear(seen)
			n++
		case in && l == "]":
			in = false
		case in && l != "" && l != "...":
			f := jfrArgs.ReplaceAllString(l, "")
			if first {
				flat[f]++
				first = false
			}
			if !seen[f] {
				seen[f] = true
				cum[f]++
			}
		}
	}
	var out []frameShare
	for f, c := range cum {
		out = append(out, frameShare{Name: f, Flat: float64(flat[f]) / float64(n), Cum: float64(c) / float64(n)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Flat != out[j].Flat {
			return out[i].Flat > out[j].Flat
		}
		return out[i].Name < out[j].Name
	})
	return n, out
}

// jfrTop renders the summary like `pprof -top`: the 15 top frames by flat
// share, then the 25 by cumulative share.
func jfrTop(n int, fr []frameShare, seconds int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "JFR jdk.ExecutionSample: %d samples of Java threads on CPU in %d s (a sample per running thread every 20 ms)\n", n, seconds)
	fmt.Fprintf(&b, "%7s %7s  %s\n", "flat%", "cum%", "frame")
	for i, f := range fr {
		if i == 15 {
			break
		}
		fmt.Fprintf(&b, "%6.1f%% %6.1f%%  %s\n", 100*f.Flat, 100*f.Cum, f.Name)
	}
	byCum := append([]frameShare(nil), fr...)
	sort.SliceStable(byCum, func(i, j int) bool { return byCum[i].Cum > byCum[j].Cum })
	fmt.Fprintf(&b, "\n%7s %7s  %s\n", "flat%", "cum%", "frame (by cumulative share)")
	for i, f := range byCum {
		if i == 25 {
			break
		}
		fmt.Fprintf(&b, "%6.1f%% %6.1f%%  %s\n", 100*f.Flat, 100*f.Cum, f.Name)
	}
	return b.String()
}

// profileKafka is r.profile for an Apache Kafka node: the recording's
// window while work runs in a loop for seconds.
func (r *runner) profileKafka(ctx context.Context, in *instance, scen, name string, seconds int, work func() error) {
	if !*kafkaJFR {
		return
	}
	r.startJFR(in)
	if in.jfrPID != in.p.pid {
		return
	}
	file := r.profileFile(scen, name, ".jfr")
	win := startWindow(in.p.pid)
	begin := time.Now()
	deadline := begin.Add(time.Duration(seconds) * time.Second)
	var err error
	for time.Now().Before(deadline) && err == nil && ctx.Err() == nil {
		err = work()
	}
	wall := time.Since(begin)
	pt := win.endNamed(wall, func() map[int]string { return javaThreadNames(in.p.pid) })
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = dumpJFR(in, begin, file)
	}
	if !*kafkaJFRAlways {
		r.stopJFR(in)
	}
	if err != nil {
		r.note(scen, "profile %s failed: %v", name, err)
		return
	}
	n, fr, err := jfrSamples(file)
	if err != nil {
		r.note(scen, "profile %s: %v", name, err)
		return
	}
	pt.Scenario, pt.Name, pt.File, pt.System, pt.Seconds = scen, name, filepath.Base(file), in.spec.name, int(wall.Round(time.Second).Seconds())
	pt.Top = jfrTop(n, fr, pt.Seconds) + pt.threadTable()
	pt.Frames = topFrames(fr, 30)
	r.profiles = append(r.profiles, pt)
}

// topFrames keeps the n frames with the largest flat shares and the n with
// the largest cumulative shares.
func topFrames(fr []frameShare, n int) []frameShare {
	keep := map[string]bool{}
	byFlat := append([]frameShare(nil), fr...)
	sort.SliceStable(byFlat, func(i, j int) bool { return byFlat[i].Flat > byFlat[j].Flat })
	byCum := append([]frameShare(nil), fr...)
	sort.SliceStable(byCum, func(i, j int) bool { return byCum[i].Cum > byCum[j].Cum })
	for i := 0; i < n && i < len(fr); i++ {
		keep[byFlat[i].Name], keep[byCum[i].Name] = true, true
	}
	var out []frameShare
	for _, f := range byFlat {
		if keep[f.Name] {
			out = append(out, f)
		}
	}
	return out
}

// pprofFrames reads the frames of `go tool pprof -top` output (the flat
// block, then the -cum block): each row is flat flat% sum% cum cum% name.
func pprofFrames(lines []string) []frameShare {
	byName := map[string]*frameShare{}
	var order []string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") || !strings.HasSuffix(f[4], "%") {
			continue
		}
		var flat, cum float64
		if _, err := fmt.Sscanf(f[1], "%f%%", &flat); err != nil {
			continue
		}
		if _, err := fmt.Sscanf(f[4], "%f%%", &cum); err != nil {
			continue
		}
		name := strings.Join(f[5:], " ")
		if byName[name] == nil {
			byName[name] = &frameShare{Name: name}
			order = append(order, name)
		}
		byName[name].Flat, byName[name].Cum = flat/100, cum/100
	}
	var out []frameShare
	for _, n := range order {
		out = append(out, *byName[n])
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Flat > out[j].Flat })
	return out
}

// jfrOverhead measures, once per run, what the recording costs Kafka's
// produce rate: rounds of work with the recording stopped and running, in
// alternating order, on Kafka's default node in the first profiled cell.
// Metrics "rate on/off" (per round: the time per repetition without ÷
// with) and "cpu on/off" (Kafka's CPU per repetition with ÷ without).
func (r *runner) jfrOverhead(ctx context.Context, in *instance, cell shape, work func() error) {
	if !*kafkaJFR || in.spec.name != "kafka" || len(r.st.cells("jfr-overhead")) > 0 {
		return
	}
	r.startJFR(in)
	if in.jfrPID != in.p.pid {
		return
	}
	// The same work's wall time and Kafka's CPU seconds: on a shared
	// machine the CPU the JVM spends on the same work is the steadier of
	// the two (the recording's cost is CPU in the JVM).
	// Each side repeats the work for at least a profile window, and its
	// figures are per repetition.
	var onCPU, offCPU float64
	timed := func(cpu *float64) (float64, error) {
		m := meterCPU(in.p.pid)
		start := time.Now()
		n := 0
		for n == 0 || time.Since(start) < time.Duration(r.cfg.profileSeconds)*time.Second {
			if err := work(); err != nil {
				return 0, err
			}
			n++
		}
		*cpu = m.seconds() / float64(n)
		return time.Since(start).Seconds() / float64(n), nil
	}
	if !*kafkaJFRAlways {
		defer r.stopJFR(in)
	}
	for rep := 0; rep < max(r.cfg.reps, 3); rep++ {
		var on, off float64
		withOff := func() (err error) {
			if r.stopJFR(in); in.jfrPID == in.p.pid {
				return fmt.Errorf("JFR did not stop")
			}
			off, err = timed(&offCPU)
			r.startJFR(in)
			if in.jfrPID != in.p.pid {
				return fmt.Errorf("JFR did not restart")
			}
			return err
		}
		withOn := func() (err error) {
			on, err = timed(&onCPU)
			return err
		}
		if err := paired(rep, withOn, withOff); err != nil {
			r.note("produce", "JFR overhead on %s: %v", in.spec.name, err)
			return
		}
		r.st.add("jfr-overhead", cell.String(), "kafka", "rate on/off", "×", off/on)
		r.st.add("jfr-overhead", cell.String(), "kafka", "cpu on/off", "×", onCPU/offCPU)
		logf("  JFR overhead, kafka %s rep %d: %.3f s and %.3f CPU s per run with the recording, %.3f s and %.3f CPU s without", cell, rep, on, onCPU, off, offCPU)
	}
}

// profileEnvRows are the Environment table's rows on the profilers.
func (r *runner) profileEnvRows() [][]string {
	over := "not measured in this run"
	for _, c := range r.st.cells("jfr-overhead") {
		v, cpu := r.st.get("jfr-overhead", c, "kafka", "rate on/off"), r.st.get("jfr-overhead", c, "kafka", "cpu on/off")
		over = fmt.Sprintf("Kafka's produce rate with the recording running ÷ without, %s, %d alternating rounds: %s; Kafka's CPU for the same work with ÷ without: %s (medians, min–max of the per-round ratios)", c, len(v), mr(v), mr(cpu))
		switch {
		case len(cpu) > 0 && minOf(cpu) > 1.02:
			over += ": every round cost Kafka more CPU with the recording, more than the JDK's ~1%, which is why by default it runs only in the profile windows"
		case len(cpu) > 0 && maxOf(cpu)-minOf(cpu) > 0.1:
			over += ": the rounds disagree by more than JFR's documented ~1%, the machine's noise at this load"
		}
	}
	rss := r.st.get("jfr", "start", "kafka", "rss MB")
	jfr := "off (-kafka-jfr=false): no Kafka profile"
	if *kafkaJFR || len(rss) > 0 {
		when := "recording only during the profile windows (jcmd JFR.start before, JFR.dump of the window and JFR.stop after), so the measured rounds carry none of its cost; JFR is first started and stopped after each node's start-up sample, before its JIT warm-up, so that its initialisation stays out of every figure"
		if *kafkaJFRAlways {
			when = "one continuous recording per Kafka node from the end of its start-up sample (start-up figures are without it; every measured round runs with it alike; -kafka-jfr-always)"
		}
		jfr = fmt.Sprintf("Java Flight Recorder, JDK's \"default\" settings (Java stack samples of running threads every 20 ms; documented at about 1%% overhead), %s; a window is summarised from its jdk.ExecutionSample events. Overhead: %s. RSS the recording added at its first start: %s MB (it stays in Kafka's peak RSS)", when, over, mr(rss))
	}
	return [][]string{
		{"Profiles", fmt.Sprintf("after a cell's measured rounds, %d s windows of the same work in a loop: kvlogd's CPU profile (pprof, 100 Hz) and the load generator's; Apache Kafka's JFR recording over the same kind of window; for each process its user and system (kernel) CPU from /proc/<pid>/stat over the window, and a JVM's CPU per thread group from /proc/<pid>/task", r.cfg.profileSeconds)},
		{"Kafka profiler", jfr},
	}
}
