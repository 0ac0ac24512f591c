package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// OffsetDelete: v0
//
// Deletes committed offsets of a group (tombstones in __consumer_offsets):
// any of an empty group; of a consumer group with members, only those of
// topics it does not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise);
// NON_EMPTY_GROUP for other groups with members.
func init() { regKey(kmsg.OffsetDelete, 0, 0, (*Server).handleOffsetDelete) }

func (s *Server) handleOffsetDelete(r *request) {
	req := r.kreq.(*kmsg.OffsetDeleteRequest)
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	// READ on each topic (the group's DELETE is checked by the
	// dispatcher): only authorized partitions reach the coordinator.
	allowed := r.authorizedNames(opRead, resTopic, topicNames(req.Topics, func(t *kmsg.OffsetDeleteRequestTopic) string { return t.Topic }))
	var tps []group.TopicPartition
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			if allowed.ok(rt.Topic) {
				tps = append(tps, groupTP(rt.Topic, rp.Partition))
			}
		}
	}
	errs, gerr := s.groups.DeleteOffsets(req.Group, tps)
	resp.ErrorCode = errCode(gerr)
	if gerr == nil {
		i := 0
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetDeleteResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetDeleteResponseTopicPartition()
				sp.Partition = rp.Partition
				if !allowed.ok(rt.Topic) {
					sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				} else {
					sp.ErrorCode = errCode(errs[i])
					i++
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
	}
	r.reply(resp)
}
