package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Metadata: v0-12
//
// One broker (this one) leads every partition with leader epoch 0; it is
// also the controller. The broker endpoint returned is the advertised
// address of the listener the request arrived on.
//
// Version notes:
//   - v0: an empty topic list means all topics.
//   - v1: null means all topics, empty means none; ControllerID; IsInternal.
//   - v2: ClusterID.
//   - v4: AllowAutoTopicCreation (earlier versions always allow).
//   - v5: OfflineReplicas.
//   - v7: LeaderEpoch.
//   - v8: authorized operations (not computed: INT32_MIN, "not requested").
//   - v9: flexible.
//   - v10: TopicID in the response.
//   - v12: topics may be requested by id (null name).
func init() { regKey(kmsg.Metadata, 0, 12, (*Server).handleMetadata) }

func (s *Server) handleMetadata(r *request) {
	if s.cluster != nil {
		s.handleClusterMetadata(r) // from the controller-fed cache
		return
	}
	req := r.kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)

	b := kmsg.NewMetadataResponseBroker()
	b.NodeID = s.cfg.NodeID
	b.Host = r.c.l.advHost
	b.Port = r.c.l.advPort
	resp.Brokers = []kmsg.MetadataResponseBroker{b}
	cid := s.ClusterID()
	resp.ClusterID = &cid
	resp.ControllerID = s.cfg.NodeID

	allTopics := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if allTopics {
		for _, t := range s.sortedTopics() {
			resp.Topics = append(resp.Topics, s.metadataTopic(t))
		}
		r.reply(resp)
		return
	}
	autoCreate := s.cfg.AutoCreateTopics && (req.Version < 4 || req.AllowAutoTopicCreation)
	for _, rt := range req.Topics {
		var t *topic
		if rt.Topic == nil {
			// v12: by id.
			t = s.topics.Load().byID[rt.TopicID]
			if t == nil {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
		} else if t = s.topic(*rt.Topic); t == nil {
			name := *rt.Topic
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = &name
			if err := validateTopicName(name); err != nil {
				mt.ErrorCode = kerr.InvalidTopicException.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			if !autoCreate {
				mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			var err error
			t, err = s.createTopic(newTopicSpec{name: name, partitions: -1, rf: -1})
			if err != nil {
				if t = s.topic(name); t == nil { // lost a race with another creator: fine
					r.log().Warn("auto-creating topic failed", "topic", name, "err", err)
					mt.ErrorCode = errCode(err)
					resp.Topics = append(resp.Topics, mt)
					continue
				}
			}
		}
		resp.Topics = append(resp.Topics, s.metadataTopic(t))
	}
	r.reply(resp)
}

func (s *Server) metadataTopic(t *topic) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.name
	mt.Topic = &name
	mt.TopicID = t.id
	mt.IsInternal = t.internal
	for _, p := range t.parts {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = p.tp.Partition
		mp.Leader = s.cfg.NodeID
		mp.LeaderEpoch = leaderEpoch
		mp.Replicas = []int32{s.cfg.NodeID}
		mp.ISR = []int32{s.cfg.NodeID}
		mp.OfflineReplicas = []int32{}
		if p.log == nil {
			// Offline: its log could not be opened at start-up. No
			// leader, as Kafka reports a partition whose only replica
			// is on a failed log dir.
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
			mp.Leader, mp.ISR, mp.OfflineReplicas = -1, []int32{}, []int32{s.cfg.NodeID}
		}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}

// leaderEpoch is every partition's leader epoch on a single node.
const leaderEpoch int32 = 0
