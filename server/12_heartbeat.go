package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/group"
)

// Heartbeat: v0-4
//
// Keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
// rejoin.
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: InstanceID (static members; FENCED_INSTANCE_ID).
//   - v4: flexible.
func init() { regKey(kmsg.Heartbeat, 0, 4, (*Server).handleHeartbeat) }

func (s *Server) handleHeartbeat(r *request) {
	req := r.kreq.(*kmsg.HeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	err := s.groups.Heartbeat(group.HeartbeatRequest{
		Group:      req.Group,
		Generation: req.Generation,
		MemberID:   req.MemberID,
		InstanceID: req.InstanceID,
	})
	resp.ErrorCode = errCode(err)
	r.reply(resp)
}
