package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/txn"
)

// AddPartitionsToTxn: v0-3
//
// The client form: one transaction's partitions join it before the
// producer writes to them (the coordinator writes Ongoing, then answers).
// As in Kafka, a partition of a topic without WRITE, or of an internal
// topic, gets TOPIC_AUTHORIZATION_FAILED, one of an unknown topic or
// partition UNKNOWN_TOPIC_OR_PARTITION, and then every other partition
// OPERATION_NOT_ATTEMPTED and nothing is added; otherwise all partitions
// get the coordinator's answer.
//
// Version notes:
//   - v2: PRODUCER_FENCED (before: INVALID_PRODUCER_EPOCH).
//   - v3: flexible.
//   - v4+ (the brokers' batched verification form, KIP-890) is not
//     served: clients send at most v3, and kvlog's produce path checks the
//     transaction itself (00_produce.go).
func init() { regKey(kmsg.AddPartitionsToTxn, 0, 3, (*Server).handleAddPartitionsToTxn) }

func (s *Server) handleAddPartitionsToTxn(r *request) {
	req := r.kreq.(*kmsg.AddPartitionsToTxnRequest)
	allowed := r.authorizedNames(opWrite, resTopic, topicNames(req.Topics, func(t *kmsg.AddPartitionsToTxnRequestTopic) string { return t.Topic }))
	var (
		tps     []txn.TopicPartition
		refused = map[txn.TopicPartition]int16{}
	)
	for _, rt := range req.Topics {
		t := s.topic(rt.Topic)
		for _, p := range rt.Partitions {
			tp := txn.TopicPartition{Topic: rt.Topic, Partition: p}
			switch {
			case !allowed.ok(rt.Topic) || isInternalTopic(rt.Topic):
				refused[tp] = kerr.TopicAuthorizationFailed.Code
			case t == nil || p < 0 || int(p) >= len(t.parts):
				refused[tp] = kerr.UnknownTopicOrPartition.Code
			default:
				tps = append(tps, tp)
			}
		}
	}
	answer := func(code func(tp txn.TopicPartition) int16) {
		resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewAddPartitionsToTxnResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				sp.Partition = p
				sp.ErrorCode = code(txn.TopicPartition{Topic: rt.Topic, Partition: p})
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		r.reply(resp)
	}
	if len(refused) > 0 {
		answer(func(tp txn.TopicPartition) int16 {
			if c, ok := refused[tp]; ok {
				return c
			}
			return kerr.OperationNotAttempted.Code
		})
		return
	}
	s.txns.AddPartitions(req.TransactionalID, req.ProducerID, req.ProducerEpoch, tps, func(err error) {
		code := txnClientCode(err, req.Version, 2)
		answer(func(txn.TopicPartition) int16 { return code })
	})
}
