package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// Topic lifecycle against the real kvlogd: deletion on a full disk, the
// committed offsets of deleted topics, DeleteRecords and deletion policies,
// the metadata file's previous generation, request bounds, atomic creation,
// stray logs and offline partitions.

// listed reports whether Metadata lists the topic.
func listed(t *testing.T, adm *kadm.Client, topic string) bool {
	t.Helper()
	ctx := testbroker.Context(t, 30*time.Second)
	md, err := adm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, ok := md.Topics[topic]
	return ok
}

// partitionDirs lists the directories of a topic's partitions (any suffix).
func partitionDirs(t *testing.T, dir, topic string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), topic+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// deleteTopicErr deletes one topic and returns its result's error.
func deleteTopicErr(t *testing.T, adm *kadm.Client, topic string) error {
	t.Helper()
	ctx := testbroker.Context(t, 30*time.Second)
	rs, err := adm.DeleteTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	r, err := rs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.Err
}

// Deleting a topic is how space is freed: it works when the disk is full
// (the metadata file cannot be rewritten), and after a restart the topic
// stays deleted. The data directory is a small tmpfs; the test is skipped
// where mounting is not permitted.
func TestDeleteTopicOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=12m"); err != nil {
		t.Skipf("mounting a tmpfs is not permitted here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	p := testbroker.Start(t, testbroker.Options{Race: true, DataDir: dir})
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	for _, name := range []string{"filler", "other"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, name); err != nil {
			t.Fatal(err)
		}
	}
	cl := p.Client(t, kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(2*time.Second), kgo.ProducerBatchMaxBytes(1<<20))
	value := make([]byte, 256<<10) // incompressible: the producer compresses
	rand.Read(value)
	full := false
	for i := 0; i < 200 && !full; i++ { // 12 MiB fills in ~48
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: "filler", Value: value}).FirstErr()
		switch {
		case err == nil:
		case errors.Is(err, kerr.KafkaStorageError), errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries):
			full = true
		default:
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; !full || free >= int64(len(value)) {
		t.Fatalf("the disk did not fill up: %d bytes free", free)
	}

	if err := deleteTopicErr(t, adm, "filler"); err != nil {
		t.Fatalf("deleting a topic on a full disk: %v", err)
	}
	if listed(t, adm, "filler") {
		t.Fatal("filler still listed after its deletion")
	}
	if dirs := partitionDirs(t, dir, "filler"); len(dirs) > 0 {
		t.Fatalf("filler's logs still on disk: %v", dirs)
	}
	// The space is back: other topics take writes again.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "other", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("produce after freeing space: %v", err)
	}

	p.Restart()
	adm = p.Admin(t)
	if listed(t, adm, "filler") {
		t.Fatal("deleted topic back after a restart")
	}
	if recs := consumeAll(t, p, "other", 1); string(recs[0].Value) != "after" {
		t.Fatalf("other holds %q", recs[0].Value)
	}
}

// A group's committed offsets of a deleted topic go with it: the same
// group on a re-created topic of the same name reads it from the start.
func TestDeletedTopicLosesCommittedOffsets(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	produceKeyed(t, p, "orders", 0, 20)
	if got := consumeGroup(t, p, "billing", "orders", 20); got != 20 {
		t.Fatalf("first incarnation: read %d of 20", got)
	}
	offs, err := adm.FetchOffsets(ctx, "billing")
	if err != nil || offs.Error() != nil {
		t.Fatal(err, offs.Error())
	}
	if o, ok := offs.Lookup("orders", 0); !ok || o.At != 20 {
		t.Fatalf("committed %+v %v, want 20", o, ok)
	}

	if err := deleteTopicErr(t, adm, "orders"); err != nil {
		t.Fatal(err)
	}
	offs, err = adm.FetchOffsets(ctx, "billing")
	if err == nil {
		if o, ok := offs.Lookup("orders", 0); ok && o.At >= 0 {
			t.Fatalf("offset %d of the deleted topic still committed", o.At)
		}
	}

	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	produceKeyed(t, p, "orders", 100, 20)
	if got := consumeGroup(t, p, "billing", "orders", 20); got != 20 {
		t.Fatalf("re-created topic: the group read %d of 20 records", got)
	}
}

