package server

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFetchSessions drives the broker with raw Fetch requests (v12): a
// full fetch with epoch 0 opens a session; an incremental fetch naming
// nothing answers only the partitions with something new (records, a new
// high watermark); an unknown session is FETCH_SESSION_ID_NOT_FOUND, a
// wrong epoch INVALID_FETCH_SESSION_EPOCH; epoch -1 closes the session.
// Before, every request naming a session was refused and sessions were
// never opened.
func TestFetchSessions(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "sess", 4, nil)
	produceTo(t, b, "sess", 0, 3)
	c := b.dial(t)
	corr := int32(0)
	fetch := func(id, epoch int32, offsets map[int32]int64, forget []int32) *kmsg.FetchResponse {
		t.Helper()
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12
		req.ReplicaID = -1
		req.MaxBytes = 1 << 20
		req.SessionID, req.SessionEpoch = id, epoch
		if len(offsets) > 0 {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = "sess"
			for p := int32(0); p < 4; p++ {
				off, ok := offsets[p]
				if !ok {
					continue
				}
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, off, 1<<20
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		if len(forget) > 0 {
			ft := kmsg.NewFetchRequestForgottenTopic()
			ft.Topic, ft.Partitions = "sess", forget
			req.ForgottenTopics = append(req.ForgottenTopics, ft)
		}
		corr++
		c.send(req, corr)
		return c.recv(req, corr).(*kmsg.FetchResponse)
	}
	listed := func(resp *kmsg.FetchResponse) map[int32]int {
		out := map[int32]int{}
		for _, rt := range resp.Topics {
			for _, p := range rt.Partitions {
				out[p.Partition] = len(p.RecordBatches)
			}
		}
		return out
	}

	full := fetch(0, 0, map[int32]int64{0: 0, 1: 0, 2: 0, 3: 0}, nil)
	if full.ErrorCode != 0 || full.SessionID == 0 || len(listed(full)) != 4 || listed(full)[0] == 0 {
		t.Fatalf("opening fetch: error %d, session %d, partitions %v", full.ErrorCode, full.SessionID, listed(full))
	}
	id := full.SessionID
	// Partition 0 moves to its end; nothing else is new.
	inc := fetch(id, 1, map[int32]int64{0: 3}, nil)
	if inc.ErrorCode != 0 || inc.SessionID != id || len(listed(inc)) != 0 {
		t.Fatalf("idle incremental fetch: error %d, session %d, partitions %v", inc.ErrorCode, inc.SessionID, listed(inc))
	}
	// New records on partition 2: only it is listed, with them.
	produceTo(t, b, "sess", 2, 2)
	inc = fetch(id, 2, nil, nil)
	if got := listed(inc); len(got) != 1 || got[2] == 0 {
		t.Fatalf("incremental fetch after records on partition 2: %v", got)
	}
	if hw := inc.Topics[0].Partitions[0].HighWatermark; hw != 2 {
		t.Fatalf("partition 2 high watermark %d, want 2", hw)
	}
	// Forgotten partitions are no longer read: partition 3 gets records
	// and is not listed.
	produceTo(t, b, "sess", 3, 1)
	if got := listed(fetch(id, 3, map[int32]int64{2: 2}, []int32{3})); len(got) != 0 {
		t.Fatalf("after forgetting partition 3: %v", got)
	}
	if resp := fetch(id, 3, nil, nil); resp.ErrorCode != kerr.InvalidFetchSessionEpoch.Code {
		t.Fatalf("a repeated epoch: error %d", resp.ErrorCode)
	}
	if resp := fetch(id+1, 1, nil, nil); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("an unknown session: error %d", resp.ErrorCode)
	}
	if resp := fetch(id, -1, map[int32]int64{1: 0}, nil); resp.ErrorCode != 0 || resp.SessionID != 0 || len(listed(resp)) != 1 {
		t.Fatalf("closing fetch: error %d, session %d, %v", resp.ErrorCode, resp.SessionID, listed(resp))
	}
	if resp := fetch(id, 4, nil, nil); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("the closed session: error %d", resp.ErrorCode)
	}
}

// TestParkedFetchTimingOutIsNotReadAgain: a fetch that found nothing and
// waited out its MaxWait with no partition moving (a move wakes it early)
// is answered with what its first read found: its partitions are looked at
// once, not once more when the wait ends. An idle follower or consumer of
// thousands of partitions read every one twice per wait before. The
// session's next incremental fetch reads none of them (each was at its
// end and nothing changed) and parks on the session; a produce to one of
// them wakes it, and it reads that partition and gets the records.
func TestParkedFetchTimingOutIsNotReadAgain(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "idle", 4, nil)
	produceTo(t, b, "idle", 0, 2)
	c := b.dial(t)
	corr := int32(0)
	fetch := func(epoch, id int32, maxWait int32) *kmsg.FetchResponse {
		t.Helper()
		req := kmsg.NewPtrFetchRequest()
		req.Version = 12
		req.ReplicaID = -1
		req.MaxBytes = 1 << 20
		req.MinBytes = 1
		req.MaxWaitMillis = maxWait
		req.SessionID, req.SessionEpoch = id, epoch
		if epoch == 0 {
			rt := kmsg.NewFetchRequestTopic()
			rt.Topic = "idle"
			for p := int32(0); p < 4; p++ {
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition, rp.PartitionMaxBytes = p, 1<<20
				if p == 0 {
					rp.FetchOffset = 2 // the end: nothing to read
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		corr++
		c.send(req, corr)
		return c.recv(req, corr).(*kmsg.FetchResponse)
	}
	// Open the session (a full fetch with epoch 0, nothing to read: it
	// waits out MaxWait too).
	before := b.s.partitionReads.Load()
	resp := fetch(0, 0, 200)
	if resp.ErrorCode != 0 || resp.SessionID == 0 {
		t.Fatalf("open: error %d session %d", resp.ErrorCode, resp.SessionID)
	}
	if n := b.s.partitionReads.Load() - before; n != 4 {
		t.Fatalf("a full fetch of 4 idle partitions timing out looked at %d partitions, want 4", n)
	}
	id := resp.SessionID
	before = b.s.partitionReads.Load()
	resp = fetch(1, id, 200)
	if resp.ErrorCode != 0 || len(resp.Topics) != 0 {
		t.Fatalf("idle incremental fetch: error %d, %d topics", resp.ErrorCode, len(resp.Topics))
	}
	if n := b.s.partitionReads.Load() - before; n != 0 {
		t.Fatalf("an idle incremental fetch timing out looked at %d partitions, want 0 (each was at its end, unchanged)", n)
	}
	// Woken by a produce: read again, with the records.
	done := make(chan *kmsg.FetchResponse, 1)
	go func() { done <- fetch(2, id, 30_000) }()
	deadline := time.Now().Add(10 * time.Second)
	for b.s.replicas.ParkedWide() == 0 { // (parked on the session: it read no partition)
		if time.Now().After(deadline) {
			t.Fatal("the fetch never parked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	produceTo(t, b, "idle", 1, 1)
	resp = <-done
	if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].Partition != 1 || len(resp.Topics[0].Partitions[0].RecordBatches) == 0 {
		t.Fatalf("woken fetch: %+v", resp)
	}
}
