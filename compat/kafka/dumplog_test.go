package kafka

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/testbroker"
)

// produced is one record as its producer sent it.
type produced struct {
	key, value []byte // nil: null
	headers    []string
	ts         int64
}

// dumpRecord is one "| offset: …" line of DumpLogSegments --deep-iteration
// --print-data-log.
type dumpRecord struct {
	offset             int64
	tsType             string
	ts                 int64
	keySize, valueSize int
	headerKeys         []string
	key, payload       string
	hasKey, hasPayload bool
}

// dumpBatch is one "baseOffset: …" line and its records.
type dumpBatch struct {
	file          string
	base, last    int64
	count         int
	producerID    int64
	leaderEpoch   int32
	deleteHorizon string // "OptionalLong.empty" or "OptionalLong[ms]"
	position      int64
	tsType        string
	maxTs         int64
	size          int
	codec         string
	valid         bool
	records       []dumpRecord
}

var (
	batchLine  = regexp.MustCompile(`^baseOffset: (\d+) lastOffset: (\d+) count: (\d+) baseSequence: (-?\d+) lastSequence: (-?\d+) producerId: (-?\d+) producerEpoch: (-?\d+) partitionLeaderEpoch: (-?\d+) isTransactional: (\w+) isControl: (\w+) deleteHorizonMs: (\S+) position: (\d+) (CreateTime|LogAppendTime|NoTimestampType): (-?\d+) size: (\d+) magic: (\d+) compresscodec: (\w+) crc: (\d+) isvalid: (\w+)$`)
	recordLine = regexp.MustCompile(`^\| offset: (\d+) (CreateTime|LogAppendTime|NoTimestampType): (-?\d+) keySize: (-?\d+) valueSize: (-?\d+) sequence: (-?\d+) headerKeys: \[([^\]]*)\](.*)$`)
)

// parseDump parses DumpLogSegments' output: batches by file. A line it does
// not understand fails the test.
func parseDump(t *testing.T, out string) map[string][]dumpBatch {
	t.Helper()
	files := map[string][]dumpBatch{}
	var file string
	for _, l := range strings.Split(out, "\n") {
		switch {
		case l == "":
		case strings.HasPrefix(l, "Dumping "):
			file = strings.TrimPrefix(l, "Dumping ")
		case strings.HasPrefix(l, "Log starting offset: "):
		case strings.HasPrefix(l, "baseOffset: "):
			m := batchLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("kafka-dump-log (%s): unexpected batch line %q", file, l)
			}
			b := dumpBatch{file: file, deleteHorizon: m[11], tsType: m[13], codec: m[17], valid: m[19] == "true"}
			b.base, _ = strconv.ParseInt(m[1], 10, 64)
			b.last, _ = strconv.ParseInt(m[2], 10, 64)
			b.count, _ = strconv.Atoi(m[3])
			b.producerID, _ = strconv.ParseInt(m[6], 10, 64)
			e, _ := strconv.ParseInt(m[8], 10, 32)
			b.leaderEpoch = int32(e)
			b.position, _ = strconv.ParseInt(m[12], 10, 64)
			b.maxTs, _ = strconv.ParseInt(m[14], 10, 64)
			b.size, _ = strconv.Atoi(m[15])
			files[file] = append(files[file], b)
		case strings.HasPrefix(l, "| offset: "):
			m := recordLine.FindStringSubmatch(l)
			bs := files[file]
			if m == nil || len(bs) == 0 {
				t.Fatalf("kafka-dump-log (%s): unexpected record line %q", file, l)
			}
			r := dumpRecord{tsType: m[2]}
			r.offset, _ = strconv.ParseInt(m[1], 10, 64)
			r.ts, _ = strconv.ParseInt(m[3], 10, 64)
			r.keySize, _ = strconv.Atoi(m[4])
			r.valueSize, _ = strconv.Atoi(m[5])
			if m[7] != "" {
				r.headerKeys = strings.Split(m[7], ",")
			}
			rest := m[8]
			if strings.HasPrefix(rest, " key: ") {
				r.hasKey = true
				rest = rest[len(" key: "):]
				if i := strings.Index(rest, " payload: "); i >= 0 {
					r.key, r.payload, r.hasPayload = rest[:i], rest[i+len(" payload: "):], true
				} else {
					r.key = rest
				}
			} else if strings.HasPrefix(rest, " payload: ") {
				r.payload, r.hasPayload = rest[len(" payload: "):], true
			} else if rest != "" {
				t.Fatalf("kafka-dump-log (%s): unexpected record line %q", file, l)
			}
			bs[len(bs)-1].records = append(bs[len(bs)-1].records, r)
		default:
			t.Fatalf("kafka-dump-log (%s): unexpected line %q", file, l)
		}
	}
	return files
}

