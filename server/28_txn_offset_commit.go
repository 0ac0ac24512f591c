package server

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/txn"
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
// unknown topic is UNKNOWN_TOPIC_OR_PARTITION. When this broker also
// coordinates the transactional id, the commit must belong to the id's
// ongoing transaction with the group's offsets partition added
// (AddOffsetsToTxn): an older epoch is PRODUCER_FENCED, another producer
// id INVALID_PRODUCER_ID_MAPPING, anything else INVALID_TXN_STATE — so no
// offset is left pending without a transaction to end it (Kafka 3.9
// verifies the same with the coordinator; another broker's id is taken
// unverified, as before KIP-890).
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
		if err := s.verifyTxnOffsetCommit(req); err != nil {
			code := txnClientCode(err, req.Version, 3)
			for _, sl := range slots {
				resp.Topics[sl.ti].Partitions[sl.pi].ErrorCode = code
			}
			r.reply(resp)
			return
		}
		errs := s.groups.TxnCommit(cr)
		for _, sl := range slots {
			resp.Topics[sl.ti].Partitions[sl.pi].ErrorCode = txnClientCode(errs[sl.idx], req.Version, 3)
		}
	}
	r.reply(resp)
}

// verifyTxnOffsetCommit checks the commit against the transaction when
// this broker coordinates its transactional id.
func (s *Server) verifyTxnOffsetCommit(req *kmsg.TxnOffsetCommitRequest) error {
	d, err := s.txns.Describe(req.TransactionalID)
	switch {
	case errors.Is(err, txn.ErrNotCoordinator):
		return nil // another broker's: unverified
	case errors.Is(err, txn.ErrTransactionalIDNotFound):
		return topicErrf(kerr.InvalidProducerIDMapping, "transactional id %q is unknown", req.TransactionalID)
	case err != nil:
		return err
	case d.ProducerID != req.ProducerID:
		return topicErrf(kerr.InvalidProducerIDMapping, "transactional id %q is producer %d, not %d", req.TransactionalID, d.ProducerID, req.ProducerID)
	case req.ProducerEpoch < d.ProducerEpoch:
		return topicErrf(kerr.ProducerFenced, "producer %d epoch %d fenced by epoch %d", req.ProducerID, req.ProducerEpoch, d.ProducerEpoch)
	case req.ProducerEpoch != d.ProducerEpoch || d.State != txn.Ongoing:
		return topicErrf(kerr.InvalidTxnState, "transactional id %q is %s at epoch %d", req.TransactionalID, d.State, d.ProducerEpoch)
	}
	want := txn.TopicPartition{Topic: group.OffsetsTopic, Partition: s.groups.PartitionFor(req.Group)}
	for _, tp := range d.Partitions {
		if tp == want {
			return nil
		}
	}
	return topicErrf(kerr.InvalidTxnState, "group %q's offsets were not added to transaction %q (AddOffsetsToTxn)", req.Group, req.TransactionalID)
}
