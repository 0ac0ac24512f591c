package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/testbroker"
)

// segmentFiles lists a partition directory's live .log files.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTimestampsAfterRestartProcess: records with old timestamps fill
// several segments, the broker restarts, and then ListOffsets by timestamp
// must find offset 0 and a small retention.ms must delete every old
// segment: both need each inactive segment's largest timestamp, which a
// restart must not lose.
func TestTimestampsAfterRestartProcess(t *testing.T) {
	p := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"log.retention.check.interval.ms=100"}})
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	const topic = "old-times"
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"segment.bytes":        kadm.StringPtr("4096"),
		"file.delete.delay.ms": kadm.StringPtr("0"),
	}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := p.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	old := time.UnixMilli(1_000_000) // 1970: older than any retention
	const n = 200
	for i := 0; i < n; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: bytes.Repeat([]byte("x"), 100), Timestamp: old.Add(time.Duration(i) * time.Millisecond)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	dir := filepath.Join(p.DataDir, topic+"-0")
	if segs := segmentFiles(t, dir); len(segs) < 4 {
		t.Fatalf("want several segments, have %d", len(segs))
	}

	p.Restart()

	listed, err := adm.ListOffsetsAfterMilli(ctx, 0, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := listed.Lookup(topic, 0); !ok || o.Err != nil || o.Offset != 0 {
		t.Fatalf("ListOffsets(timestamp 0) after restart: %+v, want offset 0", o)
	}
	listed, err = adm.ListOffsetsAfterMilli(ctx, old.UnixMilli()+150, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := listed.Lookup(topic, 0); !ok || o.Err != nil || o.Offset != 150 {
		t.Fatalf("ListOffsets(timestamp +150) after restart: %+v, want offset 150", o)
	}

	alter, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("60000")}}, topic)
	if err != nil || alter[0].Err != nil {
		t.Fatalf("alter retention.ms: %v %v", err, alter)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		segs := segmentFiles(t, dir)
		start, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := start.Lookup(topic, 0)
		// Everything but the active segment goes (kvlog keeps it).
		if len(segs) == 1 && o.Offset > 0 && filepath.Base(segs[0]) == fmt.Sprintf("%020d.log", o.Offset) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention.ms=60000 left %d segments (log start %d) of records from 1970 after a restart", len(segs), o.Offset)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new temporary directory, or
// skips the test when mounting is not permitted (not root, a container
// without CAP_SYS_ADMIN). It is unmounted when the test ends, after the
// broker (started later) has stopped.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("a disk-full test needs a small tmpfs, and mounting one is not permitted here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func remountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,size="+size, dir).CombinedOutput(); err != nil {
		// The mount syscall also takes a remount; fall back to it when the
		// mount binary is missing.
		if serr := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size="+size); serr != nil {
			t.Fatalf("remount %s: %v %s; %v", dir, err, out, serr)
		}
	}
}