// partitionRecords gathers the batches of one partition directory's
// segments in offset order.
func partitionRecords(dump map[string][]dumpBatch, dir string) []dumpBatch {
	var names []string
	for f := range dump {
		if filepath.Dir(f) == dir && strings.HasSuffix(f, ".log") {
			names = append(names, f)
		}
	}
	sort.Strings(names)
	var all []dumpBatch
	for _, n := range names {
		all = append(all, dump[n]...)
	}
	return all
}

// checkRecord compares a decoded record with what was produced at its offset.
func checkRecord(t *testing.T, where string, r dumpRecord, p produced) {
	t.Helper()
	var problems []string
	if (p.key != nil) != r.hasKey || (p.key != nil && (r.key != string(p.key) || r.keySize != len(p.key))) || (p.key == nil && r.keySize != -1) {
		problems = append(problems, fmt.Sprintf("key %q (size %d), produced %q", r.key, r.keySize, p.key))
	}
	if (p.value != nil) != r.hasPayload || (p.value != nil && (r.payload != string(p.value) || r.valueSize != len(p.value))) || (p.value == nil && r.valueSize != -1) {
		problems = append(problems, fmt.Sprintf("payload %q (size %d), produced %q", r.payload, r.valueSize, p.value))
	}
	if strings.Join(r.headerKeys, ",") != strings.Join(p.headers, ",") {
		problems = append(problems, fmt.Sprintf("header keys %q, produced %q", r.headerKeys, p.headers))
	}
	if p.ts != 0 && r.tsType == "CreateTime" && r.ts != p.ts {
		problems = append(problems, fmt.Sprintf("CreateTime %d, produced %d", r.ts, p.ts))
	}
	if len(problems) > 0 {
		t.Errorf("kafka-dump-log (%s) offset %d: %s", where, r.offset, strings.Join(problems, "; "))
	}
}

// produceAll sends recs to topic's partition 0 with cl (batched by linger)
// and returns them by the offsets kvlog assigned.
func produceAll(t *testing.T, cl *kgo.Client, topic string, recs []produced) map[int64]produced {
	t.Helper()
	ctx := testbroker.Context(t, 60*time.Second)
	byOffset := map[int64]produced{}
	rs := make([]*kgo.Record, len(recs))
	for i, p := range recs {
		r := &kgo.Record{Topic: topic, Key: p.key, Value: p.value}
		if p.ts != 0 {
			r.Timestamp = time.UnixMilli(p.ts)
		}
		for _, h := range p.headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h, Value: []byte("v-" + h)})
		}
		rs[i] = r
	}
	results := cl.ProduceSync(ctx, rs...)
	if err := results.FirstErr(); err != nil {
		t.Fatalf("producing to %s: %v", topic, err)
	}
	for i, res := range results {
		byOffset[res.Record.Offset] = recs[i]
	}
	return byOffset
}

// changelog returns n records over keys k0..k(keys-1): values of random
// length with the sequence number in them, a few tombstones, a few null
// keys (when nullKeys), headers on some, timestamps 10 ms apart from an
// hour ago (recent enough for the default 7-day retention.ms).
func changelog(seed uint64, n, keys int, nullKeys bool) []produced {
	base := time.Now().Add(-time.Hour).UnixMilli()
	rnd := rand.New(rand.NewPCG(seed, 1))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	var recs []produced
	for i := 0; i < n; i++ {
		p := produced{key: []byte(fmt.Sprintf("k%d", rnd.IntN(keys)))}
		// Compressible (a random word repeated): producers keep a batch
		// uncompressed when compressing does not make it smaller.
		word := make([]byte, 3+rnd.IntN(6))
		for j := range word {
			word[j] = letters[rnd.IntN(len(letters))]
		}
		p.value = append([]byte(fmt.Sprintf("seq-%d-", i)), bytes.Repeat(word, 10+rnd.IntN(30))...)
		switch {
		case i%9 == 4:
			p.value = nil // tombstone
		case nullKeys && i%13 == 6:
			p.key = nil
		}
		if i%5 == 0 {
			p.headers = []string{"h1", "trace"}
		}
		p.ts = base + int64(i)*10
		recs = append(recs, p)
	}
	return recs
}

