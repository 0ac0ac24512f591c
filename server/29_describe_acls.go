package server

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
)

// DescribeAcls: v0-3
//
// The ACLs a filter selects (package acl: ANY and null match everything,
// MATCH selects the patterns that apply to a name), grouped by resource
// pattern, from the authorizer's cache. Needs DESCRIBE on the cluster
// (authz_apis.go). Without an authorizer: SECURITY_DISABLED, as Kafka.
// A filter with an UNKNOWN element: INVALID_REQUEST.
//
// Version notes:
//   - v0: LITERAL patterns only (the filter's pattern type is LITERAL).
//   - v1: pattern types (PREFIXED, MATCH, ANY).
//   - v2: flexible.
//   - v3: the USER resource type (refused: no delegation tokens).
func init() { regKey(kmsg.DescribeACLs, 0, 3, (*Server).handleDescribeAcls) }

func (s *Server) handleDescribeAcls(r *request) {
	req := r.kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	if s.authz == nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.SecurityDisabled.Code, kmsg.StringPtr("No Authorizer is configured on the broker")
		r.reply(resp)
		return
	}
	f := acl.Filter{Type: req.ResourceType, Name: req.ResourceName, PatternType: req.ResourcePatternType,
		Principal: req.Principal, Host: req.Host, Operation: req.Operation, Permission: req.PermissionType}
	if err := acl.ValidateFilter(f); err != nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
		r.reply(resp)
		return
	}
	resp.Resources = []kmsg.DescribeACLsResponseResource{}
	var cur *kmsg.DescribeACLsResponseResource
	for _, b := range s.authz.a.Acls(f) {
		if req.Version == 0 && b.Pattern.PatternType != kmsg.ACLResourcePatternTypeLiteral {
			continue
		}
		if cur == nil || cur.ResourceType != b.Pattern.Type || cur.ResourceName != b.Pattern.Name || cur.ResourcePatternType != b.Pattern.PatternType {
			rr := kmsg.NewDescribeACLsResponseResource()
			rr.ResourceType, rr.ResourceName, rr.ResourcePatternType = b.Pattern.Type, b.Pattern.Name, b.Pattern.PatternType
			resp.Resources = append(resp.Resources, rr)
			cur = &resp.Resources[len(resp.Resources)-1]
		}
		a := kmsg.NewDescribeACLsResponseResourceACL()
		a.Principal, a.Host, a.Operation, a.PermissionType = b.Entry.Principal, b.Entry.Host, b.Entry.Operation, b.Entry.Permission
		cur.ACLs = append(cur.ACLs, a)
	}
	r.reply(resp)
}

// aclErr is an ACL API's per-item error: INVALID_REQUEST for a malformed
// binding or filter, else what errCode maps.
func aclErr(err error) (int16, *string) {
	if errors.Is(err, acl.ErrInvalid) {
		return kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
	}
	return errCode(err), kmsg.StringPtr(err.Error())
}
