package server

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/fetchsession"
)

// Request-path pieces shared by the handlers.

// missingPartition is the error for a partition this broker does not serve:
// a partition of a known topic whose replica here is offline (its log could
// not be opened or created) is KAFKA_STORAGE_ERROR, as a partition on a
// failed log dir in Kafka; one hosted elsewhere is NOT_LEADER_OR_FOLLOWER
// (clients refresh metadata); otherwise UNKNOWN_TOPIC_OR_PARTITION.
func (s *Server) missingPartition(topic string, p int32) error {
	t := s.topic(topic)
	if t == nil || p < 0 || int(p) >= len(t.parts) {
		return kerr.UnknownTopicOrPartition
	}
	if parts, ok := s.view().partitions(topic); ok && int(p) < len(parts) && slices.Contains(parts[p].offline, s.cfg.NodeID) {
		return topicErrf(kerr.KafkaStorageError, "partition %s-%d is offline: its log could not be opened", topic, p)
	}
	return kerr.NotLeaderForPartition
}

// checkPartitionEpoch checks that this broker leads p and the client's
// current leader epoch (KIP-320; -1 skips the epoch check).
func (s *Server) checkPartitionEpoch(p *partition, epoch int32) error {
	role, current := p.rep.View() // (one read, without the partition's lock)
	if role != replica.RoleLeader {
		return replica.ErrNotLeader
	}
	return replica.CheckLeaderEpoch(current, epoch)
}

// partitionLeaderEpoch is p's current leader epoch.
func (s *Server) partitionLeaderEpoch(p *partition) int32 { return p.rep.LeaderEpoch() }

// followerFetch records a follower's fetch on the leader (moving the HW and
// the ISR) and returns the HW to report and the offset reads stop at (the
// LEO). sp gets the leader's log start and HW even on error: the follower
// uses them after OFFSET_OUT_OF_RANGE.
func (s *Server) followerFetch(p *partition, replicaID int32, rp *kmsg.FetchRequestTopicPartition, sp *kmsg.FetchResponseTopicPartition, sessionClock *fetchsession.Clock) (hw, readTo engine.Offset, err error) {
	sp.HighWatermark = int64(p.log.HighWatermark())
	sp.LogStartOffset = int64(p.log.LogStartOffset())
	sp.LastStableOffset = sp.HighWatermark
	var clk replica.SessionClock
	if sessionClock != nil {
		clk = sessionClock
	}
	v, err := s.replicas.SessionFollowerFetch(p.rep, replicaID, engine.Offset(rp.FetchOffset), rp.CurrentLeaderEpoch, clk)
	if err != nil {
		return 0, 0, err
	}
	return v.HW, v.LEO, nil
}
