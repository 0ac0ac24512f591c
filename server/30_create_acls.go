package server

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
)

// CreateAcls: v0-3
//
// Adds ACLs (an ACL already present is not added twice) to the metadata
// store — ZooKeeper's /kafka-acl layout in a cluster, with change
// notifications the other brokers apply; the local store on a single node
// — and to this broker's cache. Needs ALTER on the cluster
// (authz_apis.go). Each creation is validated as Kafka's authorizer does
// (acl.ValidateBinding: INVALID_REQUEST, e.g. a DELEGATION_TOKEN
// resource, a CLUSTER name other than kafka-cluster, a name with '/').
// Without an authorizer: SECURITY_DISABLED. Every change is written to the
// audit log.
//
// Version notes:
//   - v0: LITERAL only. v1: PREFIXED. v2: flexible. v3: USER resources
//     (refused).
func init() { regKey(kmsg.CreateACLs, 0, 3, (*Server).handleCreateAcls) }

func (s *Server) handleCreateAcls(r *request) {
	req := r.kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	resp.Results = make([]kmsg.CreateACLsResponseResult, len(req.Creations))
	for i := range resp.Results {
		resp.Results[i] = kmsg.NewCreateACLsResponseResult()
	}
	if s.authz == nil {
		for i := range resp.Results {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = kerr.SecurityDisabled.Code, kmsg.StringPtr("No Authorizer is configured.")
		}
		r.reply(resp)
		return
	}
	byPattern := map[acl.Pattern][]int{} // creation indexes
	var patterns []acl.Pattern
	bindings := make([]acl.Binding, len(req.Creations))
	for i, c := range req.Creations {
		b := acl.Binding{
			Pattern: acl.Pattern{Type: c.ResourceType, Name: c.ResourceName, PatternType: c.ResourcePatternType},
			Entry:   acl.Entry{Principal: c.Principal, Host: c.Host, Operation: c.Operation, Permission: c.PermissionType},
		}
		bindings[i] = b
		if err := acl.ValidateBinding(b); err != nil {
			resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = aclErr(err)
			continue
		}
		if _, ok := byPattern[b.Pattern]; !ok {
			patterns = append(patterns, b.Pattern)
		}
		byPattern[b.Pattern] = append(byPattern[b.Pattern], i)
	}
	if len(patterns) > 0 {
		changed, err := s.authz.store.UpdateAcls(patterns, func(p acl.Pattern, cur []acl.Entry) []acl.Entry {
			for _, i := range byPattern[p] {
				if e := bindings[i].Entry; !slices.Contains(cur, e) {
					cur = append(cur, e)
				}
			}
			return cur
		})
		s.authz.a.Set(changed)
		for _, p := range patterns {
			_, done := changed[p]
			for _, i := range byPattern[p] {
				if !done {
					r.log().Error("storing ACLs failed", "pattern", p.String(), "err", err)
					resp.Results[i].ErrorCode, resp.Results[i].ErrorMessage = aclErr(err)
					continue
				}
				r.auditChange("ACL created", "pattern", p.String(), "acl", bindings[i].Entry.String())
			}
		}
	}
	r.reply(resp)
}
