package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/kafkaproc"
	"github.com/kvlog/kvlog/internal/testbroker"
)

var update = flag.Bool("update", false, "rewrite engine/testdata/kafka-golden from a real Apache Kafka broker")

// kafkaVersion is the Apache Kafka version of pom.xml, recorded in the
// fixture's manifest.
const kafkaVersion = "4.4.0"

// goldenCluster is the fixed cluster id the fixture's storage is formatted
// with (a Kafka Uuid, base64url of 16 bytes).
const goldenCluster = "a3Zsb2cta2Fma2EtZ29sZA"

// goldenCodecs: partition i of the golden topic is produced with codec i.
var goldenCodecs = []struct {
	name  string
	codec kgo.CompressionCodec
}{
	{"none", kgo.NoCompression()},
	{"gzip", kgo.GzipCompression()},
	{"snappy", kgo.SnappyCompression()},
	{"lz4", kgo.Lz4Compression()},
	{"zstd", kgo.ZstdCompression()},
}

// GoldenManifest is engine/testdata/kafka-golden/records.json: what the
// Apache Kafka broker served for each partition of the golden topic after
// compaction, read back from it with a consumer. engine's TestKafkaGolden
// decodes the same structure.
type GoldenManifest struct {
	KafkaVersion string            `json:"kafka_version"`
	Topic        string            `json:"topic"`
	Partitions   []GoldenPartition `json:"partitions"`
}

// GoldenPartition is one partition's codec, offsets and records.
type GoldenPartition struct {
	Partition      int32          `json:"partition"`
	Codec          string         `json:"codec"`
	LogStartOffset int64          `json:"log_start_offset"`
	HighWatermark  int64          `json:"high_watermark"`
	Records        []GoldenRecord `json:"records"`
}

// GoldenRecord is one record; a nil Value is a tombstone.
type GoldenRecord struct {
	Offset    int64             `json:"offset"`
	Timestamp int64             `json:"timestamp"`
	Key       string            `json:"key"`
	Value     *string           `json:"value"`
	Headers   map[string]string `json:"headers,omitempty"`
}

// kafkaBroker is a real Apache Kafka broker process in KRaft combined mode.
type kafkaBroker struct {
	addr    string
	dataDir string
	cmd     *exec.Cmd
	exited  chan struct{}
	mu      sync.Mutex
	out     bytes.Buffer
}

func (k *kafkaBroker) Write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.out.Len() < 16<<20 {
		k.out.Write(p)
	}
	return len(p), nil
}

