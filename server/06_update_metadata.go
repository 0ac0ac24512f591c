package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/zkstore"
)

// UpdateMetadata: v5-6 (inter-broker, from the controller; cluster mode only)
//
// The controller sends the full cluster state (live brokers, every
// partition's leader, epoch, ISR, replicas, offline replicas); it replaces
// the broker's metadata cache, which Metadata requests are answered from,
// and new topics or partitions appear in the topic snapshot. Only the
// current controller's requests are applied (package cluster, Member.Admit).
//
// Version notes:
//   - v5: topic states nested by topic, offline replicas, BrokerEpoch.
//   - v6: flexible.
func init() { regKey(kmsg.UpdateMetadata, 5, 6, (*Server).handleUpdateMetadata) }

func (s *Server) handleUpdateMetadata(r *request) {
	req := r.kreq.(*kmsg.UpdateMetadataRequest)
	resp := req.ResponseKind().(*kmsg.UpdateMetadataResponse)
	c, refused := s.fromController(r, req.ControllerID, req.ControllerEpoch, req.BrokerEpoch)
	if refused != nil {
		resp.ErrorCode = refused.Code
		r.reply(resp)
		return
	}
	m := &clusterMeta{controllerID: req.ControllerID, brokers: map[int32][]zkstore.Endpoint{}, topics: map[string][]partMeta{}}
	for _, b := range req.LiveBrokers {
		for _, e := range b.Endpoints {
			m.brokers[b.ID] = append(m.brokers[b.ID], zkstore.Endpoint{Name: e.ListenerName, Host: e.Host, Port: e.Port})
		}
	}
	for _, ts := range req.TopicStates {
		parts := make([]partMeta, len(ts.PartitionStates))
		for _, ps := range ts.PartitionStates {
			if ps.Partition < 0 || int(ps.Partition) >= len(parts) {
				continue
			}
			parts[ps.Partition] = partMeta{leader: ps.Leader, leaderEpoch: ps.LeaderEpoch, isr: ps.ISR, replicas: ps.Replicas, offline: ps.OfflineReplicas,
				controllerEpoch: ps.ControllerEpoch, zkVersion: ps.ZKVersion}
		}
		m.topics[ts.Topic] = parts
	}
	c.noteRemovedTopics(m) // deleted topics' offsets go (cluster_groups.go)
	c.meta.Store(m)
	c.syncTopics(m)
	r.reply(resp)
}
