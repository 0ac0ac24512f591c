package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteTopics: v0-6
//
// Deletion is durable before the response: the topic leaves the metadata
// store (recorded as a pending deletion until its logs are gone; on a full
// disk in a marker file that needs no space), its logs are deleted, and
// every group's committed offsets of its partitions are removed (Kafka's
// GroupCoordinator.onPartitionsDeleted), so a topic re-created under the
// same name starts with none. Internal topics (__consumer_offsets) cannot
// be deleted: INVALID_TOPIC_EXCEPTION (docs/topics.md).
//
// Version notes:
//   - v4: flexible.
//   - v5: ErrorMessage.
//   - v6: topics by name or by id (Topics array).
func init() { regKey(kmsg.DeleteTopics, 0, 6, (*Server).handleDeleteTopics) }

func (s *Server) handleDeleteTopics(r *request) {
	req := r.kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)

	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if req.Version >= 6 {
		for _, t := range req.Topics {
			targets = append(targets, target{t.Topic, t.TopicID})
		}
	} else {
		for _, n := range req.TopicNames {
			n := n
			targets = append(targets, target{name: &n})
		}
	}
	mutations := s.quotas.mutations(r)
	for _, tg := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic = tg.name
		st.TopicID = tg.id
		var err error
		switch {
		case !s.cfg.DeleteTopicEnable:
			err = topicErrf(kerr.TopicDeletionDisabled, "delete.topic.enable is false")
		case tg.name == nil:
			if t := s.topics.Load().byID[tg.id]; t == nil {
				err = topicErrf(kerr.UnknownTopicID, "unknown topic id")
			} else if !r.authorize(opDescribe, resTopic, t.name) {
				err = topicErrf(kerr.TopicAuthorizationFailed, "not authorized to describe the topic") // the name is not returned
			} else if !r.authorize(opDelete, resTopic, t.name) {
				err = topicErrf(kerr.TopicAuthorizationFailed, "not authorized to delete topic %s", t.name)
				st.Topic = kmsg.StringPtr(t.name)
			} else {
				name := t.name
				st.Topic = &name
				if err = mutations.record(int32(len(t.parts))); err == nil {
					err = s.deleteTopic(name)
				}
			}
		case !r.authorize(opDelete, resTopic, *tg.name):
			err = topicErrf(kerr.TopicAuthorizationFailed, "not authorized to delete topic %s", *tg.name)
		default:
			if t := s.topic(*tg.name); t != nil {
				st.TopicID = t.id
				err = mutations.record(int32(len(t.parts)))
			}
			if err == nil {
				err = s.deleteTopic(*tg.name)
			}
		}
		st.ErrorCode = errCode(err)
		if req.Version >= 5 {
			st.ErrorMessage = errMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	mutations.done(r)
	r.reply(resp)
}
