package main

import (
	"fmt"
	"math"
	"strings"
)

// Explanations of the goals against Apache Kafka that a run can miss: what
// this run's own figures say bounds the rate (the broker's and the load
// generator's share of a core, CPU per GB), what the profiles taken while
// writing this harness showed, and the next step. Printed under "Misses and
// what limits them" beside the profiles of this run.

// explainMiss returns the explanation of a missed goal ("" when there is
// none).
func (r *runner) explainMiss(g goal) string {
	switch {
	case strings.HasPrefix(g.goal, "Consume from 0, warm and cold"):
		return r.explainConsume()
	case strings.HasPrefix(g.goal, "Produce, same cells: kvlog (fsync) vs Kafka flush.messages=1"):
		return r.explainProduceFsync()
	case strings.HasPrefix(g.goal, "Produce acks=all, 1 and 8 partitions"):
		return r.explainProduceDefault()
	case strings.HasPrefix(g.goal, "No cleaner collapse"), strings.HasPrefix(g.goal, "No cleaner slowdown"):
		return r.explainCleaner()
	case strings.HasPrefix(g.goal, "Rebuild 1M live keys"):
		return r.explainRebuild()
	case strings.HasPrefix(g.goal, "Throughput flat"):
		return r.explainFlatness()
	case strings.HasPrefix(g.goal, "Restore of a Kafka Streams state store"):
		return r.explainRestore()
	case strings.HasPrefix(g.goal, "acks=all over 1000 partitions"):
		return r.explainSpread()
	case strings.HasPrefix(g.goal, "Produce throughput ≥ kfake in memory") && r.cfg.producer != genKgo:
		return "**Why:** with the pre-encoded requests kfake is not doing the same work: it stores each batch as it arrives, without decompressing a compressed batch or walking its records, where kvlog checks every record of every batch (and decompresses lz4/zstd batches to do so: 63% of kvlogd's CPU in the zstd cell's profile) before appending and, at acks=all, fsyncs. In the uncompressed cells the two do comparable work; there the kvlogd profile shows the connection reading, validating, appending and syncing one request at a time. **Next step:** the pipelined connection and the streaming validation of §3 (see the Kafka goals' explanations); a compressed-cell ratio against kfake stays a ratio against a broker that skips validation."
	}
	return ""
}

// busy is the median share of a core of a system's broker or of the load
// generator ("client") in a cell's runs with metric prefix.
func (r *runner) busy(scen, cell, sys, prefix, who string) float64 {
	return median(r.st.get(scen, cell, sys, prefix+who+" busy"))
}