// smallBatch encodes one producer batch of a single record.
func smallBatch(t *testing.T, key string, value []byte) []byte {
	t.Helper()
	var bl record.Builder
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
	bl.BaseTimestamp = time.Now().UnixMilli()
	bl.LastOffsetDelta, bl.MaxTimestamp = -1, -1
	bl.Add(record.Record{Key: []byte(key), Value: value})
	b, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDiskFullProcess fills the file system under a real kvlogd (a small
// tmpfs) with produces to many partitions whose every batch adds index
// entries: producers must get KAFKA_STORAGE_ERROR, the broker must stay up
// and serve what it acknowledged, and after space is freed and the broker
// restarts nothing acknowledged may be missing. (Index files are sparse;
// an index written through a shared mapping took a SIGBUS here.)
func TestDiskFullProcess(t *testing.T) {
	data := mountTmpfs(t, "4m")
	p := testbroker.Start(t, testbroker.Options{Race: true, DataDir: data})
	ctx := testbroker.Context(t, 180*time.Second)
	adm := p.Admin(t)
	const topic, parts = "fill", 16
	resp, err := adm.CreateTopic(ctx, parts, 1, map[string]*string{
		"segment.bytes":        kadm.StringPtr("262144"),
		"index.interval.bytes": kadm.StringPtr("0"),
	}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := p.Client(t)
	value := bytes.Repeat([]byte("d"), 60)
	acked := map[int32]map[int64]string{}
	produceRound := func(round int) (okCount, storageErrs int) {
		t.Helper()
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		keys := map[int32]string{}
		for pa := int32(0); pa < parts; pa++ {
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition = pa
			keys[pa] = fmt.Sprintf("p%d-r%d", pa, round)
			rp.Records = smallBatch(t, keys[pa], value)
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("produce round %d: %v (did the broker die? its output is logged below)", round, err)
		}
		for _, tr := range resp.Topics {
			for _, pr := range tr.Partitions {
				switch pr.ErrorCode {
				case 0:
					okCount++
					if acked[pr.Partition] == nil {
						acked[pr.Partition] = map[int64]string{}
					}
					acked[pr.Partition][pr.BaseOffset] = keys[pr.Partition]
				case kerr.KafkaStorageError.Code:
					storageErrs++
				default:
					t.Fatalf("produce round %d partition %d: %v, want KAFKA_STORAGE_ERROR when the disk is full", round, pr.Partition, kerr.ErrorForCode(pr.ErrorCode))
				}
			}
		}
		return okCount, storageErrs
	}

	// Fill: stop after a few rounds in which every partition was refused.
	refusedRounds, round := 0, 0
	for ; round < 20000 && refusedRounds < 5; round++ {
		ok, errs := produceRound(round)
		if errs > 0 && ok == 0 {
			refusedRounds++
		}
	}
	if refusedRounds < 5 {
		t.Fatalf("the 4 MiB file system never filled in %d rounds", round)
	}
	checkAcked := func(when string) {
		t.Helper()
		for pa, want := range acked {
			got := fetchPartition(t, ctx, p, topic, pa)
			for o, k := range want {
				if got[o] != k {
					t.Fatalf("%s: acknowledged record %d of partition %d (%s) reads as %q", when, o, pa, k, got[o])
				}
			}
		}
	}
	if err := p.Client(t).Ping(ctx); err != nil {
		t.Fatalf("broker not serving with a full disk: %v", err)
	}
	checkAcked("disk full")

	remountTmpfs(t, data, "64m")
	freed := false
	for r := 0; r < 50 && !freed; r++ {
		ok, _ := produceRound(round)
		round++
		freed = ok == parts
	}
	if !freed {
		t.Fatal("produces still refused after space was freed")
	}
	checkAcked("space freed")
	p.Kill()
	p.Restart()
	checkAcked("after kill -9 and restart")
}

// fetchPartition reads a partition from offset 0 to its high watermark and
// returns each record's key by offset.
func fetchPartition(t *testing.T, ctx context.Context, p *testbroker.Broker, topic string, part int32) map[int64]string {
	t.Helper()
	adm := p.Admin(t)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, part)
	got := map[int64]string{}
	if end.Offset == 0 {
		return got
	}
	cl := p.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(0)}}))
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("fetch %s-%d: read %d records of %d", topic, part, len(got), end.Offset)
		}
		fs.EachError(func(tp string, pa int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, pa, err) })
		for _, r := range fs.Records() {
			got[r.Offset] = string(r.Key)
			if r.Offset+1 >= end.Offset {
				return got
			}
		}
	}
}

// TestDamagedBatchHeaderProcess damages the base offset of a batch in an
// inactive segment (bytes the batch CRC does not cover) while the broker is
// stopped, restarts it cleanly, and consumes from offset 0: the consumer
// must receive the offsets before the damaged batch (all, or all but the
// last batch, which is suspect too), contiguously, and then nothing (the broker refuses the batch with CORRUPT_MESSAGE) — never
// records with wrong offsets or a silent jump past the damage.
func TestDamagedBatchHeaderProcess(t *testing.T) {
	p := testbroker.Start(t, testbroker.Options{Race: true})
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	const topic = "damaged"
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"segment.bytes": kadm.StringPtr("8192")}, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := p.Client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(0))
	for i := 0; i < 150; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: bytes.Repeat([]byte("x"), 100)}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	p.Stop()

	path := filepath.Join(p.DataDir, topic+"-0", fmt.Sprintf("%020d.log", 0))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var starts []int64
	for pos := int64(0); pos < int64(len(data)); {
		b, _, err := record.ReadBatch(data[pos:])
		if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, pos)
		pos += int64(len(b))
	}
	if len(starts) < 10 {
		t.Fatalf("segment 0 holds %d batches", len(starts))
	}
	k := len(starts) / 2
	damagedBase := int64(k) // one record per batch: batch k holds offset k
	binary.BigEndian.PutUint64(data[starts[k]:], uint64(damagedBase-3))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	p.Restart()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons := p.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}))
	next := int64(0)
	for cctx.Err() == nil {
		fs := cons.PollFetches(cctx)
		for _, r := range fs.Records() {
			if r.Offset != next || string(r.Key) != fmt.Sprintf("k%d", next) {
				t.Fatalf("consumed offset %d (key %s), want offset %d (key k%d): the damaged batch at offset %d was served", r.Offset, r.Key, next, next, damagedBase)
			}
			next++
		}
	}
	// The batch before the damaged one may be held back too: a base offset
	// that does not follow its predecessor's last offset could be either
	// batch's damage.
	if next != damagedBase && next != damagedBase-1 {
		t.Fatalf("consumed offsets 0..%d, want everything before the damaged batch at %d", next-1, damagedBase)
	}
	if !strings.Contains(p.Log(), "corrupt batch not served") {
		t.Fatalf("the broker did not report the damaged batch")
	}
}
