package server

import (
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/console"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/security"
)

// The HTTP listener's security (kvlog.http.* keys; docs/security.md, "The
// HTTP listener"):
//
//   - TLS when kvlog.http.ssl.keystore.location (or the inline
//     kvlog.http.ssl.keystore.key and .certificate.chain) is set: the same
//     PEM handling as the Kafka listeners' ssl.* keys, under the
//     kvlog.http. prefix, client certificates included
//     (kvlog.http.ssl.client.auth).
//   - kvlog.http.auth=basic: HTTP basic authentication against the
//     broker's SASL users, the PLAIN users of its SASL listeners and the
//     SCRAM credentials of its metadata store (the password is salted with
//     the stored salt and compared with the stored key). /healthz and
//     /readyz stay open (probes carry no credentials). With an authorizer,
//     /metrics and /cleaner need DESCRIBE on the cluster, /debug/pprof
//     needs ALTER on the cluster, /v1/topics/{topic}/... READ on the
//     topic (httpPathACL); the console (/ui/) acts as the user on a
//     SASL listener, so the broker checks its ACLs request by request. A
//     failure waits connection.failed.authentication.delay.ms, as a
//     failed SASL authentication does, and says nothing of why.
//   - kvlog.http.pprof.enable=auto (the default) serves /debug/pprof only
//     when the listener binds a loopback address.

// httpLookup reads the kvlog.http.ssl.* keys as the ssl.* keys the
// security package knows.
func (s *Server) httpLookup() security.Lookup {
	l := s.layers.Load()
	return func(key string) (string, bool) {
		if config.BrokerDef("kvlog.http."+key) == nil {
			return "", false // an ssl.* key the HTTP listener has no form of
		}
		e := l.Broker("kvlog.http." + key)
		if e.Null || e.Source == kmsg.ConfigSourceDefaultConfig {
			return "", false
		}
		return e.Value, true
	}
}

// HTTPTLSConfig is the HTTP listener's TLS configuration, nil when no
// key store is configured (plain HTTP). The key store and trust store
// files are read again when they change (a certificate renewed in place
// is served from the next handshake on); a file that no longer builds a
// configuration keeps the previous one, and the reason is logged.
func (s *Server) HTTPTLSConfig() (*tls.Config, error) {
	get := s.httpLookup()
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
	r := &httpTLSReloader{s: s, get: get, cur: cfg, stamp: httpTLSStamp(get)}
	return &tls.Config{GetConfigForClient: r.config}, nil
}

// httpTLSReloader rebuilds the HTTP listener's TLS configuration when its
// files change.
type httpTLSReloader struct {
	s   *Server
	get security.Lookup

	mu    sync.Mutex
	cur   *tls.Config
	stamp string
}

