package zkstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/metastore"
)

// ACLs live where Kafka's ZooKeeper-mode AclAuthorizer keeps them, so a
// Kafka 2.x/3.x kafka-acls.sh --authorizer-properties zookeeper.connect=…
// reads and writes the same data:
//
//	/kafka-acl/<Type>/<name>                       LITERAL patterns
//	/kafka-acl-extended/prefixed/<Type>/<name>     PREFIXED patterns
//	    {"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow","operation":"Read","host":"*"}]}
//	/kafka-acl-changes/acl_changes_<seq>           "Topic:<name>" (a LITERAL pattern changed)
//	/kafka-acl-extended-changes/acl_changes_<seq>  {"version":1,"resourceType":"Topic","name":"<name>","patternType":"PREFIXED"}
//
// <Type> is Topic, Group, Cluster or TransactionalId. Every change of a
// pattern's znode is one multi with its change notification; brokers
// watch both change paths and re-read the named patterns.
//
// Client quotas are entity configs, as Kafka's ZooKeeper mode keeps them:
// /config/users/<user>, /config/users/<user>/clients/<client>,
// /config/clients/<client> and /config/ips/<ip> ("<default>" for the
// default entity), keys producer_byte_rate, consumer_byte_rate,
// request_percentage (and connection_creation_rate for ips), each change
// announced under /config/changes with its entity path.
const (
	pathACL            = "/kafka-acl"
	pathACLPrefixed    = "/kafka-acl-extended/prefixed"
	pathACLChanges     = "/kafka-acl-changes"
	pathACLExtChanges  = "/kafka-acl-extended-changes"
	aclChangePrefix    = "acl_changes_"
	pathConfigIPs      = "/config/ips"
	pathConfigClients  = "/config/clients"
	maxACLWriteRetries = 20
)

var _ metastore.AclStore = (*Store)(nil)
var _ metastore.QuotaStore = (*Store)(nil)

type aclJSON struct {
	Version int            `json:"version"`
	Acls    []aclEntryJSON `json:"acls"`
}

type aclEntryJSON struct {
	Principal      string `json:"principal"`
	PermissionType string `json:"permissionType"`
	Operation      string `json:"operation"`
	Host           string `json:"host"`
}

type aclChangeJSON struct {
	Version      int    `json:"version"`
	ResourceType string `json:"resourceType"`
	Name         string `json:"name"`
	PatternType  string `json:"patternType"`
}

func aclBase(pt acl.PatternType) string {
	if pt == kmsg.ACLResourcePatternTypePrefixed {
		return pathACLPrefixed
	}
	return pathACL
}

func aclPath(p acl.Pattern) string {
	return aclBase(p.PatternType) + "/" + acl.ResourceTypeName(p.Type) + "/" + p.Name
}

func decodeACLEntries(data []byte) ([]acl.Entry, error) {
	if len(data) == 0 {
		return nil, nil
	}
	var j aclJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, err
	}
	var out []acl.Entry
	for _, a := range j.Acls {
		op, ok1 := acl.ParseOperation(a.Operation)
		perm, ok2 := acl.ParsePermission(a.PermissionType)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("unknown operation %q or permission %q", a.Operation, a.PermissionType)
		}
		out = append(out, acl.Entry{Principal: a.Principal, Host: a.Host, Operation: op, Permission: perm})
	}
	return out, nil
}

func encodeACLEntries(es []acl.Entry) []byte {
	j := aclJSON{Version: 1, Acls: []aclEntryJSON{}}
	for _, e := range es {
		j.Acls = append(j.Acls, aclEntryJSON{Principal: e.Principal, PermissionType: acl.PermissionName(e.Permission),
			Operation: acl.OperationName(e.Operation), Host: e.Host})
	}
	b, _ := json.Marshal(j)
	return b
}

// Acls implements metastore.AclStore: every pattern under both roots.
func (s *Store) Acls() (map[acl.Pattern][]acl.Entry, error) {
	out := map[acl.Pattern][]acl.Entry{}
	for _, pt := range []acl.PatternType{kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed} {
		base := aclBase(pt)
		types, _, err := s.children(s.p(base))
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("zkstore: list %s: %w", base, err)
		}
		for _, tn := range types {
			rt, ok := acl.ParseResourceType(tn)
			if !ok {
				s.log.Warn("ACLs of an unknown resource type ignored", "path", base+"/"+tn)
				continue
			}
			names, _, err := s.children(s.p(base + "/" + tn))
			if err != nil && !errors.Is(err, zk.ErrNoNode) {
				return nil, fmt.Errorf("zkstore: list %s/%s: %w", base, tn, err)
			}
			for _, n := range names {
				p := acl.Pattern{Type: rt, Name: n, PatternType: pt}
				es, err := s.ResourceAcls(p)
				if err != nil {
					return nil, err
				}
				if len(es) > 0 {
					out[p] = es
				}
			}
		}
	}
	return out, nil
}

