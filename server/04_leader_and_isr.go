package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/group"
)

// LeaderAndIsr: v2-4 (inter-broker, from the controller; cluster mode only)
//
// For every partition state naming this broker as a replica: create the
// local log if needed, then become leader (new epoch assigned in the
// leader-epoch cache; see replica.Partition.MakeLeader) or follower (the
// fetcher truncates with OffsetsForLeaderEpoch, then fetches). Requests
// from an older controller get STALE_CONTROLLER_EPOCH, requests meant for
// an earlier incarnation of this broker STALE_BROKER_EPOCH (KIP-380); a
// partition state older than the applied one gets STALE_CONTROLLER_EPOCH
// for that partition. A broker in controlled shutdown does not start
// following. Leading a __consumer_offsets partition makes this broker its
// group coordinator: the groups are loaded (and unloaded on becoming
// follower) in the background (cluster_groups.go).
//
// Version notes:
//   - v2: topic states nested by topic, BrokerEpoch.
//   - v3: adding/removing replicas (ignored: no reassignment).
//   - v4: flexible.
func init() { regKey(kmsg.LeaderAndISR, 2, 4, (*Server).handleLeaderAndIsr) }

func (s *Server) handleLeaderAndIsr(r *request) {
	req := r.kreq.(*kmsg.LeaderAndISRRequest)
	resp := req.ResponseKind().(*kmsg.LeaderAndISRResponse)
	c, refused := s.fromController(req.ControllerEpoch, req.BrokerEpoch)
	if refused != nil {
		resp.ErrorCode = refused.Code
		r.reply(resp)
		return
	}
	c.partMu.Lock()
	defer c.partMu.Unlock()
	now := s.clock.Now()
	me := s.cfg.NodeID
	for _, ts := range req.TopicStates {
		for _, ps := range ts.PartitionStates {
			rp := kmsg.NewLeaderAndISRResponseTopicPartition()
			rp.Topic, rp.Partition = ts.Topic, ps.Partition
			err := c.applyLeaderAndIsr(ts.Topic, ps, me, now)
			if err != nil {
				rp.ErrorCode = errCode(err)
				r.log().Info("partition state refused", "topic", ts.Topic, "partition", ps.Partition, "leader", ps.Leader, "leader_epoch", ps.LeaderEpoch, "err", err)
			}
			resp.Partitions = append(resp.Partitions, rp)
		}
	}
	r.reply(resp)
}

// fromController admits a request the controller sends to the brokers
// (LeaderAndIsr, StopReplica, UpdateMetadata): it returns the cluster, or
// the error to answer with: INVALID_REQUEST on a single node (no
// controller), STALE_CONTROLLER_EPOCH from an older controller,
// STALE_BROKER_EPOCH for an earlier incarnation of this broker (KIP-380).
func (s *Server) fromController(controllerEpoch int32, brokerEpoch int64) (*cluster, *kerr.Error) {
	c := s.cluster
	switch {
	case c == nil:
		return nil, kerr.InvalidRequest
	case c.checkControllerEpoch(controllerEpoch) != nil:
		return nil, kerr.StaleControllerEpoch
	case c.checkBrokerEpoch(brokerEpoch) != nil:
		return nil, kerr.StaleBrokerEpoch
	}
	return c, nil
}

// applyLeaderAndIsr applies one partition state. Caller holds partMu.
func (c *cluster) applyLeaderAndIsr(topic string, ps kmsg.LeaderAndISRRequestTopicPartition, me int32, _ any) error {
	isReplica := false
	for _, r := range ps.Replicas {
		isReplica = isReplica || r == me
	}
	if !isReplica {
		return kerr.UnknownTopicOrPartition
	}
	p, err := c.ensureLocal(topic, ps.Partition)
	if err != nil {
		return err
	}
	st := replica.State{Leader: ps.Leader, LeaderEpoch: ps.LeaderEpoch, ISR: ps.ISR, Replicas: ps.Replicas,
		ZkVersion: ps.ZKVersion, ControllerEpoch: ps.ControllerEpoch}
	if ps.Leader == me {
		changed, err := p.rep.MakeLeader(st, c.s.clock.Now())
		if err != nil {
			return err
		}
		if c.fetchers != nil {
			c.fetchers.Unfollow(p.rep)
		}
		if changed {
			c.log.Info("became leader", "topic", topic, "partition", ps.Partition, "leader_epoch", ps.LeaderEpoch, "isr", ps.ISR)
			if topic == group.OffsetsTopic {
				c.queueCoordinator(coordEvent{p: ps.Partition, epoch: ps.LeaderEpoch, load: true})
			}
		}
		p.wakeAll()
		return nil
	}
	changed, err := p.rep.MakeFollower(st)
	if err != nil {
		return err
	}
	if changed {
		c.log.Info("became follower", "topic", topic, "partition", ps.Partition, "leader", ps.Leader, "leader_epoch", ps.LeaderEpoch)
		if topic == group.OffsetsTopic {
			c.queueCoordinator(coordEvent{p: ps.Partition})
		}
	}
	p.wakeAll()
	if c.fetchers == nil {
		return nil
	}
	if ps.Leader < 0 || c.shuttingDown.Load() {
		c.fetchers.Unfollow(p.rep)
		return nil
	}
	c.fetchers.Follow(p.rep, ps.Leader)
	return nil
}
