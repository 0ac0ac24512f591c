package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Scenario 5: compaction. Runs only when kvlogd links the cleaner. Per
// system and round, a fresh compacted topic (1 partition) gets n records over
// k keys (13-byte keys, 100-byte values, acks=all) and is then compacted:
//
//   - kvlog: the topic is created with min.cleanable.dirty.ratio=1 (never
//     due) and segment.bytes small so the data spans many segments; after
//     the produce, the ratio is altered to 0.01 (dynamic topic config) and
//     the broker's cleaner (log.cleaner.backoff.ms=100) runs until the
//     partition's .log bytes and the cleaner's pass counter stop changing
//     for 2 s. Cleaned records = the base offset of the active segment (the
//     cleaner never touches the active segment).
//   - kfake: Cluster.Compact() through kfaked's control endpoint.
//   - Apache Kafka: the same topic settings and alter as kvlog; Kafka's
//     LogCleaner (log.cleaner.backoff.ms=100) runs until its
//     cleaner-offset-checkpoint reaches the active segment's base offset.
//     Its passes and its own timing are read from its log-cleaner.log.
//
// Rate per core = records cleaned / CPU seconds of the broker process over
// the clean (kvlog: from the alter to the last change; kfake: the call), as
// MB/s of 113-byte records. The map-fill cell repeats it with more keys than
// a small dedupe buffer (log.cleaner.dedupe.buffer.size) holds, beside the
// same data with the default buffer.

