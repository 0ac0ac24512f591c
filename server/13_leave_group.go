package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// LeaveGroup: v0-5
//
// Removes members (the group rebalances without them).
//
// Version notes:
//   - v0-2: one MemberID; its error is the response's error.
//   - v1: ThrottleMillis.
//   - v3: a batch of members by member id and/or instance id (an instance
//     id alone removes that static member); per-member errors.
//   - v4: flexible.
//   - v5: per-member Reason (logged).
func init() { regKey(kmsg.LeaveGroup, 0, 5, (*Server).handleLeaveGroup) }

func (s *Server) handleLeaveGroup(r *request) {
	req := r.kreq.(*kmsg.LeaveGroupRequest)
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)

	if req.Version < 3 {
		errs, gerr := s.groups.Leave(req.Group, []group.LeaveMember{{MemberID: req.MemberID}})
		if gerr == nil && len(errs) == 1 {
			gerr = errs[0]
		}
		resp.ErrorCode = errCode(gerr)
		r.reply(resp)
		return
	}
	members := make([]group.LeaveMember, len(req.Members))
	for i, m := range req.Members {
		members[i] = group.LeaveMember{MemberID: m.MemberID, InstanceID: m.InstanceID}
		if m.Reason != nil {
			members[i].Reason = *m.Reason
		}
	}
	errs, gerr := s.groups.Leave(req.Group, members)
	resp.ErrorCode = errCode(gerr)
	if gerr == nil {
		for i, m := range req.Members {
			rm := kmsg.NewLeaveGroupResponseMember()
			rm.MemberID = m.MemberID
			rm.InstanceID = m.InstanceID
			rm.ErrorCode = errCode(errs[i])
			resp.Members = append(resp.Members, rm)
		}
	}
	r.reply(resp)
}
