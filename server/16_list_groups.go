package server

import (
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
)

// ListGroups: v0-5
//
// Every group this broker coordinates. COORDINATOR_LOAD_IN_PROGRESS (with
// a partial list) while __consumer_offsets partitions load.
//
// Version notes:
//   - v1: ThrottleMillis.
//   - v3: flexible.
//   - v4: StatesFilter (case-insensitive); GroupState in the response.
//   - v5: TypesFilter; every group is "classic".
func init() { regKey(kmsg.ListGroups, 0, 5, (*Server).handleListGroups) }

func (s *Server) handleListGroups(r *request) {
	req := r.kreq.(*kmsg.ListGroupsRequest)
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	groups, err := s.groups.List()
	resp.ErrorCode = errCode(err)
	wantState := func(state string) bool {
		if len(req.StatesFilter) == 0 {
			return true
		}
		for _, f := range req.StatesFilter {
			if strings.EqualFold(f, state) {
				return true
			}
		}
		return false
	}
	classic := len(req.TypesFilter) == 0
	for _, t := range req.TypesFilter {
		classic = classic || strings.EqualFold(t, "classic")
	}
	resp.Groups = []kmsg.ListGroupsResponseGroup{}
	// DESCRIBE on the cluster lists every group, else those with
	// DESCRIBE on the group (authz_apis.go).
	everyGroup := r.authorizeLog(opDescribe, resCluster, acl.ClusterName, false)
	for _, g := range groups {
		if !classic || !wantState(g.State.String()) {
			continue
		}
		if !everyGroup && !r.authorizeLog(opDescribe, resGroup, g.Group, false) {
			continue
		}
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group = g.Group
		rg.ProtocolType = g.ProtocolType
		rg.GroupState = g.State.String()
		rg.GroupType = "classic"
		resp.Groups = append(resp.Groups, rg)
	}
	r.reply(resp)
}