func scenCompaction(ctx context.Context, r *runner) error {
	if !r.cleanerWired {
		r.skip("compaction", "whole scenario", "%s", r.cleanerWhy)
		return nil
	}
	cfg := r.cfg
	fillBuf := int(float64(cfg.compactFillMapKeys*24) / 0.9)
	type cellDef struct {
		name string
		keys int
		sys  []string
	}
	cells := []cellDef{
		{fmt.Sprintf("%s records / %s keys", countName(cfg.compactRecords), countName(cfg.compactKeys)), cfg.compactKeys, []string{"kvlog", "kfake-mem", "kfake-disk", "kafka"}},
		{fmt.Sprintf("%s records / %s keys, map holds %s", countName(cfg.compactRecords), countName(cfg.compactFillKeys), countName(cfg.compactFillMapKeys)), cfg.compactFillKeys, []string{"kvlog", "kvlog-smallmap", "kfake-mem", "kafka", "kafka-smallmap"}},
	}
	// Replaced segments are unlinked at once (file.delete.delay.ms 0), so
	// the disk bytes after the clean are what stays.
	props := []string{"log.cleaner.backoff.ms=100", "log.segment.delete.delay.ms=0"}
	var ins []*instance
	defer func() { r.stopAll("compaction", ins) }()
	byName := map[string]*instance{}
	names := []string{"kvlog", "kvlog-smallmap", "kfake-mem", "kfake-disk"}
	for _, s := range r.available("compaction", "kafka") {
		names = append(names, s.name, s.name+"-smallmap")
	}
	for i := range cells {
		cells[i].sys = slices.DeleteFunc(cells[i].sys, func(n string) bool { return !slices.Contains(names, n) })
	}
	for _, name := range names {
		spec := sysSpec{}
		extra := props
		if base, ok := strings.CutSuffix(name, "-smallmap"); ok {
			spec = specOf(base)
			spec.name = name
			extra = append(append([]string{}, props...), fmt.Sprintf("log.cleaner.dedupe.buffer.size=%d", fillBuf))
		} else {
			spec = specOf(name)
		}
		in, err := r.start(spec, extra...)
		if err != nil {
			return err
		}
		ins = append(ins, in)
		byName[name] = in
	}
	r.note("compaction", "kvlog-smallmap and kafka-smallmap: log.cleaner.dedupe.buffer.size=%d bytes (%s keys at load factor 0.9, 24-byte entries in both)", fillBuf, countName(cfg.compactFillMapKeys))
	for _, c := range cells {
		s := shape{partitions: 1, valueLen: 100, keys: c.keys, acks: "all", comp: "none"}
		var parts []*instance
		for _, n := range c.sys {
			parts = append(parts, byName[n])
		}
		logf("compaction cell: %s", c.name)
		err := rotate(r.cfg.reps, parts, func(rep int, in *instance) error {
			res, err := compactOnce(ctx, r, in, s, cfg.compactRecords)
			if err != nil {
				return fmt.Errorf("%s: %w", in.spec.name, err)
			}
			add := func(m, unit string, v float64) { r.st.add("compaction", c.name, in.spec.name, m, unit, v) }
			add("records/cpu-s", "records/CPU s", float64(res.records)/res.cpu)
			add("MB/cpu-s", "MB/CPU s", float64(res.records)*float64(s.recordBytes())/1e6/res.cpu)
			add("wall s", "s", res.wall)
			add("cpu s", "CPU s", res.cpu)
			mbOrNaN := func(b int64) float64 {
				if b < 0 {
					return math.NaN()
				}
				return float64(b) / 1e6
			}
			add("bytes before", "MB", mbOrNaN(res.before))
			add("bytes after", "MB", mbOrNaN(res.after))
			add("disk before", "MB", mbOrNaN(res.diskBefore))
			add("disk after", "MB", mbOrNaN(res.diskAfter))
			add("passes", "passes", float64(res.passes))
			if res.selfSeconds > 0 {
				add("records/cleaner-s", "records/s", float64(res.records)/res.selfSeconds)
			}
			logf("  %-14s rep %d: %d records in %.2f s wall, %.2f CPU s; %.1f → %.1f MB (%d passes)", in.spec.name, rep, res.records, res.wall, res.cpu, float64(res.before)/1e6, float64(res.after)/1e6, res.passes)
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Where the map-fill clean spends its time: kvlogd profiled over
	// produce-and-clean passes of the map-fill cell with the small map
	// (the profile's -cum view separates the cleaner from the produce).
	if in := byName["kvlog-smallmap"]; in != nil {
		c := cells[len(cells)-1]
		s := shape{partitions: 1, valueLen: 100, keys: c.keys, acks: "all", comp: "none"}
		r.profile(ctx, in, "compaction", "kvlog-smallmap produce + clean, "+c.name, 2*r.cfg.profileSeconds, func() error {
			_, err := compactOnce(ctx, r, in, s, cfg.compactRecords)
			return err
		})
	}
	return nil
}

type compactResult struct {
	records                              int64
	wall, cpu                            float64
	before, after, diskBefore, diskAfter int64
	passes                               int
	selfSeconds                          float64 // Kafka: the LogCleaner's own timing of its passes
}

func compactOnce(ctx context.Context, r *runner, in *instance, s shape, n int) (compactResult, error) {
	var res compactResult
	addr := []string{in.addr}
	topic := nextName("compact-")
	configs := map[string]string{"cleanup.policy": "compact"}
	if in.spec.impl == "kvlogd" || in.spec.impl == "kafka" {
		configs["segment.bytes"] = strconv.Itoa(r.cfg.compactSegment)
		configs["min.cleanable.dirty.ratio"] = "1"
	}
	if err := createTopic(ctx, addr, topic, 1, 1, configs); err != nil {
		return res, err
	}
	defer deleteTopic(ctx, addr, topic)
	if _, err := kafkaProduce(ctx, addr, topic, s, 0, n, []int{in.p.pid}); err != nil {
		return res, err
	}
	if in.spec.impl == "kfake" {
		res.records = int64(n) + 1
		res.before, res.after, res.diskBefore, res.diskAfter = -1, -1, -1, -1 // in memory: no files
		if in.spec.disk {
			res.diskBefore = dirDiskBytes(in.dir)
			res.before = res.diskBefore
		}
		m := meterCPU(in.p.pid)
		resp, err := http.Post("http://"+in.http+"/compact", "", nil)
		if err != nil {
			return res, err
		}
		var body struct{ Seconds float64 }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return res, err
		}
		res.cpu, res.wall = m.seconds(), body.Seconds
		if in.spec.disk {
			time.Sleep(200 * time.Millisecond) // let its persistence catch up
			res.diskAfter = dirDiskBytes(in.dir)
			res.after = res.diskAfter
		}
		res.passes = 1
		return res, nil
	}
	// kvlog: the partition directory <log.dirs>/<topic>-0.
	pdir := filepath.Join(in.dir, topic+"-0")
	logBytes := func() (int64, int64) {
		var total, activeBase int64 = 0, -1
		ents, _ := os.ReadDir(pdir)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".log") {
				continue
			}
			if fi, err := e.Info(); err == nil {
				total += fi.Size()
			}
			if b, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ".log"), 10, 64); err == nil && b > activeBase {
				activeBase = b
			}
		}
		return total, activeBase
	}
	var active int64
	res.before, active = logBytes()
	res.diskBefore = dirDiskBytes(pdir)
	res.records = active
	if in.spec.impl == "kafka" {
		return compactKafka(ctx, in, topic, res, active, pdir, logBytes)
	}
	passes0 := cleanerPasses(in.http)
	cl, err := kafkaClient(addr)
	if err != nil {
		return res, err
	}
	defer cl.Close()
	m := meterCPU(in.p.pid)
	start := time.Now()
	alter, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.01")}}, topic)
	if err == nil {
		for _, a := range alter {
			if a.Err != nil {
				err = a.Err
			}
		}
	}
	if err != nil {
		return res, fmt.Errorf("alter min.cleanable.dirty.ratio: %w", err)
	}
	lastBytes, lastPasses := res.before, passes0
	lastChange, cpuAtChange := start, 0.0
	deadline := time.Now().Add(10 * time.Minute)
	for {
		time.Sleep(50 * time.Millisecond)
		b, _ := logBytes()
		p := cleanerPasses(in.http)
		if b != lastBytes || p != lastPasses {
			lastBytes, lastPasses = b, p
			lastChange, cpuAtChange = time.Now(), m.seconds()
		}
		if (lastPasses > passes0 || lastBytes < res.before) && time.Since(lastChange) > 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("cleaner did not converge in 10 minutes (passes %d → %d, .log bytes %d → %d)", passes0, lastPasses, res.before, lastBytes)
		}
	}
	res.wall = lastChange.Sub(start).Seconds()
	res.cpu = cpuAtChange
	res.after = lastBytes
	time.Sleep(1500 * time.Millisecond) // the broker's delete pass runs every second
	res.diskAfter = dirDiskBytes(pdir)
	res.passes = lastPasses - passes0
	return res, nil
}

