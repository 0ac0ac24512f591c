package server

import (
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeGroups: v0-5
//
// State, protocol type, and members of each group; the protocol and the
// members' metadata and assignments only for a Stable group (as Kafka).
// An unknown group is reported in state Dead without error.
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: AuthorizedOperations when asked for (the operations the
//     principal may perform on the group; without an authorizer READ,
//     DELETE, DESCRIBE); INT32_MIN otherwise.
//   - v4: member InstanceID.
//   - v5: flexible.
//   - v6 (GROUP_ID_NOT_FOUND for unknown groups) is not served.
func init() { regKey(kmsg.DescribeGroups, 0, 5, (*Server).handleDescribeGroups) }

func (s *Server) handleDescribeGroups(r *request) {
	req := r.kreq.(*kmsg.DescribeGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = id
		rg.AuthorizedOperations = math.MinInt32
		if !r.authorize(opDescribe, resGroup, id) {
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		d, err := s.groups.Describe(id)
		if req.IncludeAuthorizedOperations && err == nil {
			rg.AuthorizedOperations = r.authorizedOperations(resGroup, id)
		}
		rg.ErrorCode = errCode(err)
		if err == nil {
			rg.State = d.State.String()
			rg.ProtocolType = d.ProtocolType
			rg.Protocol = d.Protocol
			for _, m := range d.Members {
				rm := kmsg.NewDescribeGroupsResponseGroupMember()
				rm.MemberID = m.MemberID
				rm.InstanceID = m.InstanceID
				rm.ClientID = m.ClientID
				rm.ClientHost = m.ClientHost
				rm.ProtocolMetadata = nonNilBytes(m.Metadata)
				rm.MemberAssignment = nonNilBytes(m.Assignment)
				rg.Members = append(rg.Members, rm)
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	r.reply(resp)
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