func (k *kafkaBroker) log() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.out.String()
	if len(s) > 16<<10 {
		s = "…" + s[len(s)-16<<10:]
	}
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startKafka formats storage with kafka.tools.StorageTool and starts
// kafka.Kafka as one node that is both broker and controller, on free
// 127.0.0.1 ports and temporary directories; it is killed when the test
// ends. The wait for it to serve is bounded.
func startKafka(t *testing.T, root string) *kafkaBroker {
	t.Helper()
	cp := classpath(t)
	addr, ctrl := freeAddr(t), freeAddr(t)
	node := kafkaproc.Node{
		Dir: root, Addr: addr, Controller: ctrl,
		// Small thread pools and a fast cleaner: a test on a shared machine.
		Props: []string{
			"num.partitions=1",
			"offsets.topic.num.partitions=1",
			"num.network.threads=2",
			"num.io.threads=2",
			"background.threads=2",
			"num.recovery.threads.per.data.dir=1",
			"log.cleaner.threads=1",
			"log.cleaner.backoff.ms=100",
			"log.cleaner.dedupe.buffer.size=8388608",
		},
	}
	k := &kafkaBroker{addr: addr, dataDir: node.DataDir(), exited: make(chan struct{})}
	if err := node.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	cfg := node.ConfigPath()
	out := ok(t, storageTool, "format", "", "format", "--cluster-id", goldenCluster, "--config", cfg, "--ignore-formatted")
	expect(t, storageTool, "format", out, `^Formatting (metadata directory|dynamic metadata voter directory|data directory) `)

	// kafka-server-start.sh's JVM flags with a 512 MiB heap instead of its
	// 1 GiB: the tests share a two-core machine.
	argv := append(node.ServerJVMFlags("512m"), "-Dkvlog.kafka.level=INFO",
		kafkaproc.Log4j2Flag(filepath.Join(moduleDir(), "log4j2.properties")))
	argv = append(argv, node.ServerArgs(cp)...)
	k.cmd = exec.Command("java", argv...)
	k.cmd.Stdout, k.cmd.Stderr = k, k
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.cmd.Wait(); close(k.exited) }()
	t.Cleanup(func() {
		select {
		case <-k.exited:
		default:
			k.cmd.Process.Kill()
			<-k.exited
		}
		if t.Failed() {
			t.Logf("Apache Kafka on %s printed:\n%s", k.addr, k.log())
		}
	})

	deadline := time.Now().Add(120 * time.Second)
	for {
		select {
		case <-k.exited:
			t.Fatalf("Apache Kafka exited at start-up (%v):\n%s", k.cmd.ProcessState, k.log())
		default:
		}
		if k.serves() {
			return k
		}
		if time.Now().After(deadline) {
			t.Fatalf("Apache Kafka did not serve on %s within 120 s:\n%s", addr, k.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// serves reports whether the broker answers Metadata with itself in it.
func (k *kafkaBroker) serves() bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.DialTimeout(time.Second))
	if err != nil {
		return false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	return err == nil && len(m.Brokers) == 1
}

// stop sends SIGTERM (a clean shutdown: indexes trimmed, producer
// snapshots and checkpoints written) and waits for the exit.
func (k *kafkaBroker) stop(t *testing.T) {
	t.Helper()
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(90 * time.Second):
		k.cmd.Process.Kill()
		<-k.exited
		t.Fatalf("Apache Kafka did not stop within 90 s of SIGTERM:\n%s", k.log())
	}
}

// TestKafkaWrittenGolden: a real Apache Kafka broker writes a compacted
// topic, one partition per codec, with tombstones, headers and an
// idempotent producer, and cleans it; kvlog's engine opens the log
// directory Kafka left and reads exactly the records Kafka served, and
// `kvlog dump --deep --verify-index` finds every file sound. With -update
// the directory becomes engine/testdata/kafka-golden (`make kafka-golden`).
func TestKafkaWrittenGolden(t *testing.T) {
	classpath(t)
	root := t.TempDir()
	k := startKafka(t, root)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := testbroker.Context(t, 3*time.Minute)
	const topic = "golden"
	str := func(s string) *string { return &s }
	// Every produce round rolls a segment: Kafka rolls when a batch's
	// timestamp is more than segment.ms past the segment's first one, and
	// the rounds are an hour apart. Tombstones are kept a year.
	configs := map[string]*string{
		"cleanup.policy": str("compact"), "min.cleanable.dirty.ratio": str("0.01"),
		"segment.ms": str("600000"), "delete.retention.ms": str("31536000000"),
		"min.compaction.lag.ms": str("0"), "index.interval.bytes": str("64"),
		"file.delete.delay.ms": str("0"),
	}
	if r, err := adm.CreateTopic(ctx, int32(len(goldenCodecs)), 1, configs, topic); err != nil || r.Err != nil {
		t.Fatalf("CreateTopics on Apache Kafka: %v %v", err, r.Err)
	}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for p, c := range goldenCodecs {
		pc, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.ProducerBatchCompression(c.codec),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
		if err != nil {
			t.Fatal(err)
		}
		for round := 0; round < 6; round++ {
			var rs []*kgo.Record
			for i := 0; i < 5; i++ {
				n := round*5 + i
				r := &kgo.Record{Topic: topic, Partition: int32(p), Key: []byte(fmt.Sprintf("key-%d", n%7)),
					Timestamp: time.UnixMilli(base + int64(round)*3_600_000 + int64(i)*1000)}
				if n%6 != 5 {
					r.Value = []byte(fmt.Sprintf("%s value %d %s", c.name, n, strings.Repeat("abc", 10+n%5)))
				}
				if n%4 == 0 {
					r.Headers = []kgo.RecordHeader{{Key: "source", Value: []byte(c.name)}, {Key: "n", Value: []byte(strconv.Itoa(n))}}
				}
				rs = append(rs, r)
			}
			if err := pc.ProduceSync(ctx, rs...).FirstErr(); err != nil {
				t.Fatalf("Produce to Apache Kafka (%s, partition %d): %v", c.name, p, err)
			}
		}
		pc.Close()
	}
	// Kafka's cleaner checkpoints what it cleaned in cleaner-offset-checkpoint.
	deadline := time.Now().Add(90 * time.Second)
	for !allCleaned(k.dataDir, topic, len(goldenCodecs)) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(k.dataDir, "cleaner-offset-checkpoint"))
			t.Fatalf("Apache Kafka's cleaner did not clean every partition of %s within 90 s; cleaner-offset-checkpoint:\n%s", topic, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	manifest := consumeGolden(t, ctx, k.addr, adm, topic)
	k.stop(t)

	fixture := filepath.Join(root, "fixture")
	copyKafkaLogDir(t, k.dataDir, fixture, topic)
	js, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fixture, "records.json"), append(js, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}

	// kvlog's engine opens Kafka's log dir and reads what Kafka served.
	readWithEngine(t, fixture, manifest)
	// kvlog's DumpLogSegments equivalent, with index verification.
	kvlog, err := testbroker.Command("kvlog")
	if err != nil {
		t.Fatal(err)
	}
	for p := range goldenCodecs {
		dir := filepath.Join(fixture, fmt.Sprintf("%s-%d", topic, p))
		out, err := exec.Command(kvlog, "dump", dir, "--deep", "--verify-index").CombinedOutput()
		if err != nil {
			t.Errorf("kvlog dump --deep --verify-index %s: %v\n%s", filepath.Base(dir), err, out)
		}
	}

	if *update {
		dst := filepath.Join(moduleDir(), "..", "..", "engine", "testdata", "kafka-golden")
		if err := os.RemoveAll(dst); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(dst, os.DirFS(fixture)); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", dst)
	}
}

