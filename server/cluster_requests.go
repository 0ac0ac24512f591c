package server

import (
	"net"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
)

// Request-path pieces shared by the handlers that differ in cluster mode.

// missingPartition is the error for a partition this broker does not serve:
// in cluster mode a partition of a known topic hosted elsewhere is
// NOT_LEADER_OR_FOLLOWER (clients refresh metadata); on a single node a
// partition of a known topic is offline (its log could not be opened),
// KAFKA_STORAGE_ERROR; otherwise UNKNOWN_TOPIC_OR_PARTITION.
func (s *Server) missingPartition(topic string, p int32) error {
	if t := s.topic(topic); t != nil && p >= 0 && int(p) < len(t.parts) {
		if s.cluster == nil {
			// Single node: the partition is offline (its log could not
			// be opened), as a partition on a failed log dir in Kafka.
			return topicErrf(kerr.KafkaStorageError, "partition %s-%d is offline: its log could not be opened", topic, p)
		}
		return kerr.NotLeaderForPartition
	}
	return kerr.UnknownTopicOrPartition
}

// checkPartitionEpoch checks that this broker leads p and the client's
// current leader epoch (KIP-320; -1 skips the epoch check).
func (s *Server) checkPartitionEpoch(p *partition, epoch int32) error {
	if p.rep.Role() != replica.RoleLeader {
		return replica.ErrNotLeader
	}
	return replica.CheckLeaderEpoch(p.rep.LeaderEpoch(), epoch)
}

// partitionLeaderEpoch is p's current leader epoch.
func (s *Server) partitionLeaderEpoch(p *partition) int32 { return p.rep.LeaderEpoch() }

// followerFetch records a follower's fetch on the leader (moving the HW and
// the ISR) and returns the HW to report and the offset reads stop at (the
// LEO). sp gets the leader's log start and HW even on error: the follower
// uses them after OFFSET_OUT_OF_RANGE.
func (s *Server) followerFetch(p *partition, replicaID int32, rp *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition) (hw, readTo engine.Offset, err error) {
	sp.HighWatermark = int64(p.log.HighWatermark())
	sp.LogStartOffset = int64(p.log.LogStartOffset())
	sp.LastStableOffset = sp.HighWatermark
	v, err := s.replicas.FollowerFetch(p.rep, replicaID, engine.Offset(rp.FetchOffset), rp.CurrentLeaderEpoch)
	if err != nil {
		return 0, 0, err
	}
	return v.HW, v.LEO, nil
}

// handleClusterMetadata answers Metadata from the controller-fed cache.
func (s *Server) handleClusterMetadata(r *request) {
	req := r.kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	m := s.cluster.meta.Load()
	listener := r.c.l.name
	for _, id := range sortedIDs(m.brokers) {
		eps := m.brokers[id]
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID = id
		ep := eps[0]
		for _, e := range eps {
			if e.Name == listener {
				ep = e
			}
		}
		b.Host, b.Port = ep.Host, ep.Port
		resp.Brokers = append(resp.Brokers, b)
	}
	if _, ok := m.brokers[s.cfg.NodeID]; !ok {
		// Before the controller's first UpdateMetadata (or after losing
		// our registration) list at least this broker: clients that get an
		// empty broker list have nowhere to send their next request.
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = s.cfg.NodeID, r.c.l.advHost, r.c.l.advPort
		if b.Host == "" {
			b.Host, _, _ = net.SplitHostPort(r.c.l.ln.Addr().String())
		}
		resp.Brokers = append(resp.Brokers, b)
	}
	cid := s.ClusterID()
	resp.ClusterID = &cid
	resp.ControllerID = m.controllerID

	topicMeta := func(name string, t *topic) kmsg.MetadataResponseTopic {
		mt := kmsg.NewMetadataResponseTopic()
		n := name
		mt.Topic = &n
		mt.TopicID = t.id
		mt.IsInternal = t.internal
		parts, ok := m.topics[name]
		if !ok {
			mt.ErrorCode = kerr.LeaderNotAvailable.Code
			return mt
		}
		for i, pm := range parts {
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition = int32(i)
			mp.Leader = pm.leader
			mp.LeaderEpoch = pm.leaderEpoch
			mp.Replicas = append([]int32{}, pm.replicas...)
			mp.ISR = append([]int32{}, pm.isr...)
			mp.OfflineReplicas = append([]int32{}, pm.offline...)
			if pm.leader < 0 {
				mp.ErrorCode = kerr.LeaderNotAvailable.Code
			}
			mt.Partitions = append(mt.Partitions, mp)
		}
		return mt
	}

	allTopics := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if allTopics {
		for _, t := range s.sortedTopics() {
			resp.Topics = append(resp.Topics, topicMeta(t.name, t))
		}
		r.reply(resp)
		return
	}
	autoCreate := s.cfg.AutoCreateTopics && (req.Version < 4 || req.AllowAutoTopicCreation)
	for _, rt := range req.Topics {
		var t *topic
		if rt.Topic == nil {
			if t = s.topics.Load().byID[rt.TopicID]; t == nil {
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
			switch err := validateTopicName(name); {
			case err != nil:
				mt.ErrorCode = kerr.InvalidTopicException.Code
			case !autoCreate:
				mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				if _, err := s.createTopic(newTopicSpec{name: name, partitions: -1, rf: -1}); err != nil && s.topic(name) == nil {
					r.log().Warn("auto-creating topic failed", "topic", name, "err", err)
					mt.ErrorCode = errCode(err)
				} else {
					mt.ErrorCode = kerr.LeaderNotAvailable.Code // the controller is electing leaders
				}
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, topicMeta(t.name, t))
	}
	r.reply(resp)
}

func sortedIDs[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
