package server

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
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
//   - v7: RequireStable: a partition with a pending transactional offset
//     commit (TxnOffsetCommit before its marker) answers
//     UNSTABLE_OFFSET_COMMIT, which clients retry.
//   - v8+ (batched groups) and v10+ (topic ids) are not served.
func init() { regKey(kmsg.OffsetFetch, 0, 7, (*Server).handleOffsetFetch) }

func (s *Server) handleOffsetFetch(r *request) {
	req := r.kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)

	// DESCRIBE on each topic (the group's DESCRIBE is checked by the
	// dispatcher): unauthorized partitions answer TOPIC_AUTHORIZATION_FAILED,
	// and an all-topics fetch leaves their topics out.
	var tps, asked, denied []group.TopicPartition
	if req.Topics != nil || req.Version < 2 {
		tps, asked = []group.TopicPartition{}, []group.TopicPartition{}
		allowed := r.authorizedNames(opDescribe, resTopic, topicNames(req.Topics, func(t *kmsg.OffsetFetchRequestTopic) string { return t.Topic }))
		for _, rt := range req.Topics {
			for _, p := range rt.Partitions {
				tps = append(tps, groupTP(rt.Topic, p))
				if allowed.ok(rt.Topic) {
					asked = append(asked, groupTP(rt.Topic, p))
				} else {
					denied = append(denied, groupTP(rt.Topic, p))
				}
			}
		}
	}
	offsets, err := s.groups.FetchOffsetsStable(req.Group, asked, req.Version >= 7 && req.RequireStable)
	if err == nil && tps == nil && s.authz != nil {
		var names []string
		for _, o := range offsets {
			names = append(names, o.Topic)
		}
		allowed := r.authorizedNames(opDescribe, resTopic, names)
		offsets = slices.DeleteFunc(offsets, func(o group.CommittedOffset) bool { return !allowed.ok(o.Topic) })
	}
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
	deniedAt := len(offsets)
	if err == nil {
		for _, tp := range denied {
			offsets = append(offsets, group.CommittedOffset{TopicPartition: tp, Offset: -1, LeaderEpoch: -1})
		}
	}
	index := map[string]int{}
	for i, o := range offsets {
		if i >= deniedAt {
			code = kerr.TopicAuthorizationFailed.Code
		}
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
		if o.Err != nil {
			rp.ErrorCode = errCode(o.Err)
		}
		resp.Topics[ti].Partitions = append(resp.Topics[ti].Partitions, rp)
	}
	if resp.Topics == nil {
		resp.Topics = []kmsg.OffsetFetchResponseTopic{}
	}
	r.reply(resp)
}
