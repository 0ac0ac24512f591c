package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/client"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/testbroker"
)

// The log cleaner through a real kvlogd: compaction of a changelog topic
// checked against a model, __consumer_offsets compacted by the same
// cleaner, and live tuning of topic and broker cleaner configs.

// cleanerStatusOf reads the broker's /cleaner document.
func cleanerStatusOf(t *testing.T, b *testbroker.Broker) cleaner.Status {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTP + "/cleaner")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("/cleaner: %s %q: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	var st cleaner.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/cleaner: %v: %s", err, body)
	}
	return st
}

// cleanerPartitionOf finds a partition in a status (nil when not listed).
func cleanerPartitionOf(st cleaner.Status, topic string, p int32) *cleaner.PartitionStatus {
	for i := range st.Partitions {
		if st.Partitions[i].Topic == topic && st.Partitions[i].Partition == p {
			return &st.Partitions[i]
		}
	}
	return nil
}

// cleanerMetric sums the samples of a metric on /metrics whose label set
// contains every one of labels (`name="value"`).
func cleanerMetric(t *testing.T, b *testbroker.Broker, name string, labels ...string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[strings.LastIndexByte(rest, ' '):]), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	return sum, found
}

// partitionDiskUsage is a partition directory's footprint: the bytes of its
// segment files (.log, .deleted ones included) and the blocks allocated to
// all of its files.
func partitionDiskUsage(t *testing.T, b *testbroker.Broker, topic string, p int32) (logBytes, allocated int64) {
	t.Helper()
	logBytes, allocated, err := diskUsage(b, topic, p)
	if err != nil {
		t.Fatal(err)
	}
	return logBytes, allocated
}

// deletedFiles counts a partition's files awaiting deletion.
func deletedFiles(t *testing.T, b *testbroker.Broker, topic string, p int32) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(b.DataDir, engine.PartitionDirName(engine.TopicPartition{Topic: topic, Partition: p})))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), engine.DeletedSuffix) {
			n++
		}
	}
	return n
}

func diskUsage(b *testbroker.Broker, topic string, p int32) (logBytes, allocated int64, err error) {
	dir := filepath.Join(b.DataDir, engine.PartitionDirName(engine.TopicPartition{Topic: topic, Partition: p}))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue // unlinked meanwhile
		}
		if strings.Contains(e.Name(), ".log") {
			logBytes += fi.Size()
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			allocated += st.Blocks * 512
		}
	}
	return logBytes, allocated, nil
}

// waitCleaner polls the cleaner status until done accepts the partition's
// state, failing on an uncleanable partition or after d.
func waitCleaner(t *testing.T, b *testbroker.Broker, topic string, p int32, d time.Duration, what string, done func(*cleaner.PartitionStatus) bool) *cleaner.PartitionStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := cleanerStatusOf(t, b)
		ps := cleanerPartitionOf(st, topic, p)
		if ps != nil && ps.Uncleanable {
			t.Fatalf("%s-%d marked uncleanable: %s", topic, p, ps.Error)
		}
		if ps != nil && done(ps) {
			return ps
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(ps, "", "  ")
			t.Fatalf("%s-%d: %s not seen within %v; last status: %s", topic, p, what, d, js)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cleanedLines sums the broker's "cleaned" log lines of a partition: passes,
// bytes read (recopied), records read and time taken.
func cleanedLines(log, partition string) (n int, read, records int64, took time.Duration) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "msg=cleaned ") || !strings.Contains(line, " partition="+partition+" ") {
			continue
		}
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		r, err1 := strconv.ParseInt(fields["read"], 10, 64)
		rs, err2 := strconv.ParseInt(fields["records"], 10, 64)
		d, err3 := time.ParseDuration(fields["took"])
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		n, read, records, took = n+1, read+r, records+rs, took+d
	}
	return n, read, records, took
}

type cleanerE2E struct {
	updates, keys int
	valueSize     int
	segmentBytes  int
	race          bool
	timeout       time.Duration
}