// ResourceAcls reads one pattern's ACLs (none if its znode is absent).
func (s *Store) ResourceAcls(p acl.Pattern) ([]acl.Entry, error) {
	es, _, err := s.resourceAcls(p)
	return es, err
}

func (s *Store) resourceAcls(p acl.Pattern) ([]acl.Entry, int32, error) {
	data, st, err := s.get(s.p(aclPath(p)))
	if errors.Is(err, zk.ErrNoNode) {
		return nil, -1, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("zkstore: read ACLs of %s: %w", p, err)
	}
	es, err := decodeACLEntries(data)
	if err != nil {
		return nil, 0, fmt.Errorf("zkstore: ACLs of %s: %w", p, err)
	}
	return es, st.Version, nil
}

// aclChangeOp is the notification of a change of p's ACLs.
func (s *Store) aclChangeOp(p acl.Pattern) *zk.CreateRequest {
	if p.PatternType == kmsg.ACLResourcePatternTypeLiteral {
		return &zk.CreateRequest{Path: s.p(pathACLChanges + "/" + aclChangePrefix),
			Data: []byte(acl.ResourceTypeName(p.Type) + ":" + p.Name), Acl: s.acl(pathACLChanges), Flags: zk.FlagSequence}
	}
	b, _ := json.Marshal(aclChangeJSON{Version: 1, ResourceType: acl.ResourceTypeName(p.Type), Name: p.Name, PatternType: "PREFIXED"})
	return &zk.CreateRequest{Path: s.p(pathACLExtChanges + "/" + aclChangePrefix), Data: b, Acl: s.acl(pathACLExtChanges), Flags: zk.FlagSequence}
}

// UpdateAcls implements metastore.AclStore: per pattern, a read, then a
// conditional create, set or delete with its change notification in one
// multi, retried when another writer got there first.
func (s *Store) UpdateAcls(patterns []acl.Pattern, fn func(p acl.Pattern, cur []acl.Entry) []acl.Entry) (map[acl.Pattern][]acl.Entry, error) {
	for _, dir := range []string{pathACLChanges, pathACLExtChanges} {
		if err := s.ensurePath(dir); err != nil {
			return nil, err
		}
	}
	out := map[acl.Pattern][]acl.Entry{}
	for _, p := range patterns {
		full := s.p(aclPath(p))
		if err := s.ensurePath(path.Dir(aclPath(p))); err != nil {
			return out, err
		}
		for attempt := 0; ; attempt++ {
			cur, version, err := s.resourceAcls(p)
			if err != nil {
				return out, err
			}
			next := fn(p, cur)
			var op any
			switch {
			case len(next) == 0 && version < 0:
				out[p] = nil
			case len(next) == 0:
				op = &zk.DeleteRequest{Path: full, Version: version}
			case version < 0:
				op = &zk.CreateRequest{Path: full, Data: encodeACLEntries(next), Acl: s.acl(aclPath(p))}
			default:
				op = &zk.SetDataRequest{Path: full, Data: encodeACLEntries(next), Version: version}
			}
			if op == nil {
				break
			}
			_, err = s.conn.Multi(op, s.aclChangeOp(p))
			if err == nil {
				out[p] = next
				break
			}
			if attempt < maxACLWriteRetries && (errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNodeExists) || errors.Is(err, zk.ErrNoNode)) {
				continue
			}
			return out, fmt.Errorf("zkstore: write ACLs of %s: %w", p, err)
		}
	}
	return out, nil
}

// AclChangesW lists the change notifications of LITERAL (extended false)
// or PREFIXED patterns, sorted, with a watch.
func (s *Store) AclChangesW(extended bool) ([]string, <-chan zk.Event, error) {
	dir := pathACLChanges
	if extended {
		dir = pathACLExtChanges
	}
	if err := s.ensurePath(dir); err != nil {
		return nil, nil, err
	}
	names, _, ch, err := s.childrenW(s.p(dir))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	return names, ch, nil
}

