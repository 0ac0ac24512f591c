package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// limitedKvlogd returns a kvlogd to start whose RLIMIT_NOFILE is nofile
// from exec on (prlimit), so the engine derives its budget from it.
func limitedKvlogd(t *testing.T, nofile int) string {
	t.Helper()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skipf("prlimit (util-linux) not installed: %v", err)
	}
	bin, err := testbroker.Binary(true)
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(t.TempDir(), "kvlogd-limited")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --nofile=%d:%d -- %s \"$@\"\n", prlimit, nofile, nofile, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper
}

// TestManyPartitionsUnderFileLimit: a broker whose process may open 512
// files serves 1,400 partitions, which would need 4,200 descriptors if each
// kept its active segment open: every partition is created, written,
// read, written again and read after a restart, no request fails or hangs
// on EMFILE, and the engine's budget metrics show cold segments closed and
// reopened within the derived bound.
func TestManyPartitionsUnderFileLimit(t *testing.T) {
	const (
		nofile     = 512
		topics     = 2
		partitions = 700
	)
	p := testbroker.Start(t, testbroker.Options{Race: true, Bin: limitedKvlogd(t, nofile), LogLevel: "warn",
		StartTimeout: 2 * time.Minute})
	ctx := testbroker.Context(t, 4*time.Minute)
	adm := p.Admin(t)
	names := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("many-%d", i)
		resp, err := adm.CreateTopic(ctx, partitions, 1, nil, names[i])
		if err != nil || resp.Err != nil {
			t.Fatalf("create %s: %v %v", names[i], err, resp.Err)
		}
	}
	cl := p.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.RequestRetries(3), kgo.RecordRetries(3))
	produce := func(round int) {
		t.Helper()
		var recs []*kgo.Record
		for _, topic := range names {
			for part := int32(0); part < partitions; part++ {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: part, Key: []byte(fmt.Sprint(part)), Value: []byte(fmt.Sprintf("round-%d", round))})
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := cl.ProduceSync(pctx, recs...).FirstErr(); err != nil {
			t.Fatalf("round %d: produce: %v", round, err)
		}
	}
	// consume reads every partition from the start and checks it holds
	// exactly rounds records, in order.
	consume := func(rounds int) {
		t.Helper()
		c := p.Client(t, kgo.ConsumeTopics(names...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxPartitionBytes(1<<10))
		got := map[string][]string{}
		n := 0
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		for n < topics*partitions*rounds {
			fs := c.PollFetches(cctx)
			if cctx.Err() != nil {
				t.Fatalf("consumed %d of %d records", n, topics*partitions*rounds)
			}
			fs.EachError(func(tp string, part int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, part, err) })
			fs.EachRecord(func(r *kgo.Record) {
				k := fmt.Sprintf("%s-%d", r.Topic, r.Partition)
				got[k] = append(got[k], string(r.Value))
				n++
			})
		}
		for k, vs := range got {
			for i, v := range vs {
				if v != fmt.Sprintf("round-%d", i) {
					t.Fatalf("%s: record %d is %q", k, i, v)
				}
			}
		}
		if len(got) != topics*partitions {
			t.Fatalf("%d partitions read, want %d", len(got), topics*partitions)
		}
	}
	produce(0)
	consume(1)
	produce(1)
	consume(2)

	limit, ok := cleanerMetric(t, p, "kvlog_engine_open_files_limit")
	if !ok || limit <= 0 || limit >= nofile {
		t.Fatalf("kvlog_engine_open_files_limit = %v (%v), process limit %d", limit, ok, nofile)
	}
	open, _ := cleanerMetric(t, p, "kvlog_engine_open_files")
	evicted, _ := cleanerMetric(t, p, "kvlog_engine_segment_evictions_total")
	reopened, _ := cleanerMetric(t, p, "kvlog_engine_active_segment_reopens_total")
	if open > limit || evicted == 0 || reopened == 0 {
		t.Fatalf("engine open files %v (limit %v), evictions %v, reopens %v", open, limit, evicted, reopened)
	}
	if fds := openFDs(t, p.Pid()); fds >= nofile {
		t.Fatalf("%d descriptors open, limit %d", fds, nofile)
	}

	// A clean restart under the same limit serves everything again.
	p.Restart()
	produce(2)
	consume(3)
	if log := p.Log(); strings.Contains(log, "too many open files") {
		t.Fatalf("the broker ran out of descriptors:\n%s", log)
	}
}

// TestWrittenPartitionsStayOpenWithinLimit: with max.connections at its
// default (unbounded), the descriptors kept for sockets are a quarter of the
// process's limit, so a broker whose partitions fit in the other three
// quarters keeps every active segment open while a producer writes to all
// of them in the same order request after request; with half the limit
// reserved, 300 partitions under a 512-file limit closed and reopened an
// active segment on nearly every write.
func TestWrittenPartitionsStayOpenWithinLimit(t *testing.T) {
	const (
		nofile     = 512
		partitions = 300
	)
	p := testbroker.Start(t, testbroker.Options{Race: true, Bin: limitedKvlogd(t, nofile), LogLevel: "warn",
		StartTimeout: 2 * time.Minute})
	ctx := testbroker.Context(t, 2*time.Minute)
	adm := p.Admin(t)
	if resp, err := adm.CreateTopic(ctx, partitions, 1, nil, "cyclic"); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := p.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(1<<20))
	for round := 0; round < 4; round++ {
		var recs []*kgo.Record
		for part := int32(0); part < partitions; part++ {
			recs = append(recs, &kgo.Record{Topic: "cyclic", Partition: part, Key: []byte(fmt.Sprint(part)), Value: []byte(fmt.Sprintf("round-%d", round))})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("round %d: produce: %v", round, err)
		}
	}
	if reopened, _ := cleanerMetric(t, p, "kvlog_engine_active_segment_reopens_total"); reopened != 0 {
		t.Fatalf("%v active segments reopened: written partitions were closed in turn", reopened)
	}
	limit, ok := cleanerMetric(t, p, "kvlog_engine_open_files_limit")
	if !ok || limit != nofile-nofile/4 {
		t.Fatalf("kvlog_engine_open_files_limit = %v (%v), want %d under a limit of %d", limit, ok, nofile-nofile/4, nofile)
	}
}
