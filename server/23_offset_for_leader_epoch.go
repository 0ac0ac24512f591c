package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
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
// (elsewhere NOT_LEADER_OR_FOLLOWER).
//
// Behaviour:
//   - CurrentLeaderEpoch (v2+) is checked like Fetch's: older is
//     FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH, -1 not checked.
//   - A leader records its epoch in the cache at its log end offset when it
//     starts leading (replica.Partition.MakeLeader; a single node at start-up
//     and for every new partition), as Kafka does at election, so an empty
//     or idle partition answers its current epoch with the log end offset.
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
	// CLUSTER_ACTION on the cluster, else DESCRIBE on each topic.
	var allowed authzSet
	if !r.authorizeLog(opClusterAction, resCluster, acl.ClusterName, false) {
		allowed = r.authorizedNames(opDescribe, resTopic, topicNames(req.Topics, func(t *kmsg.OffsetForLeaderEpochRequestTopic) string { return t.Topic }))
	}
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			current := int32(-1)
			if req.Version >= 2 {
				current = rp.CurrentLeaderEpoch
			}
			if !allowed.ok(rt.Topic) {
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			} else if p := s.partition(rt.Topic, rp.Partition); p == nil {
				sp.ErrorCode = errCode(s.missingPartition(rt.Topic, rp.Partition))
			} else if ans, err := p.rep.LastOffsetForEpoch(current, rp.LeaderEpoch); err != nil {
				sp.ErrorCode = errCode(err)
			} else {
				sp.LeaderEpoch, sp.EndOffset = ans.Epoch, int64(ans.EndOffset)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	r.reply(resp)
}