// TestCleanerEndToEnd: ~200,000 updates over 2,000 keys with 10%
// tombstones into a compacted topic with small segments, a short roll time,
// a low dirty ratio and a short delete.retention.ms, cleaned while it is
// written; once the cleaner has caught up, a replay from offset 0 holds
// exactly the model state, every key once, no tombstone, and the partition
// is within a small factor of the live data on disk.
func TestCleanerEndToEnd(t *testing.T) {
	runCleanerE2E(t, cleanerE2E{updates: 200_000, keys: 2_000, valueSize: 100, segmentBytes: 256 << 10, race: true, timeout: 4 * time.Minute})
}

// TestCleanerEndToEndFull is the full size, 1,000,000 updates over
// 10,000 keys, against kvlogd built without -race (KVLOGD_BIN when set).
// Opt in with KVLOG_CLEANER_FULL=1.
func TestCleanerEndToEndFull(t *testing.T) {
	if os.Getenv("KVLOG_CLEANER_FULL") == "" {
		t.Skip("set KVLOG_CLEANER_FULL=1 to run 1,000,000 updates over 10,000 keys")
	}
	runCleanerE2E(t, cleanerE2E{updates: 1_000_000, keys: 10_000, valueSize: 100, segmentBytes: 1 << 20, timeout: 10 * time.Minute})
}

