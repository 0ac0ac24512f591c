package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// kadm sessions against the real kvlogd for DescribeCluster,
// DescribeLogDirs, CreatePartitions and OffsetForLeaderEpoch, and franz-go
// consumers that validate positions with OffsetForLeaderEpoch (KIP-320),
// across a restart.

func TestAdminAPIsKadm(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	cl := p.Client(t)
	adm := kadm.NewClient(cl)

	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "grow"); err != nil {
		t.Fatal(err)
	}
	produceKeyed(t, p, "grow", 0, 50)

	// DescribeCluster (kadm has no wrapper: the raw request through its client).
	dreq := kmsg.NewPtrDescribeClusterRequest()
	dreq.IncludeClusterAuthorizedOperations = true
	kresp, err := dreq.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if kresp.ErrorCode != 0 || len(kresp.Brokers) != 1 || kresp.ControllerID != 0 || kresp.ClusterID == "" {
		t.Fatalf("DescribeCluster: %+v", kresp)
	}
	if b := kresp.Brokers[0]; fmt.Sprintf("%s:%d", b.Host, b.Port) != p.Addr {
		t.Fatalf("DescribeCluster broker %s:%d, listening on %s", b.Host, b.Port, p.Addr)
	}
	ops := kadm.DecodeACLOperations(kresp.ClusterAuthorizedOperations)
	if len(ops) != 7 {
		t.Fatalf("cluster operations %v", ops)
	}
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Cluster != kresp.ClusterID || meta.Controller != kresp.ControllerID {
		t.Fatalf("Metadata says cluster %q controller %d; DescribeCluster %q %d", meta.Cluster, meta.Controller, kresp.ClusterID, kresp.ControllerID)
	}

	// CreatePartitions: validate-only, add, set, refuse a decrease.
	vr, err := adm.ValidateCreatePartitions(ctx, 2, "grow")
	if err != nil || vr.Error() != nil {
		t.Fatalf("validate: %v %v", err, vr.Error())
	}
	if n := partitionCount(t, adm, "grow"); n != 1 {
		t.Fatalf("validate-only changed the count to %d", n)
	}
	if r, err := adm.CreatePartitions(ctx, 2, "grow"); err != nil || r.Error() != nil {
		t.Fatalf("add 2: %v %v", err, r.Error())
	}
	if r, err := adm.UpdatePartitions(ctx, 4, "grow"); err != nil || r.Error() != nil {
		t.Fatalf("set 4: %v %v", err, r.Error())
	}
	if n := partitionCount(t, adm, "grow"); n != 4 {
		t.Fatalf("%d partitions, want 4", n)
	}
	r, err := adm.UpdatePartitions(ctx, 2, "grow")
	if err != nil {
		t.Fatal(err)
	}
	if rr := r["grow"]; !errors.Is(rr.Err, kerr.InvalidPartitions) || rr.ErrMessage == "" {
		t.Fatalf("decrease: %+v", rr)
	}
	r, err = adm.UpdatePartitions(ctx, 9, "no-such-topic")
	if err != nil {
		t.Fatal(err)
	}
	if rr := r["no-such-topic"]; !errors.Is(rr.Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("unknown topic: %+v", rr)
	}

	// The new partitions take records (a fresh producer learns the count
	// from Metadata) and are read back.
	pc := p.Client(t, kgo.DefaultProduceTopic("grow"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for part := int32(1); part < 4; part++ {
		if err := pc.ProduceSync(ctx, &kgo.Record{Partition: part, Key: []byte(fmt.Sprint("p", part)), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("produce to new partition %d: %v", part, err)
		}
	}
	recs := consumeAll(t, p, "grow", 53)
	perPart := map[int32]int{}
	for _, rec := range recs {
		perPart[rec.Partition]++
	}
	if perPart[0] != 50 || perPart[1] != 1 || perPart[2] != 1 || perPart[3] != 1 {
		t.Fatalf("records per partition %v", perPart)
	}

	// DescribeLogDirs: the data dir, every partition, sizes that add up.
	all, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatalf("describe log dirs: %v", err)
	}
	dirs := all[0]
	if err := dirs.Error(); err != nil {
		t.Fatal(err)
	}
	absDir, _ := filepath.Abs(p.DataDir)
	if len(dirs) != 1 || dirs[absDir].Dir != absDir {
		t.Fatalf("log dirs %+v, want %s", dirs, absDir)
	}
	d := dirs[absDir]
	if d.TotalBytes <= 0 || d.UsableBytes <= 0 {
		t.Fatalf("volume sizes total %d usable %d", d.TotalBytes, d.UsableBytes)
	}
	for part := int32(0); part < 4; part++ {
		dp, ok := d.Topics.Lookup("grow", part)
		if !ok || dp.Size <= 0 || dp.OffsetLag != 0 {
			t.Fatalf("grow-%d: %+v (found %v)", part, dp, ok)
		}
	}
	var only kadm.TopicsSet
	only.Add("grow", 2)
	some, err := adm.DescribeBrokerLogDirs(ctx, 0, only)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(some.SortedPartitions()); n != 1 {
		t.Fatalf("filtered log dirs: %d partitions", n)
	}

	// OffsetForLeaderEpoch: epoch 0 ends at the log end, epoch 1 is unknown.
	var oreq kadm.OffsetForLeaderEpochRequest
	oreq.Add("grow", 0, 0)
	oreq.Add("grow", 1, 1)
	oe, err := adm.OffsetForLeaderEpoch(ctx, oreq)
	if err != nil {
		t.Fatal(err)
	}
	if got := oe["grow"][0]; got.Err != nil || got.LeaderEpoch != 0 || got.EndOffset != 50 {
		t.Fatalf("epoch 0: %+v", got)
	}
	if got := oe["grow"][1]; got.Err != nil || got.LeaderEpoch != -1 || got.EndOffset != -1 {
		t.Fatalf("epoch 1: %+v", got)
	}

	// The partition count survives a restart.
	p.Term()
	p.Restart()
	if n := partitionCount(t, p.Admin(t), "grow"); n != 4 {
		t.Fatalf("%d partitions after restart", n)
	}
	if n := len(consumeAll(t, p, "grow", 53)); n != 53 {
		t.Fatalf("%d records after restart", n)
	}
	p.Term()
}

func partitionCount(t *testing.T, adm *kadm.Client, topic string) int {
	t.Helper()
	td, err := adm.ListTopics(testbroker.Context(t, 30*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	return len(td[topic].Partitions)
}

// TestConsumerEpochValidation: with OffsetForLeaderEpoch advertised,
// franz-go validates positions that carry an epoch, reports data loss for
// a position past the end, and keeps consuming across a clean restart
// (no truncation: no loss reported, nothing skipped or repeated).
func TestConsumerEpochValidation(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 150*time.Second)
	produceKeyed(t, p, "epochs", 0, 100)

	// A position with an epoch inside the log: validated, used as is.
	at := func(offset int64) map[string]map[int32]kgo.Offset {
		return map[string]map[int32]kgo.Offset{"epochs": {0: kgo.NewOffset().At(offset).WithEpoch(0)}}
	}
	cl := p.Client(t, kgo.ConsumePartitions(at(60)))
	got := pollN(t, ctx, cl, 40)
	if got[0].Offset != 60 || got[39].Offset != 99 || got[0].LeaderEpoch != 0 {
		t.Fatalf("from 60: first %d (epoch %d), last %d", got[0].Offset, got[0].LeaderEpoch, got[39].Offset)
	}
	cl.Close()

	// A position past the end with an epoch: OffsetForLeaderEpoch says
	// epoch 0 ends at 100, so the client reports data loss and resumes at
	// 100.
	cl = p.Client(t, kgo.ConsumePartitions(at(150)))
	var loss *kgo.ErrDataLoss
	for loss == nil {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no data loss reported for a position past the end")
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.As(err, &loss) {
				t.Fatalf("fetch error %v", err)
			}
		})
		if len(fs.Records()) > 0 {
			t.Fatalf("records before the data-loss report: %d", len(fs.Records()))
		}
	}
	if loss.ConsumedTo != 150 || loss.ResetTo != 100 {
		t.Fatalf("data loss %+v", loss)
	}
	produceKeyed(t, p, "epochs", 100, 5)
	if got := pollN(t, ctx, cl, 5); got[0].Offset != 100 {
		t.Fatalf("after reset: first offset %d", got[0].Offset)
	}
	cl.Close()

	// A long-lived consumer across a clean restart on the same address.
	live := p.Client(t, kgo.ConsumeTopics("epochs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if got := pollN(t, ctx, live, 105); got[104].Offset != 104 {
		t.Fatalf("before restart: last offset %d", got[104].Offset)
	}
	p.Term()
	p.Restart() // on the same address: the live consumer reconnects
	produceKeyed(t, p, "epochs", 105, 20)
	got = pollN(t, ctx, live, 20)
	for i, r := range got {
		if r.Offset != int64(105+i) || r.LeaderEpoch != 0 {
			t.Fatalf("after restart: record %d has offset %d epoch %d", i, r.Offset, r.LeaderEpoch)
		}
	}

	// A new consumer resuming from a position taken before the restart.
	cl = p.Client(t, kgo.ConsumePartitions(at(120)))
	if got := pollN(t, ctx, cl, 5); got[0].Offset != 120 || got[4].Offset != 124 {
		t.Fatalf("resume at 120 after restart: %d..%d", got[0].Offset, got[4].Offset)
	}
	p.Term()
}

// pollN polls until n records arrived, failing on any fetch error.
func pollN(t *testing.T, ctx context.Context, cl *kgo.Client, n int) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("polled %d of %d records", len(out), n)
		}
		fs.EachError(func(tp string, part int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, part, err) })
		out = append(out, fs.Records()...)
	}
	if len(out) != n {
		t.Fatalf("polled %d records, want %d", len(out), n)
	}
	return out
}
