package server

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/quota"
)

// DescribeClientQuotas: v0-1
//
// The quotas of the entities the filter selects, from the broker's quota
// configuration (quotas.go). Each component names an entity type (user,
// client-id, ip) and matches an exact name (MatchType 0), the default
// entity (1) or any entity with that type (2); an entity matches when
// every component matches it and, with Strict, it has no other type.
// An unknown or repeated entity type, or ip with another type:
// INVALID_REQUEST. Needs DESCRIBE_CONFIGS on the cluster (authz_apis.go).
//
// Version notes:
//   - v1: flexible.
func init() { regKey(kmsg.DescribeClientQuotas, 0, 1, (*Server).handleDescribeClientQuotas) }

func (s *Server) handleDescribeClientQuotas(r *request) {
	req := r.kreq.(*kmsg.DescribeClientQuotasRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
	seen := map[string]bool{}
	for _, c := range req.Components {
		bad := ""
		switch {
		case c.EntityType != quota.EntityUser && c.EntityType != quota.EntityClientID && c.EntityType != quota.EntityIP:
			bad = "Custom entity type '" + c.EntityType + "' not supported"
		case seen[c.EntityType]:
			bad = "Duplicate entity type " + c.EntityType
		case c.MatchType == kmsg.QuotasMatchTypeExact && c.Match == nil:
			bad = "Exact match of " + c.EntityType + " without a name"
		case c.MatchType > kmsg.QuotasMatchTypeAny || c.MatchType < 0:
			bad = "Unknown match type"
		}
		seen[c.EntityType] = true
		if bad == "" && seen[quota.EntityIP] && (seen[quota.EntityUser] || seen[quota.EntityClientID]) {
			bad = "Invalid entity filter: ip cannot be combined with user or client-id"
		}
		if bad != "" {
			resp.ErrorCode, resp.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(bad)
			r.reply(resp)
			return
		}
	}
	resp.Entries = []kmsg.DescribeClientQuotasResponseEntry{} // null only on errors (the Java client requires it)
	cfg := s.quotas.Config()
	paths := make([]string, 0, len(cfg))
	for p := range cfg {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		e, ok := quota.ParsePath(p)
		if !ok || len(cfg[p]) == 0 || !quotaFilterMatches(req, e) {
			continue
		}
		entry := kmsg.NewDescribeClientQuotasResponseEntry()
		entry.Entity = quotaEntityParts(e)
		keys := make([]string, 0, len(cfg[p]))
		for k := range cfg[p] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := kmsg.NewDescribeClientQuotasResponseEntryValue()
			v.Key, v.Value = k, cfg[p][k]
			entry.Values = append(entry.Values, v)
		}
		resp.Entries = append(resp.Entries, entry)
	}
	r.reply(resp)
}

// quotaEntityParts is an entity as the response lists it (null name:
// the default).
func quotaEntityParts(e quota.Entity) []kmsg.DescribeClientQuotasResponseEntryEntity {
	var out []kmsg.DescribeClientQuotasResponseEntryEntity
	add := func(typ, name string, def bool) {
		ee := kmsg.NewDescribeClientQuotasResponseEntryEntity()
		ee.Type = typ
		if !def {
			ee.Name = kmsg.StringPtr(name)
		}
		out = append(out, ee)
	}
	if e.HasUser {
		add(quota.EntityUser, e.User, e.UserDefault)
	}
	if e.HasClient {
		add(quota.EntityClientID, e.Client, e.ClientDef)
	}
	if e.HasIP {
		add(quota.EntityIP, e.IP, e.IPDefault)
	}
	return out
}

// quotaFilterMatches applies DescribeClientQuotas' components to e.
func quotaFilterMatches(req *kmsg.DescribeClientQuotasRequest, e quota.Entity) bool {
	has := map[string]bool{quota.EntityUser: e.HasUser, quota.EntityClientID: e.HasClient, quota.EntityIP: e.HasIP}
	name := map[string]string{quota.EntityUser: e.User, quota.EntityClientID: e.Client, quota.EntityIP: e.IP}
	def := map[string]bool{quota.EntityUser: e.UserDefault, quota.EntityClientID: e.ClientDef, quota.EntityIP: e.IPDefault}
	named := map[string]bool{}
	for _, c := range req.Components {
		named[c.EntityType] = true
		if !has[c.EntityType] {
			return false
		}
		switch c.MatchType {
		case kmsg.QuotasMatchTypeExact:
			if def[c.EntityType] || name[c.EntityType] != *c.Match {
				return false
			}
		case kmsg.QuotasMatchTypeDefault:
			if !def[c.EntityType] {
				return false
			}
		}
	}
	if req.Strict {
		for typ, ok := range has {
			if ok && !named[typ] {
				return false
			}
		}
	}
	return true
}
