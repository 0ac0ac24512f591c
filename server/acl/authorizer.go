package acl

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Config is the authorizer's configuration: super.users (principals, e.g.
// "User:admin") and allow.everyone.if.no.acl.found.
type Config struct {
	SuperUsers   []string
	AllowIfNoACL bool
}

// ParseSuperUsers splits super.users: principals separated by ';'.
func ParseSuperUsers(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ";") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Authorizer decides requests against the current ACLs. Safe for
// concurrent use: checks read an immutable index; changes (Set, Replace)
// build a new one.
type Authorizer struct {
	super        map[string]bool
	allowIfNoACL bool

	mu   sync.Mutex // serialises index rebuilds
	snap atomic.Pointer[index]
}

// New returns an authorizer with no ACLs.
func New(cfg Config) *Authorizer {
	a := &Authorizer{super: map[string]bool{}, allowIfNoACL: cfg.AllowIfNoACL}
	for _, p := range cfg.SuperUsers {
		a.super[p] = true
	}
	a.snap.Store(buildIndex(map[Pattern][]Entry{}))
	return a
}

// IsSuperUser reports whether principal is in super.users.
func (a *Authorizer) IsSuperUser(principal string) bool { return a.super[principal] }

// index is an immutable view of every ACL.
type index struct {
	byRes map[Pattern][]Entry
	types map[ResourceType]*typeIndex
	count int
}

// typeIndex holds one resource type's ACLs for the request path.
type typeIndex struct {
	literal  map[string][]Entry // by name, "*" included
	prefixed map[string][]Entry // by prefix
	// prefixLens are the distinct lengths of the prefixed patterns,
	// ascending: a name's matching prefixes are found with one lookup
	// per length.
	prefixLens []int
	// byPrincipal are the bindings naming each principal (User:* too),
	// for checks by resource type.
	byPrincipal map[string][]Binding
}

func buildIndex(byRes map[Pattern][]Entry) *index {
	ix := &index{byRes: byRes, types: map[ResourceType]*typeIndex{}}
	for p, es := range byRes {
		ti := ix.types[p.Type]
		if ti == nil {
			ti = &typeIndex{literal: map[string][]Entry{}, prefixed: map[string][]Entry{}, byPrincipal: map[string][]Binding{}}
			ix.types[p.Type] = ti
		}
		switch p.PatternType {
		case kmsg.ACLResourcePatternTypeLiteral:
			ti.literal[p.Name] = es
		case kmsg.ACLResourcePatternTypePrefixed:
			ti.prefixed[p.Name] = es
		}
		for _, e := range es {
			ti.byPrincipal[e.Principal] = append(ti.byPrincipal[e.Principal], Binding{Pattern: p, Entry: e})
		}
		ix.count += len(es)
	}
	for _, ti := range ix.types {
		lens := map[int]bool{}
		for name := range ti.prefixed {
			lens[len(name)] = true
		}
		for l := range lens {
			ti.prefixLens = append(ti.prefixLens, l)
		}
		sort.Ints(ti.prefixLens)
	}
	return ix
}

// Count is the number of ACLs.
func (a *Authorizer) Count() int { return a.snap.Load().count }