// waitCleaned polls the broker's /cleaner status until topic's partition 0
// has had a cleaning pass that left a tombstone horizon.
func waitCleaned(t *testing.T, b *testbroker.Broker, topic string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last cleaner.PartitionStatus
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + b.HTTP + "/cleaner")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var st cleaner.Status
			if json.Unmarshal(body, &st) == nil {
				for _, p := range st.Partitions {
					if p.Topic == topic && p.Partition == 0 {
						last = p
						if p.Passes > 0 && p.TombstoneHorizon != nil && p.State == "idle" {
							return
						}
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s-0 not cleaned with a tombstone horizon within 60 s: %+v", topic, last)
}

// TestDumpLogSegmentsReadsKvlog: Apache Kafka's DumpLogSegments reads
// every segment, index and producer snapshot kvlogd wrote — plain, with
// every codec, LogAppendTime, compacted with tombstone horizons, after a
// torn tail was truncated by recovery, after retention deleted segments,
// after the engine truncated into an earlier segment — with no error, and
// decodes exactly the records that were produced. Kafka's checkpoint
// readers read the leader-epoch and log-dir checkpoints.
func TestDumpLogSegmentsReadsKvlog(t *testing.T) {
	classpath(t)
	b := testbroker.Start(t, testbroker.Options{LogLevel: "warn", Props: []string{
		"log.retention.check.interval.ms=200",
		"log.cleaner.backoff.ms=100",
		"log.segment.delete.delay.ms=0",
		"log.cleaner.dedupe.buffer.size=4194304",
		"offsets.topic.num.partitions=1",
	}})
	adm := b.Admin(t)
	ctx := testbroker.Context(t, 2*time.Minute)
	str := func(s string) *string { return &s }
	small := map[string]*string{"segment.bytes": str("3000"), "index.interval.bytes": str("300")}
	with := func(base map[string]*string, kv ...string) map[string]*string {
		m := map[string]*string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = str(kv[i+1])
		}
		return m
	}

	// topic → (codec the producer uses, configs).
	type spec struct {
		codec   kgo.CompressionCodec
		want    string // compresscodec DumpLogSegments must print
		configs map[string]*string
	}
	specs := map[string]spec{
		"plain":      {kgo.NoCompression(), "none", small},
		"gzip":       {kgo.GzipCompression(), "gzip", small},
		"snappy":     {kgo.SnappyCompression(), "snappy", small},
		"lz4":        {kgo.Lz4Compression(), "lz4", small},
		"zstd":       {kgo.ZstdCompression(), "zstd", small},
		"appendtime": {kgo.Lz4Compression(), "lz4", with(small, "message.timestamp.type", "LogAppendTime")},
		"crashed":    {kgo.NoCompression(), "none", small},
		"compacted": {kgo.ZstdCompression(), "zstd", with(small, "cleanup.policy", "compact", "min.cleanable.dirty.ratio", "0.01",
			"delete.retention.ms", "3600000", "segment.bytes", "2000")},
		"retained": {kgo.NoCompression(), "none", with(small, "retention.bytes", "6000")},
	}
	for topic, s := range specs {
		if _, err := adm.CreateTopic(ctx, 1, 1, s.configs, topic); err != nil {
			t.Fatalf("creating %s: %v", topic, err)
		}
	}
	sent := map[string]map[int64]produced{}
	for topic, s := range specs {
		cl := b.Client(t, kgo.ProducerBatchCompression(s.codec), kgo.ProducerLinger(20*time.Millisecond), kgo.ProducerBatchMaxBytes(1200), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		n := 120
		keys := 1000
		if topic == "compacted" {
			keys = 12
		}
		sent[topic] = produceAll(t, cl, topic, changelog(uint64(len(topic)), n, keys, topic != "compacted"))
	}
	waitCleaned(t, b, "compacted")
	deadline := time.Now().Add(30 * time.Second)
	for {
		so, err := adm.ListStartOffsets(ctx, "retained")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := so.Lookup("retained", 0); o.Offset > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention.bytes deleted no segment of retained-0 within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Offsets committed for a group go to __consumer_offsets.
	if _, err := adm.CommitOffsets(ctx, "dump-group", kadm.OffsetsFromRecords(kgo.Record{Topic: "plain", Partition: 0, Offset: 41})); err != nil {
		t.Fatal(err)
	}

	// A torn tail: half a batch after the last one, as if the machine died
	// mid-write; recovery cuts it off, and the log takes new records.
	b.Kill()
	crashedDir := filepath.Join(b.DataDir, "crashed-0")
	logs, _ := filepath.Glob(filepath.Join(crashedDir, "*.log"))
	sort.Strings(logs)
	active := logs[len(logs)-1]
	raw, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(active, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(raw[:min(len(raw), 150)])
	f.Close()
	b.Restart()
	more := produceAll(t, b.Client(t, kgo.ProducerBatchCompression(kgo.NoCompression())), "crashed", changelog(99, 10, 1000, false))
	for o, p := range more {
		if _, dup := sent["crashed"][o]; dup {
			t.Fatalf("crashed-0: offset %d assigned twice", o)
		}
		sent["crashed"][o] = p
	}
	b.Term() // clean shutdown: indexes trimmed, snapshots and checkpoints written

	// Truncation into an earlier segment, through the engine kvlogd runs.
	truncDir := filepath.Join(t.TempDir(), "truncated-0")
	sent["truncated"] = writeTruncatedLog(t, truncDir)

	dirs := map[string]string{"truncated": truncDir}
	for topic := range specs {
		dirs[topic] = filepath.Join(b.DataDir, topic+"-0")
	}
	var logFiles, indexFiles, snapshots []string
	for _, dir := range dirs {
		l, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		i1, _ := filepath.Glob(filepath.Join(dir, "*.index"))
		i2, _ := filepath.Glob(filepath.Join(dir, "*.timeindex"))
		s, _ := filepath.Glob(filepath.Join(dir, "*.snapshot"))
		logFiles, indexFiles, snapshots = append(logFiles, l...), append(append(indexFiles, i1...), i2...), append(snapshots, s...)
	}
	sort.Strings(logFiles)
	sort.Strings(indexFiles)
	sort.Strings(snapshots)

	// Segments: every record decoded, equal to what was produced.
	r := runTool(t, dumpLog, ".log", "", "--deep-iteration", "--print-data-log", "--files", strings.Join(logFiles, ","))
	if r.code != 0 {
		t.Fatalf("kafka-dump-log --deep-iteration --print-data-log (.log): exit %d, stderr:\n%s", r.code, r.stderr)
	}
	dump := parseDump(t, r.stdout)
	checkGaps(t, r.stderr, dump, dirs["compacted"])
	for topic, dir := range dirs {
		want := specs[topic].want
		if topic == "truncated" {
			want = "none"
		}
		checkPartition(t, topic, dir, partitionRecords(dump, dir), sent[topic], want, topic == "compacted")
	}
	if bs := partitionRecords(dump, dirs["retained"]); len(bs) == 0 || bs[0].base == 0 {
		t.Errorf("kafka-dump-log (retained-0): retention deleted no segment (first batch %+v)", bs)
	}
	horizon := false
	for _, bt := range partitionRecords(dump, dirs["compacted"]) {
		if strings.HasPrefix(bt.deleteHorizon, "OptionalLong[") {
			horizon = true
		}
	}
	if !horizon {
		t.Errorf("kafka-dump-log (compacted-0): no batch carries a deleteHorizonMs, though the cleaner kept tombstones")
	}

	// Indexes: Kafka's sanity check (what decides a rebuild at start-up),
	// its verification against the log, and the full dump of the entries.
	r = runTool(t, dumpLog, ".index, .timeindex", "", "--index-sanity-check", "--files", strings.Join(indexFiles, ","))
	if r.code != 0 || strings.TrimSpace(r.stderr) != "" {
		t.Fatalf("kafka-dump-log --index-sanity-check (.index, .timeindex): exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, f := range indexFiles {
		if !strings.Contains(r.stdout, f+" passed sanity check.") && !strings.Contains(r.stdout, f+" is empty.") {
			t.Errorf("kafka-dump-log --index-sanity-check (%s): not passed:\n%s", f, r.stdout)
		}
	}
	r = runTool(t, dumpLog, ".index, .timeindex", "", "--verify-index-only", "--files", strings.Join(indexFiles, ","))
	if r.code != 0 {
		t.Errorf("kafka-dump-log --verify-index-only (.index, .timeindex): exit %d, stderr:\n%s", r.code, r.stderr)
	}
	checkIndexErrors(t, "--verify-index-only", r.stderr, dump)
	// DumpLogSegments does not read leader-epoch checkpoints (Kafka's
	// reader does, below): it says so and goes on.
	epochFile := filepath.Join(dirs["plain"], "leader-epoch-checkpoint")
	r = runTool(t, dumpLog, ".index, .timeindex, .snapshot, leader-epoch-checkpoint", "", "--files", strings.Join(append(append(indexFiles, snapshots...), epochFile), ","))
	if r.code != 0 {
		t.Fatalf("kafka-dump-log (.index, .timeindex, .snapshot): exit %d, stderr:\n%s", r.code, r.stderr)
	}
	ignored := "Ignoring unknown file " + epochFile
	if !strings.Contains(r.stderr, ignored) {
		t.Errorf("kafka-dump-log (leader-epoch-checkpoint): stderr lacks %q:\n%s", ignored, r.stderr)
	}
	checkIndexErrors(t, "", strings.Replace(r.stderr, ignored, "", 1), dump)
	checkIndexDump(t, r.stdout, dump, dirs["plain"])
	checkSnapshots(t, r.stdout, dump, snapshots)

	// __consumer_offsets with Kafka's own record decoder.
	cos, _ := filepath.Glob(filepath.Join(b.DataDir, "__consumer_offsets-0", "*.log"))
	r = runTool(t, dumpLog, "__consumer_offsets", "", "--offsets-decoder", "--deep-iteration", "--print-data-log", "--files", strings.Join(cos, ","))
	if r.code != 0 || strings.TrimSpace(r.stderr) != "" || strings.Contains(r.stdout, "Error at offset") || strings.Contains(r.stdout, "Unknown record type") {
		t.Errorf("kafka-dump-log --offsets-decoder (__consumer_offsets): exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	expect(t, dumpLog, "__consumer_offsets", r.stdout,
		`key: \{"type":"1","data":\{"group":"dump-group","topic":"plain","partition":0\}\} payload: \{"version":"\d+","data":\{"offset":42,`)

	// Checkpoints, with Kafka's readers.
	checkCheckpoints(t, b.DataDir, dirs, dump)
}

// checkPartition compares one partition's decoded batches with what was
// produced. Without compaction every produced offset is there exactly once,
// above the log start; compacted, every record present is the one produced
// at its offset and the latest record of every key is present.
func checkPartition(t *testing.T, topic, dir string, batches []dumpBatch, sent map[int64]produced, codec string, compacted bool) {
	t.Helper()
	where := topic + "-0"
	if len(batches) == 0 {
		t.Errorf("kafka-dump-log (%s): no batches in %s", where, dir)
		return
	}
	seen := map[int64]bool{}
	prevLast := int64(-1)
	withCodec := 0
	for _, bt := range batches {
		if !bt.valid {
			t.Errorf("kafka-dump-log (%s): batch %d isvalid false (CRC)", where, bt.base)
		}
		// A producer sends a batch uncompressed when compressing does not
		// shrink it, and the cleaner writes an emptied batch's header
		// uncompressed, as Kafka's does.
		switch {
		case bt.codec == codec:
			withCodec++
		case bt.codec == "none" && (bt.count == 0 || bt.size < 150):
		default:
			t.Errorf("kafka-dump-log (%s): batch %d (%d records, %d bytes) compresscodec %s, want %s", where, bt.base, bt.count, bt.size, bt.codec, codec)
		}
		if bt.base <= prevLast {
			t.Errorf("kafka-dump-log (%s): batch %d after a batch ending at %d", where, bt.base, prevLast)
		}
		prevLast = bt.last
		if topic == "appendtime" && bt.tsType != "LogAppendTime" {
			t.Errorf("kafka-dump-log (%s): batch %d timestamp type %s", where, bt.base, bt.tsType)
		}
		for _, r := range bt.records {
			p, ok := sent[r.offset]
			if !ok {
				t.Errorf("kafka-dump-log (%s): offset %d was never produced", where, r.offset)
				continue
			}
			seen[r.offset] = true
			checkRecord(t, where, r, p)
		}
	}
	if withCodec < len(batches)/2 {
		t.Errorf("kafka-dump-log (%s): %d of %d batches with compresscodec %s", where, withCodec, len(batches), codec)
	}
	start := batches[0].base
	if compacted {
		latest := map[string]int64{}
		for o, p := range sent {
			if k := string(p.key); o >= latest[k] {
				latest[k] = o
			}
		}
		for k, o := range latest {
			if !seen[o] {
				t.Errorf("kafka-dump-log (%s): the latest record of key %s (offset %d) is missing", where, k, o)
			}
		}
		if len(seen) >= len(sent) {
			t.Errorf("kafka-dump-log (%s): %d of %d records: nothing was compacted", where, len(seen), len(sent))
		}
		return
	}
	for o := range sent {
		if o >= start && !seen[o] {
			t.Errorf("kafka-dump-log (%s): produced offset %d is missing", where, o)
		}
	}
}

// checkGaps reads what DumpLogSegments printed on stderr for its
// deep iteration: only "Non-consecutive offsets" reports, and only those
// Kafka's own logs give too. The tool starts every file expecting offset
// 0, so each segment but the first reports "-1 is followed by <its first
// offset>"; a compacted log also has the gaps the cleaner left.
func checkGaps(t *testing.T, stderr string, dump map[string][]dumpBatch, compactedDir string) {
	t.Helper()
	pair := regexp.MustCompile(`^  (-?\d+) is followed by (\d+)$`)
	var file string
	for _, l := range lines(stderr) {
		if f, ok := strings.CutPrefix(l, "Non-consecutive offsets in "); ok {
			file = f
			continue
		}
		m := pair.FindStringSubmatch(l)
		if m == nil || file == "" {
			t.Errorf("kafka-dump-log --deep-iteration (.log): %s", l)
			continue
		}
		from, _ := strconv.ParseInt(m[1], 10, 64)
		to, _ := strconv.ParseInt(m[2], 10, 64)
		first := int64(-2)
		for _, bt := range dump[file] {
			if len(bt.records) > 0 {
				first = bt.records[0].offset
				break
			}
		}
		switch {
		case from == -1 && to == first:
		case filepath.Dir(file) == compactedDir && to > from:
		default:
			t.Errorf("kafka-dump-log --deep-iteration (%s): offset %d is followed by %d", file, from, to)
		}
	}
}

// checkIndexErrors reads what DumpLogSegments printed on stderr while
// checking indexes against their segments: nothing, but for one report
// Kafka's own cleaned logs give too. The cleaner keeps an emptied batch
// (no records, its header's max timestamp kept) as the last batch of an
// active producer; when that header timestamp is the segment's largest, the
// segment's final time-index entry points at the emptied batch, and the
// tool, which takes the maximum over the batch's records, reports "log
// timestamp: -1".
func checkIndexErrors(t *testing.T, mode, stderr string, dump map[string][]dumpBatch) {
	t.Helper()
	mismatch := regexp.MustCompile(`^  Index timestamp: (-?\d+), log timestamp: -1$`)
	var file string
	for _, l := range lines(stderr) {
		if f, ok := strings.CutPrefix(l, "Found timestamp mismatch in :"); ok {
			file = f
			continue
		}
		if m := mismatch.FindStringSubmatch(l); m != nil && file != "" {
			ts, _ := strconv.ParseInt(m[1], 10, 64)
			emptied := false
			for _, bt := range dump[strings.TrimSuffix(file, ".timeindex")+".log"] {
				if bt.count == 0 && bt.maxTs == ts {
					emptied = true
				}
			}
			if emptied {
				continue
			}
		}
		t.Errorf("kafka-dump-log %s (.index, .timeindex of %s): %s", mode, file, l)
	}
}

var (
	indexEntry = regexp.MustCompile(`^offset: (\d+) position: (\d+)$`)
	timeEntry  = regexp.MustCompile(`^timestamp: (-?\d+) offset: (\d+)$`)
)

// checkIndexDump: the plain partition's offset indexes have entries, each
// the last offset of the batch starting at its position (DumpLogSegments
// reports a mismatch on stderr, checked by the caller; this checks that
// entries were there to check), and its time indexes have entries too.
func checkIndexDump(t *testing.T, out string, dump map[string][]dumpBatch, dir string) {
	t.Helper()
	var file string
	offsets, times := 0, 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Dumping ") {
			file = strings.TrimPrefix(l, "Dumping ")
			continue
		}
		if filepath.Dir(file) != dir {
			continue
		}
		if m := indexEntry.FindStringSubmatch(l); m != nil && strings.HasSuffix(file, ".index") {
			off, _ := strconv.ParseInt(m[1], 10, 64)
			pos, _ := strconv.ParseInt(m[2], 10, 64)
			found := false
			for _, bt := range dump[strings.TrimSuffix(file, ".index")+".log"] {
				if bt.position == pos && bt.last == off {
					found = true
				}
			}
			if !found {
				t.Errorf("kafka-dump-log (%s): entry offset %d position %d is no batch's last offset and start", file, off, pos)
			}
			offsets++
		}
		if timeEntry.MatchString(l) && strings.HasSuffix(file, ".timeindex") {
			times++
		}
	}
	if offsets < 5 || times < 5 {
		t.Errorf("kafka-dump-log (.index, .timeindex of %s): %d offset and %d time index entries, want several of each", dir, offsets, times)
	}
}

var snapshotEntry = regexp.MustCompile(`^producerId: (\d+) producerEpoch: (\d+) coordinatorEpoch: (-?\d+) currentTxnFirstOffset: (\S+) lastTimestamp: (-?\d+) firstSequence: (-?\d+) lastSequence: (-?\d+) lastOffset: (\d+) offsetDelta: (\d+) timestamp: (-?\d+)$`)

// checkSnapshots: every producer snapshot Kafka reads names, for each
// producer, the last batch that producer wrote below the snapshot's offset.
func checkSnapshots(t *testing.T, out string, dump map[string][]dumpBatch, snapshots []string) {
	t.Helper()
	if len(snapshots) == 0 {
		t.Fatal("kvlogd wrote no producer snapshot (.snapshot)")
	}
	var file string
	entries := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Dumping ") {
			file = strings.TrimPrefix(l, "Dumping ")
			continue
		}
		if !strings.HasSuffix(file, ".snapshot") || l == "" {
			continue
		}
		m := snapshotEntry.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("kafka-dump-log (%s): unexpected line %q", file, l)
			continue
		}
		entries[file]++
		pid, _ := strconv.ParseInt(m[1], 10, 64)
		last, _ := strconv.ParseInt(m[8], 10, 64)
		at, _ := strconv.ParseInt(strings.TrimSuffix(filepath.Base(file), ".snapshot"), 10, 64)
		want := int64(-1)
		for _, bt := range partitionRecords(dump, filepath.Dir(file)) {
			if bt.producerID == pid && bt.last < at {
				want = bt.last
			}
		}
		// A snapshot below the log start may name batches retention deleted.
		if want != -1 && last != want {
			t.Errorf("kafka-dump-log (%s): producer %d last offset %d, its last batch below %d ends at %d", file, pid, last, at, want)
		}
	}
	if len(entries) == 0 {
		t.Errorf("kafka-dump-log (.snapshot): no producer entry in any of %v", snapshots)
	}
}

// checkCheckpoints reads the leader-epoch checkpoints and the log dir's
// offset checkpoints with Kafka's readers and checks them against the logs.
func checkCheckpoints(t *testing.T, dataDir string, dirs map[string]string, dump map[string][]dumpBatch) {
	t.Helper()
	var files []string
	for _, name := range []string{"recovery-point-offset-checkpoint", "log-start-offset-checkpoint", "cleaner-offset-checkpoint"} {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err == nil {
			files = append(files, filepath.Join(dataDir, name))
		}
	}
	for _, dir := range dirs {
		files = append(files, filepath.Join(dir, "leader-epoch-checkpoint"))
	}
	r := runJavaSource(t, "ReadCheckpoints.java", files...)
	if r.code != 0 {
		t.Fatalf("Kafka's checkpoint readers (LeaderEpochCheckpointFile, OffsetCheckpointFile): exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	got := map[string]string{}
	for _, l := range lines(r.stdout) {
		f := strings.Fields(l)
		got[f[0]+" "+f[1]] = strings.Join(f[2:], " ")
	}
	for topic, dir := range dirs {
		bs := partitionRecords(dump, dir)
		if len(bs) == 0 {
			continue
		}
		// One epoch (0, or 5 for the engine-written log), starting at the
		// log start offset: the first segment's base offset (compaction
		// does not move it, retention does).
		first := filepath.Base(bs[0].file)
		want := fmt.Sprintf("%d start %s", bs[0].leaderEpoch, strings.TrimLeft(strings.TrimSuffix(first, ".log"), "0"))
		if strings.HasPrefix(first, "00000000000000000000") {
			want = fmt.Sprintf("%d start 0", bs[0].leaderEpoch)
		}
		if g := got[filepath.Join(dir, "leader-epoch-checkpoint")+" epoch"]; g != want {
			t.Errorf("LeaderEpochCheckpointFile (%s-0): epoch %q, want %q", topic, g, want)
		}
	}
	rp := filepath.Join(dataDir, "recovery-point-offset-checkpoint")
	for _, topic := range []string{"plain", "crashed", "compacted"} {
		bs := partitionRecords(dump, dirs[topic])
		want := strconv.FormatInt(bs[len(bs)-1].last+1, 10)
		if g := got[rp+" "+topic+"-0"]; g != want {
			t.Errorf("OffsetCheckpointFile (recovery-point-offset-checkpoint, %s-0): %q, want the log end %s", topic, g, want)
		}
	}
	ls := filepath.Join(dataDir, "log-start-offset-checkpoint")
	if bs := partitionRecords(dump, dirs["retained"]); len(bs) > 0 {
		if g := got[ls+" retained-0"]; g != strconv.FormatInt(bs[0].base, 10) {
			t.Errorf("OffsetCheckpointFile (log-start-offset-checkpoint, retained-0): %q, want %d", g, bs[0].base)
		}
	}
	if g := got[filepath.Join(dataDir, "cleaner-offset-checkpoint")+" compacted-0"]; g == "" || g == "0" {
		t.Errorf("OffsetCheckpointFile (cleaner-offset-checkpoint, compacted-0): %q, want the cleaned offset", g)
	}
}

// runJavaSource runs a Java source file of this directory with Kafka's jars
// on the classpath (the java source launcher compiles it in memory).
func runJavaSource(t *testing.T, file string, args ...string) result {
	t.Helper()
	tl := tool{name: file, class: filepath.Join(moduleDir(), file)}
	return runTool(t, tl, file, "", args...)
}

// writeTruncatedLog writes a partition directory through the engine:
// three segments of single-record batches at leader epoch 5, a truncation
// into the first segment (the later segments deleted, the first one's
// indexes cut), then more batches. It returns what the log holds.
func writeTruncatedLog(t *testing.T, dir string) map[int64]produced {
	t.Helper()
	cfg := engine.DefaultConfig()
	cfg.SegmentBytes = 1500
	cfg.IndexIntervalBytes = 200
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := engine.OpenLog(dir, engine.TopicPartition{Topic: "truncated", Partition: 0}, cfg, engine.LogOptions{RecoveryPoint: -1, LogStartOffset: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	recs := changelog(7, 60, 1000, true)
	held := map[int64]produced{}
	appendOne := func(p produced) {
		var bl record.Builder
		bl.Attributes = int16(record.CodecNone)
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
		bl.BaseTimestamp = p.ts
		bl.LastOffsetDelta, bl.MaxTimestamp = -1, -1
		var hs []record.Header
		for _, h := range p.headers {
			hs = append(hs, record.Header{Key: []byte(h), Value: []byte("v-" + h)})
		}
		bl.Add(record.Record{Key: p.key, Value: p.value, Headers: hs})
		batch, err := bl.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := l.Append(batch, 5)
		if err != nil {
			t.Fatal(err)
		}
		held[int64(res.BaseOffset)] = p
	}
	for _, p := range recs[:40] {
		appendOne(p)
	}
	if n := len(l.Segments()); n < 3 {
		t.Fatalf("engine wrote %d segments before the truncation, want 3 or more", n)
	}
	cut := l.Segments()[0].NextOffset - 3
	if err := l.TruncateTo(cut); err != nil {
		t.Fatal(err)
	}
	for o := range held {
		if o >= int64(cut) {
			delete(held, o)
		}
	}
	for _, p := range recs[40:] {
		appendOne(p)
	}
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return held
}

// TestDumpLogSegmentsBrokerCompression: a topic whose compression.type
// names a codec stores its batches in that codec whatever the producer
// used, as Apache Kafka recompresses them on append (compression.type
// "producer", the default, keeps the producer's codec).
func TestDumpLogSegmentsBrokerCompression(t *testing.T) {
	classpath(t)
	b := testbroker.Start(t, testbroker.Options{LogLevel: "warn"})
	adm := b.Admin(t)
	ctx := testbroker.Context(t, time.Minute)
	codecs := map[string]kgo.CompressionCodec{"gzip": kgo.NoCompression(), "zstd": kgo.Lz4Compression(), "uncompressed": kgo.SnappyCompression()}
	sent := map[string]map[int64]produced{}
	for codec, producerCodec := range codecs {
		topic := "as-" + codec
		v := codec
		if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"compression.type": &v}, topic); err != nil {
			t.Fatal(err)
		}
		cl := b.Client(t, kgo.ProducerBatchCompression(producerCodec), kgo.ProducerLinger(20*time.Millisecond))
		sent[topic] = produceAll(t, cl, topic, changelog(3, 40, 1000, true))
	}
	b.Term()
	var files []string
	for codec := range codecs {
		l, _ := filepath.Glob(filepath.Join(b.DataDir, "as-"+codec+"-0", "*.log"))
		files = append(files, l...)
	}
	r := runTool(t, dumpLog, ".log", "", "--deep-iteration", "--print-data-log", "--files", strings.Join(files, ","))
	if r.code != 0 || strings.TrimSpace(r.stderr) != "" {
		t.Fatalf("kafka-dump-log --deep-iteration (.log): exit %d, stderr:\n%s", r.code, r.stderr)
	}
	dump := parseDump(t, r.stdout)
	for codec := range codecs {
		want := codec
		if codec == "uncompressed" {
			want = "none"
		}
		dir := filepath.Join(b.DataDir, "as-"+codec+"-0")
		checkPartition(t, "as-"+codec, dir, partitionRecords(dump, dir), sent["as-"+codec], want, false)
	}
}
