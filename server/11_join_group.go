package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// JoinGroup: v0-9
//
// The request parks in the coordinator until the join phase ends (every
// member rejoined, or the rebalance timeout; for a new group after
// group.initial.rebalance.delay.ms) and is answered from there; the
// connection keeps reading and answering in order meanwhile.
//
// Version notes:
//   - v0: the rebalance timeout is the session timeout.
//   - v1: RebalanceTimeoutMillis.
//   - v2: ThrottleMillis.
//   - v4: two-step join: a new dynamic member gets MEMBER_ID_REQUIRED and
//     its member id, and joins again with it.
//   - v5: InstanceID (static membership, KIP-345); FENCED_INSTANCE_ID.
//   - v6: flexible.
//   - v7: ProtocolType in the response; Protocol nullable.
//   - v8: Reason (logged).
//   - v9: SkipAssignment for a static leader rejoining a stable group.
func init() { regKey(kmsg.JoinGroup, 0, 9, (*Server).handleJoinGroup) }

func (s *Server) handleJoinGroup(r *request) {
	req := r.kreq.(*kmsg.JoinGroupRequest)
	jr := group.JoinRequest{
		Group:                  req.Group,
		MemberID:               req.MemberID,
		InstanceID:             req.InstanceID,
		ClientID:               r.hdr.clientID,
		ClientHost:             clientHost(r),
		ProtocolType:           req.ProtocolType,
		SessionTimeout:         msDur(req.SessionTimeoutMillis),
		RebalanceTimeout:       msDur(req.RebalanceTimeoutMillis),
		RequireKnownMemberID:   req.Version >= 4 && req.InstanceID == nil,
		SupportsSkipAssignment: req.Version >= 9,
	}
	if req.Version == 0 {
		jr.RebalanceTimeout = jr.SessionTimeout
	}
	if req.Reason != nil {
		jr.Reason = *req.Reason
	}
	for _, p := range req.Protocols {
		jr.Protocols = append(jr.Protocols, group.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	s.groups.Join(jr, func(res group.JoinResult) {
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode = errCode(res.Err)
		resp.Generation = res.Generation
		resp.MemberID = res.MemberID
		resp.LeaderID = res.Leader
		resp.ProtocolType = res.ProtocolType
		resp.Protocol = res.Protocol
		if req.Version < 7 && resp.Protocol == nil {
			empty := "" // not nullable before v7
			resp.Protocol = &empty
		}
		resp.SkipAssignment = res.SkipAssignment
		resp.Members = make([]kmsg.JoinGroupResponseMember, 0, len(res.Members))
		for _, m := range res.Members {
			rm := kmsg.NewJoinGroupResponseMember()
			rm.MemberID = m.MemberID
			rm.InstanceID = m.InstanceID
			rm.ProtocolMetadata = m.Metadata
			resp.Members = append(resp.Members, rm)
		}
		r.reply(resp)
	})
}
