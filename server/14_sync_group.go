package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// SyncGroup: v0-5
//
// Followers park until the leader's SyncGroup brings the assignment; the
// coordinator stores it (group metadata in __consumer_offsets) and
// answers everyone.
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: InstanceID (static members; FENCED_INSTANCE_ID).
//   - v4: flexible.
//   - v5: ProtocolType and Protocol, checked against the group's
//     (INCONSISTENT_GROUP_PROTOCOL) and returned.
func init() { regKey(kmsg.SyncGroup, 0, 5, (*Server).handleSyncGroup) }

func (s *Server) handleSyncGroup(r *request) {
	req := r.kreq.(*kmsg.SyncGroupRequest)
	sr := group.SyncRequest{
		Group:        req.Group,
		Generation:   req.Generation,
		MemberID:     req.MemberID,
		InstanceID:   req.InstanceID,
		ProtocolType: req.ProtocolType,
		Protocol:     req.Protocol,
		Assignments:  make(map[string][]byte, len(req.GroupAssignment)),
	}
	for _, a := range req.GroupAssignment {
		sr.Assignments[a.MemberID] = a.MemberAssignment
	}
	s.groups.Sync(sr, func(res group.SyncResult) {
		resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = errCode(res.Err)
		resp.ProtocolType = res.ProtocolType
		resp.Protocol = res.Protocol
		resp.MemberAssignment = res.Assignment
		if resp.MemberAssignment == nil {
			resp.MemberAssignment = []byte{}
		}
		r.reply(resp)
	})
}