func cores(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func (r *runner) explainConsume() string {
	var parts []string
	for _, c := range r.st.cells("consume") {
		if c == "peak RSS" {
			continue
		}
		for _, pre := range []string{"warm ", "kgo warm "} {
			kb, kc := r.busy("consume", c, "kvlog", pre, "broker"), r.busy("consume", c, "kvlog", pre, "client")
			fb, fc := r.busy("consume", c, "kafka", pre, "broker"), r.busy("consume", c, "kafka", pre, "client")
			if math.IsNaN(kc) && math.IsNaN(fc) {
				continue
			}
			who := "the batch-counting consumer"
			if strings.HasPrefix(pre, "kgo") || r.cfg.consumer == genKgo {
				who = "franz-go's consumer"
			}
			parts = append(parts, fmt.Sprintf("%s, %s: kvlog %s MB/s with kvlogd busy %s cores and the consumer %s; Kafka %s MB/s with Kafka busy %s and the consumer %s",
				c, who, fnum(median(r.st.get("consume", c, "kvlog", pre+"MB/s"))), cores(kb), cores(kc), fnum(median(r.st.get("consume", c, "kafka", pre+"MB/s"))), cores(fb), cores(fc)))
		}
	}
	s := "**Why:** "
	if len(parts) > 0 {
		s += "warm reads in this run — " + strings.Join(parts, "; ") + fmt.Sprintf(" (loopback TCP: %s MB/s, sendfile of a cached file: %s MB/s). ", fnum(r.machineLimit("tcp")), fnum(r.machineLimit("sendfile")))
	}
	s += "Warm: both brokers serve the log with sendfile(2), and the reachable ceiling on this machine is loopback sendfile of a cached file (measured above; \"loopback TCP\" writes one buffer that stays in the CPU cache, which no broker serving files can match): 1.5× Kafka warm needs more than that ceiling wherever Kafka is near it. kvlogd's own CPU there is sendfile's TCP work and Go's scheduler wake-ups (about 120 sendfile calls of ~250 KB per 16 MiB answer at the default 100 KiB send buffer; in A/B a 1 MiB send buffer cost 1.2–1.5× the CPU per GB with no gain, and write(2) from the mapping instead of sendfile gave no steady gain). With franz-go's consumer the client, which decodes every record and checks every CRC on the same two cores, sets the rate for both brokers. " +
		"Cold: before sending the first byte kvlog checks every batch header of the range it will send (it never sends a damaged batch), and on a cold log those checks are synchronous 4 KiB disk reads spread over the range (about 60 per 16 MiB answer), while Kafka sends the byte range and lets sendfile's sequential read-ahead run; advising read-ahead of the whole range, or of the header pages from the offset index, lost in same-run A/B (0.57–0.83×). " +
		"**Next step:** send while checking: take the range from the offset index, check each batch header as sendfile reaches it and end the answer before a damaged batch, so the disk's read-ahead and the checks overlap; for the warm rate, measure with the consumer on another machine (a real NIC instead of loopback), where the broker's own cost decides."
	return s
}

// belowCells lists the acks=all produce cells where kvlog/peer is below min,
// with the broker's and the generator's share of a core.
func (r *runner) belowCells(peer string, min float64) []string {
	var out []string
	for _, c := range r.st.cells("produce") {
		if !strings.Contains(c, "acks=all") {
			continue
		}
		v := pairedRatio(r.st.get("produce", c, "kvlog", "rec/s"), r.st.get("produce", c, peer, "rec/s"))
		if math.IsNaN(v) || v >= min {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s (kvlogd busy %s cores, generator %s; %s busy %s; request round trip kvlog %s ms, %s %s ms)", c, fx(v),
			cores(r.busy("produce", c, "kvlog", "", "broker")), cores(r.busy("produce", c, "kvlog", "", "client")), peer, cores(r.busy("produce", c, peer, "", "broker")),
			fnum(median(r.st.get("produce", c, "kvlog", "req ms"))), peer, fnum(median(r.st.get("produce", c, peer, "req ms")))))
	}
	return out
}

func (r *runner) explainProduceFsync() string {
	s := "**Why:** "
	if b := r.belowCells("kafka-fsync", 2); len(b) > 0 {
		s += "below 2× in " + strings.Join(b, "; ") + ". "
	}
	s += "With requests of up to 1 MB, Kafka's flush.messages=1 is one fsync per appended request, as kvlog's group commit is at most one per request, so the fsync alone gives kvlog no 2× edge: the difference is each broker's time per request, which the profiles of the same cells below split into CPU (user and kernel) and waiting."
	return s
}

func (r *runner) explainProduceDefault() string {
	s := "**Why:** "
	if b := r.belowCells("kafka", 1); len(b) > 0 {
		s += "below 1× in " + strings.Join(b, "; ") + ". "
	}
	s += "kvlog fsyncs before acknowledging acks=all, Kafka's default does not (its request is done when the bytes are in the page cache): the profiles of the same cells below say whether kvlogd was busy or waiting on the disk while Kafka answered."
	return s
}