func runCleanerE2E(t *testing.T, c cleanerE2E) {
	const topic = "changelog"
	b := testbroker.Start(t, testbroker.Options{Race: c.race, Props: []string{
		"log.cleaner.backoff.ms=200",
		"log.cleaner.dedupe.buffer.size=33554432",
	}})
	ctx := testbroker.Context(t, c.timeout)
	adm := b.Admin(t)
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"segment.bytes":             kadm.StringPtr(strconv.Itoa(c.segmentBytes)),
		"segment.ms":                kadm.StringPtr("2000"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.05"),
		"delete.retention.ms":       kadm.StringPtr("2000"),
		"file.delete.delay.ms":      kadm.StringPtr("0"),
	}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}

	// Sample the partition's size while it is written and cleaned.
	var peakLog, peakAlloc int64
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			if l, a, err := diskUsage(b, topic, 0); err == nil {
				peakLog, peakAlloc = max(peakLog, l), max(peakAlloc, a)
			}
		}
	}()

	// Produce, keeping the model: the latest value per key, deleted keys
	// absent.
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(128<<10), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	rng := rand.New(rand.NewPCG(1, 2))
	model := make(map[string]string, c.keys)
	pad := strings.Repeat("v", c.valueSize)
	var leo int64
	var producedBytes, tombstones int64
	start := time.Now()
	const chunk = 10_000
	for done := 0; done < c.updates; done += chunk {
		n := min(chunk, c.updates-done)
		rs := make([]*kgo.Record, n)
		for i := range rs {
			key := fmt.Sprintf("key-%06d", rng.IntN(c.keys))
			r := &kgo.Record{Key: []byte(key)}
			if rng.IntN(10) == 0 {
				delete(model, key)
				tombstones++
			} else {
				v := strconv.Itoa(done+i) + ":" + pad
				v = v[:c.valueSize]
				r.Value = []byte(v)
				model[key] = v
			}
			producedBytes += int64(len(r.Key) + len(r.Value))
			rs[i] = r
		}
		res := cl.ProduceSync(ctx, rs...)
		if err := res.FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		leo = max(leo, rs[n-1].Offset+1)
	}
	produceTook := time.Since(start)
	var liveBytes int64
	for k, v := range model {
		liveBytes += int64(len(k) + len(v))
	}
	t.Logf("produced %d updates (%d tombstones, %.1f MB of keys and values) over %d keys in %v; %d live keys (%.1f KB)",
		c.updates, tombstones, float64(producedBytes)/1e6, c.keys, produceTook.Round(time.Millisecond), len(model), float64(liveBytes)/1e3)

	// Wait until the cleaner has cleaned everything below the log end (the
	// idle active segment rolls after segment.ms) and the tombstones' delete
	// horizons have passed (a later pass drops them).
	ps := waitCleaner(t, b, topic, 0, c.timeout, "a clean of everything below the log end without tombstones left",
		func(ps *cleaner.PartitionStatus) bool {
			return ps.Passes > 0 && ps.FirstDirtyOffset >= leo && ps.TombstoneHorizon == nil
		})
	cleanTook := time.Since(start)
	close(stopSampling)
	sampling.Wait()
	readTotal, _ := cleanerMetric(t, b, "kvlog_cleaner_bytes_read_total")
	writtenTotal, _ := cleanerMetric(t, b, "kvlog_cleaner_bytes_written_total")
	passes, _ := cleanerMetric(t, b, "kvlog_cleaner_passes_total", `result="ok"`)
	if lp := ps.LastPass; lp != nil {
		t.Logf("last pass: %s, %.3f ms, read %d B (+%d mapping), wrote %d B, %d → %d records, %d tombstones dropped",
			lp.Reason, lp.DurationMs, lp.BytesRead, lp.MapBytesRead, lp.BytesWritten, lp.RecordsRead, lp.RecordsRetained, lp.TombstonesDropped)
	}

	// Replay from offset 0, through the client library as an application
	// would, seeing every record.
	type seen struct {
		value     string
		tombstone bool
		offset    int64
	}
	got := map[string]seen{}
	var replayed, dup, dead int
	lastOffset := int64(-1)
	var order []string
	tbl, err := client.Open(ctx, b.Brokers(), topic, client.ReplayOnly(), client.WithApply(func(r client.Record) error {
		replayed++
		if r.Offset <= lastOffset {
			order = append(order, fmt.Sprintf("offset %d after %d", r.Offset, lastOffset))
		}
		lastOffset = r.Offset
		k := string(r.Key)
		if _, ok := got[k]; ok {
			dup++
		}
		if r.IsTombstone() {
			dead++
		}
		got[k] = seen{value: string(r.Value), tombstone: r.IsTombstone(), offset: r.Offset}
		return nil
	}))
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	tbl.Close()
	if len(order) > 0 {
		t.Errorf("offsets not increasing: %v", order[:min(5, len(order))])
	}
	if dup > 0 || dead > 0 {
		t.Errorf("replay of a fully cleaned log: %d duplicate keys, %d tombstones (want none)", dup, dead)
	}
	state := map[string]string{}
	for k, s := range got {
		if !s.tombstone {
			state[k] = s.value
		}
	}
	if len(state) != len(model) {
		t.Errorf("replayed state has %d keys, the model %d", len(state), len(model))
	}
	bad := 0
	for k, v := range model {
		if g, ok := state[k]; !ok || g != v {
			if bad++; bad <= 5 {
				t.Errorf("key %s: replayed %q (present %v), model %q", k, g, ok, v)
			}
		}
	}
	for k := range state {
		if _, ok := model[k]; !ok {
			if bad++; bad <= 5 {
				t.Errorf("key %s replayed but deleted in the model", k)
			}
		}
	}

	// On disk: within a small factor of the live data (batch and record
	// headers, empty batches kept for the producer state, one index entry
	// per index.interval.bytes).
	// Replaced segments are renamed .deleted and unlinked by the engine's
	// next maintenance round (file.delete.delay.ms=0): wait for that.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if n := deletedFiles(t, b, topic, 0); n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	logBytes, allocated := partitionDiskUsage(t, b, topic, 0)
	t.Logf("bytes on disk: peak %d B of segments (%d allocated) while writing and cleaning, %d B (%d allocated) after; live keys and values %d B; replay read %d records for %d updates",
		peakLog, peakAlloc, logBytes, allocated, liveBytes, replayed, c.updates)
	t.Logf("cleaner: %.0f passes, read %.1f MB (mapping and recopying), wrote %.1f MB; all clean, tombstones gone, %v after the first write (roll after segment.ms and delete horizons included)",
		passes, readTotal/1e6, writtenTotal/1e6, cleanTook.Round(time.Millisecond))
	if n, read, records, took := cleanedLines(b.Log(), topic+"-0"); n > 0 {
		t.Logf("cleaner passes on %s-0: %d, %.1f MB and %d records recopied in %v: %.1f MB/s, %.0f records/s per thread (kvlogd built with race=%v)",
			topic, n, float64(read)/1e6, records, took.Round(time.Millisecond), float64(read)/1e6/took.Seconds(), float64(records)/took.Seconds(), c.race)
	}
	if factor := float64(logBytes) / float64(liveBytes); factor > 2.5 {
		t.Errorf("%d B of segments for %d B of live data: %.2fx, want at most 2.5x", logBytes, liveBytes, factor)
	}
	if replayed > 2*len(model) {
		t.Errorf("replay read %d records for %d live keys", replayed, len(model))
	}
}

