package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// TxnOffsetCommit: v0-4
//
// A transactional producer's offsets for a group (sendOffsetsToTransaction,
// after AddOffsetsToTxn): the group coordinator writes them to the group's
// __consumer_offsets partition as a transactional batch of the producer,
// where they stay pending (invisible to OffsetFetch, UNSTABLE_OFFSET_COMMIT
// under require_stable) until the transaction's marker applies (commit)
// or drops (abort) them (group/txn_offsets.go). READ on each topic is
// required (TOPIC_AUTHORIZATION_FAILED per partition); a partition of an
// unknown topic is UNKNOWN_TOPIC_OR_PARTITION.
//
// Version notes:
//   - v2: LeaderEpoch.
//   - v3: flexible; Generation, MemberID, InstanceID, checked as for
//     OffsetCommit when set (KIP-447); PRODUCER_FENCED (before:
//     INVALID_PRODUCER_EPOCH).
//   - v4: same as v3 (KIP-890's TRANSACTION_ABORTABLE never applies here).
func init() { regKey(kmsg.TxnOffsetCommit, 0, 4, (*Server).handleTxnOffsetCommit) }

func (s *Server) handleTxnOffsetCommit(r *request) {
	req := r.kreq.(*kmsg.TxnOffsetCommitRequest)
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	cr := group.TxnCommitRequest{Group: req.Group, ProducerID: req.ProducerID, ProducerEpoch: req.ProducerEpoch, Generation: -1}
	if req.Version >= 3 {
		cr.Generation, cr.MemberID, cr.InstanceID = req.Generation, req.MemberID, req.InstanceID
	}
	type slot struct{ ti, pi, idx int }
	var slots []slot
	allowed := r.authorizedNames(opRead, resTopic, topicNames(req.Topics, func(t *kmsg.TxnOffsetCommitRequestTopic) string { return t.Topic }))
	resp.Topics = make([]kmsg.TxnOffsetCommitResponseTopic, len(req.Topics))
	for ti, rt := range req.Topics {
		st := &resp.Topics[ti]
		*st = kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.TxnOffsetCommitResponseTopicPartition, len(rt.Partitions))
		t := s.topic(rt.Topic)
		for pi, rp := range rt.Partitions {
			sp := &st.Partitions[pi]
			*sp = kmsg.NewTxnOffsetCommitResponseTopicPartition()
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
			if req.Version >= 2 {
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
		errs := s.groups.TxnCommit(cr)
		for _, sl := range slots {
			resp.Topics[sl.ti].Partitions[sl.pi].ErrorCode = txnClientCode(errs[sl.idx], req.Version, 3)
		}
	}
	r.reply(resp)
}