func (r *runner) explainCleaner() string {
	s := "**Why:** "
	for _, c := range r.st.cells("compaction") {
		if !strings.Contains(c, "map holds") {
			continue
		}
		k, ks := r.st.get("compaction", c, "kvlog", "cpu s"), r.st.get("compaction", c, "kvlog-smallmap", "cpu s")
		f, fs := r.st.get("compaction", c, "kafka", "cpu s"), r.st.get("compaction", c, "kafka-smallmap", "cpu s")
		s += fmt.Sprintf("in %s, kvlog's clean took %s CPU s with the large map and %s with the small one (passes %s / %s); Kafka's LogCleaner %s and %s CPU s (passes %s / %s). ", c,
			fnum(median(k)), fnum(median(ks)), fnum(median(r.st.get("compaction", c, "kvlog", "passes"))), fnum(median(r.st.get("compaction", c, "kvlog-smallmap", "passes"))),
			fnum(median(f)), fnum(median(fs)), fnum(median(r.st.get("compaction", c, "kafka", "passes"))), fnum(median(r.st.get("compaction", c, "kafka-smallmap", "passes"))))
	}
	return s + "When the dirty section holds more keys than the map, kvlog's pass maps it one key range at a time (cleaner/doc.go, \"A pass\"). Every range after the first used to be one more full scan of the dirty section (each record's batch read, its varints parsed and its key hashed again): the kvlogd profile of the map-fill cell put 51% of kvlogd's samples in that decide phase, and the small map ran at 0.62× the large map's rate per core. Now the first scan, from the moment its map fills, keeps what the later ranges need as 20-byte entries (digest and offset of each record outside the range it maps, the latest record of each key a split evicts; the clean section's records likewise; bounded by the map's size, at least 32 MiB), and each later range is a sweep of that array instead of a read of the log. In the cleaner's own benchmark (go test -bench BenchmarkClean/overflow ./cleaner: 1M records over 200k keys, 16 MiB segments, a 50k-key map against the default 128 MiB one; 6 alternating rounds of this tree and of the tree before it, medians of per-round ratios, wall time on a machine at load 15–30 on its 2 cores, so noisy) the 50k map now cleans at 1.15× the large map's records/s uncompressed and 1.02× with lz4, against 0.60× and 0.56× before; the large map, which never fills, runs the same code as before. A quick run of this scenario (same data, CPU seconds of kvlogd, 3 rounds) measured kvlog-smallmap / kvlog at 1.41×. Its profile: the one scan of the dirty section (record walk, CRC32C, key digests) 43% of the pass, the array sweeps 22%, the recopy 34%. Kafka's LogCleaner collapses further (it ends the pass when its map fills and starts another, rereading the clean log each time). " +
		"**Next step:** if a run still misses, the array sweeps are what is left of the overflow: each sweep reads (and compacts) the whole remaining array to map one range's share of it; bucketing the entries by deferred key range as the first scan keeps them would let each sweep read only its own range."
}

