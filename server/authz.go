package server

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/metastore"
)

// Authorization: the authorizer (package acl) configured by
// authorizer.class.name, super.users and allow.everyone.if.no.acl.found,
// its ACLs loaded from the metadata store and kept current (in cluster
// mode by ZooKeeper's ACL change notifications), and the request-side
// helpers the dispatcher (authz_apis.go) and handlers call. With no
// authorizer configured every request is allowed, as in Kafka.
// docs/security.md describes the model and each API's checks.

// authorizer is the broker's authorizer and its ACL store.
type authorizer struct {
	a     *acl.Authorizer
	store metastore.AclStore
	audit *slog.Logger
}

// initAuthorizer builds the authorizer when one is configured and loads
// the ACLs.
func (s *Server) initAuthorizer() error {
	l := s.layers.Load()
	class := strings.TrimSpace(l.String("authorizer.class.name"))
	if class == "" {
		return nil
	}
	st, ok := s.meta.(metastore.AclStore)
	if !ok {
		return fmt.Errorf("config authorizer.class.name: the metadata store keeps no ACLs")
	}
	az := &authorizer{
		a: acl.New(acl.Config{
			SuperUsers:   acl.ParseSuperUsers(l.String("super.users")),
			AllowIfNoACL: l.Bool("allow.everyone.if.no.acl.found"),
		}),
		store: st,
		audit: s.logger.With("component", "audit"),
	}
	all, err := st.Acls()
	if err != nil {
		return fmt.Errorf("loading ACLs: %w", err)
	}
	az.a.Replace(all)
	s.authz = az
	s.logger.Info("authorizer enabled", "class", class, "acls", az.a.Count(), "super_users", acl.ParseSuperUsers(l.String("super.users")))
	return nil
}

// aclRequest is who sends r.
func (r *request) aclRequest() acl.Request {
	return acl.Request{Principal: r.c.principal(), Host: r.c.ip}
}

// authorize reports whether r may perform op on (typ, name), logging a
// denial to the audit log.
func (r *request) authorize(op acl.Operation, typ acl.ResourceType, name string) bool {
	return r.authorizeLog(op, typ, name, true)
}

// authorizeLog is authorize; logDenied false keeps denials out of the
// audit log (filters, as Kafka's logIfDenied=false).
func (r *request) authorizeLog(op acl.Operation, typ acl.ResourceType, name string, logDenied bool) bool {
	az := r.s.authz
	if az == nil {
		return true
	}
	d := az.a.Authorize(r.aclRequest(), op, typ, name)
	if !d.Allowed && logDenied {
		r.auditDenied(op, typ, name, d.Rule())
	}
	return d.Allowed
}

// auditDenied logs one denied operation.
func (r *request) auditDenied(op acl.Operation, typ acl.ResourceType, name, rule string) {
	r.s.authz.audit.Info("authorization denied",
		"principal", r.c.principal(), "host", r.c.ip, "operation", acl.OperationName(op),
		"resource", acl.ResourceTypeName(typ)+":LITERAL:"+name, "api", apiName(r.hdr.key),
		"client_id", r.hdr.clientID, "listener", r.c.l.name, "rule", rule)
}

// authorizeCluster is authorize on the cluster resource.
func (r *request) authorizeCluster(op acl.Operation) bool {
	return r.authorize(op, kmsg.ACLResourceTypeCluster, acl.ClusterName)
}

// authzSet is the result of a filter-style check: the allowed names; nil
// when no authorizer is configured (everything allowed).
type authzSet map[string]bool

// ok reports whether name is allowed.
func (a authzSet) ok(name string) bool { return a == nil || a[name] }

// authorizedNames is the filter-style check of handlers carrying many
// resources (KafkaApis' filterByAuthorized): each distinct name is
// checked once and the allowed ones returned. Denials are logged.
func (r *request) authorizedNames(op acl.Operation, typ acl.ResourceType, names []string) authzSet {
	return r.authorizedNamesLog(op, typ, names, true)
}

func (r *request) authorizedNamesLog(op acl.Operation, typ acl.ResourceType, names []string, logDenied bool) authzSet {
	if r.s.authz == nil {
		return nil
	}
	out := make(authzSet, len(names))
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if r.authorizeLog(op, typ, n, logDenied) {
			out[n] = true
		}
	}
	return out
}

// topicNames collects the topic names of a request's topics.
func topicNames[T any](ts []T, name func(*T) string) []string {
	out := make([]string, len(ts))
	for i := range ts {
		out[i] = name(&ts[i])
	}
	return out
}

// authorizeConfigResource checks op (DESCRIBE_CONFIGS, ALTER_CONFIGS) on
// a config resource: the topic (TOPIC_AUTHORIZATION_FAILED), or the
// cluster for brokers and broker loggers (CLUSTER_AUTHORIZATION_FAILED).
// The message is the error's own, as Kafka's (the audit log names the
// operation and resource), so kafka-topics and kafka-configs print what
// they print against Kafka: "Topic authorization failed.".
func (r *request) authorizeConfigResource(op acl.Operation, typ kmsg.ConfigResourceType, name string) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if !r.authorize(op, resTopic, name) {
			return topicErrf(kerr.TopicAuthorizationFailed, "Topic authorization failed.")
		}
	case kmsg.ConfigResourceTypeBroker, kmsg.ConfigResourceTypeBrokerLogger:
		if !r.authorizeCluster(op) {
			return topicErrf(kerr.ClusterAuthorizationFailed, "Cluster authorization failed.")
		}
	}
	return nil
}

// authorizedOperations is the authorized-operations bit field of a
// resource (every supported operation without an authorizer).
func (r *request) authorizedOperations(typ acl.ResourceType, name string) int32 {
	if r.s.authz == nil {
		var bits int32
		for _, op := range acl.SupportedOperations(typ) {
			bits |= 1 << uint(op)
		}
		return bits
	}
	return r.s.authz.a.AuthorizedOperations(r.aclRequest(), typ, name)
}

// auditChange logs a change of ACLs, credentials or quotas.
func (r *request) auditChange(msg string, args ...any) {
	l := r.s.logger.With("component", "audit")
	if r.s.authz != nil {
		l = r.s.authz.audit
	}
	l.Info(msg, append([]any{"principal", r.c.principal(), "host", r.c.ip, "api", apiName(r.hdr.key), "client_id", r.hdr.clientID}, args...)...)
}
