package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// The goals against Apache Kafka: the same run, medians of per-round ratios
// (kvlog and Kafka measured in the same round), each stating which
// durability pair it compares.

// ratioOfMedians is a/b of two series' medians, for figures measured once
// per instance rather than per round (RSS, start-up).
func ratioOfMedians(a, b []float64) float64 { return median(a) / median(b) }

func (r *runner) kafkaGoals() []goal {
	var gs []goal
	// Produce, acks=all cells.
	{
		var def, fs []float64
		var defBelow, fsBelow, all []string
		for _, c := range r.st.cells("produce") {
			if !strings.Contains(c, "acks=all") {
				continue
			}
			k := r.st.get("produce", c, "kvlog", "rec/s")
			d := pairedRatio(k, r.st.get("produce", c, "kafka", "rec/s"))
			f := pairedRatio(k, r.st.get("produce", c, "kafka-fsync", "rec/s"))
			if !math.IsNaN(d) {
				def = append(def, d)
				if d < 1 {
					defBelow = append(defBelow, c+" "+fx(d))
				}
			}
			if !math.IsNaN(f) {
				fs = append(fs, f)
				if f < 2 {
					fsBelow = append(fsBelow, c+" "+fx(f))
				}
			}
			all = append(all, fmt.Sprintf("%s %s / %s", c, fx(d), fx(f)))
		}
		m := fmt.Sprintf("kvlog (fsync) / kafka (no fsync): over %d acks=all cells median %s, min %s", len(def), fx(median(def)), fx(minOf(def)))
		if len(defBelow) > 0 {
			m += "; below 1 in: " + strings.Join(defBelow, ", ")
		}
		gs = append(gs, goal{"Produce acks=all, 1 and 8 partitions, 100 B and 1 KiB, none/lz4/zstd: kvlog (fsync) vs Kafka default (no fsync)", "≥ 1.0× in every cell", m, verdict(len(defBelow) == 0, len(def) > 0), []string{"produce"}})
		m = fmt.Sprintf("kvlog (fsync) / kafka-fsync (flush.messages=1): over %d cells median %s, min %s", len(fs), fx(median(fs)), fx(minOf(fs)))
		if len(fsBelow) > 0 {
			m += "; below 2 in: " + strings.Join(fsBelow, ", ")
		}
		gs = append(gs, goal{"Produce, same cells: kvlog (fsync) vs Kafka flush.messages=1 (equal durability)", "≥ 2× in every cell", m, verdict(len(fsBelow) == 0, len(fs) > 0), []string{"produce"}})
	}
	// Consume.
	{
		var parts, cpuParts []string
		ok, okCPU, ran := true, true, false
		for _, c := range r.st.cells("consume") {
			if c == "peak RSS" {
				continue
			}
			for _, mode := range []string{"warm", "cold"} {
				v := pairedRatio(r.st.get("consume", c, "kvlog", mode+" rec/s"), r.st.get("consume", c, "kafka", mode+" rec/s"))
				if math.IsNaN(v) {
					continue
				}
				ran = true
				ok = ok && v >= 1.5
				parts = append(parts, fmt.Sprintf("%s %s %s", c, mode, fx(v)))
			}
			v := pairedRatio(r.st.get("consume", c, "kvlog", "warm cpu/GB"), r.st.get("consume", c, "kafka", "warm cpu/GB"))
			if !math.IsNaN(v) {
				okCPU = okCPU && v <= 0.5
				cpuParts = append(cpuParts, fmt.Sprintf("%s: %s vs %s CPU s/GB = %s", c, fnum(median(r.st.get("consume", c, "kvlog", "warm cpu/GB"))), fnum(median(r.st.get("consume", c, "kafka", "warm cpu/GB"))), fx(v)))
			}
		}
		gs = append(gs, goal{"Consume from 0, warm and cold: kvlog / kafka", "≥ 1.5×", "records/s " + strings.Join(parts, "; "), verdict(ok, ran), []string{"consume"}})
		gs = append(gs, goal{"Consume: broker CPU per GB out, kvlog / kafka (warm)", "≤ 0.5×", strings.Join(cpuParts, "; "), verdict(okCPU, len(cpuParts) > 0), []string{"consume"}})
	}
	// Latency.
	{
		var parts []string
		ok, ran := true, false
		for _, pair := range [][2]string{{"kvlog", "kafka-fsync"}, {"kvlog-nofsync", "kafka"}} {
			v := pairedRatio(r.st.get("latency", kafkaLatencyCell, pair[0], "p99"), r.st.get("latency", kafkaLatencyCell, pair[1], "p99"))
			if math.IsNaN(v) {
				continue
			}
			ran = true
			ok = ok && v <= 0.5
			parts = append(parts, fmt.Sprintf("%s / %s p99 %s (%s vs %s ms)", pair[0], pair[1], fx(v),
				fnum(median(r.st.get("latency", kafkaLatencyCell, pair[0], "p99"))), fnum(median(r.st.get("latency", kafkaLatencyCell, pair[1], "p99")))))
		}
		gs = append(gs, goal{"End-to-end latency at 50% of Kafka's peak rate, equal durability", "p99 ≤ 0.5×", strings.Join(parts, "; "), verdict(ok, ran), []string{"latency"}})
	}
	// Memory.
	{
		k, kf := r.st.get("produce", "peak RSS", "kvlog", "peak_rss"), r.st.get("produce", "peak RSS", "kafka", "peak_rss")
		v := ratioOfMedians(k, kf)
		gs = append(gs, goal{"Peak RSS under the produce matrix, kvlog / kafka", "≤ 0.25×", fmt.Sprintf("%s MB vs %s MB = %s (kvlog-nofsync %s MB, kafka-fsync %s MB)", fnum(median(k)), fnum(median(kf)), fx(v),
			fnum(median(r.st.get("produce", "peak RSS", "kvlog-nofsync", "peak_rss"))), fnum(median(r.st.get("produce", "peak RSS", "kafka-fsync", "peak_rss")))), verdict(v <= 0.25, !math.IsNaN(v)), []string{"produce"}})
		ik, ikf := r.st.get("startup", "empty", "kvlog", "idle RSS"), r.st.get("startup", "empty", "kafka", "idle RSS")
		iv := ratioOfMedians(ik, ikf)
		gs = append(gs, goal{"Idle RSS: kvlog / kafka, and idle kvlogd", "≤ 0.25×; kvlogd ≤ 32 MiB", fmt.Sprintf("kvlogd %s MB (%s MiB) vs kafka %s MB = %s (%d and %d fresh starts, %v after the first produce)",
			fnum(median(ik)), fnum(median(ik)*1e6/(1<<20)), fnum(median(ikf)), fx(iv), len(ik), len(ikf), idleWait), verdict(iv <= 0.25 && median(ik)*1e6/(1<<20) <= 32, !math.IsNaN(iv)), nil})
	}
	// Start to first produce.
	{
		e := ratioOfMedians(r.st.get("startup", "empty", "kvlog", "first produce s"), r.st.get("startup", "empty", "kafka", "first produce s"))
		parts := []string{fmt.Sprintf("empty: %s s vs %s s = %s (topic creation included)", fnum(median(r.st.get("startup", "empty", "kvlog", "first produce s"))), fnum(median(r.st.get("startup", "empty", "kafka", "first produce s"))), fx(e))}
		ok, ran := e <= 0.1, !math.IsNaN(e)
		withData := false
		cells := slices.DeleteFunc(r.st.cells("recovery"), func(c string) bool { return c == "peak RSS" })
		if len(cells) > 0 {
			c := cells[len(cells)-1]
			k := r.st.get("recovery", c, "kvlog clean restart", "first produce s")
			kf := r.st.get("recovery", c, "kafka clean restart", "first produce s")
			if v := pairedRatio(k, kf); !math.IsNaN(v) {
				ok, withData = ok && v <= 0.1, true
				parts = append(parts, fmt.Sprintf("with %s of data (clean restart): %s s vs %s s = %s", c, fnum(median(k)), fnum(median(kf)), fx(v)))
				if kc := pairedRatio(r.st.get("recovery", c, "kvlog unflushed", "first produce s"), r.st.get("recovery", c, "kafka unflushed", "first produce s")); !math.IsNaN(kc) {
					parts = append(parts, fmt.Sprintf("after kill -9, unflushed (both recover the whole log): %s", fx(kc)))
				}
			} else {
				parts = append(parts, "with data: not measured in this run")
			}
			if !strings.HasPrefix(c, "10 GiB") {
				parts = append(parts, "(the issue's 10 GiB is the full run's largest size)")
			}
		}
		v := verdict(ok, ran)
		if ran && !withData {
			v += " (empty only; with data not run)"
		}
		gs = append(gs, goal{"Start to first produce, empty and with 10 GiB of data: kvlog / kafka", "≤ 0.1×", strings.Join(parts, "; "), v, nil})
	}
	// Cleaner.
	{
		var parts []string
		ok, ran := true, false
		okFill, fillRan := true, false
		for i, c := range slices.DeleteFunc(r.st.cells("compaction"), func(c string) bool { return c == "peak RSS" }) {
			k := r.st.get("compaction", c, "kvlog", "records/cpu-s")
			if v := pairedRatio(k, r.st.get("compaction", c, "kafka", "records/cpu-s")); !math.IsNaN(v) {
				ran = true
				ok = ok && v >= 3
				parts = append(parts, fmt.Sprintf("%s: kvlog/kafka per core %s", c, fx(v)))
			}
			if i == 1 {
				if f := pairedRatio(r.st.get("compaction", c, "kvlog-smallmap", "records/cpu-s"), k); !math.IsNaN(f) {
					fillRan = true
					okFill = f >= 0.9
					parts = append(parts, fmt.Sprintf("kvlog map full / map large %s", fx(f)))
				}
				if f := pairedRatio(r.st.get("compaction", c, "kafka-smallmap", "records/cpu-s"), r.st.get("compaction", c, "kafka", "records/cpu-s")); !math.IsNaN(f) {
					parts = append(parts, fmt.Sprintf("Kafka map full / map large %s", fx(f)))
				}
				if v := pairedRatio(r.st.get("compaction", c, "kvlog-smallmap", "records/cpu-s"), r.st.get("compaction", c, "kafka-smallmap", "records/cpu-s")); !math.IsNaN(v) {
					parts = append(parts, fmt.Sprintf("kvlog/kafka, both maps full, per core %s", fx(v)))
				}
			}
		}
		m := strings.Join(parts, "; ")
		gs = append(gs, goal{"Cleaner throughput per core on the same compacted data, kvlog / Kafka's LogCleaner", "≥ 3×", m, verdict(ok, ran), []string{"compaction"}})
		gs = append(gs, goal{"No cleaner collapse when the map fills", "≥ 0.9× of the large-map rate", m, verdict(okFill, fillRan), []string{"compaction"}})
	}
	// Rebuild.
	{
		var parts []string
		ok, ran := true, false
		for _, c := range slices.DeleteFunc(r.st.cells("rebuild"), func(c string) bool { return c == "peak RSS" }) {
			lib := r.st.get("rebuild", c, "kvlog library", "seconds")
			kf := r.st.get("rebuild", c, "kafka raw+map", "seconds")
			v := pairedRatio(lib, kf)
			if math.IsNaN(v) {
				continue
			}
			ran = true
			ok = ok && v <= 0.5
			parts = append(parts, fmt.Sprintf("%s: kvlog library %s s vs a franz-go replay from Kafka %s s = %s (kvlog raw+map / kafka raw+map %s)", c, fnum(median(lib)), fnum(median(kf)), fx(v),
				fx(pairedRatio(r.st.get("rebuild", c, "kvlog raw+map", "seconds"), kf))))
		}
		gs = append(gs, goal{"Rebuild 1M live keys (replay to HW), time kvlog / Kafka", "≤ 0.5×", strings.Join(parts, "; ") + reducedNote(r.cfg.rebuildKeys < 1_000_000), verdict(ok, ran), []string{"rebuild"}})
	}
	gs = append(gs, r.restoreGoal())
	return gs
}