// TestCleanerCompactsConsumerOffsets: __consumer_offsets is a compacted
// topic like any other; the same cleaner compacts it, and the committed
// offsets survive the compaction and a restart.
func TestCleanerCompactsConsumerOffsets(t *testing.T) {
	const offsets = "__consumer_offsets"
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{
		"offsets.topic.num.partitions=1",
		"offsets.topic.segment.bytes=8192",
		"log.cleaner.min.cleanable.ratio=0.1",
		"log.cleaner.backoff.ms=100",
		"log.cleaner.dedupe.buffer.size=4194304",
	}})
	ctx := testbroker.Context(t, 3*time.Minute)
	adm := b.Admin(t)
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, "events"); err != nil {
		t.Fatal(err)
	}
	const commits = 1000
	var last kadm.Offsets
	for i := 0; i < commits; i++ {
		offs := kadm.Offsets{}
		for p := int32(0); p < 4; p++ {
			offs.AddOffset("events", p, int64(i*4+int(p)), -1)
		}
		r, err := adm.CommitOffsets(ctx, "audit", offs)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
		last = offs
	}
	// 1,000 commit batches of ~300 B each went to __consumer_offsets-0; once
	// compacted it holds the 4 latest offsets (plus what the active segment
	// holds): less than two 8 KiB segments.
	ps := waitCleaner(t, b, offsets, 0, 2*time.Minute, "a clean pass", func(ps *cleaner.PartitionStatus) bool { return ps.Passes > 0 })
	for deadline := time.Now().Add(time.Minute); ; {
		// Internal topics are reported per topic, not per partition (its
		// one partition here).
		size, _ := cleanerMetric(t, b, "kvlog_topic_size_bytes", `topic="__consumer_offsets"`)
		ends, err := adm.ListEndOffsets(ctx, offsets)
		if err != nil {
			t.Fatal(err)
		}
		end, _ := ends.Lookup(offsets, 0)
		leo := float64(end.Offset)
		if size > 0 && size < 16384 {
			read, _ := cleanerMetric(t, b, "kvlog_cleaner_bytes_read_total")
			t.Logf("__consumer_offsets-0: %.0f records written by %d commits, %.0f B of segments once cleaned (%d passes, %.0f B read by the cleaner)",
				leo, commits, size, ps.Passes, read)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("__consumer_offsets-0 not compacted: %.0f B of segments for %.0f records", size, leo)
		}
		time.Sleep(200 * time.Millisecond)
		ps = cleanerPartitionOf(cleanerStatusOf(t, b), offsets, 0)
	}

	check := func(when string) {
		t.Helper()
		fetched, err := adm.FetchOffsets(ctx, "audit")
		if err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 4; p++ {
			want, _ := last.Lookup("events", p)
			got, ok := fetched.Lookup("events", p)
			if !ok || got.Err != nil || got.At != want.At {
				t.Errorf("%s: events-%d committed offset %+v, want %d", when, p, got, want.At)
			}
		}
	}
	check("after compaction")
	b.Restart()
	adm = b.Admin(t)
	check("after compaction and a restart")
}

