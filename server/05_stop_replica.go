package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/txn"
)

// StopReplica: v3 (inter-broker, from the controller; cluster mode only)
//
// Stops serving the listed partitions (fetchers stopped, acks=all waiters
// answered NOT_LEADER_OR_FOLLOWER) and, with Delete, deletes their logs
// (topic deletion). Only the current controller's requests are applied
// (package cluster, Member.Admit).
//
// Version notes:
//   - v3: per-partition leader epoch and delete flag (KIP-570).
func init() { regKey(kmsg.StopReplica, 3, 3, (*Server).handleStopReplica) }

func (s *Server) handleStopReplica(r *request) {
	req := r.kreq.(*kmsg.StopReplicaRequest)
	resp := req.ResponseKind().(*kmsg.StopReplicaResponse)
	c, refused := s.fromController(r, req.ControllerID, req.ControllerEpoch, req.BrokerEpoch)
	if refused != nil {
		resp.ErrorCode = refused.Code
		r.reply(resp)
		return
	}
	c.partMu.Lock()
	defer c.partMu.Unlock()
	for _, t := range req.Topics {
		for _, ps := range t.PartitionStates {
			rp := kmsg.NewStopReplicaResponsePartition()
			rp.Topic, rp.Partition = t.Topic, ps.Partition
			if err := c.stopReplica(t.Topic, ps.Partition, ps.Delete); err != nil {
				rp.ErrorCode = errCode(err)
			}
			resp.Partitions = append(resp.Partitions, rp)
		}
	}
	r.reply(resp)
}

// stopReplica stops (and with del deletes) a local replica. Caller holds
// partMu.
func (c *cluster) stopReplica(name string, p int32, del bool) error {
	s := c.s
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	t := s.topic(name)
	if t == nil || int(p) >= len(t.parts) || t.parts[p].log == nil {
		return nil
	}
	part := t.parts[p]
	if f := c.m.Fetchers(); f != nil {
		f.Unfollow(part.rep)
	}
	if del {
		s.replicas.Remove(part.rep)
	} else {
		part.rep.Stop()
	}
	if name == group.OffsetsTopic || name == txn.StateTopic {
		c.queueCoordinator(coordEvent{topic: name, p: p})
	}
	if !del {
		return nil
	}
	np := &partition{tp: part.tp}
	nt := *t
	nt.parts = append([]*partition(nil), t.parts...)
	nt.parts[p] = np
	s.publishTopics(func(m map[string]*topic) { m[name] = &nt })
	if err := s.deleteLog(part.tp); err != nil {
		return err
	}
	c.log.Info("deleted replica", "topic", name, "partition", p)
	return nil
}
