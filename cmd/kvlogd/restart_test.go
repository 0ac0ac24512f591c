package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// TestKillAfterCleanRestartReadsNoTail: a real kvlogd writes to every
// partition, stops cleanly, starts again and is SIGKILLed once a
// checkpoint was written. Nothing was appended since the clean stop, so
// the restart after the kill reads no partition's segment (the original
// read every active segment's tail, a few system calls and a mapping per
// partition, to learn what the checkpoints already said) and recovers
// none; every partition then serves its records at their offsets, and
// takes more.
func TestKillAfterCleanRestartReadsNoTail(t *testing.T) {
	const topic, parts = "restarted", 60
	p := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"log.flush.offset.checkpoint.interval.ms=200"}})
	ctx := testbroker.Context(t, 2*time.Minute)
	if resp, err := p.Admin(t).CreateTopic(ctx, parts, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	produce := func(round int) {
		t.Helper()
		cl := p.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		defer cl.Close()
		recs := make([]*kgo.Record, parts)
		for i := range recs {
			recs[i] = &kgo.Record{Partition: int32(i), Value: []byte(fmt.Sprintf("round-%d", round))}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	ends := func(want int64) {
		t.Helper()
		cl := p.Client(t)
		defer cl.Close()
		offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		offs.Each(func(o kadm.ListedOffset) {
			n++
			if o.Err != nil || o.Offset != want {
				t.Errorf("%s-%d: end %d (%v), want %d", o.Topic, o.Partition, o.Offset, o.Err, want)
			}
		})
		if n != parts {
			t.Fatalf("%d partitions listed, want %d", n, parts)
		}
	}
	produce(0)
	p.Term()
	p.Restart()
	// Wait for a checkpoint written by this incarnation (the clean stop's
	// files are removed first, so a file found again is a new one).
	tails := filepath.Join(p.DataDir, "kvlog-synced-tail-checkpoint")
	if err := os.Remove(tails); err != nil {
		t.Fatalf("the clean stop wrote no synced-tail checkpoint: %v", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := os.ReadFile(tails)
		if err == nil && strings.Count(string(b), "\n"+topic+" ") == parts {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint naming every partition within a minute: %q %v", b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing opened any partition's active segment since the clean
	// start: every entry says its index files are still sealed, so the
	// close after the kill below need not reopen them.
	if b, _ := os.ReadFile(tails); strings.Count(string(b), " sealed\n") != parts {
		t.Fatalf("synced-tail checkpoint after the clean restart, want every entry sealed:\n%s", b)
	}
	p.Kill()
	p.Restart()
	loaded := regexp.MustCompile(`log dir loaded.*clean_shutdown=false.*recovered_partitions=(\d+).*tails_read=(\d+)`).FindStringSubmatch(p.Log())
	if loaded == nil {
		t.Fatalf("no unclean load logged:\n%s", p.Log())
	}
	if loaded[1] != "0" || loaded[2] != "0" {
		t.Fatalf("after a kill with nothing unflushed: %s", loaded[0])
	}
	ends(1)
	produce(1)
	ends(2)
	cl := p.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[int32][]string{}
	for n := 0; n < 2*parts; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", n, 2*parts)
		}
		fs.EachError(func(tp string, part int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, part, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if want := fmt.Sprintf("round-%d", r.Offset); string(r.Value) != want {
				t.Errorf("%s-%d offset %d: %q, want %q", r.Topic, r.Partition, r.Offset, r.Value, want)
			}
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			n++
		})
	}
	if len(got) != parts {
		t.Fatalf("%d partitions read, want %d", len(got), parts)
	}
}