// consumeGroup reads a topic as a member of group until want records
// arrived, committing them; it returns how many arrived within a bounded
// wait (fewer means the group started past them).
func consumeGroup(t *testing.T, p *testbroker.Broker, group, topic string, want int) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.Addr), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(tp string, part int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, part, err) })
		n += fs.NumRecords()
	}
	cctx := testbroker.Context(t, 30*time.Second)
	if err := cl.CommitUncommittedOffsets(cctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// DeleteRecords is refused on compacted topics (it would drop keys from
// every replay) unless the policy includes delete, and on internal topics;
// internal topics cannot be deleted either. Kafka's error codes.
func TestDeletionPolicies(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	for name, policy := range map[string]string{"changelog": "compact", "both": "compact,delete", "plain": "delete"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr(policy)}, name); err != nil {
			t.Fatal(err)
		}
		produceKeyed(t, p, name, 0, 10)
	}
	// A group's offsets create __consumer_offsets (7: after offset 6).
	if r, err := adm.CommitOffsets(ctx, "g", kadm.OffsetsFromRecords(kgo.Record{Topic: "plain", Partition: 0, Offset: 6})); err != nil || r.Error() != nil {
		t.Fatal(err, r.Error())
	}

	for _, c := range []struct {
		topic string
		want  error
	}{
		{"changelog", kerr.PolicyViolation},
		{"both", nil},
		{"plain", nil},
		{"__consumer_offsets", kerr.InvalidTopicException},
	} {
		rs, err := adm.DeleteRecords(ctx, kadm.Offsets{c.topic: {0: {At: 5}}})
		if err != nil {
			t.Fatal(err)
		}
		r, ok := rs.Lookup(c.topic, 0)
		if !ok {
			t.Fatalf("%s: no result", c.topic)
		}
		if !errors.Is(r.Err, c.want) && r.Err != c.want {
			t.Fatalf("DeleteRecords on %s: %v, want %v", c.topic, r.Err, c.want)
		}
		if c.want == nil && r.LowWatermark != 5 {
			t.Fatalf("%s: low watermark %d", c.topic, r.LowWatermark)
		}
	}
	if recs := consumeAll(t, p, "changelog", 10); len(recs) != 10 || recs[0].Offset != 0 {
		t.Fatalf("changelog lost records: %d from offset %d", len(recs), recs[0].Offset)
	}

	if err := deleteTopicErr(t, adm, "__consumer_offsets"); !errors.Is(err, kerr.InvalidTopicException) {
		t.Fatalf("deleting __consumer_offsets: %v", err)
	}
	if !listed(t, adm, "__consumer_offsets") {
		t.Fatal("__consumer_offsets gone")
	}
	p.Restart()
	adm = p.Admin(t)
	ctx = testbroker.Context(t, 60*time.Second)
	offs, err := adm.FetchOffsets(ctx, "g")
	if err != nil || offs.Error() != nil {
		t.Fatal(err, offs.Error())
	}
	if o, ok := offs.Lookup("plain", 0); !ok || o.At != 7 {
		t.Fatalf("group g after restart: %+v %v", o, ok)
	}
}

