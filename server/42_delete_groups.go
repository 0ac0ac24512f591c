package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteGroups: v0-2
//
// Deletes empty groups with their committed offsets (tombstones in
// __consumer_offsets); NON_EMPTY_GROUP for a group with members,
// GROUP_ID_NOT_FOUND for an unknown one.
//
// Version notes:
//   - v1: same as v0.
//   - v2: flexible.
func init() { regKey(kmsg.DeleteGroups, 0, 2, (*Server).handleDeleteGroups) }

func (s *Server) handleDeleteGroups(r *request) {
	req := r.kreq.(*kmsg.DeleteGroupsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	// DELETE on each group (authz_apis.go); only those reach the
	// coordinator.
	allowed := r.authorizedNames(opDelete, resGroup, req.Groups)
	var ids []string
	for _, id := range req.Groups {
		if allowed.ok(id) {
			ids = append(ids, id)
		}
	}
	errs := s.groups.DeleteGroups(ids)
	next := 0
	for _, id := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = id
		if !allowed.ok(id) {
			rg.ErrorCode = kerr.GroupAuthorizationFailed.Code
		} else {
			rg.ErrorCode = errCode(errs[next])
			next++
		}
		resp.Groups = append(resp.Groups, rg)
	}
	r.reply(resp)
}
