package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// TestJournalPowerLossProcess: a real kvlogd with kvlog.journal.enable=true
// acknowledges acks=all produces to 40 partitions (each request one group
// commit of all of them: one journal write and fsync), is SIGKILLed, and
// loses what a power cut would: every segment byte, since no segment was
// synced (their .log files are emptied; the fsynced journal stays). After
// a restart, the journal's replay gives back every acknowledged record of
// every partition, at its offset.
func TestJournalPowerLossProcess(t *testing.T) {
	p := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{"kvlog.journal.enable=true"}})
	ctx := testbroker.Context(t, 120*time.Second)
	const topic, parts, rounds = "journaled", 40, 15
	resp, err := p.Admin(t).CreateTopic(ctx, parts, 1, nil, topic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	cl := p.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	acked := make([]map[int64]string, parts)
	for i := range acked {
		acked[i] = map[int64]string{}
	}
	for r := 0; r < rounds; r++ {
		recs := make([]*kgo.Record, parts)
		for i := range recs {
			recs[i] = &kgo.Record{Partition: int32(i), Key: []byte(fmt.Sprintf("p%d-r%d", i, r)), Value: []byte("v")}
		}
		for _, res := range cl.ProduceSync(ctx, recs...) {
			if res.Err != nil {
				t.Fatalf("round %d: %v", r, res.Err)
			}
			acked[res.Record.Partition][res.Record.Offset] = string(res.Record.Key)
		}
	}
	cl.Close()
	p.Kill()
	if fi, err := os.Stat(filepath.Join(p.DataDir, "kvlog-journal")); err != nil || fi.Size() <= 24 {
		t.Fatalf("the journal holds nothing: %v", err)
	}
	for i := 0; i < parts; i++ {
		logs, err := filepath.Glob(filepath.Join(p.DataDir, fmt.Sprintf("%s-%d", topic, i), "*.log"))
		if err != nil || len(logs) == 0 {
			t.Fatalf("partition %d: no segment (%v)", i, err)
		}
		for _, f := range logs {
			if err := os.Truncate(f, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.Restart()
	for i := int32(0); i < parts; i++ {
		got := fetchPartition(t, ctx, p, topic, i)
		for o, k := range acked[i] {
			if got[o] != k {
				t.Fatalf("partition %d: acknowledged record %d (%s) reads as %q after the power loss", i, o, k, got[o])
			}
		}
	}
}
