package server

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestListOffsetsTieredTimestamps: the tiered-storage timestamps of
// ListOffsets v8-v11, answered as Apache Kafka answers them for a topic
// without remote storage. Kafka's kafka-get-offsets --time -4 / -5 sent
// v8 / v9 and printed nothing for the partition while kvlog stopped at v7.
func TestListOffsetsTieredTimestamps(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "tiered", 1, nil)
	produceN(t, b, "tiered", 6)
	if _, err := b.admin(t).DeleteRecords(ctxT(t), kadm.Offsets{"tiered": {0: {At: 2}}}); err != nil {
		t.Fatal(err)
	}
	c := b.dial(t)
	corr := int32(0)
	list := func(version int16, ts int64) kmsg.ListOffsetsResponseTopicPartition {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = version
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "tiered"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = ts
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		req.TimeoutMillis = 1000
		corr++
		c.send(req, corr)
		return c.recv(req, corr).(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
	}
	for _, tc := range []struct {
		version    int16
		ts         int64
		err        error
		off, epoch int64
	}{
		{8, -4, nil, 2, 0},   // earliest local: the log start offset
		{11, -4, nil, 2, 0},  //
		{9, -5, nil, -1, -1}, // latest tiered: nothing in remote storage
		{10, -5, nil, -1, -1},
		{11, -6, nil, -1, -1}, // earliest pending upload: likewise
		{7, -4, kerr.UnsupportedVersion, -1, 0},
		{8, -5, kerr.UnsupportedVersion, -1, 0},
		{10, -6, kerr.UnsupportedVersion, -1, 0},
		{11, -1, nil, 6, 0}, // the old ones still answer at v11
		{11, -2, nil, 2, 0},
	} {
		p := list(tc.version, tc.ts)
		if err := kerr.ErrorForCode(p.ErrorCode); err != tc.err {
			t.Errorf("v%d timestamp %d: error %v, want %v", tc.version, tc.ts, err, tc.err)
			continue
		}
		if tc.err != nil {
			continue
		}
		if p.Offset != tc.off || p.Timestamp != -1 || int64(p.LeaderEpoch) != tc.epoch {
			t.Errorf("v%d timestamp %d: offset %d timestamp %d epoch %d, want offset %d timestamp -1 epoch %d",
				tc.version, tc.ts, p.Offset, p.Timestamp, p.LeaderEpoch, tc.off, tc.epoch)
		}
	}
}
