package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CreatePartitions: v0-3
//
// Raises a topic's partition count (never lowers it): the new count is
// durable in the metadata store, then the new partitions' logs are created,
// then they become visible to Metadata, Produce and Fetch. Each topic
// succeeds or fails on its own.
//
// Behaviour:
//   - A count at or below the current one is INVALID_PARTITIONS; an unknown
//     topic UNKNOWN_TOPIC_OR_PARTITION; a topic named twice in one request
//     INVALID_REQUEST for each mention, as Kafka does.
//   - An explicit Assignment must list one replica set per new partition,
//     each exactly this broker (single node, replication factor 1), else
//     INVALID_REPLICA_ASSIGNMENT.
//   - Internal topics (__consumer_offsets) keep their count:
//     INVALID_REQUEST, since the group coordinator maps groups to its
//     partitions by count.
//   - At most 10,000 new partitions per request (Kafka's controller bound
//     on the metadata records of one request): a topic whose new
//     partitions would pass that total gets POLICY_VIOLATION and nothing
//     of it is created (Kafka fails that topic with an unexpected-error
//     code; the message is its controller's).
//   - ValidateOnly checks everything and changes nothing. TimeoutMillis is
//     not needed: the work is done before the response.
//
// Version notes:
//   - v1: same as v0 (throttle semantics).
//   - v2: flexible.
//   - v3: same as v2.
func init() { regKey(kmsg.CreatePartitions, 0, 3, (*Server).handleCreatePartitions) }

func (s *Server) handleCreatePartitions(r *request) {
	req := r.kreq.(*kmsg.CreatePartitionsRequest)
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	mentions := map[string]int{}
	for _, rt := range req.Topics {
		mentions[rt.Topic]++
	}
	budget := int32(maxPartitionsPerRequest) // new partitions this request may still create
	mutations := s.quotas.mutations(r)
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		var err error
		if mentions[rt.Topic] > 1 {
			err = topicErrf(kerr.InvalidRequest, "duplicate topic %q in request", rt.Topic)
		} else if !r.authorize(opAlter, resTopic, rt.Topic) {
			err = topicErrf(kerr.TopicAuthorizationFailed, "The topic authorization is failed.")
		} else if t := s.topic(rt.Topic); t != nil && rt.Count-int32(len(t.parts)) > budget {
			err = topicErrf(kerr.PolicyViolation, "Unable to perform excessively large batch operation.")
		} else {
			var assignment [][]int32
			if rt.Assignment != nil {
				assignment = make([][]int32, 0, len(rt.Assignment))
				for _, a := range rt.Assignment {
					assignment = append(assignment, a.Replicas)
				}
			}
			if t != nil && rt.Count > int32(len(t.parts)) && !req.ValidateOnly {
				err = mutations.record(rt.Count - int32(len(t.parts)))
			}
			if err == nil {
				err = s.addPartitions(rt.Topic, rt.Count, assignment, req.ValidateOnly)
			}
			if err == nil && t != nil {
				budget -= rt.Count - int32(len(t.parts))
			}
		}
		st.ErrorCode = errCode(err)
		st.ErrorMessage = errMessage(err)
		resp.Topics = append(resp.Topics, st)
	}
	mutations.done(r)
	r.reply(resp)
}