// httpTLSStamp identifies the versions of the key and trust store files.
func httpTLSStamp(get security.Lookup) string {
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

func (r *httpTLSReloader) config(*tls.ClientHelloInfo) (*tls.Config, error) {
	stamp := httpTLSStamp(r.get)
	r.mu.Lock()
	defer r.mu.Unlock()
	if stamp == r.stamp {
		return r.cur, nil
	}
	r.stamp = stamp
	cfg, err := security.ServerTLS(r.get)
	if err != nil {
		r.s.logger.Error("HTTP listener TLS files changed but cannot be used; the previous configuration stays", "err", err)
		return r.cur, nil
	}
	r.s.logger.Info("HTTP listener TLS configuration reloaded")
	r.cur = cfg
	return cfg, nil
}

// httpPprof reports whether /debug/pprof is served.
func (s *Server) httpPprof() bool {
	switch s.layers.Load().String("kvlog.http.pprof.enable") {
	case "true":
		return true
	case "false":
		return false
	}
	return loopbackAddr(s.cfg.HTTPListener)
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

// httpBasicAuth reports whether kvlog.http.auth=basic.
func (s *Server) httpBasicAuth() bool {
	return s.layers.Load().String("kvlog.http.auth") == "basic"
}

// CheckPassword checks a user's password against the broker's SASL users:
// the PLAIN users of every SASL listener, then the user's SCRAM
// credentials (SHA-512 first). It returns the mechanism that accepted
// it.
func (s *Server) CheckPassword(user, password string) (string, bool) {
	if user == "" {
		return "", false
	}
	s.lnMu.Lock()
	ls := append([]*listener(nil), s.listeners...)
	s.lnMu.Unlock()
	for _, l := range ls {
		if l.sec == nil || !l.sec.useSASL {
			continue
		}
		set := l.sec.settings()
		if set == nil {
			continue
		}
		if want, ok := set.plainUsers[user]; ok && subtle.ConstantTimeCompare([]byte(want), []byte(password)) == 1 {
			return security.Plain, true
		}
	}
	checked := false
	for _, mech := range []string{security.ScramSHA512, security.ScramSHA256} {
		c, found, err := s.scramCredential(user, mech)
		if err != nil || !found {
			continue
		}
		checked = true
		if security.CheckScramPassword(mech, c, password) {
			return mech, true
		}
	}
	if !checked {
		// An unknown user costs what a wrong password costs, so the time
		// of a refusal does not tell which users exist (as SCRAM's fake
		// credential does).
		security.CheckScramPassword(security.ScramSHA512, httpFakeCredential(), password)
	}
	return "", false
}

// httpFakeCredential is salted and checked for users without credentials.
var httpFakeCredential = sync.OnceValue(func() *security.ScramCredential {
	c, err := security.NewScramCredentialFromPassword(security.ScramSHA512, "", 4096)
	if err != nil {
		panic(err)
	}
	return c
})

// httpAuthFailDelay is connection.failed.authentication.delay.ms.
func (s *Server) httpAuthFailDelay() time.Duration {
	return s.layers.Load().Duration("connection.failed.authentication.delay.ms")
}

// httpSecure wraps the HTTP listener's handler with basic authentication
// and the cluster ACL checks of its paths (see the comment at the top).
func (s *Server) httpSecure(next http.Handler) http.Handler {
	if !s.httpBasicAuth() {
		return next
	}
	if tc, _ := s.HTTPTLSConfig(); tc == nil && !loopbackAddr(s.cfg.HTTPListener) {
		s.logger.Warn("kvlog.http.auth=basic on plain HTTP off loopback: passwords cross the network in clear; set kvlog.http.ssl.keystore.location", "http", s.cfg.HTTPListener)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		user, password, ok := r.BasicAuth()
		mech := ""
		if ok {
			mech, ok = s.CheckPassword(user, password)
		}
		if !ok {
			s.logger.Warn("HTTP authentication failed", "component", "audit", "user", user, "remote", r.RemoteAddr, "path", r.URL.Path)
			if d := s.httpAuthFailDelay(); d > 0 {
				clock.Sleep(r.Context(), s.clock, d)
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="kvlog", charset="UTF-8"`)
			http.Error(w, "authentication required: a user of the broker (SASL PLAIN or SCRAM) and its password", http.StatusUnauthorized)
			return
		}
		if need, ok := httpPathACL(r.URL.Path); ok && s.authz != nil {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			principal := security.UserType + ":" + user
			d := s.authz.a.Authorize(acl.Request{Principal: principal, Host: host}, need.op, need.typ, need.name)
			if !d.Allowed {
				resource := acl.ResourceTypeName(need.typ) + ":LITERAL:" + need.name
				s.authz.audit.Info("authorization denied", "principal", principal, "host", host,
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

// httpACL is the operation on a resource a path needs.
type httpACL struct {
	op   acl.Operation
	typ  acl.ResourceType
	name string
}

// httpPathACL is what a path needs with an authorizer (ok false: no check
// here; the console's requests are checked by the broker as it sends
// them). A route under /v1/topics/{topic}/ (reading a topic's data over
// HTTP) needs READ on that topic; the profiler ALTER on the cluster;
// anything else (metrics, the cleaner status) DESCRIBE on the cluster.
func httpPathACL(path string) (httpACL, bool) {
	switch {
	case strings.HasPrefix(path, "/debug/pprof"):
		return httpACL{kmsg.ACLOperationAlter, kmsg.ACLResourceTypeCluster, acl.ClusterName}, true
	case strings.HasPrefix(path, "/ui/") || path == "/ui":
		return httpACL{}, false
	case strings.HasPrefix(path, "/v1/topics/"):
		topic, _, _ := strings.Cut(strings.TrimPrefix(path, "/v1/topics/"), "/") // the path is decoded already
		return httpACL{kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, topic}, true
	}
	return httpACL{kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeCluster, acl.ClusterName}, true
}