func (r *runner) explainRebuild() string {
	var parts []string
	for _, c := range r.st.cells("rebuild") {
		if c == "peak RSS" {
			continue
		}
		for _, v := range []string{"kvlog library", "kvlog raw+map", "kafka raw+map"} {
			sec, cpu := median(r.st.get("rebuild", c, v, "seconds")), median(r.st.get("rebuild", c, v, "broker cpu"))
			if math.IsNaN(sec) {
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %s: %s s, its broker busy %s cores (%s CPU s)", c, v, fnum(sec), cores(cpu/sec), fnum(cpu)))
		}
	}
	s := "**Why:** "
	if len(parts) > 0 {
		s += "in this run " + strings.Join(parts, "; ") + ". "
	}
	s += "A broker busy well under a core while the replay runs means the replay's own process (fetch, decode, map inserts; the load generator in the profiles below) sets the time; the raw+map pair reads both brokers with the same franz-go consumer, so kvlog raw+map / kafka raw+map near 1× says the same."
	return s
}

// explainFlatness explains a missed flatness row from the spread of the
// per-round ratios and the page cache's state at each probe.
func (r *runner) explainFlatness() string {
	var parts []string
	noisy, sameCPU, slope := false, false, false
	for _, sys := range r.st.systems("scale-size", "") {
		for _, c := range r.st.cells("scale-size") {
			p, t := r.st.get("scale-size", c, sys, "produce vs fresh"), r.st.get("scale-size", c, sys, "fetch tail vs fresh")
			if len(p) == 0 {
				continue
			}
			in := func(v float64) bool { return v >= 0.9 && v <= 1.1 }
			if in(median(p)) && in(median(t)) {
				continue
			}
			// An out-of-band figure whose rounds disagree by more than the
			// goal's band and bracket 1 is the machine's noise, not a
			// slope; one whose broker CPU per GB stays within the band is
			// not the broker's work growing with the log.
			pc, tc := r.st.get("scale-size", c, sys, "produce cpu vs fresh"), r.st.get("scale-size", c, sys, "fetch tail cpu vs fresh")
			for _, m := range []struct{ v, cpu []float64 }{{p, pc}, {t, tc}} {
				if in(median(m.v)) {
					continue
				}
				if maxOf(m.v)-minOf(m.v) > 0.2 && minOf(m.v) <= 1 && maxOf(m.v) >= 1 {
					noisy = true
				} else if len(m.cpu) > 0 && in(median(m.cpu)) {
					sameCPU = true
				} else {
					slope = true
				}
			}
			d := r.st.get("scale-size", c, sys, "dirty MB")
			x := fmt.Sprintf("%s %s: produce grown/fresh %s (rounds %s; broker CPU per GB grown/fresh %s), fetch tail %s (rounds %s; CPU per GB %s), %d rounds; dirty page cache at probe start %s MB", sys, c, fx(median(p)), spread(p), fx(median(pc)), fx(median(t)), spread(t), fx(median(tc)), len(p), mr(d))
			if u := r.st.get("scale-size", c, sys, "unsettled produce vs fresh"); len(u) > 0 {
				x += fmt.Sprintf("; the probe as before (unsettled, one pair), same rounds: produce %s (rounds %s), fetch tail %s (rounds %s), dirty %s MB",
					fx(median(u)), spread(u), fx(median(r.st.get("scale-size", c, sys, "unsettled fetch tail vs fresh"))), spread(r.st.get("scale-size", c, sys, "unsettled fetch tail vs fresh")), mr(r.st.get("scale-size", c, sys, "unsettled dirty MB")))
			}
			parts = append(parts, x)
		}
	}
	s := "**Why:** " + strings.Join(parts, "; ") + ". "
	var next []string
	if noisy {
		s += "Where the rounds of a figure outside the band disagree by more than the goal's ±10% and lie on both sides of 1×, its median is the shared machine's noise (load average at the scenario's start " + r.loadOf("scale") + "), not a slope of the broker's rate with the log's size. "
		next = append(next, "more rounds or slices per size (-reps, -scale-slices) or a quiet machine before reading the row as a regression")
	}
	if sameCPU {
		s += "Where the rounds agree but kvlogd's CPU per GB is the same on the grown log as on the fresh one, the broker does no more work per byte: the lower rate is time spent waiting (the disk's writeback or reads behind the page cache) or the machine's, not kvlogd's work growing with the log. "
		next = append(next, "compare the probe's system time and the disk's utilisation (iostat) grown against fresh before changing the broker")
	}
	if slope {
		s += "Where the rounds agree and kvlogd's CPU per GB grows with the log, the broker's own work grows: the profile of the grown log's produce at the largest size below says where. "
		next = append(next, "cut what the grown log's profile shows growing")
	}
	if len(next) > 0 {
		s += "**Next step:** " + strings.Join(next, "; ") + "."
	}
	return s
}

// loadOf is the 1-minute load average recorded at a scenario's start.
func (r *runner) loadOf(scen string) string {
	return fnum(median(r.st.get("load", scen, "machine", "load1")))
}

// explainRestore explains a missed restore row from the records restored
// on each broker and who was busy during the restores.
func (r *runner) explainRestore() string {
	c := restoreDefaults
	var parts []string
	for _, sys := range []string{"kvlog", "kafka"} {
		sec := median(r.st.get("restore", c, sys, "restore s"))
		if math.IsNaN(sec) {
			continue
		}
		app := median(r.st.get("restore", c, sys, "app user s")) + median(r.st.get("restore", c, sys, "app sys s"))
		wall := median(r.st.get("restore", c, sys, "app wall s"))
		parts = append(parts, fmt.Sprintf("%s: %s records restored in %s s; the broker used %s CPU s over the application's run, the Streams application %s CPU s over its %s s (%s cores, JVM start included)", sys,
			fnum(median(r.st.get("restore", c, sys, "records"))), fnum(sec), fnum(median(r.st.get("restore", c, sys, "broker cpu"))), fnum(app), fnum(wall), cores(app/wall)))
	}
	s := "**Why:** " + strings.Join(parts, "; ") + ". "
	kr, fr := median(r.st.get("restore", c, "kvlog", "records")), median(r.st.get("restore", c, "kafka", "records"))
	kc, fc := median(r.st.get("restore", c, "kvlog", "broker cpu")), median(r.st.get("restore", c, "kafka", "broker cpu"))
	app := median(r.st.get("restore", c, "kvlog", "app user s")) + median(r.st.get("restore", c, "kvlog", "app sys s"))
	switch {
	case kr >= 0.9*fr:
		s += fmt.Sprintf("kvlog left %s× Kafka's records to restore: the time can only fall by half if the records do, and at default configs neither broker has cleaned the changelog's active segment. ", fnum(kr/fr))
		if app > 2*kc {
			s += "The Streams application, not the broker, was the busy process. "
		}
		s += "**Next step:** fewer records to restore on kvlog at default configs — compact an idle changelog's active segment (roll it after segment.ms or when idle) so the restore reads the latest value per key; then the application's time per record is what remains."
	case app > 2*math.Max(kc, fc):
		s += "kvlog left fewer records, but the Streams application (deserialising and writing each record to RocksDB) sets the restore's time on both: the broker side is a small part. **Next step:** the records restored are the lever left on kvlog's side; the application's CPU per record is Kafka Streams'."
	default:
		s += "**Next step:** see the profiles of one restore on each broker below."
	}
	return s
}

// explainSpread explains the 1,000-partition fsync on/off ratio from this
// run's own measurements of the cell (partitions-spread diagnostics).
func (r *runner) explainSpread() string {
	const c = "P=1000"
	g := func(sys, m string) string { return fnum(median(r.st.get("partitions-spread", c, sys, m))) }
	return fmt.Sprintf("**Why:** in this run, with the pre-encoded requests (≤ 1 MiB, a batch of every partition in each, 5 outstanding on one connection), kvlogd was busy %s cores with fsync against %s without, and a request took %s ms from write to answer against %s: the broker waits more than it works. "+
		"It made %s flushes/s (group commits of the journal, and its trims) of %s ms on average, %s records each, against %s records per request: a commit often covers part of a request — a running committer takes the partitions of a request still being appended (HoldCommits only keeps a new committer from starting), so that request waits for two commits, and each costs a journal write and fdatasync. "+
		"franz-go's producer (its defaults, kept beside) reads the same latency through its window: %s requests outstanding of 5, ratio %s. The machine's load (see the header) lengthens every wake-up in the chain fsync → completion → response → next request; the ratio is only as good as the run was quiet. "+
		"**Next step:** let a running committer stop while a request holds commits (its release starts the next one), so that one commit covers whole requests; measure records/flush against records/request and the ratio on a quiet machine.",
		g("kvlog", "broker busy"), g("kvlog-nofsync", "broker busy"), g("kvlog", "req ms"), g("kvlog-nofsync", "req ms"),
		g("kvlog", "flushes/s"), g("kvlog", "flush ms"), g("kvlog", "records/flush"), g("kvlog", "records/req"),
		g("kvlog", "kgo in flight"), fx(r.spreadRatioOf(c, "kvlog", genKgo)))
}