// Replace installs a complete set of ACLs (loading from the store).
func (a *Authorizer) Replace(all map[Pattern][]Entry) {
	byRes := make(map[Pattern][]Entry, len(all))
	for p, es := range all {
		if len(es) > 0 {
			byRes[p] = slices.Clone(es)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.snap.Store(buildIndex(byRes))
}

// Set replaces the ACLs of some resource patterns (empty: none), as the
// store now holds them.
func (a *Authorizer) Set(changes map[Pattern][]Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	byRes := maps.Clone(a.snap.Load().byRes)
	for p, es := range changes {
		if len(es) == 0 {
			delete(byRes, p)
		} else {
			byRes[p] = slices.Clone(es)
		}
	}
	a.snap.Store(buildIndex(byRes))
}

// Acls lists the bindings f selects, ordered by pattern then entry.
func (a *Authorizer) Acls(f Filter) []Binding {
	ix := a.snap.Load()
	var out []Binding
	for p, es := range ix.byRes {
		if !f.matchesPattern(p) {
			continue
		}
		for _, e := range es {
			if f.matchesEntry(e) {
				out = append(out, Binding{Pattern: p, Entry: e})
			}
		}
	}
	SortBindings(out)
	return out
}

// SortBindings orders bindings by type, name, pattern type, then entry.
func SortBindings(bs []Binding) {
	sort.Slice(bs, func(i, j int) bool {
		a, b := bs[i], bs[j]
		if a.Pattern != b.Pattern {
			if a.Pattern.Type != b.Pattern.Type {
				return a.Pattern.Type < b.Pattern.Type
			}
			if a.Pattern.Name != b.Pattern.Name {
				return a.Pattern.Name < b.Pattern.Name
			}
			return a.Pattern.PatternType < b.Pattern.PatternType
		}
		return a.Entry.String() < b.Entry.String()
	})
}

// Request is who asks: the principal and the client's IP address.
type Request struct {
	Principal string
	Host      string
}

// Decision is an authorization result and the rule that decided it.
type Decision struct {
	Allowed bool
	rule    ruleKind
	pattern Pattern // the matching ACL, for ruleACL
	entry   Entry
}

type ruleKind int8

const (
	ruleSuperUser ruleKind = iota
	ruleACL
	ruleDefaultAllow
	ruleDefaultDeny
	ruleNoMatchingAllow
)

// Rule names what decided: SuperUser, the matching ACL, DefaultAllow or
// DefaultDeny (the resource has no ACL), or NoMatchingAllow.
func (d Decision) Rule() string {
	switch d.rule {
	case ruleSuperUser:
		return "SuperUser"
	case ruleACL:
		return "MatchingAcl(" + d.pattern.String() + ", " + d.entry.String() + ")"
	case ruleDefaultAllow:
		return "DefaultAllow"
	case ruleDefaultDeny:
		return "DefaultDeny"
	}
	return "NoMatchingAllow"
}

// matcher accumulates what the ACLs of one resource say.
type matcher struct {
	req   Request
	op    Operation
	has   bool
	allow Decision
	deny  Decision
	found bool // allow set
}

// check applies one pattern's entries; true once a DENY applies.
func (m *matcher) check(p Pattern, es []Entry) bool {
	if len(es) == 0 {
		return false
	}
	m.has = true
	for i := range es {
		switch applies(&es[i], m.req, m.op) {
		case kmsg.ACLPermissionTypeDeny:
			m.deny = Decision{rule: ruleACL, pattern: p, entry: es[i]}
			return true
		case kmsg.ACLPermissionTypeAllow:
			if !m.found {
				m.allow, m.found = Decision{Allowed: true, rule: ruleACL, pattern: p, entry: es[i]}, true
			}
		}
	}
	return false
}

// Authorize decides op on the resource (t, name) for req.
func (a *Authorizer) Authorize(req Request, op Operation, t ResourceType, name string) Decision {
	if a.super[req.Principal] {
		return Decision{Allowed: true, rule: ruleSuperUser}
	}
	ti := a.snap.Load().types[t]
	m := matcher{req: req, op: op}
	if ti != nil {
		lit := kmsg.ACLResourcePatternTypeLiteral
		if m.check(Pattern{t, name, lit}, ti.literal[name]) {
			return m.deny
		}
		if name != WildcardResource && m.check(Pattern{t, WildcardResource, lit}, ti.literal[WildcardResource]) {
			return m.deny
		}
		for _, l := range ti.prefixLens {
			if l > len(name) {
				break
			}
			pre := name[:l]
			if m.check(Pattern{t, pre, kmsg.ACLResourcePatternTypePrefixed}, ti.prefixed[pre]) {
				return m.deny
			}
		}
	}
	switch {
	case m.found:
		return m.allow
	case !m.has && a.allowIfNoACL:
		return Decision{Allowed: true, rule: ruleDefaultAllow}
	case !m.has:
		return Decision{rule: ruleDefaultDeny}
	}
	return Decision{rule: ruleNoMatchingAllow}
}

// applies returns the entry's permission if it applies to (req, op), else
// Unknown.
func applies(e *Entry, req Request, op Operation) Permission {
	if e.Principal != req.Principal && e.Principal != WildcardPrincipal {
		return kmsg.ACLPermissionTypeUnknown
	}
	if e.Host != WildcardHost && e.Host != req.Host {
		return kmsg.ACLPermissionTypeUnknown
	}
	if e.Operation != kmsg.ACLOperationAll && e.Operation != op {
		if e.Permission != kmsg.ACLPermissionTypeAllow || !implies(e.Operation, op) {
			return kmsg.ACLPermissionTypeUnknown
		}
	}
	return e.Permission
}

// implies reports whether an ALLOW of have grants want: READ, WRITE,
// DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
func implies(have, want Operation) bool {
	switch want {
	case kmsg.ACLOperationDescribe:
		switch have {
		case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
			return true
		}
	case kmsg.ACLOperationDescribeConfigs:
		return have == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// AuthorizedOperations is the bit field of the supported operations of
// the resource that req may perform (bit n: operation n), as Metadata,
// DescribeGroups and DescribeCluster report them.
func (a *Authorizer) AuthorizedOperations(req Request, t ResourceType, name string) int32 {
	var bits int32
	for _, op := range SupportedOperations(t) {
		if a.Authorize(req, op, t, name).Allowed {
			bits |= 1 << uint(op)
		}
	}
	return bits
}

// AuthorizeByResourceType reports whether req may perform op on at least
// one resource of type t (Kafka's Authorizer.authorizeByResourceType,
// used by InitProducerId: WRITE on any topic): allowed if a resource
// without ACLs would be (super user, allow.everyone.if.no.acl.found), or
// if an ALLOW (op or ALL) for the principal or User:* from this host is
// not covered by a DENY: a LITERAL "*" DENY covers everything, a LITERAL
// DENY covers the same literal name, a PREFIXED DENY covers the names
// and prefixes it is a prefix of.
func (a *Authorizer) AuthorizeByResourceType(req Request, op Operation, t ResourceType) bool {
	if a.Authorize(req, op, t, "hardcode").Allowed {
		return true
	}
	ti := a.snap.Load().types[t]
	if ti == nil {
		return false
	}
	denyLit, denyPre := map[string]bool{}, map[string]bool{}
	var allows []Pattern
	wildAllow := false
	principals := []string{req.Principal, WildcardPrincipal}
	if req.Principal == WildcardPrincipal {
		principals = principals[:1]
	}
	for _, principal := range principals {
		for _, b := range ti.byPrincipal[principal] {
			e := b.Entry
			if e.Host != WildcardHost && e.Host != req.Host {
				continue
			}
			if e.Operation != op && e.Operation != kmsg.ACLOperationAll {
				continue
			}
			p := b.Pattern
			if e.Permission == kmsg.ACLPermissionTypeDeny {
				if p.PatternType == kmsg.ACLResourcePatternTypeLiteral {
					if p.Name == WildcardResource {
						return false
					}
					denyLit[p.Name] = true
				} else {
					denyPre[p.Name] = true
				}
				continue
			}
			if p.PatternType == kmsg.ACLResourcePatternTypeLiteral && p.Name == WildcardResource {
				wildAllow = true
				continue
			}
			allows = append(allows, p)
		}
	}
	if wildAllow {
		return true
	}
	for _, p := range allows {
		if p.PatternType == kmsg.ACLResourcePatternTypeLiteral && denyLit[p.Name] {
			continue
		}
		dominated := false
		for i := 1; i <= len(p.Name) && !dominated; i++ {
			dominated = denyPre[p.Name[:i]]
		}
		if !dominated {
			return true
		}
	}
	return false
}
