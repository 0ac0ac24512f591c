package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
)

// DeleteRecords: v0-2
//
// Raises each partition's log start offset; -1 means the high watermark.
// Offsets above the high watermark (or negative other than -1) are
// OFFSET_OUT_OF_RANGE. The response's low watermark is the new log start
// offset; whole segments below it go at the next retention pass.
//
// As in Kafka (ReplicaManager and Partition.deleteRecordsOnLeader), in this
// order:
//   - a partition of an internal topic (__consumer_offsets) is
//     INVALID_TOPIC_EXCEPTION: its records are the groups' state;
//   - a partition this broker does not lead, the usual errors;
//   - a topic whose cleanup.policy does not include delete (compact alone)
//     is POLICY_VIOLATION: deleting a prefix of a compacted log would remove
//     keys from every future replay. compact,delete topics are accepted.
//
// Version notes:
//   - v2: flexible.
func init() { regKey(kmsg.DeleteRecords, 0, 2, (*Server).handleDeleteRecords) }

func (s *Server) handleDeleteRecords(r *request) {
	req := r.kreq.(*kmsg.DeleteRecordsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	allowed := r.authorizedNames(opDelete, resTopic, topicNames(req.Topics, func(t *kmsg.DeleteRecordsRequestTopic) string { return t.Topic }))
	for _, rt := range req.Topics {
		st := kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LowWatermark = -1
			err := error(kerr.TopicAuthorizationFailed)
			if allowed.ok(rt.Topic) {
				err = s.deleteRecords(rt.Topic, rp.Partition, rp.Offset, &sp)
			}
			if err != nil {
				sp.ErrorCode = errCode(err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	r.reply(resp)
}

func (s *Server) deleteRecords(topic string, partition int32, offset int64, sp *kmsg.DeleteRecordsResponseTopicPartition) error {
	if isInternalTopic(topic) {
		return topicErrf(kerr.InvalidTopicException, "cannot delete records of internal topic %s", topic)
	}
	p := s.partition(topic, partition)
	if p == nil {
		return s.missingPartition(topic, partition)
	}
	if err := s.checkPartitionEpoch(p, -1); err != nil {
		return err
	}
	if !p.log.Config().Delete {
		return topicErrf(kerr.PolicyViolation, "records of partition %s-%d cannot be deleted: its cleanup.policy does not include delete", topic, partition)
	}
	hw := p.log.HighWatermark()
	target := engine.Offset(offset)
	if offset == -1 {
		target = hw
	}
	if target < 0 || target > hw {
		return kerr.OffsetOutOfRange
	}
	if err := p.log.DeleteRecordsBefore(target); err != nil {
		return err
	}
	sp.LowWatermark = int64(p.log.LogStartOffset())
	return nil
}
