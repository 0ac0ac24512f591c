package server

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// tsBatch is a batch of records whose timestamps are base plus deltas[i].
func tsBatch(base int64, deltas []int64) []byte {
	var recs []byte
	maxTs := base
	for i, d := range deltas {
		r := kmsg.NewRecord()
		r.OffsetDelta = int32(i)
		r.TimestampDelta64 = d
		r.Key = []byte{byte('a' + i)}
		r.Value = []byte("value")
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = append(recs, r.AppendTo(nil)...)
		maxTs = max(maxTs, base+d)
	}
	rb := kmsg.NewRecordBatch()
	rb.Magic = 2
	rb.LastOffsetDelta = int32(len(deltas) - 1)
	rb.FirstTimestamp = base
	rb.MaxTimestamp = maxTs
	rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = -1, -1, -1
	rb.NumRecords = int32(len(deltas))
	rb.Records = recs
	raw := rb.AppendTo(nil)
	rb.Length = int32(len(raw) - 12)
	raw = rb.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[17:], crc32c(raw[21:]))
	return raw
}

// TestListOffsetsMaxTimestampRecordOffset: ListOffsets -3 answers the
// offset of the first record carrying the largest timestamp, not the last
// offset of its batch (Kafka 3.8+; Java's Admin.listOffsets with
// OffsetSpec.maxTimestamp() sees the difference whenever a producer
// batches).
func TestListOffsetsMaxTimestampRecordOffset(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "maxts", 1, nil)
	c := b.dial(t)
	const base = int64(1_700_000_000_000)
	// Offsets 0-4, then 5-9 with the maximum at offset 7 and again at 8.
	for i, deltas := range [][]int64{{0, 1, 2, 3, 4}, {5, 6, 100, 100, 9}} {
		c.send(produceReq(9, -1, "maxts", 0, tsBatch(base, deltas)), int32(i))
		resp := c.recv(produceReq(9, -1, "maxts", 0, nil), int32(i)).(*kmsg.ProduceResponse)
		if ec := resp.Topics[0].Partitions[0].ErrorCode; ec != 0 {
			t.Fatalf("produce batch %d: error %d", i, ec)
		}
	}
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = 7
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = "maxts"
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = listMaxTimestamp
	rp.CurrentLeaderEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	c.send(req, 10)
	resp := c.recv(req, 10).(*kmsg.ListOffsetsResponse)
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.Offset != 7 || p.Timestamp != base+100 {
		t.Fatalf("ListOffsets max timestamp: error %d offset %d timestamp %d, want offset 7 at %d", p.ErrorCode, p.Offset, p.Timestamp, base+100)
	}
}