// allCleaned reports whether cleaner-offset-checkpoint has a cleaned
// offset above 0 for every partition of topic.
func allCleaned(dataDir, topic string, partitions int) bool {
	b, err := os.ReadFile(filepath.Join(dataDir, "cleaner-offset-checkpoint"))
	if err != nil {
		return false
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == topic && f[2] != "0" {
			n++
		}
	}
	return n == partitions
}

// consumeGolden reads every partition of topic from Apache Kafka, from the
// log start to the high watermark.
func consumeGolden(t *testing.T, ctx context.Context, addr string, adm *kadm.Client, topic string) GoldenManifest {
	t.Helper()
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	m := GoldenManifest{KafkaVersion: kafkaVersion, Topic: topic}
	for p, c := range goldenCodecs {
		s, _ := starts.Lookup(topic, int32(p))
		e, _ := ends.Lookup(topic, int32(p))
		gp := GoldenPartition{Partition: int32(p), Codec: c.name, LogStartOffset: s.Offset, HighWatermark: e.Offset}
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {int32(p): kgo.NewOffset().At(s.Offset)}}))
		if err != nil {
			t.Fatal(err)
		}
		last := s.Offset - 1
		for last < e.Offset-1 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("Fetch from Apache Kafka (%s-%d): reached offset %d of %d", topic, p, last, e.Offset)
			}
			fs.EachRecord(func(r *kgo.Record) {
				gr := GoldenRecord{Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Key: string(r.Key)}
				if r.Value != nil {
					v := string(r.Value)
					gr.Value = &v
				}
				for _, h := range r.Headers {
					if gr.Headers == nil {
						gr.Headers = map[string]string{}
					}
					gr.Headers[h.Key] = string(h.Value)
				}
				gp.Records = append(gp.Records, gr)
				last = r.Offset
			})
		}
		cl.Close()
		m.Partitions = append(m.Partitions, gp)
	}
	return m
}

