package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/checkpoint"
)

// OffsetForLeaderEpoch: v0-4
//
// Answers from the partition's leader-epoch cache (the engine's
// leader-epoch-checkpoint), as Kafka's leader does: for the current leader
// epoch the log end offset; for an older epoch the start offset of the
// next epoch the cache knows (where that epoch's records end); for an
// epoch the broker does not know (newer than its own, or -1) the undefined
// pair (-1, -1) with no error. Consumers use this (KIP-320) to validate a
// position after a leader change; followers to find where to truncate.
// Any replica id is answered the same, by the partition's leader only
// (cluster mode: elsewhere NOT_LEADER_OR_FOLLOWER).
//
// Behaviour:
//   - CurrentLeaderEpoch (v2+) is checked like Fetch's: older is
//     FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH, -1 not checked.
//   - The engine records an epoch in the cache at its first append, while
//     Kafka records it when the leader is elected. Until the current epoch
//     has written a record, the answer is computed as if it started at
//     the log end offset, so an empty or idle partition answers its
//     current epoch with the log end offset, as Kafka does.
//
// Version notes:
//   - v1: LeaderEpoch in the response.
//   - v2: CurrentLeaderEpoch (KIP-320); franz-go uses the API from v2 on.
//   - v3: ReplicaID (KIP-392).
//   - v4: flexible.
func init() { regKey(kmsg.OffsetForLeaderEpoch, 0, 4, (*Server).handleOffsetForLeaderEpoch) }

func (s *Server) handleOffsetForLeaderEpoch(r *request) {
	req := r.kreq.(*kmsg.OffsetForLeaderEpochRequest)
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			p := s.partition(rt.Topic, rp.Partition)
			switch {
			case p == nil || (p.rep == nil && p.log == nil): // cluster mode: no replica here
				sp.ErrorCode = errCode(s.missingPartition(rt.Topic, rp.Partition))
			case p.rep != nil:
				// Cluster mode: the leader answers (followers truncate by it).
				current := int32(-1)
				if req.Version >= 2 {
					current = rp.CurrentLeaderEpoch
				}
				ans, err := p.rep.LastOffsetForEpoch(current, rp.LeaderEpoch)
				if err != nil {
					sp.ErrorCode = errCode(err)
				} else {
					sp.LeaderEpoch, sp.EndOffset = ans.Epoch, int64(ans.EndOffset)
				}
			case req.Version >= 2 && checkLeaderEpoch(rp.CurrentLeaderEpoch) != nil:
				sp.ErrorCode = errCode(checkLeaderEpoch(rp.CurrentLeaderEpoch))
			default:
				sp.LeaderEpoch, sp.EndOffset = epochEndOffset(p.log.Epochs(), leaderEpoch, rp.LeaderEpoch, int64(p.log.LogEndOffset()))
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	r.reply(resp)
}

// epochEndOffset answers OffsetForLeaderEpoch for requested on a leader
// whose current epoch is current and whose log ends at leo: the cache's
// EndOffsetFor, treating current as starting at leo when the cache has not
// recorded it yet (no record written in it).
func epochEndOffset(c *checkpoint.EpochCache, current, requested int32, leo int64) (int32, int64) {
	if requested < 0 {
		return checkpoint.UndefinedEpoch, checkpoint.UndefinedEpochOffset
	}
	latest, ok := c.LatestEpoch()
	if ok && latest >= current {
		return c.EndOffsetFor(requested, leo)
	}
	switch {
	case requested == current:
		return current, leo
	case requested > current:
		return checkpoint.UndefinedEpoch, checkpoint.UndefinedEpochOffset
	}
	// requested is older than current: an epoch the cache knows above
	// requested bounds it; otherwise it ends where current begins (leo).
	if e, o := c.EndOffsetFor(requested, leo); o != checkpoint.UndefinedEpochOffset {
		return e, o
	}
	if ok {
		return latest, leo // the largest known epoch <= requested
	}
	return requested, leo // below every known epoch (the virtual current one)
}
