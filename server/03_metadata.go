package server

import (
	"net"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/zkstore"
)

// Metadata: v0-12
//
// Answered from a metadata view (metadataView): on a single node the
// topics and partitions it hosts (this broker leads every partition with
// leader epoch 0 and is the controller), in a cluster the controller-fed
// cache (UpdateMetadata). Each broker's endpoint is the one of the
// listener the request arrived on. A topic auto-created here appears with
// its partitions once the view has them (at once on a single node; in a
// cluster LEADER_NOT_AVAILABLE until the controller elected leaders).
//
// Version notes:
//   - v0: an empty topic list means all topics.
//   - v1: null means all topics, empty means none; ControllerID; IsInternal.
//   - v2: ClusterID.
//   - v4: AllowAutoTopicCreation (earlier versions always allow).
//   - v5: OfflineReplicas.
//   - v7: LeaderEpoch.
//   - v8: authorized operations of topics and (v8-10) the cluster, when
//     requested (INT32_MIN otherwise).
//   - v9: flexible.
//   - v10: TopicID in the response.
//   - v12: topics may be requested by id (null name).
func init() { regKey(kmsg.Metadata, 0, 12, (*Server).handleMetadata) }

// metadataView is what Metadata and the partition errors answer from: the
// live brokers, the controller and every partition's leader, leader epoch,
// ISR, replicas and offline replicas. The cluster's view is its
// controller-fed cache (clusterMeta); a single node's is localView.
type metadataView interface {
	controller() int32
	brokerEndpoints() map[int32][]zkstore.Endpoint
	partitions(topic string) ([]partMeta, bool)
}

// localView is a single node's metadata view, from its topics and
// listeners: this broker is the controller, the only replica and the
// leader (epoch 0) of every partition whose log is open; the others are
// offline.
type localView struct{ s *Server }

func (v localView) controller() int32 { return v.s.cfg.NodeID }

func (v localView) brokerEndpoints() map[int32][]zkstore.Endpoint {
	v.s.lnMu.Lock()
	defer v.s.lnMu.Unlock()
	eps := make([]zkstore.Endpoint, 0, len(v.s.listeners))
	for _, l := range v.s.listeners {
		eps = append(eps, zkstore.Endpoint{Name: l.name, Host: l.advHost, Port: l.advPort})
	}
	return map[int32][]zkstore.Endpoint{v.s.cfg.NodeID: eps}
}

func (v localView) partitions(topic string) ([]partMeta, bool) {
	t := v.s.topic(topic)
	if t == nil {
		return nil, false
	}
	me := []int32{v.s.cfg.NodeID}
	out := make([]partMeta, len(t.parts))
	for i, p := range t.parts {
		out[i] = partMeta{leader: v.s.cfg.NodeID, leaderEpoch: leaderEpoch, isr: me, replicas: me}
		if p.log == nil {
			// Offline: its log could not be opened. No leader, as Kafka
			// reports a partition whose only replica is on a failed log dir.
			out[i].leader, out[i].isr, out[i].offline = -1, nil, me
		}
	}
	return out, true
}

// leaderEpoch is every partition's leader epoch on a single node.
const leaderEpoch int32 = 0

func (s *Server) handleMetadata(r *request) {
	req := r.kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	view := s.view()
	brokers := view.brokerEndpoints()
	for _, id := range sortedIDs(brokers) {
		eps := brokers[id]
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID = id
		ep := eps[0]
		for _, e := range eps {
			if e.Name == r.c.l.name {
				ep = e
			}
		}
		b.Host, b.Port = ep.Host, ep.Port
		resp.Brokers = append(resp.Brokers, b)
	}
	if _, ok := brokers[s.cfg.NodeID]; !ok {
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
	resp.ControllerID = view.controller()

	if req.Version >= 8 && req.Version <= 10 && req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = 0
		if r.authorizeCluster(opDescribe) {
			resp.AuthorizedOperations = r.authorizedOperations(resCluster, acl.ClusterName)
		}
	}
	reply := func() {
		if req.Version >= 8 && req.IncludeTopicAuthorizedOperations {
			for i := range resp.Topics {
				if mt := &resp.Topics[i]; mt.ErrorCode == 0 && mt.Topic != nil {
					mt.AuthorizedOperations = r.authorizedOperations(resTopic, *mt.Topic)
				}
			}
		}
		r.reply(resp)
	}
	allTopics := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if allTopics {
		// Only the topics the principal may describe (authz_apis.go).
		for _, t := range s.sortedTopics() {
			if r.authorizeLog(opDescribe, resTopic, t.name, false) {
				resp.Topics = append(resp.Topics, metadataTopic(view, t))
			}
		}
		reply()
		return
	}
	autoCreate := s.cfg.AutoCreateTopics && (req.Version < 4 || req.AllowAutoTopicCreation)
	canCreate := func(name string) bool { // CREATE on the cluster, else on the topic
		return r.authorizeLog(opCreate, resCluster, acl.ClusterName, false) || r.authorize(opCreate, resTopic, name)
	}
	for _, rt := range req.Topics {
		var t *topic
		if rt.Topic == nil {
			// v12: by id.
			if t = s.topics.Load().byID[rt.TopicID]; t == nil {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			if !r.authorize(opDescribe, resTopic, t.name) {
				// Ids are not secret: the id, without the name.
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
		} else if !r.authorize(opDescribe, resTopic, *rt.Topic) {
			// Whether it exists is not disclosed.
			name := *rt.Topic
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = &name
			mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, mt)
			continue
		} else if t = s.topic(*rt.Topic); t == nil {
			name := *rt.Topic
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = &name
			switch err := validateTopicName(name); {
			case autoCreate && !canCreate(name):
				mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
				mt.IsInternal = isInternalTopic(name)
			case err != nil:
				mt.ErrorCode = kerr.InvalidTopicException.Code
			case !autoCreate:
				mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			default:
				_, err := s.createTopic(newTopicSpec{name: name, partitions: -1, rf: -1})
				if t = s.topic(name); t == nil { // else created, here or concurrently
					r.log().Warn("auto-creating topic failed", "topic", name, "err", err)
					mt.ErrorCode = errCode(err)
				} else if view := s.view(); hasTopic(view, name) {
					resp.Topics = append(resp.Topics, metadataTopic(view, t))
					continue
				} else {
					mt.ErrorCode = kerr.LeaderNotAvailable.Code // the controller is electing leaders
				}
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, metadataTopic(view, t))
	}
	reply()
}

// metadataTopic is t as view describes it (LEADER_NOT_AVAILABLE for a
// topic the view does not list yet, and for partitions without a leader).
func metadataTopic(view metadataView, t *topic) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.name
	mt.Topic = &name
	mt.TopicID = t.id
	mt.IsInternal = t.internal
	parts, ok := view.partitions(t.name)
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

func hasTopic(view metadataView, name string) bool {
	_, ok := view.partitions(name)
	return ok
}

func sortedIDs[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