// copyKafkaLogDir copies what a Kafka log dir holds for topic: its
// partition directories and the log dir's checkpoints, meta.properties and
// clean-shutdown file (not the lock file).
func copyKafkaLogDir(t *testing.T, src, dst, topic string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		top := strings.Split(rel, string(filepath.Separator))[0]
		if d.IsDir() {
			if rel != "." && !strings.HasPrefix(top, topic+"-") {
				return fs.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if rel == ".lock" || strings.HasSuffix(rel, ".deleted") {
			return nil // the lock, and segments the cleaner replaced that Kafka had not unlinked yet
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readWithEngine opens a copy of the log dir with kvlog's engine and
// compares every partition with the manifest: the log start and end
// offsets, every record, and the codec of every batch (uncompressed where
// compressing did not shrink it, or for a batch Kafka's cleaner emptied and
// kept for its producer state).
func readWithEngine(t *testing.T, dir string, m GoldenManifest) {
	t.Helper()
	work := t.TempDir()
	if err := os.CopyFS(work, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr, err := engine.OpenManager(engine.ManagerOptions{Dirs: []string{work}, Logger: quiet})
	if err != nil {
		t.Fatalf("engine.OpenManager on Apache Kafka's log dir: %v", err)
	}
	defer mgr.Close()
	for _, gp := range m.Partitions {
		tp := engine.TopicPartition{Topic: m.Topic, Partition: gp.Partition}
		l, ok := mgr.Log(tp)
		if !ok {
			t.Errorf("engine: %s not loaded from Apache Kafka's log dir", tp)
			continue
		}
		if l.LogStartOffset() != engine.Offset(gp.LogStartOffset) || l.LogEndOffset() != engine.Offset(gp.HighWatermark) {
			t.Errorf("engine %s: log start %d end %d, Apache Kafka served %d..%d", tp, l.LogStartOffset(), l.LogEndOffset(), gp.LogStartOffset, gp.HighWatermark)
		}
		var got []GoldenRecord
		var dec record.Decoder
		inCodec := 0
		err := l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(b record.Batch) error {
			// The producer sends a batch uncompressed when compressing it
			// would not make it smaller (a small batch under load).
			codec := b.Codec().String()
			switch {
			case codec == gp.Codec:
				inCodec++
			case codec != "none":
				t.Errorf("engine %s: batch %d codec %s, Apache Kafka wrote %s", tp, b.BaseOffset(), codec, gp.Codec)
			}
			if err := dec.ValidateStored(b); err != nil {
				return fmt.Errorf("batch %d: %w", b.BaseOffset(), err)
			}
			return dec.Records(b, func(r *record.Record) error {
				gr := GoldenRecord{Offset: b.RecordOffset(r), Timestamp: b.RecordTimestamp(r), Key: string(r.Key)}
				if r.Value != nil {
					v := string(r.Value)
					gr.Value = &v
				}
				for _, h := range r.Headers {
					if gr.Headers == nil {
						gr.Headers = map[string]string{}
					}
					gr.Headers[string(h.Key)] = string(h.Value)
				}
				got = append(got, gr)
				return nil
			})
		})
		if err != nil {
			t.Errorf("engine %s: reading Apache Kafka's segments: %v", tp, err)
			continue
		}
		if inCodec == 0 && gp.Codec != "none" {
			t.Errorf("engine %s: no batch in %s, the codec Apache Kafka wrote", tp, gp.Codec)
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Offset < got[j].Offset })
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(gp.Records)
		if !bytes.Equal(gj, wj) {
			t.Errorf("engine %s: records differ from what Apache Kafka served\nengine: %s\nkafka:  %s", tp, gj, wj)
		}
	}
}
