package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
)

// DeleteAcls: v0-3
//
// Removes the ACLs each filter selects (package acl's filter semantics)
// from the metadata store and the cache; each filter's result lists the
// ACLs it matched (an ACL matched by two filters is listed in both). The
// patterns to rewrite are found in the cache; each is rewritten from the
// store's current content. Needs ALTER on the cluster (authz_apis.go).
// Without an authorizer: SECURITY_DISABLED. Every deletion is written to
// the audit log.
//
// Version notes:
//   - v0: LITERAL only. v1: pattern types. v2: flexible. v3: USER.
func init() { regKey(kmsg.DeleteACLs, 0, 3, (*Server).handleDeleteAcls) }

func (s *Server) handleDeleteAcls(r *request) {
	req := r.kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	resp.Results = make([]kmsg.DeleteACLsResponseResult, len(req.Filters))
	for i := range resp.Results {
		resp.Results[i] = kmsg.NewDeleteACLsResponseResult()
		resp.Results[i].MatchingACLs = []kmsg.DeleteACLsResponseResultMatchingACL{}
	}
	if s.authz == nil {
		for i := range resp.Results {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = kerr.SecurityDisabled.Code, kmsg.StringPtr("No Authorizer is configured.")
		}
		r.reply(resp)
		return
	}
	var filters []int
	fs := make([]acl.Filter, len(req.Filters))
	seen := map[acl.Pattern]bool{}
	var patterns []acl.Pattern
	for i, q := range req.Filters {
		f := acl.Filter{Type: q.ResourceType, Name: q.ResourceName, PatternType: q.ResourcePatternType,
			Principal: q.Principal, Host: q.Host, Operation: q.Operation, Permission: q.PermissionType}
		if err := acl.ValidateFilter(f); err != nil {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = aclErr(err)
			continue
		}
		fs[i] = f
		filters = append(filters, i)
		for _, b := range s.authz.a.Acls(f) {
			if !seen[b.Pattern] {
				seen[b.Pattern] = true
				patterns = append(patterns, b.Pattern)
			}
		}
	}
	removed := map[acl.Pattern][][]acl.Entry{} // per pattern, per filter index
	if len(patterns) > 0 {
		changed, err := s.authz.store.UpdateAcls(patterns, func(p acl.Pattern, cur []acl.Entry) []acl.Entry {
			per := make([][]acl.Entry, len(req.Filters))
			var keep []acl.Entry
			for _, e := range cur {
				matched := false
				for _, i := range filters {
					if fs[i].Matches(acl.Binding{Pattern: p, Entry: e}) {
						per[i] = append(per[i], e)
						matched = true
					}
				}
				if !matched {
					keep = append(keep, e)
				}
			}
			removed[p] = per
			return keep
		})
		s.authz.a.Set(changed)
		for _, p := range patterns {
			per := removed[p]
			_, done := changed[p]
			for _, i := range filters {
				if per == nil || len(per[i]) == 0 {
					continue
				}
				if !done {
					r.log().Error("deleting ACLs failed", "pattern", p.String(), "err", err)
					resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = aclErr(err)
					continue
				}
				for _, e := range per[i] {
					m := kmsg.NewDeleteACLsResponseResultMatchingACL()
					m.ResourceType, m.ResourceName, m.ResourcePatternType = p.Type, p.Name, p.PatternType
					m.Principal, m.Host, m.Operation, m.PermissionType = e.Principal, e.Host, e.Operation, e.Permission
					resp.Results[i].MatchingACLs = append(resp.Results[i].MatchingACLs, m)
					r.auditChange("ACL deleted", "pattern", p.String(), "acl", e.String())
				}
			}
		}
	}
	r.reply(resp)
}
