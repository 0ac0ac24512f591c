package main

import (
	"fmt"
	"math"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// Explanations generated from this run's profiles: for a missed goal, every
// profiled cell of its scenarios gives kvlogd's and Apache Kafka's CPU
// (cores, the kernel's share), their top frames, the load generator's CPU,
// and from those figures the limit they point to and the next step. No
// verdict here is written in advance: the same code says "the load
// generator" in one run and "kvlogd's CPU in <frame>" in another.

// profilePair is one profiled cell: kvlogd's window, the load generator's
// over the same window, and Apache Kafka's windows of the same work.
type profilePair struct {
	scen   string
	key    string
	kvlog  *profileTop
	client *profileTop
	kafka  []*profileTop
}

// profileKey is a profile's name without its system's name: the same work
// on another system has the same key.
func profileKey(p *profileTop) string {
	return strings.TrimSpace(strings.TrimPrefix(p.Name, p.System))
}

// pairsOf groups a scenario's profiles by cell. A Kafka window with no
// kvlog window of the same key joins the scenario's only kvlog window (the
// rebuild's library replay against the replay from Kafka).
func (r *runner) pairsOf(scen string) []*profilePair {
	var pairs []*profilePair
	byKey := map[string]*profilePair{}
	var loose []*profileTop
	for i := range r.profiles {
		p := &r.profiles[i]
		if p.Scenario != scen || p.System == "" || p.System == "client" {
			continue
		}
		if strings.HasPrefix(p.System, "kafka") {
			loose = append(loose, p)
			continue
		}
		if p.System != "kvlog" {
			continue
		}
		pp := &profilePair{scen: scen, key: profileKey(p), kvlog: p}
		for j := range r.profiles {
			c := &r.profiles[j]
			if c.Scenario == scen && c.System == "client" && strings.HasSuffix(c.Name, " during "+p.Name) {
				pp.client = c
			}
		}
		byKey[pp.key] = pp
		pairs = append(pairs, pp)
	}
	for _, k := range loose {
		if pp := byKey[profileKey(k)]; pp != nil {
			pp.kafka = append(pp.kafka, k)
		} else if len(pairs) == 1 {
			pairs[0].kafka = append(pairs[0].kafka, k)
		} else {
			pairs = append(pairs, &profilePair{scen: scen, key: profileKey(k), kafka: []*profileTop{k}})
		}
	}
	return pairs
}

var goModule = regexp.MustCompile(`^github\.com/kvlog/kvlog/`)

// shortFrame shortens a frame for a sentence: kvlog's module path dropped,
// a Java frame to Class.method.
func shortFrame(f string) string {
	f = goModule.ReplaceAllString(f, "")
	if strings.Contains(f, "/") || !strings.Contains(f, ".") || strings.Contains(f, "(") {
		return f
	}
	parts := strings.Split(f, ".")
	if len(parts) > 2 {
		return strings.Join(parts[len(parts)-2:], ".")
	}
	return f
}

// topFlat is "f1 31%, f2 12%, f3 8%" of a profile's n top flat frames.
func topFlat(p *profileTop, n int) string {
	var out []string
	for _, f := range p.Frames {
		if len(out) == n {
			break
		}
		if f.Flat <= 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%s %.0f%%", shortFrame(f.Name), 100*f.Flat))
	}
	if len(out) == 0 {
		return "no samples"
	}
	return strings.Join(out, ", ")
}

// syscallKinds are the kernel entries a kvlogd profile can spend its
// system time in, recognised by the frames above them.
var syscallKinds = []struct{ kind, what string }{
	{"Fdatasync", "fsync"}, {"Fsync", "fsync"}, {"Syncfs", "fsync"},
	{"endfile", "sendfile of segment bytes"}, {"Pwrite", "writes into segment files"}, {"(*File).Write", "writes into files"},
	{"ReadFrame", "reading requests from the socket"}, {"(*FD).Read", "socket reads"}, {"(*FD).Write", "socket writes"}, {"Writev", "socket writes"},
	{"Decompress", "decompression"}, {"crc32", "CRC32C"}, {"mallocgc", "allocation"}, {"gcBgMarkWorker", "the garbage collector"},
}

// kernelWork names the syscall family with the largest cumulative share
// in a kvlogd profile ("" when none shows).
func kernelWork(p *profileTop) (string, float64) {
	best, share := "", 0.0
	for _, f := range p.Frames {
		for _, k := range syscallKinds[:10] {
			if strings.Contains(f.Name, k.kind) && f.Cum > share {
				best, share = k.what, f.Cum
			}
		}
	}
	return best, share
}

// bound is what a profiled cell's figures say bounds it.
type bound struct {
	class string // "client", "cores", "wait", "kernel", "user"
	why   string // the figures behind it
	next  string // the next step they point to
}

func (r *runner) limitOf(pp *profilePair) bound {
	k := pp.kvlog
	if k == nil || k.Wall <= 0 {
		return bound{} // no window figures (a run from before they were kept)
	}
	cores := float64(runtime.NumCPU())
	kb, cb := k.busy(), 0.0
	if pp.client != nil {
		cb = pp.client.busy()
	}
	kw, kwShare := kernelWork(k)
	if pp.scen == "restore" {
		// The restore's client is the Streams application, its own JVM:
		// its CPU over its run, from the measured rounds.
		app := (median(r.st.get("restore", restoreDefaults, "kvlog", "app user s")) + median(r.st.get("restore", restoreDefaults, "kvlog", "app sys s"))) /
			median(r.st.get("restore", restoreDefaults, "kvlog", "app wall s"))
		if app > kb {
			return bound{"client", fmt.Sprintf("the Streams application was busy %.2f cores over its run (JVM start included) against kvlogd's %.2f: the application, not the broker, set the time", app, kb),
				"fewer records to restore (the broker's side of a restore) and a cheaper application per record (Kafka Streams' side); the broker is not the limit"}
		}
	}
	top := ""
	if len(k.Frames) > 0 {
		top = shortFrame(k.Frames[0].Name)
	}
	switch {
	case cb >= 0.7 && cb > kb && pp.scen == "rebuild":
		// The rebuild's client is the replay being measured (the
		// library's fetch, decode and table inserts).
		return bound{"client", fmt.Sprintf("the replaying client was busy %.2f cores against kvlogd's %.2f: the replay's own work, not the broker, set the time", cb, kb),
			fmt.Sprintf("cut the replay's client-side cost where its profile spends it (%s), e.g. decode and apply off the fetching goroutine and in parallel per partition", topFlat(pp.client, 3))}
	case cb >= 0.7 && cb > kb:
		return bound{"client", fmt.Sprintf("the load generator was busy %.2f cores against kvlogd's %.2f: it, not the broker, set the rate", cb, kb),
			"measure this cell with a lighter load generator or one on another machine before reading the ratio as the broker's; kvlogd had headroom"}
	case kb+cb >= 0.85*cores:
		return bound{"cores", fmt.Sprintf("kvlogd (%.2f cores) and the load generator (%.2f) filled the machine's %d cores", kb, cb, int(cores)),
			fmt.Sprintf("cut kvlogd's CPU per request where its profile spends it (%s)", topFlat(k, 3))}
	case kb < 0.5 && kw == "fsync":
		return bound{"wait", fmt.Sprintf("kvlogd was busy only %.2f cores and fsync is on %.0f%% of its sampled stacks: requests wait on the disk with the CPU idle", kb, 100*kwShare),
			"overlap the fsync of one request with the read and validation of the next (a pipelined connection), so the disk's wait is not the request's"}
	case kb < 0.5:
		return bound{"wait", fmt.Sprintf("kvlogd was busy only %.2f cores and the load generator %.2f: both wait, on round trips rather than CPU", kb, cb),
			"keep more work in flight per connection (requests pipelined, larger fetches), so the broker is not idle between requests"}
	case k.kernelShare() >= 0.5:
		w := kw
		if w == "" {
			w = "system calls"
		}
		return bound{"kernel", fmt.Sprintf("%.0f%% of kvlogd's %.2f cores was kernel time, the largest part under %s", 100*k.kernelShare(), kb, w),
			fmt.Sprintf("fewer, larger system calls for %s; the rest of the time is the kernel's copy, the same for any broker on this machine", w)}
	}
	return bound{"user", fmt.Sprintf("kvlogd was busy %.2f cores, %.0f%% of it in user space, led by %s", kb, 100*(1-k.kernelShare()), top),
		fmt.Sprintf("cut the top of kvlogd's profile: %s", topFlat(k, 3))}
}

// kafkaSide is one sentence on a Kafka window.
func kafkaSide(f *profileTop) string {
	s := fmt.Sprintf("%s %s; top Java frames %s", f.System, f.cpuLine(), topFlat(f, 3))
	if len(f.Threads) > 0 {
		var th []string
		for i, t := range f.Threads {
			if i == 3 {
				break
			}
			th = append(th, fmt.Sprintf("%s %.2f", t.Name, t.Flat))
		}
		s += "; busiest threads " + strings.Join(th, ", ")
	}
	return s
}

// whyFromProfiles is the generated part of a missed goal's explanation:
// per profiled cell of its scenarios, both brokers' figures and the limit
// they point to. "" when the run profiled none of them.
func (r *runner) whyFromProfiles(g goal) string {
	var cells, nexts []string
	for _, scen := range g.profiles {
		for _, pp := range r.pairsOf(scen) {
			var parts []string
			if pp.kvlog != nil {
				k := fmt.Sprintf("kvlogd %s; top %s", pp.kvlog.cpuLine(), topFlat(pp.kvlog, 3))
				if kw, share := kernelWork(pp.kvlog); kw != "" {
					k += fmt.Sprintf("; its largest system-call family %s (on %.0f%% of its samples)", kw, 100*share)
				}
				parts = append(parts, k)
				if pp.client != nil {
					parts = append(parts, fmt.Sprintf("load generator %.2f cores (top %s)", pp.client.busy(), topFlat(pp.client, 2)))
				}
			}
			for _, f := range pp.kafka {
				parts = append(parts, kafkaSide(f))
			}
			l := r.limitOf(pp)
			c := fmt.Sprintf("%s: %s", pp.key, strings.Join(parts, "; "))
			if l.why != "" {
				c += ". **Limit:** " + l.why
				if !slices.Contains(nexts, l.next) {
					nexts = append(nexts, l.next)
				}
			}
			cells = append(cells, c+".")
		}
	}
	if len(cells) == 0 {
		return ""
	}
	s := "**From this run's profiles** (each window after the cell's measured rounds; CPU in cores from /proc, frames from kvlogd's pprof and Kafka's JFR): " + strings.Join(cells, " ")
	if len(nexts) > 0 {
		s += " **Next step (from these figures):** " + strings.Join(nexts, "; ") + "."
	}
	return s
}

// limitTag is the limit class of a missed goal's first profiled cell, for
// the goals table ("" when not profiled).
func (r *runner) limitTag(g goal) string {
	for _, scen := range g.profiles {
		for _, pp := range r.pairsOf(scen) {
			if l := r.limitOf(pp); l.class != "" {
				return map[string]string{"client": "load generator", "cores": "machine's cores", "wait": "waiting (disk or round trips)", "kernel": "kernel time", "user": "kvlogd CPU"}[l.class]
			}
		}
	}
	return ""
}

// spread is "min–max" of a series, "–" when empty.
func spread(xs []float64) string {
	if len(finite(xs)) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s–%s", fx(minOf(xs)), fx(maxOf(xs)))
}

// relSpread is (max-min)/median of a series (NaN when empty).
func relSpread(xs []float64) float64 {
	if len(finite(xs)) == 0 {
		return math.NaN()
	}
	return (maxOf(xs) - minOf(xs)) / median(xs)
}

// profileWho names the profiled process for the report's profile listing.
func profileWho(pt profileTop) string {
	switch {
	case strings.HasPrefix(pt.Name, "client ") || pt.System == "client":
		return "kvbench (the load generator, same 2 cores)"
	case strings.HasPrefix(pt.System, "kafka"):
		return "Apache Kafka (" + pt.System + ", JFR)"
	}
	return "kvlogd"
}

// flatSpread is the flatness row's per-round spread at the largest size.
func (r *runner) flatSpread(cell string) string {
	p, t := r.st.get("scale-size", cell, "kvlog", "produce vs fresh"), r.st.get("scale-size", cell, "kvlog", "fetch tail vs fresh")
	if len(p) == 0 {
		return ""
	}
	s := fmt.Sprintf("; per-round ratios at %s: produce %s, fetch tail %s (%d rounds", cell, spread(p), spread(t), len(p))
	if *scaleSettle != "off" {
		s += ", page cache settled before each probe pair, pairs sliced"
	}
	return s + ")"
}

// scaleSpreadTable writes, per size, the spread of the per-round
// grown/fresh ratios and the dirty page cache at probe start; with
// -scale-settle both, the probe as before (unsettled) beside.
func (r *runner) scaleSpreadTable(w *md, sys string) {
	var rows [][]string
	both := false
	for _, c := range r.st.cells("scale-size") {
		g := func(m string) []float64 { return r.st.get("scale-size", c, sys, m) }
		if len(g("produce vs fresh")) == 0 {
			continue
		}
		row := []string{c, mr(g("produce vs fresh")), fnum(relSpread(g("produce vs fresh"))), mr(g("fetch tail vs fresh")), fnum(relSpread(g("fetch tail vs fresh"))), mr(g("produce cpu vs fresh")) + " / " + mr(g("fetch tail cpu vs fresh")), mr(g("dirty MB"))}
		if u := g("unsettled produce vs fresh"); len(u) > 0 {
			both = true
			row = append(row, mr(u), fnum(relSpread(u)), mr(g("unsettled fetch tail vs fresh")), fnum(relSpread(g("unsettled fetch tail vs fresh"))), mr(g("unsettled produce cpu vs fresh"))+" / "+mr(g("unsettled fetch tail cpu vs fresh")), mr(g("unsettled dirty MB")))
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return
	}
	head := []string{"Log size", "produce grown/fresh, median (min–max)", "spread (max−min)/median", "fetch tail grown/fresh", "spread", "broker CPU/GB grown/fresh: produce / fetch tail", "dirty MB at probe start"}
	mode := map[string]string{"on": "settled (the broker's data dir written back and evicted from the page cache before each pair; each pair in " + fmt.Sprint(*scaleSlicesFlag) + " alternating slices)", "off": "unsettled (one grown and one fresh run, the page cache as the run left it)", "both": "settled"}[*scaleSettle]
	if both {
		head = append(head, "unsettled: produce", "spread", "fetch tail", "spread", "CPU/GB produce / fetch tail", "dirty MB")
		mode += "; beside it, in the same rounds and run first, the probe as before (unsettled, one pair)"
	}
	w.p("Per-round grown/fresh ratios of %s: %s.", sys, mode)
	w.table(head, rows)
}

// profileHeader introduces a profile's listing in the report.
func profileHeader(pt profileTop, seconds int) string {
	if strings.HasPrefix(pt.System, "kafka") {
		return fmt.Sprintf("%s CPU profile: %s (%ds, raw recording `raw/profiles/%s`); the process was on CPU %s of the wall time (/proc), i.e. that share of one core. JFR's samples of Java threads on CPU by top frame (flat), then by frames on the stack (cumulative), then the process's CPU by Java thread name:", profileWho(pt), pt.Name, seconds, pt.File, pt.Util)
	}
	return fmt.Sprintf("%s CPU profile: %s (%ds, raw profile `raw/profiles/%s`); it was on CPU %s of the wall time, i.e. that share of one core. `go tool pprof -top` (flat), then `-top -cum` (where the time goes by call path):", profileWho(pt), pt.Name, seconds, pt.File, pt.Util)
}
