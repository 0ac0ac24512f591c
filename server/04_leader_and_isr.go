package server

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/txn"
)

// LeaderAndIsr: v2-4 (inter-broker, from the controller; cluster mode only)
//
// For every partition state naming this broker as a replica: create the
// local log if needed, then become leader (new epoch assigned in the
// leader-epoch cache; see replica.Partition.MakeLeader) or follower (the
// fetcher truncates with OffsetsForLeaderEpoch, then fetches). Only the
// current controller's requests are applied (package cluster, Member.Admit:
// STALE_CONTROLLER_EPOCH / STALE_BROKER_EPOCH otherwise); a partition state
// older than the applied one gets STALE_CONTROLLER_EPOCH for that
// partition. A partition whose log cannot be created or opened (a file in
// place of its directory, EMFILE, EIO...) is answered KAFKA_STORAGE_ERROR
// and logged at ERROR: the controller then treats this replica as offline
// (elects another leader, drops it from the ISR; see package controller). A broker in controlled shutdown does not start
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
	c, refused := s.fromController(r, req.ControllerID, req.ControllerEpoch, req.BrokerEpoch)
	if refused != nil {
		resp.ErrorCode = refused.Code
		r.reply(resp)
		return
	}
	c.partMu.Lock()
	defer c.partMu.Unlock()
	me := s.cfg.NodeID
	// Every local log the request needs, in one batch
	// (leader_and_isr_batch.go).
	locals := c.ensureLocals(replicaKeys(req, me))
	// The partition states, several at once (applyAll).
	var items []lairItem
	for _, ts := range req.TopicStates {
		for _, ps := range ts.PartitionStates {
			items = append(items, lairItem{topic: ts.Topic, ps: ps})
		}
	}
	errs := c.applyAll(items, me, locals)
	for i, it := range items {
		rp := kmsg.NewLeaderAndISRResponseTopicPartition()
		rp.Topic, rp.Partition = it.topic, it.ps.Partition
		if err := errs[i]; err != nil {
			rp.ErrorCode = errCode(err)
			lvl := slog.LevelInfo // stale or foreign partition states: routine
			if rp.ErrorCode == kerr.KafkaStorageError.Code || rp.ErrorCode == kerr.UnknownServerError.Code {
				lvl = slog.LevelError
			}
			r.log().Log(context.Background(), lvl, "partition state refused", "topic", it.topic, "partition", it.ps.Partition,
				"leader", it.ps.Leader, "leader_epoch", it.ps.LeaderEpoch, "code", kerr.ErrorForCode(rp.ErrorCode), "err", err)
		}
		resp.Partitions = append(resp.Partitions, rp)
	}
	r.reply(resp)
}

// applyLeaderAndIsr applies one partition state. Caller holds partMu.
func (c *cluster) applyLeaderAndIsr(topic string, ps kmsg.LeaderAndISRRequestTopicPartition, me int32, locals *localLogs, many *lairCounts) error {
	isReplica := false
	for _, r := range ps.Replicas {
		isReplica = isReplica || r == me
	}
	if !isReplica {
		return kerr.UnknownTopicOrPartition
	}
	k := localKey{topic, ps.Partition}
	if err := locals.errs[k]; err != nil {
		return err
	}
	p := locals.parts[k]
	if p == nil {
		var err error
		if p, err = c.ensureLocal(topic, ps.Partition); err != nil {
			return err
		}
	}
	st := replica.State{Leader: ps.Leader, LeaderEpoch: ps.LeaderEpoch, ISR: ps.ISR, Replicas: ps.Replicas,
		ZkVersion: ps.ZKVersion, ControllerEpoch: ps.ControllerEpoch}
	if ps.Leader == me {
		changed, err := p.rep.MakeLeader(st, c.s.clock.Now())
		if err != nil {
			return err
		}
		if f := c.m.Fetchers(); f != nil {
			f.Unfollow(p.rep)
		}
		if changed {
			c.log.Log(context.Background(), many.level(), "became leader", "topic", topic, "partition", ps.Partition, "leader_epoch", ps.LeaderEpoch, "isr", ps.ISR)
			many.count(true)
			if topic == group.OffsetsTopic || topic == txn.StateTopic {
				c.queueCoordinator(coordEvent{topic: topic, p: ps.Partition, epoch: ps.LeaderEpoch, load: true})
			}
		}
		return nil
	}
	changed, err := p.rep.MakeFollower(st)
	if err != nil {
		return err
	}
	if changed {
		c.log.Log(context.Background(), many.level(), "became follower", "topic", topic, "partition", ps.Partition, "leader", ps.Leader, "leader_epoch", ps.LeaderEpoch)
		many.count(false)
		if topic == group.OffsetsTopic || topic == txn.StateTopic {
			c.queueCoordinator(coordEvent{topic: topic, p: ps.Partition})
		}
	}
	f := c.m.Fetchers()
	if f == nil {
		return nil
	}
	if ps.Leader < 0 || c.m.ShuttingDown() {
		f.Unfollow(p.rep)
		return nil
	}
	f.Follow(p.rep, ps.Leader)
	return nil
}