// cleanerPasses reads kvlog_cleaner_passes_total{result="ok"} from kvlogd's
// /metrics (-1 when absent).
func cleanerPasses(httpAddr string) int {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, `kvlog_cleaner_passes_total{result="ok"}`) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return int(v)
		}
	}
	return -1
}

// alterRatio sets a topic's min.cleanable.dirty.ratio.
func alterRatio(ctx context.Context, addr []string, topic, v string) error {
	cl, err := kafkaClient(addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	alter, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr(v)}}, topic)
	if err == nil {
		for _, a := range alter {
			if a.Err != nil {
				err = a.Err
			}
		}
	}
	if err != nil {
		return fmt.Errorf("alter min.cleanable.dirty.ratio: %w", err)
	}
	return nil
}

// compactKafka times Apache Kafka's LogCleaner over topic's partition 0
// from the alter of its ratio until the cleaner's checkpoint reaches the
// active segment (every record below it cleaned).
func compactKafka(ctx context.Context, in *instance, topic string, res compactResult, active int64, pdir string, logBytes func() (int64, int64)) (compactResult, error) {
	res.diskBefore = dirDiskBytes(pdir)
	res.records = active
	logFile := filepath.Join(in.root, "log-cleaner.log")
	_, _, from := kafkaCleanerStats(logFile, topic, 0)
	m := meterCPU(in.p.pid)
	start := time.Now()
	if err := alterRatio(ctx, []string{in.addr}, topic, "0.01"); err != nil {
		return res, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for kafkaCleanerCheckpoint(in.dir, topic, 0) < active {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return res, fmt.Errorf("Kafka's cleaner did not reach offset %d in 10 minutes (checkpoint %d)", active, kafkaCleanerCheckpoint(in.dir, topic, 0))
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.wall = time.Since(start).Seconds()
	res.cpu = m.seconds()
	time.Sleep(1500 * time.Millisecond) // file.delete.delay.ms 0: replaced segments go at once
	res.after, _ = logBytes()
	res.diskAfter = dirDiskBytes(pdir)
	res.passes, res.selfSeconds, _ = kafkaCleanerStats(logFile, topic, from)
	return res, nil
}
