package server

// The HTTP listener (package httpapi) wired to the broker: its routes'
// handlers, the kvlog.http.* keys, the broker's SASL users as HTTP users
// (CheckPassword, security.go) and its authorizer.

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/httpapi"
	"github.com/kvlog/kvlog/server/security"
)

// HTTPHandler is the HTTP listener's handler (httpapi.Handler): metrics,
// health, the cleaner's status, the profiler, the web console
// (console.go) and the key lookups (http_keys.go).
func (s *Server) HTTPHandler() http.Handler {
	l := s.layers.Load()
	tc, _ := s.HTTPTLSConfig()
	o := httpapi.Options{
		Logger:        s.logger,
		Clock:         s.clock,
		Addr:          s.cfg.HTTPListener,
		Pprof:         l.String("kvlog.http.pprof.enable"),
		BasicAuth:     l.String("kvlog.http.auth") == "basic",
		TLS:           tc != nil,
		CheckPassword: s.CheckPassword,
		AuthFailDelay: func() time.Duration { return s.layers.Load().Duration("connection.failed.authentication.delay.ms") },
		Metrics:       promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}),
		Cleaner:       s.cleaner.Handler(),
		Ready:         s.Readiness,
		Closing:       s.closing.Load,
		Routes:        s.registerKeyRoutes,
	}
	if ui := s.consoleHandler(); ui != nil {
		o.Console = ui
	}
	if s.authz != nil {
		o.Authorizer, o.Audit = s.authz.a, s.authz.audit
	}
	return httpapi.Handler(o)
}

// HTTPTLSConfig is the HTTP listener's TLS configuration, nil when no
// key store is configured (plain HTTP); see httpapi.TLSConfig.
func (s *Server) HTTPTLSConfig() (*tls.Config, error) {
	return httpapi.TLSConfig(s.httpLookup(), s.logger)
}

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