// AclChange reads one change notification: the pattern whose ACLs
// changed; ok false if it is gone or unreadable.
func (s *Store) AclChange(extended bool, name string) (acl.Pattern, bool) {
	dir := pathACLChanges
	if extended {
		dir = pathACLExtChanges
	}
	data, _, err := s.get(s.p(dir + "/" + name))
	if err != nil {
		return acl.Pattern{}, false
	}
	if !extended {
		tn, n, ok := strings.Cut(string(data), ":")
		rt, ok2 := acl.ParseResourceType(tn)
		return acl.Pattern{Type: rt, Name: n, PatternType: kmsg.ACLResourcePatternTypeLiteral}, ok && ok2
	}
	var j aclChangeJSON
	if json.Unmarshal(data, &j) != nil {
		return acl.Pattern{}, false
	}
	rt, ok := acl.ParseResourceType(j.ResourceType)
	pt := kmsg.ACLResourcePatternTypeLiteral
	if strings.EqualFold(j.PatternType, "PREFIXED") {
		pt = kmsg.ACLResourcePatternTypePrefixed
	}
	return acl.Pattern{Type: rt, Name: j.Name, PatternType: pt}, ok
}

// PurgeAclChanges deletes the change notifications older than maxAge.
func (s *Store) PurgeAclChanges(extended bool, maxAge time.Duration) {
	dir := pathACLChanges
	if extended {
		dir = pathACLExtChanges
	}
	names, _, err := s.children(s.p(dir))
	if err != nil {
		return
	}
	cutoff := s.opts.Now().Add(-maxAge).UnixMilli()
	for _, n := range names {
		_, st, err := s.get(s.p(dir + "/" + n))
		if err == nil && st.Ctime < cutoff {
			_ = s.conn.Delete(s.p(dir+"/"+n), st.Version)
		}
	}
}

// Client quotas.

// quotaKeys are the config keys that are client quotas.
var quotaKeys = map[string]bool{"producer_byte_rate": true, "consumer_byte_rate": true, "request_percentage": true,
	"controller_mutation_rate": true, "connection_creation_rate": true}

// ClientQuotas implements metastore.QuotaStore: the quota keys of every
// users, users/<u>/clients, clients and ips entity config.
func (s *Store) ClientQuotas() (map[string]map[string]float64, error) {
	out := map[string]map[string]float64{}
	read := func(entity string) error {
		c, err := s.entityConfig("/config/" + entity)
		if err != nil {
			return err
		}
		vals := map[string]float64{}
		for k, v := range c {
			if !quotaKeys[k] {
				continue
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.log.Warn("unreadable client quota ignored", "entity", entity, "key", k, "value", v)
				continue
			}
			vals[k] = f
		}
		if len(vals) > 0 {
			out[entity] = vals
		}
		return nil
	}
	children := func(rel string) ([]string, error) {
		names, _, err := s.children(s.p(rel))
		if errors.Is(err, zk.ErrNoNode) {
			return nil, nil
		}
		return names, err
	}
	for _, kind := range []string{"users", "clients", "ips"} {
		names, err := children("/config/" + kind)
		if err != nil {
			return nil, fmt.Errorf("zkstore: list /config/%s: %w", kind, err)
		}
		for _, n := range names {
			if err := read(kind + "/" + n); err != nil {
				return nil, err
			}
			if kind != "users" {
				continue
			}
			clients, err := children("/config/users/" + n + "/clients")
			if err != nil {
				return nil, fmt.Errorf("zkstore: list clients of user %s: %w", n, err)
			}
			for _, c := range clients {
				if err := read("users/" + n + "/clients/" + c); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func (s *Store) entityConfig(rel string) (map[string]string, error) {
	data, _, err := s.get(s.p(rel))
	if errors.Is(err, zk.ErrNoNode) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("zkstore: read %s: %w", rel, err)
	}
	if len(data) == 0 {
		return map[string]string{}, nil
	}
	return decodeConfig(data)
}

// SetClientQuotas implements metastore.QuotaStore: each entity's config
// keeps its other keys (SCRAM credentials) and gets the quota keys given,
// with a /config/changes notification.
func (s *Store) SetClientQuotas(changes map[string]map[string]float64) error {
	entities := make([]string, 0, len(changes))
	for e := range changes {
		entities = append(entities, e)
	}
	sort.Strings(entities)
	for _, e := range entities {
		if _, err := url.PathUnescape(e); err != nil {
			return fmt.Errorf("zkstore: client quota entity %q: %w", e, err)
		}
		rel := "/config/" + e
		c, err := s.entityConfig(rel)
		if err != nil {
			return err
		}
		for k := range c {
			if quotaKeys[k] {
				delete(c, k)
			}
		}
		for k, v := range changes[e] {
			c[k] = FormatQuota(v)
		}
		if err := s.setConfig(rel, e, c); err != nil {
			return err
		}
	}
	return nil
}

// FormatQuota writes a quota value as Java's Double.toString does for the
// values quotas take ("1024.0", "0.5").
func FormatQuota(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}
