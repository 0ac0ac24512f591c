package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// OffsetFetch: v0-7
//
// Committed offsets of one group, whatever its state (groups that only
// store offsets included). A partition without a committed offset gets
// offset -1 and no error.
//
// Version notes:
//   - v0-1: partitions listed explicitly; errors per partition.
//   - v2: null topics = every partition the group has an offset for;
//     top-level ErrorCode.
//   - v3: ThrottleMillis.
//   - v5: LeaderEpoch (-1 when unknown).
//   - v6: flexible.
//   - v7: RequireStable (no transactions: offsets are always stable).
//   - v8+ (batched groups) and v10+ (topic ids) are not served.
func init() { regKey(kmsg.OffsetFetch, 0, 7, (*Server).handleOffsetFetch) }

func (s *Server) handleOffsetFetch(r *request) {
	req := r.kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)

	var tps []group.TopicPartition
	if req.Topics != nil || req.Version < 2 {
		tps = []group.TopicPartition{}
		for _, rt := range req.Topics {
			for _, p := range rt.Partitions {
				tps = append(tps, groupTP(rt.Topic, p))
			}
		}
	}
	offsets, err := s.groups.FetchOffsets(req.Group, tps)
	if err != nil {
		if req.Version >= 2 {
			resp.ErrorCode = errCode(err)
			r.reply(resp)
			return
		}
		// v0-1 have no top-level error: every partition carries it.
		offsets = make([]group.CommittedOffset, len(tps))
		for i, tp := range tps {
			offsets[i] = group.CommittedOffset{TopicPartition: tp, Offset: -1, LeaderEpoch: -1}
		}
	}
	code := errCode(err)
	index := map[string]int{}
	for _, o := range offsets {
		ti, ok := index[o.Topic]
		if !ok {
			ti = len(resp.Topics)
			index[o.Topic] = ti
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = o.Topic
			resp.Topics = append(resp.Topics, rt)
		}
		rp := kmsg.NewOffsetFetchResponseTopicPartition()
		rp.Partition = o.Partition
		rp.Offset = o.Offset
		rp.LeaderEpoch = o.LeaderEpoch
		md := o.Metadata
		rp.Metadata = &md
		rp.ErrorCode = code
		resp.Topics[ti].Partitions = append(resp.Topics[ti].Partitions, rp)
	}
	if resp.Topics == nil {
		resp.Topics = []kmsg.OffsetFetchResponseTopic{}
	}
	r.reply(resp)
}
