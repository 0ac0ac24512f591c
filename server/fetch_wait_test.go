package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/txn"
)

// TestReadCommittedFetchParksUntilHWMoves: a read_committed fetch caught
// up to the last stable offset of an open transaction (below the high
// watermark) parks on the high watermark it saw and is read again only
// when that moves (the transaction's marker), not at once and again until
// its deadline. The broker's clock is manual, so the fetch's MaxWait never
// ends on its own: only the marker answers it.
func TestReadCommittedFetchParksUntilHWMoves(t *testing.T) {
	clk := clock.NewManual(time.Now())
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk})
	createTopic(t, b, "rcw", 1, nil)
	part := b.s.topic("rcw").parts[0]

	// An open transaction at offset 0: HW 1, last stable offset 0.
	var bl record.Builder
	bl.Attributes = record.AttrTransactional
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = 7, 0, 0
	bl.MaxTimestamp, bl.LastOffsetDelta = -1, -1
	bl.Add(record.Record{Key: []byte("k"), Value: []byte("open")})
	data, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.s.replicas.Append(part.rep, data, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	waits := []replica.AckWait{{P: part.rep, Last: res.LastOffset, MinISR: 1}}
	acked := make(chan struct{})
	b.s.replicas.AwaitAcks(waits, time.Hour, func() { close(acked) })
	<-acked
	if waits[0].Err != nil {
		t.Fatal(waits[0].Err)
	}
	if hw, lso := part.log.HighWatermark(), part.log.LastStableOffset(); hw != 1 || lso != 0 {
		t.Fatalf("HW %d, LSO %d; want 1, 0", hw, lso)
	}

	// What the fetch watches: the HW it saw, not the last stable offset.
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = 1<<20, -1
	sp := kmsg.NewFetchResponseTopicPartition()
	var watched []replica.Watched
	read, err := b.s.fetchPartition("rcw", -1, true, &rp, &sp, 1<<20, false, &watched, nil, nil)
	if err != nil || read != nil {
		t.Fatalf("read_committed read at the LSO: %v, %v", read, err)
	}
	if len(watched) != 1 || watched[0].Seen != 1 || watched[0].Follower {
		t.Fatalf("watched %+v; want the partition at its HW 1", watched)
	}

	c := b.dial(t)
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.ReplicaID, req.MinBytes, req.MaxWaitMillis, req.MaxBytes, req.IsolationLevel = 11, -1, 1, 60_000, 1<<20, 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "rcw"
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	before := b.s.partitionReads.Load()
	c.send(req, 1)
	deadline := time.Now().Add(10 * time.Second)
	for part.rep.Parked() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the fetch never parked")
		}
		time.Sleep(time.Millisecond)
	}

	// The commit marker moves the HW past it: the fetch wakes and reads.
	ch := make(chan []error, 1)
	txnMarkers{s: b.s}.WriteMarkers(&txn.MarkerRequest{ProducerID: 7, Commit: true, Partitions: []txn.TopicPartition{{Topic: "rcw", Partition: 0}}}, func(errs []error) { ch <- errs })
	if errs := <-ch; errs[0] != nil {
		t.Fatal(errs[0])
	}
	resp := c.recv(req, 1).(*kmsg.FetchResponse)
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.LastStableOffset != 2 || len(p.RecordBatches) == 0 {
		t.Fatalf("woken read_committed fetch: error %d, LSO %d, %d bytes", p.ErrorCode, p.LastStableOffset, len(p.RecordBatches))
	}
	// Read at its arrival and once woken (a third look at most, for a wake
	// that raced the marker's commit).
	if n := b.s.partitionReads.Load() - before; n > 3 {
		t.Fatalf("the parked fetch read its partition %d times before the HW moved once; want 2", n)
	}
}
