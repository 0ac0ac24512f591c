package server

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/replica"
)

// DescribeProducers: v0
//
// The producers a partition's leader tracks (kafka-transactions.sh
// describe-producers, kadm.DescribeProducers): id, epoch, last sequence
// and timestamp, the coordinator epoch of the last marker and the first
// offset of an ongoing transaction (-1: none). READ on the topic is
// required (TOPIC_AUTHORIZATION_FAILED); an unknown partition is
// UNKNOWN_TOPIC_OR_PARTITION, one this broker does not lead
// NOT_LEADER_OR_FOLLOWER.
func init() { regKey(kmsg.DescribeProducers, 0, 0, (*Server).handleDescribeProducers) }

func (s *Server) handleDescribeProducers(r *request) {
	req := r.kreq.(*kmsg.DescribeProducersRequest)
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	allowed := r.authorizedNames(opRead, resTopic, topicNames(req.Topics, func(t *kmsg.DescribeProducersRequestTopic) string { return t.Topic }))
	for _, rt := range req.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		t := s.topic(rt.Topic)
		for _, p := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = p
			var err error
			switch {
			case !allowed.ok(rt.Topic):
				err = kerr.TopicAuthorizationFailed
			case t == nil || p < 0 || int(p) >= len(t.parts):
				err = kerr.UnknownTopicOrPartition
			case t.parts[p].role() != replica.RoleLeader:
				err = topicErrf(kerr.NotLeaderForPartition, "%s-%d is not led by this broker", rt.Topic, p)
			default:
				ps, perr := t.parts[p].log.Producers()
				if perr != nil {
					err = fmt.Errorf("%s-%d: reading producer state: %w", rt.Topic, p, perr)
					break
				}
				for _, pi := range ps {
					ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
					ap.ProducerID, ap.ProducerEpoch = pi.ProducerID, int32(pi.ProducerEpoch)
					ap.LastSequence, ap.LastTimestamp = pi.LastSequence, pi.LastTimestamp
					ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = pi.CoordinatorEpoch, int64(pi.TxnStartOffset)
					sp.ActiveProducers = append(sp.ActiveProducers, ap)
				}
			}
			sp.ErrorCode = errCode(err)
			if err != nil && err != kerr.TopicAuthorizationFailed && err != kerr.UnknownTopicOrPartition {
				sp.ErrorMessage = errMessage(err)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	r.reply(resp)
}
