package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// OffsetCommit: v0-9
//
// Offsets of partitions that exist go to the group coordinator, which
// checks the member and generation and appends them to __consumer_offsets
// (durable before the answer when acks=all produce is fsynced). A
// partition of an unknown topic gets UNKNOWN_TOPIC_OR_PARTITION. The
// commit timestamp is the broker's time.
//
// Version notes:
//   - v0: no generation or member (stored like a commit from outside
//     group management; Kafka kept these in ZooKeeper).
//   - v1: generation, member id; a per-partition timestamp (ignored).
//   - v2-4: RetentionTimeMillis (ignored: offsets.retention.minutes applies).
//   - v5: no retention time.
//   - v6: LeaderEpoch, stored and returned by OffsetFetch.
//   - v7: InstanceID (static members; fencing).
//   - v8: flexible.
//   - v9: KIP-848 epochs for the new consumer protocol; classic groups as v8.
func init() { regKey(kmsg.OffsetCommit, 0, 9, (*Server).handleOffsetCommit) }

func (s *Server) handleOffsetCommit(r *request) {
	req := r.kreq.(*kmsg.OffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)

	cr := group.CommitRequest{Group: req.Group, Generation: req.Generation, MemberID: req.MemberID, InstanceID: req.InstanceID}
	if req.Version == 0 {
		cr.Generation, cr.MemberID = -1, ""
	}
	type slot struct{ ti, pi, idx int }
	var slots []slot
	allowed := r.authorizedNames(opRead, resTopic, topicNames(req.Topics, func(t *kmsg.OffsetCommitRequestTopic) string { return t.Topic }))
	resp.Topics = make([]kmsg.OffsetCommitResponseTopic, len(req.Topics))
	for ti, rt := range req.Topics {
		st := &resp.Topics[ti]
		*st = kmsg.NewOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.OffsetCommitResponseTopicPartition, len(rt.Partitions))
		t := s.topic(rt.Topic)
		for pi, rp := range rt.Partitions {
			sp := &st.Partitions[pi]
			*sp = kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			if !allowed.ok(rt.Topic) {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				continue
			}
			if t == nil || rp.Partition < 0 || int(rp.Partition) >= len(t.parts) {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			oc := group.OffsetCommit{TopicPartition: groupTP(rt.Topic, rp.Partition), Offset: rp.Offset, LeaderEpoch: -1}
			if req.Version >= 6 {
				oc.LeaderEpoch = rp.LeaderEpoch
			}
			if rp.Metadata != nil {
				oc.Metadata = *rp.Metadata
			}
			slots = append(slots, slot{ti, pi, len(cr.Offsets)})
			cr.Offsets = append(cr.Offsets, oc)
		}
	}
	if len(cr.Offsets) > 0 {
		errs := s.groups.Commit(cr)
		for _, sl := range slots {
			resp.Topics[sl.ti].Partitions[sl.pi].ErrorCode = errCode(errs[sl.idx])
		}
	}
	r.reply(resp)
}