// A corrupt metadata file does not stop the broker: it starts from the
// previous generation and says so. The topic only the lost generation knew
// is a stray: its log, which holds records, is set aside, not served.
func TestCorruptMetadataFallsBack(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	for _, name := range []string{"kept", "latest"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, name); err != nil {
			t.Fatal(err)
		}
		produceKeyed(t, p, name, 0, 5)
	}
	p.Term()
	path := filepath.Join(p.DataDir, "kvlog-metadata.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"latest"`))
	if i < 0 {
		t.Fatalf("no topic latest in %s", b)
	}
	b[i+1] = 'L'
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}

	p.Restart()
	log := p.Log()
	if !strings.Contains(log, "using the previous generation") || !strings.Contains(log, "kvlog-metadata.json.prev") {
		t.Fatalf("no WARN naming the generation used:\n%s", log)
	}
	adm = p.Admin(t)
	if recs := consumeAll(t, p, "kept", 5); len(recs) != 5 {
		t.Fatalf("kept: %d records", len(recs))
	}
	if listed(t, adm, "latest") || listed(t, adm, "Latest") {
		t.Fatal("a topic of the corrupt generation is served")
	}
	dirs := partitionDirs(t, p.DataDir, "latest")
	if len(dirs) != 1 || !strings.HasSuffix(dirs[0], "-stray") {
		t.Fatalf("latest's log: %v, want it set aside as a -stray dir", dirs)
	}

	// With no metadata at all (both generations lost, or a Kafka log dir)
	// the logs found are adopted as topics.
	p.Term()
	for _, f := range []string{"kvlog-metadata.json", "kvlog-metadata.json.prev"} {
		if err := os.Remove(filepath.Join(p.DataDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	p.Restart()
	adm = p.Admin(t)
	if !listed(t, adm, "kept") || listed(t, adm, "latest") {
		t.Fatal("with no metadata, kept should be adopted and the -stray dir left alone")
	}
	if recs := consumeAll(t, p, "kept", 5); len(recs) != 5 {
		t.Fatalf("adopted kept: %d records", len(recs))
	}
}

// Kafka's controller bounds one request to 10,000 partitions (and 10,000
// metadata records): beyond that the whole CreateTopics fails with
// POLICY_VIOLATION and nothing is created.
func TestCreateTopicsPartitionBound(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	cl := p.Client(t)
	create := func(topics map[string]int32) *kmsg.CreateTopicsResponse {
		t.Helper()
		req := kmsg.NewPtrCreateTopicsRequest()
		req.TimeoutMillis = 30000
		for name, n := range topics {
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, n, 1
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, c := range []struct {
		topics map[string]int32
		msg    string
	}{
		{map[string]int32{"huge": 10_001}, "Excessively large number of partitions per request."},
		{map[string]int32{"half1": 6000, "half2": 5000}, "Excessively large number of partitions per request."},
		{map[string]int32{"exact": 10_000}, "Unable to perform excessively large batch operation."},
	} {
		resp := create(c.topics)
		for _, st := range resp.Topics {
			if st.ErrorCode != kerr.PolicyViolation.Code || st.ErrorMessage == nil || *st.ErrorMessage != c.msg {
				t.Fatalf("%s: error %d %v, want POLICY_VIOLATION %q", st.Topic, st.ErrorCode, st.ErrorMessage, c.msg)
			}
			if dirs := partitionDirs(t, p.DataDir, st.Topic); len(dirs) > 0 {
				t.Fatalf("%s: %d partition dirs created", st.Topic, len(dirs))
			}
		}
	}
	// CreatePartitions is bounded the same way.
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "grow"); err != nil {
		t.Fatal(err)
	}
	rs, err := adm.CreatePartitions(ctx, 10_001, "grow")
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := rs.On("grow", nil); !errors.Is(r.Err, kerr.PolicyViolation) {
		t.Fatalf("CreatePartitions +10,001: %v", r.Err)
	}
	if n := partitionCount(t, adm, "grow"); n != 1 {
		t.Fatalf("grow has %d partitions", n)
	}
}

// A creation that runs out of file descriptors part-way leaves nothing:
// no topic in the metadata, no partition directory, and a broker that
// restarts. The broker runs with a low descriptor limit.
func TestCreateTopicOutOfDescriptorsLeavesNothing(t *testing.T) {
	bin, err := testbroker.Binary(true)
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(t.TempDir(), "kvlogd-lowfd")
	script := fmt.Sprintf("#!/bin/sh\nulimit -n 400 || exit 1\nexec %q \"$@\"\n", bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := testbroker.Start(t, testbroker.Options{Bin: wrapper})
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	rs, err := adm.CreateTopics(ctx, 2000, 1, nil, "wide")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := rs.On("wide", nil)
	if !errors.Is(r.Err, kerr.KafkaStorageError) {
		t.Fatalf("creating 2000 partitions with 400 descriptors: %v (want KAFKA_STORAGE_ERROR)", r.Err)
	}
	if listed(t, adm, "wide") {
		t.Fatal("the failed topic is listed")
	}
	if dirs := partitionDirs(t, p.DataDir, "wide"); len(dirs) > 0 {
		t.Fatalf("the failed creation left %d partition dirs", len(dirs))
	}
	// The broker still serves.
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "small"); err != nil {
		t.Fatal(err)
	}
	produceKeyed(t, p, "small", 0, 3)
	p.Restart()
	adm = p.Admin(t)
	if listed(t, adm, "wide") {
		t.Fatal("the failed topic is listed after a restart")
	}
	if recs := consumeAll(t, p, "small", 3); len(recs) != 3 {
		t.Fatalf("small: %d records", len(recs))
	}
}

// At start-up, partition directories the metadata does not list are never
// adopted as topics (an empty one is removed, one with records set aside
// as -stray), and a listed partition whose log cannot be opened is offline
// while the broker serves everything else.
func TestStartWithStrayAndUnopenableLogs(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "x"); err != nil {
		t.Fatal(err)
	}
	cl := p.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordRetries(3))
	for part := int32(0); part < 2; part++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "x", Partition: part, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p.Term()
	d := p.DataDir
	seg := "00000000000000000000.log"
	data, err := os.ReadFile(filepath.Join(d, "x-0", seg))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"ghost-0", "ghost-1"} {
		if err := os.Mkdir(filepath.Join(d, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "ghost-0", seg), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "ghost-1", seg), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// x-1 cannot be opened: a file where its directory belongs.
	if err := os.RemoveAll(filepath.Join(d, "x-1")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "x-1"), []byte("not a log"), 0o644); err != nil {
		t.Fatal(err)
	}

	p.Restart()
	adm = p.Admin(t)
	if listed(t, adm, "ghost") {
		t.Fatal("stray partition dirs adopted as a topic")
	}
	if dirs := partitionDirs(t, d, "ghost"); len(dirs) != 1 || !strings.HasPrefix(dirs[0], "ghost-0.") || !strings.HasSuffix(dirs[0], "-stray") {
		t.Fatalf("ghost dirs %v: want ghost-0 set aside and the empty ghost-1 removed", dirs)
	}
	md, err := adm.Metadata(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	px := md.Topics["x"].Partitions
	if len(px) != 2 || px[0].Err != nil || px[0].Leader != 0 || !errors.Is(px[1].Err, kerr.LeaderNotAvailable) || px[1].Leader != -1 {
		t.Fatalf("x partitions %+v: want 0 served, 1 offline", px)
	}
	cl = p.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordRetries(1), kgo.RecordDeliveryTimeout(3*time.Second))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "x", Partition: 0, Value: []byte("w")}).FirstErr(); err != nil {
		t.Fatalf("produce to the served partition: %v", err)
	}
	if recs := consumeAll(t, p, "x", 2); len(recs) != 2 {
		t.Fatalf("x-0: %d records", len(recs))
	}
}