// writeKafkaGoals writes the goals table against Apache Kafka and the
// start-up figures behind two of its lines.
func (r *runner) writeKafkaGoals(w *md) {
	w.h(2, "Goals against Apache Kafka")
	if r.kafkaCP == "" && len(r.st.systems("produce", "")) > 0 && !slices.Contains(r.st.systems("produce", ""), "kafka") {
		w.p("Apache Kafka did not run: %s.", r.kafkaWhy)
	}
	w.p("Apache Kafka %s (Maven jars, %s) as one KRaft node, kafka-server-start.sh's JVM flags with its 1 GiB heap; the replicated peer is Kafka %s in ZooKeeper mode. Durability pairs: **kvlog** (fsync before acknowledging acks=all) against **kafka-fsync** (flush.messages=1: fsync after every append) is like for like; **kafka** is Kafka's default (page cache, no fsync — acknowledged data can be lost on power failure), like **kvlog-nofsync** (kvlog.fsync.acks.all=false). Every Kafka node first runs %s records through, unmeasured (JIT warm-up).",
		orDash(r.kafkaVersion), orDash(r.javaVersion), orDash(r.kafka39Version), countName(kafkaWarmRecords))
	if r.cfg.producer != genKgo {
		w.p("The produce rows are driven by the same pre-encoded requests for kvlog and Kafka (acks=all without idempotence, one batch of ≤ 1 MB per request, pipelined; see Environment), so that the client's batching and compression, which franz-go does on the same two cores, do not set the rate; the consume, latency and other rows use franz-go for both.")
	}
	var rows [][]string
	for _, g := range r.kafkaGoals() {
		v := g.verdict
		if t := r.limitTag(g); t != "" && strings.Contains(v, "missed") {
			v += " (limit from the profile: " + t + ")"
		}
		rows = append(rows, []string{g.goal, g.target, orDashM(g.measured), v})
	}
	w.table([]string{"Goal", "Target", "Measured (this run, medians of per-round ratios)", "Verdict"}, rows)
	var srows [][]string
	for _, sys := range r.st.systems("startup", "empty") {
		srows = append(srows, []string{sys, mr(r.st.get("startup", "empty", sys, "first produce s")), mr(r.st.get("startup", "empty", sys, "idle RSS"))})
	}
	if len(srows) > 0 {
		w.p("Start-up with an empty data dir (exec → the first acks=all produce acknowledged, its topic created on the way), and RSS (VmRSS) %v later with nothing to do; first %d fresh starts of each system in the run:", idleWait, r.cfg.startupSamples)
		w.table([]string{"System", "start → first produce, s", "idle RSS MB"}, srows)
	}
	for _, n := range r.notes["startup"] {
		w.p("Note: %s", n)
	}
}

func orDashM(s string) string {
	if strings.TrimSpace(s) == "" {
		return "–"
	}
	return s
}
