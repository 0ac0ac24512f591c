package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/testbroker"
)

// TestJournalPowerLossProcess: a real kvlogd with kvlog.journal.enable=true
// acknowledges acks=all produces to 40 partitions (each request one group
// commit of all of them: one journal write and fsync), is SIGKILLed, and
// loses what a power cut could: every segment byte the journal holds (each
// partition's .log is cut where its journaled run of records last starts:
// below, the segment was synced). After a
// restart, the journal's replay gives back every acknowledged record of
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
	synced := journalSyncedEnds(t, filepath.Join(p.DataDir, "kvlog-journal"), topic)
	if len(synced) == 0 {
		t.Fatal("the journal holds nothing of the topic")
	}
	for i := int32(0); i < parts; i++ {
		from, ok := synced[i]
		if !ok {
			continue // every record synced in its segment (a commit of few partitions)
		}
		logs, err := filepath.Glob(filepath.Join(p.DataDir, fmt.Sprintf("%s-%d", topic, i), "*.log"))
		if err != nil || len(logs) != 1 {
			t.Fatalf("partition %d: segments %v (%v)", i, logs, err)
		}
		cutAtOffset(t, logs[0], from)
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

// journalSyncedEnds reads a journal file (engine/FORMAT.md §9) and returns,
// per partition of topic, an offset below which its segment was synced: the
// Offset of its first data entry, or of a later one that does not continue
// the one before (a commit of few partitions synced the segment itself in
// between, up to that Offset).
func journalSyncedEnds(t *testing.T, path, topic string) map[int32]int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 24 || string(data[:8]) != "KVLJRNL\x00" {
		t.Fatalf("%s: not a journal", path)
	}
	gen := binary.BigEndian.Uint64(data[12:])
	out, ends := map[int32]int64{}, map[int32]int64{}
	for rest := data[24:]; len(rest) >= 8; {
		n := int(binary.BigEndian.Uint32(rest))
		if len(rest) < 8+n {
			break
		}
		body := rest[8 : 8+n]
		rest = rest[8+n:]
		if binary.BigEndian.Uint64(body) != gen {
			break
		}
		kind, part := body[8], int32(binary.BigEndian.Uint32(body[9:]))
		tl := int(binary.BigEndian.Uint16(body[13:]))
		if kind != 1 || string(body[15:15+tl]) != topic {
			continue
		}
		off := int64(binary.BigEndian.Uint64(body[15+tl:]))
		if e, ok := ends[part]; !ok || e != off {
			out[part] = off
		}
		// The entry's end: the last batch's base offset + last offset delta + 1.
		for b := body[15+tl+8:]; len(b) >= 27; {
			ends[part] = int64(binary.BigEndian.Uint64(b)) + int64(int32(binary.BigEndian.Uint32(b[23:]))) + 1
			b = b[min(len(b), 12+int(binary.BigEndian.Uint32(b[8:]))):]
		}
	}
	return out
}

// cutAtOffset truncates a .log before its first batch at or above offset.
func cutAtOffset(t *testing.T, path string, offset int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pos := 0
	for pos+12 <= len(data) && int64(binary.BigEndian.Uint64(data[pos:])) < offset {
		pos += 12 + int(binary.BigEndian.Uint32(data[pos+8:]))
	}
	if err := os.Truncate(path, int64(min(pos, len(data)))); err != nil {
		t.Fatal(err)
	}
}

// TestJournalSkippedForLargeBatches: with the journal on (the default),
// a group commit of partitions with large batches to make durable syncs
// the partitions themselves: copying hundreds of KiB per partition into
// the journal and writing them twice costs more than the syncs it saves.
// One acks=all request to 8 partitions with a 64 KiB batch each (one
// group commit of all 8) leaves the journal as it was.
func TestJournalSkippedForLargeBatches(t *testing.T) {
	p := startKvlogd(t)
	ctx := testbroker.Context(t, 120*time.Second)
	const topic, parts = "large-batches", 8
	if resp, err := p.Admin(t).CreateTopic(ctx, parts, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	journalSize := func() int64 {
		st, err := os.Stat(filepath.Join(p.DataDir, "kvlog-journal"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	before := journalSize()
	cl := p.Client(t)
	value := make([]byte, 1000)
	for round := 0; round < 3; round++ {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 30000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		for i := int32(0); i < parts; i++ {
			bl := record.Builder{MaxTimestamp: -1, LastOffsetDelta: -1, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
				BaseTimestamp: time.Now().UnixMilli()}
			for k := range 64 {
				bl.Add(record.Record{OffsetDelta: int32(k), Key: []byte(fmt.Sprintf("p%d-r%d-%d", i, round, k)), Value: value})
			}
			batch, err := bl.Build(nil)
			if err != nil {
				t.Fatal(err)
			}
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition, rp.Records = i, batch
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		for _, rp := range resp.Topics[0].Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("round %d, partition %d: %v", round, rp.Partition, err)
			}
		}
	}
	if got := journalSize(); got != before {
		t.Fatalf("acks=all commits of 64 KiB batches to %d partitions wrote %d bytes to the journal", parts, got-before)
	}
	if n := len(consumeAll(t, p, topic, 3*parts*64)); n != 3*parts*64 {
		t.Fatalf("read %d records, want %d", n, 3*parts*64)
	}
}