// TestCleanerLiveTuning changes the cleaner's configuration through the
// Kafka admin APIs while the broker runs: a topic's
// min.cleanable.dirty.ratio (the topic gets cleaned at once: the cleaner's
// backoff is an hour, so only the wake-up on the config change can start
// the pass within the test's waits), then the broker's dynamic
// log.cleaner.io.max.bytes.per.second (the next pass waits on the
// throttle) and log.cleaner.threads (threads start), each visible in the
// status and metrics without a restart.
func TestCleanerLiveTuning(t *testing.T) {
	const topic = "tuned"
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{
		"log.cleaner.backoff.ms=3600000",
		"log.cleaner.dedupe.buffer.size=4194304",
	}})
	ctx := testbroker.Context(t, 3*time.Minute)
	adm := b.Admin(t)
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"segment.bytes":             kadm.StringPtr("65536"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("1"), // never due: a ratio cannot exceed 1
		"file.delete.delay.ms":      kadm.StringPtr("0"),
	}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchMaxBytes(32<<10), kgo.ProducerBatchCompression(kgo.NoCompression()))
	produce := func(round int) {
		t.Helper()
		rs := make([]*kgo.Record, 20_000)
		for i := range rs {
			rs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("k%03d", i%200)), Value: bytes.Repeat([]byte{byte('a' + round)}, 100)}
		}
		if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0)
	before, _ := partitionDiskUsage(t, b, topic, 0)

	alter := func(typ string, name string, cfgs ...kadm.AlterConfig) {
		t.Helper()
		var rs kadm.AlterConfigsResponses
		var err error
		if typ == "topic" {
			rs, err = adm.AlterTopicConfigs(ctx, cfgs, name)
		} else {
			rs, err = adm.AlterBrokerConfigs(ctx, cfgs, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Err != nil {
				t.Fatalf("alter %s %s: %v %s", typ, name, r.Err, r.ErrMessage)
			}
		}
	}
	// A topic config change wakes the cleaner (its backoff is an hour): it
	// assesses the partition, all dirty (ratio 1), but not due. The
	// assessment and the choice of a partition to clean are one planning
	// step, so the status showing the assessment shows the decision: no
	// pass started, none due.
	alter("topic", topic, kadm.AlterConfig{Name: "retention.ms", Value: kadm.StringPtr("86400000")})
	ps := waitCleaner(t, b, topic, 0, 30*time.Second, "the partition assessed", func(ps *cleaner.PartitionStatus) bool { return ps.CleanableBytes > 0 })
	if ps.Passes != 0 || ps.State != "idle" || ps.Due != "" || ps.DirtyRatio != 1 {
		t.Fatalf("with min.cleanable.dirty.ratio=1: %+v", ps)
	}

	// A low ratio makes it due: the config change wakes the cleaner, which
	// cleans it (the hour-long backoff would not end within the wait).
	changed := time.Now()
	alter("topic", topic, kadm.AlterConfig{Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.01")})
	ps = waitCleaner(t, b, topic, 0, 30*time.Second, "a pass after lowering min.cleanable.dirty.ratio", func(ps *cleaner.PartitionStatus) bool { return ps.Passes > 0 })
	after, _ := cleanerMetric(t, b, "kvlog_partition_size_bytes", `topic="`+topic+`"`)
	t.Logf("min.cleanable.dirty.ratio 1 → 0.01: cleaned %v later (%s); %d B of segments → %.0f B",
		time.Since(changed).Round(time.Millisecond), ps.LastPass.Reason, before, after)

	// Broker config: throttle the cleaner's I/O. The next pass reads ~4 MB
	// (mapping and recopying 2 MB of new segments) at 1 MB/s, so it waits on
	// the throttle: the cleaner's throttled-time counter grows (the
	// throttle's arithmetic is the cleaner package's unit tests' business;
	// the rate achieved is logged, not asserted).
	throttled0, _ := cleanerMetric(t, b, "kvlog_cleaner_throttled_seconds_total")
	alter("broker", "0", kadm.AlterConfig{Name: "log.cleaner.io.max.bytes.per.second", Value: kadm.StringPtr("1000000")})
	if st := cleanerStatusOf(t, b); st.Config.IOMaxBytesPerSecond != 1e6 {
		t.Fatalf("status config after the throttle change: %+v", st.Config)
	}
	passes := ps.Passes
	read0, _ := cleanerMetric(t, b, "kvlog_cleaner_bytes_read_total")
	written0, _ := cleanerMetric(t, b, "kvlog_cleaner_bytes_written_total")
	produce(1)
	throttledAt := time.Now()
	alter("topic", topic, kadm.AlterConfig{Name: "segment.ms", Value: kadm.StringPtr("1000")}) // wakes it; the idle active segment rolls
	var throttled float64
	for deadline := time.Now().Add(90 * time.Second); ; {
		throttled, _ = cleanerMetric(t, b, "kvlog_cleaner_throttled_seconds_total")
		ps = cleanerPartitionOf(cleanerStatusOf(t, b), topic, 0)
		if ps.Passes > passes && ps.State != "in-progress" && throttled-throttled0 >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("io.max.bytes.per.second=1e6: %d passes, %.2fs throttled after 90s", ps.Passes-passes, throttled-throttled0)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(throttledAt)
	read, _ := cleanerMetric(t, b, "kvlog_cleaner_bytes_read_total")
	written, _ := cleanerMetric(t, b, "kvlog_cleaner_bytes_written_total")
	ioBytes := read - read0 + written - written0
	t.Logf("io.max.bytes.per.second=1e6: %d passes read %.0f B and wrote %.0f B within %v (%.2f MB/s); threads waited %.2fs on the throttle",
		ps.Passes-passes, read-read0, written-written0, took.Round(time.Millisecond), ioBytes/1e6/took.Seconds(), throttled-throttled0)

	// Threads: 1 → 2 (a running thread per status and metric); 2 → 5 is
	// refused as in Kafka (at most double).
	alter("broker", "0", kadm.AlterConfig{Name: "log.cleaner.threads", Value: kadm.StringPtr("2")})
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := cleanerStatusOf(t, b)
		threads, _ := cleanerMetric(t, b, "kvlog_cleaner_threads")
		if st.Threads == 2 && st.Config.Threads == 2 && threads == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after log.cleaner.threads=2: status %d threads (config %d), metric %v", st.Threads, st.Config.Threads, threads)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rs, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Name: "log.cleaner.threads", Value: kadm.StringPtr("5")}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || !errors.Is(rs[0].Err, kerr.InvalidConfig) {
		t.Errorf("log.cleaner.threads 2 → 5: %+v, want INVALID_CONFIG", rs)
	}
	// Back to the static value (unlimited): deleting the dynamic config.
	alter("broker", "0", kadm.AlterConfig{Op: kadm.DeleteConfig, Name: "log.cleaner.io.max.bytes.per.second"})
	if st := cleanerStatusOf(t, b); st.Config.IOMaxBytesPerSecond != -1 || st.Config.Threads != 2 {
		t.Errorf("status config after deleting the throttle: %+v", st.Config)
	}
	dc, err := adm.DescribeBrokerConfigs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range dc {
		for _, c := range rc.Configs {
			if c.Key == "log.cleaner.threads" && (c.Value == nil || *c.Value != "2" || c.Source != kmsg.ConfigSourceDynamicBrokerConfig) {
				t.Errorf("described log.cleaner.threads: %+v", c)
			}
		}
	}
}
