package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
)

// ListOffsets: v0-11
//
// Timestamps: -1 latest (the high watermark; also the last stable offset
// for read_committed, as there are no transactions), -2 earliest (log start
// offset), -3 the first record with the largest timestamp (v7; the
// record's own offset, not its batch's last, as Kafka answers since 3.8),
// otherwise the first offset whose timestamp is at least the one given
// (offset -1 and timestamp -1 when there is none).
//
// The tiered-storage timestamps are answered as Apache Kafka answers them
// for a topic without remote storage, which is every kvlog topic: -4
// earliest local (v8) is the log start offset, as every segment is local;
// -5 latest tiered (v9) and -6 earliest pending upload (v11) are offset -1,
// timestamp -1 and leader epoch -1, "nothing in remote storage". Kafka's
// kafka-get-offsets --time -4/-5 needs them (it printed nothing for the
// partition on a broker stopping at v7).
//
// Version notes:
//   - v0: OldStyleOffsets (one offset), MaxNumOffsets.
//   - v1: a single offset and its timestamp; duplicate partitions are INVALID_REQUEST.
//   - v2: isolation level: read_committed's latest offset (and the
//     offsets a timestamp lookup may return) stop at the last stable
//     offset.
//   - v4: CurrentLeaderEpoch (KIP-320) and LeaderEpoch in the response.
//   - v6: flexible.
//   - v7: -3 max timestamp (KIP-734).
//   - v8: -4 earliest local (KIP-405).
//   - v9: -5 latest tiered (KIP-1005).
//   - v10: TimeoutMillis, for remote lookups; there are none, so it is ignored.
//   - v11: -6 earliest pending upload (KIP-1023).
//
// A tiered timestamp in a version older than the one that introduced it is
// UNSUPPORTED_VERSION, as -3 below v7 is.
func init() { regKey(kmsg.ListOffsets, 0, 11, (*Server).handleListOffsets) }

const (
	listLatest        = -1
	listEarliest      = -2
	listMaxTimestamp  = -3
	listEarliestLocal = -4
	listLatestTiered  = -5
	listPendingUpload = -6
)

func (s *Server) handleListOffsets(r *request) {
	req := r.kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)

	type key struct {
		t string
		p int32
	}
	count := map[key]int{}
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			count[key{rt.Topic, rp.Partition}]++
		}
	}
	allowed := r.authorizedNames(opDescribe, resTopic, topicNames(req.Topics, func(t *kmsg.ListOffsetsRequestTopic) string { return t.Topic }))
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp = -1
			sp.Offset = -1
			var err error
			if !allowed.ok(rt.Topic) {
				err = kerr.TopicAuthorizationFailed
			} else if req.Version >= 1 && count[key{rt.Topic, rp.Partition}] > 1 {
				err = kerr.InvalidRequest
			} else {
				err = s.listOffset(req.Version, req.IsolationLevel == 1, rt.Topic, &rp, &sp)
			}
			sp.ErrorCode = errCode(err)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	r.reply(resp)
}

func (s *Server) listOffset(version int16, committed bool, topic string, rp *kmsg.ListOffsetsRequestTopicPartition, sp *kmsg.ListOffsetsResponseTopicPartition) error {
	p := s.partition(topic, rp.Partition)
	if p == nil {
		return s.missingPartition(topic, rp.Partition)
	}
	epoch := int32(-1)
	if version >= 4 {
		epoch = rp.CurrentLeaderEpoch
		sp.LeaderEpoch = s.partitionLeaderEpoch(p)
	}
	if err := s.checkPartitionEpoch(p, epoch); err != nil {
		return err
	}
	var (
		off engine.Offset = -1
		ts  int64         = -1
	)
	visible := p.log.HighWatermark // read_committed sees up to the last stable offset
	if committed {
		visible = func() engine.Offset { return min(p.log.LastStableOffset(), p.log.HighWatermark()) }
	}
	switch rp.Timestamp {
	case listLatest:
		off = visible()
	case listEarliest:
		off = p.log.LogStartOffset()
	case listEarliestLocal:
		if version < 8 {
			return kerr.UnsupportedVersion
		}
		off = p.log.LogStartOffset()
	case listLatestTiered, listPendingUpload:
		if (rp.Timestamp == listLatestTiered && version < 9) || version < 11 && rp.Timestamp == listPendingUpload {
			return kerr.UnsupportedVersion
		}
		sp.LeaderEpoch = -1 // no remote offset, so no epoch for it
		return nil
	case listMaxTimestamp:
		if version < 7 {
			return kerr.UnsupportedVersion
		}
		mts, at, err := p.log.MaxTimestamp()
		if err != nil {
			return err
		}
		if mts >= 0 && at >= 0 {
			off, ts = at, mts
		}
	default:
		if rp.Timestamp < 0 {
			return kerr.InvalidRequest
		}
		o, t, found, err := p.log.OffsetForTimestamp(rp.Timestamp)
		if err != nil {
			return err
		}
		if found && o < visible() {
			off, ts = max(o, p.log.LogStartOffset()), t
		}
	}
	if version == 0 {
		if off >= 0 && rp.MaxNumOffsets > 0 {
			sp.OldStyleOffsets = []int64{int64(off)}
		} else {
			sp.OldStyleOffsets = []int64{}
		}
		return nil
	}
	sp.Offset = int64(off)
	sp.Timestamp = ts
	return nil
}