// TestStartWithUnloadablePartition: a partition directory the engine finds
// but cannot load (its segment replaced by a directory) leaves the broker
// serving every other partition; that partition is reported offline, its
// directory is left as found (no empty log created over it), and deleting
// the topic removes it.
func TestStartWithUnloadablePartition(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	adm := p.Admin(t)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "y"); err != nil {
		t.Fatal(err)
	}
	cl := p.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordRetries(3))
	for part := int32(0); part < 2; part++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "y", Partition: part, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// An unclean stop without a recovery point: the restart recovers, so
	// it opens every segment and meets the damage while loading. (After a
	// clean stop logs load lazily: the damage then surfaces as
	// KAFKA_STORAGE_ERROR on the partition's first read or write.)
	p.Kill()
	if err := os.Remove(filepath.Join(p.DataDir, "recovery-point-offset-checkpoint")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	seg := filepath.Join(p.DataDir, "y-1", "00000000000000000000.log")
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(seg, 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadDir(filepath.Join(p.DataDir, "y-1"))
	if err != nil {
		t.Fatal(err)
	}

	p.Restart()
	adm = p.Admin(t)
	md, err := adm.Metadata(ctx, "y")
	if err != nil {
		t.Fatal(err)
	}
	py := md.Topics["y"].Partitions
	if len(py) != 2 || py[0].Err != nil || !errors.Is(py[1].Err, kerr.LeaderNotAvailable) {
		t.Fatalf("y partitions %+v: want 0 served, 1 offline", py)
	}
	if recs := consumeAll(t, p, "y", 1); len(recs) != 1 {
		t.Fatalf("y-0: %d records", len(recs))
	}
	after, err := os.ReadDir(filepath.Join(p.DataDir, "y-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("the unloadable partition's directory changed: %d entries before, %d after", len(before), len(after))
	}
	if !strings.Contains(p.Log(), "partition log failed to open") {
		t.Fatalf("no error logged for the unloadable partition")
	}
	if _, err := adm.DeleteTopic(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(p.DataDir, "y-1")); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("y-1 still on disk after the topic was deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
