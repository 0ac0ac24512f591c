package acl

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	topic   = kmsg.ACLResourceTypeTopic
	group   = kmsg.ACLResourceTypeGroup
	lit     = kmsg.ACLResourcePatternTypeLiteral
	pre     = kmsg.ACLResourcePatternTypePrefixed
	allow   = kmsg.ACLPermissionTypeAllow
	deny    = kmsg.ACLPermissionTypeDeny
	read    = kmsg.ACLOperationRead
	write   = kmsg.ACLOperationWrite
	desc    = kmsg.ACLOperationDescribe
	descCfg = kmsg.ACLOperationDescribeConfigs
	altCfg  = kmsg.ACLOperationAlterConfigs
	all     = kmsg.ACLOperationAll
)

func bind(t ResourceType, name string, pt PatternType, principal, host string, op Operation, perm Permission) Binding {
	return Binding{Pattern{t, name, pt}, Entry{principal, host, op, perm}}
}

func authorizerWith(cfg Config, bs ...Binding) *Authorizer {
	a := New(cfg)
	m := map[Pattern][]Entry{}
	for _, b := range bs {
		m[b.Pattern] = append(m[b.Pattern], b.Entry)
	}
	a.Replace(m)
	return a
}

// TestAuthorize: Kafka's rules (StandardAuthorizerData): DENY wins,
// implied DESCRIBE and DESCRIBE_CONFIGS for ALLOW only, wildcard
// principal, host and resource, prefixes, super users, and the default
// when a resource has no ACLs.
func TestAuthorize(t *testing.T) {
	alice := Request{Principal: "User:alice", Host: "10.0.0.1"}
	cases := []struct {
		name string
		cfg  Config
		acls []Binding
		req  Request
		op   Operation
		typ  ResourceType
		res  string
		want bool
	}{
		{"no acls, default deny", Config{}, nil, alice, read, topic, "t", false},
		{"no acls, allow.everyone.if.no.acl.found", Config{AllowIfNoACL: true}, nil, alice, read, topic, "t", true},
		{"acls for others only: denied even with allow.everyone", Config{AllowIfNoACL: true},
			[]Binding{bind(topic, "t", lit, "User:bob", "*", read, allow)}, alice, read, topic, "t", false},
		{"super user", Config{SuperUsers: []string{"User:alice"}},
			[]Binding{bind(topic, "t", lit, "User:alice", "*", read, deny)}, alice, read, topic, "t", true},
		{"literal allow", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", read, allow)}, alice, read, topic, "t", true},
		{"literal allow other name", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", read, allow)}, alice, read, topic, "t2", false},
		{"deny wins", Config{}, []Binding{
			bind(topic, "t", lit, "User:alice", "*", read, allow),
			bind(topic, "t", pre, "User:*", "*", read, deny)}, alice, read, topic, "t", false},
		{"write implies describe", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", write, allow)}, alice, desc, topic, "t", true},
		{"deny read does not deny describe", Config{}, []Binding{
			bind(topic, "t", lit, "User:alice", "*", all, allow),
			bind(topic, "t", lit, "User:alice", "*", read, deny)}, alice, desc, topic, "t", true},
		{"alter configs implies describe configs", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", altCfg, allow)}, alice, descCfg, topic, "t", true},
		{"describe configs does not imply alter configs", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", descCfg, allow)}, alice, altCfg, topic, "t", false},
		{"read does not imply write", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", read, allow)}, alice, write, topic, "t", false},
		{"all allows everything", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", all, allow)}, alice, altCfg, topic, "t", true},
		{"deny all", Config{}, []Binding{
			bind(topic, "*", lit, "User:*", "*", all, allow),
			bind(topic, "t", lit, "User:alice", "*", all, deny)}, alice, desc, topic, "t", false},
		{"wildcard principal", Config{}, []Binding{bind(topic, "t", lit, "User:*", "*", read, allow)}, alice, read, topic, "t", true},
		{"wildcard resource", Config{}, []Binding{bind(topic, "*", lit, "User:alice", "*", read, allow)}, alice, read, topic, "anything", true},
		{"host must match", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "10.0.0.2", read, allow)}, alice, read, topic, "t", false},
		{"host matches", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "10.0.0.1", read, allow)}, alice, read, topic, "t", true},
		{"prefixed", Config{}, []Binding{bind(topic, "app-", pre, "User:alice", "*", read, allow)}, alice, read, topic, "app-orders", true},
		{"prefixed not a prefix", Config{}, []Binding{bind(topic, "app-", pre, "User:alice", "*", read, allow)}, alice, read, topic, "ap", false},
		{"prefixed is whole name", Config{}, []Binding{bind(topic, "app", pre, "User:alice", "*", read, allow)}, alice, read, topic, "app", true},
		{"literal is not a prefix", Config{}, []Binding{bind(topic, "app", lit, "User:alice", "*", read, allow)}, alice, read, topic, "app-x", false},
		{"prefixed deny under literal allow", Config{}, []Binding{
			bind(topic, "app-orders", lit, "User:alice", "*", read, allow),
			bind(topic, "app-", pre, "User:alice", "*", read, deny)}, alice, read, topic, "app-orders", false},
		{"other resource type", Config{}, []Binding{bind(group, "t", lit, "User:alice", "*", read, allow)}, alice, read, topic, "t", false},
		{"other principal type", Config{}, []Binding{bind(topic, "t", lit, "Group:alice", "*", read, allow)}, alice, read, topic, "t", false},
	}
	for _, c := range cases {
		a := authorizerWith(c.cfg, c.acls...)
		d := a.Authorize(c.req, c.op, c.typ, c.res)
		if d.Allowed != c.want {
			t.Errorf("%s: allowed=%v (rule %s), want %v", c.name, d.Allowed, d.Rule(), c.want)
		}
	}
}

// TestAuthorizeByResourceType: Kafka's default authorizeByResourceType.
func TestAuthorizeByResourceType(t *testing.T) {
	alice := Request{Principal: "User:alice", Host: "h"}
	cases := []struct {
		name string
		cfg  Config
		acls []Binding
		want bool
	}{
		{"none", Config{}, nil, false},
		{"none, allow everyone", Config{AllowIfNoACL: true}, nil, true},
		{"super user", Config{SuperUsers: []string{"User:alice"}}, nil, true},
		{"literal allow", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", write, allow)}, true},
		{"read only", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "*", read, allow)}, false},
		{"literal allow denied", Config{}, []Binding{
			bind(topic, "t", lit, "User:alice", "*", write, allow), bind(topic, "t", lit, "User:alice", "*", write, deny)}, false},
		{"prefix allow dominated by shorter prefix deny", Config{}, []Binding{
			bind(topic, "abc", pre, "User:alice", "*", write, allow), bind(topic, "ab", pre, "User:*", "*", write, deny)}, false},
		{"wildcard deny", Config{}, []Binding{
			bind(topic, "t", lit, "User:alice", "*", write, allow), bind(topic, "*", lit, "User:alice", "*", all, deny)}, false},
		{"wildcard allow", Config{}, []Binding{bind(topic, "*", lit, "User:*", "*", all, allow)}, true},
		{"other host", Config{}, []Binding{bind(topic, "t", lit, "User:alice", "x", write, allow)}, false},
	}
	for _, c := range cases {
		a := authorizerWith(c.cfg, c.acls...)
		if got := a.AuthorizeByResourceType(alice, write, topic); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestFilter: DescribeAcls/DeleteAcls filters, MATCH included.
func TestFilter(t *testing.T) {
	bs := []Binding{
		bind(topic, "foo", lit, "User:a", "*", read, allow),
		bind(topic, "*", lit, "User:a", "*", read, allow),
		bind(topic, "fo", pre, "User:b", "*", write, deny),
		bind(topic, "bar", pre, "User:b", "*", write, deny),
		bind(group, "foo", lit, "User:a", "*", read, allow),
	}
	a := authorizerWith(Config{}, bs...)
	s := func(v string) *string { return &v }
	anyF := Filter{Type: kmsg.ACLResourceTypeAny, PatternType: kmsg.ACLResourcePatternTypeAny, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}
	count := func(f Filter) int { return len(a.Acls(f)) }
	if n := count(anyF); n != 5 {
		t.Errorf("any: %d", n)
	}
	f := anyF
	f.Type, f.Name, f.PatternType = topic, s("foo"), kmsg.ACLResourcePatternTypeMatch
	if n := count(f); n != 3 {
		t.Errorf("match foo: %d, want 3 (literal, wildcard, prefix fo)", n)
	}
	f.PatternType = lit
	if n := count(f); n != 1 {
		t.Errorf("literal foo: %d", n)
	}
	f = anyF
	f.Principal = s("User:b")
	if n := count(f); n != 2 {
		t.Errorf("principal b: %d", n)
	}
	if a.Count() != 5 {
		t.Errorf("count %d", a.Count())
	}
}

func TestValidateBinding(t *testing.T) {
	ok := bind(topic, "t", lit, "User:a", "*", read, allow)
	if err := ValidateBinding(ok); err != nil {
		t.Fatal(err)
	}
	bad := []Binding{
		bind(kmsg.ACLResourceTypeDelegationToken, "t", lit, "User:a", "*", desc, allow),
		bind(kmsg.ACLResourceTypeAny, "t", lit, "User:a", "*", read, allow),
		bind(topic, "t", kmsg.ACLResourcePatternTypeMatch, "User:a", "*", read, allow),
		bind(topic, "", lit, "User:a", "*", read, allow),
		bind(topic, "a/b", lit, "User:a", "*", read, allow),
		bind(kmsg.ACLResourceTypeCluster, "c", lit, "User:a", "*", read, allow),
		bind(topic, "t", lit, "alice", "*", read, allow),
		bind(topic, "t", lit, "User:a", "*", kmsg.ACLOperationAny, allow),
		bind(topic, "t", lit, "User:a", "*", read, kmsg.ACLPermissionTypeAny),
	}
	for i, b := range bad {
		if err := ValidateBinding(b); err == nil {
			t.Errorf("%d: %+v accepted", i, b)
		}
	}
}

// BenchmarkAuthorize: one check at 10,000 ACLs (literal, prefixed and
// wildcard, over 2,000 principals), against one at 10 ACLs: the cost must
// not grow with the number of ACLs.
func BenchmarkAuthorize(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("acls=%d", n), func(b *testing.B) {
			m := map[Pattern][]Entry{}
			for i := 0; i < n; i++ {
				var p Pattern
				switch i % 4 {
				case 0, 1:
					p = Pattern{topic, fmt.Sprintf("topic-%d", i), lit}
				case 2:
					p = Pattern{topic, fmt.Sprintf("team-%d-", i%97), pre}
				case 3:
					p = Pattern{group, fmt.Sprintf("group-%d", i), lit}
				}
				m[p] = append(m[p], Entry{fmt.Sprintf("User:u%d", i%2000), "*", read, allow})
			}
			m[Pattern{topic, "orders", lit}] = append(m[Pattern{topic, "orders", lit}], Entry{"User:app", "*", write, allow})
			a := New(Config{})
			a.Replace(m)
			req := Request{Principal: "User:app", Host: "10.1.2.3"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !a.Authorize(req, write, topic, "orders").Allowed {
					b.Fatal("denied")
				}
				if a.Authorize(req, write, topic, "team-5-orders").Allowed {
					b.Fatal("allowed")
				}
			}
		})
	}
}
