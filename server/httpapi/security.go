package httpapi

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/console"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/security"
)

// The HTTP listener's security (kvlog.http.* keys; docs/security.md, "The
// HTTP listener"):
//
//   - TLS when kvlog.http.ssl.keystore.location (or the inline
//     kvlog.http.ssl.keystore.key and .certificate.chain) is set: the same
//     PEM handling as the Kafka listeners' ssl.* keys, under the
//     kvlog.http. prefix, client certificates included
//     (kvlog.http.ssl.client.auth). TLSConfig builds it.
//   - kvlog.http.auth=basic: HTTP basic authentication against the
//     broker's SASL users, the PLAIN users of its SASL listeners and the
//     SCRAM credentials of its metadata store (Options.CheckPassword).
//     /healthz and /readyz stay open (probes carry no credentials). With
//     an authorizer, /metrics and /cleaner need DESCRIBE on the cluster,
//     /debug/pprof needs ALTER on the cluster, /v1/topics/{topic}/... READ
//     on the topic (pathACL); the console (/ui/) acts as the user on a
//     SASL listener, so the broker checks its ACLs request by request. A
//     failure waits connection.failed.authentication.delay.ms, as a
//     failed SASL authentication does, and says nothing of why.
//   - kvlog.http.pprof.enable=auto (the default) serves /debug/pprof only
//     when the listener binds a loopback address.

// TLSConfig is the HTTP listener's TLS configuration from get (the
// kvlog.http.ssl.* keys read as the ssl.* keys package security knows),
// nil when no key store is configured (plain HTTP). The key store and
// trust store files are read again when they change (a certificate
// renewed in place is served from the next handshake on); a file that no
// longer builds a configuration keeps the previous one, and the reason is
// logged.
func TLSConfig(get security.Lookup, logger *slog.Logger) (*tls.Config, error) {
	_, file := get("ssl.keystore.location")
	_, inline := get("ssl.keystore.key")
	_, chain := get("ssl.keystore.certificate.chain")
	if !file && !inline && !chain {
		return nil, nil
	}
	cfg, err := security.ServerTLS(get)
	if err != nil {
		return nil, fmt.Errorf("HTTP listener (kvlog.http.ssl.*): %w", err)
	}
	r := &tlsReloader{logger: logger, get: get, cur: cfg, stamp: tlsStamp(get)}
	return &tls.Config{GetConfigForClient: r.config}, nil
}

// tlsReloader rebuilds the HTTP listener's TLS configuration when its
// files change.
type tlsReloader struct {
	logger *slog.Logger
	get    security.Lookup

	mu    sync.Mutex
	cur   *tls.Config
	stamp string
}

// tlsStamp identifies the versions of the key and trust store files.
func tlsStamp(get security.Lookup) string {
	var b strings.Builder
	for _, key := range []string{"ssl.keystore.location", "ssl.truststore.location"} {
		if path, ok := get(key); ok && path != "" {
			if fi, err := os.Stat(path); err == nil {
				fmt.Fprintf(&b, "%s:%d:%d;", path, fi.ModTime().UnixNano(), fi.Size())
			}
		}
	}
	return b.String()
}

func (r *tlsReloader) config(*tls.ClientHelloInfo) (*tls.Config, error) {
	stamp := tlsStamp(r.get)
	r.mu.Lock()
	defer r.mu.Unlock()
	if stamp == r.stamp {
		return r.cur, nil
	}
	r.stamp = stamp
	cfg, err := security.ServerTLS(r.get)
	if err != nil {
		r.logger.Error("HTTP listener TLS files changed but cannot be used; the previous configuration stays", "err", err)
		return r.cur, nil
	}
	r.logger.Info("HTTP listener TLS configuration reloaded")
	r.cur = cfg
	return cfg, nil
}

// pprofEnabled reports whether /debug/pprof is served, from
// kvlog.http.pprof.enable and the listener's address.
func pprofEnabled(setting, addr string) bool {
	switch setting {
	case "true":
		return true
	case "false":
		return false
	}
	return loopbackAddr(addr)
}

// loopbackAddr reports whether a host:port binds only loopback.
func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// secure wraps the HTTP listener's handler with basic authentication
// and the cluster ACL checks of its paths (see the comment at the top).
func (o *Options) secure(next http.Handler) http.Handler {
	if !o.BasicAuth {
		return next
	}
	if !o.TLS && !loopbackAddr(o.Addr) {
		o.Logger.Warn("kvlog.http.auth=basic on plain HTTP off loopback: passwords cross the network in clear; set kvlog.http.ssl.keystore.location", "http", o.Addr)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		user, password, ok := r.BasicAuth()
		mech := ""
		if ok {
			mech, ok = o.CheckPassword(user, password)
		}
		if !ok {
			o.Logger.Warn("HTTP authentication failed", "component", "audit", "user", user, "remote", r.RemoteAddr, "path", r.URL.Path)
			if d := o.AuthFailDelay(); d > 0 {
				clock.Sleep(r.Context(), o.Clock, d)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="kvlog", charset="UTF-8"`)
			http.Error(w, "authentication required: a user of the broker (SASL PLAIN or SCRAM) and its password", http.StatusUnauthorized)
			return
		}
		if need, ok := pathACL(r.URL.Path); ok && o.Authorizer != nil {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			principal := security.UserType + ":" + user
			d := o.Authorizer.Authorize(acl.Request{Principal: principal, Host: host}, need.op, need.typ, need.name)
			if !d.Allowed {
				resource := acl.ResourceTypeName(need.typ) + ":LITERAL:" + need.name
				o.Audit.Info("authorization denied", "principal", principal, "host", host,
					"operation", acl.OperationName(need.op), "resource", resource,
					"http_path", r.URL.Path, "rule", d.Rule())
				http.Error(w, fmt.Sprintf("%s is not allowed %s on %s", principal, acl.OperationName(need.op), resource), http.StatusForbidden)
				return
			}
		}
		r = r.WithContext(console.WithCredentials(r.Context(), console.Credentials{User: user, Password: password, Mechanism: mech}))
		next.ServeHTTP(w, r)
	})
}

// pathNeeds is the operation on a resource a path needs.
type pathNeeds struct {
	op   acl.Operation
	typ  acl.ResourceType
	name string
}

// pathACL is what a path needs with an authorizer (ok false: no check
// here; the console's requests are checked by the broker as it sends
// them). A route under /v1/topics/{topic}/ (reading a topic's data over
// HTTP) needs READ on that topic; the profiler ALTER on the cluster;
// anything else (metrics, the cleaner status) DESCRIBE on the cluster.
func pathACL(path string) (pathNeeds, bool) {
	switch {
	case strings.HasPrefix(path, "/debug/pprof"):
		return pathNeeds{kmsg.ACLOperationAlter, kmsg.ACLResourceTypeCluster, acl.ClusterName}, true
	case strings.HasPrefix(path, "/ui/") || path == "/ui":
		return pathNeeds{}, false
	case strings.HasPrefix(path, "/v1/topics/"):
		topic, _, _ := strings.Cut(strings.TrimPrefix(path, "/v1/topics/"), "/") // the path is decoded already
		return pathNeeds{kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, topic}, true
	}
	return pathNeeds{kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, acl.ClusterName}, true
}
