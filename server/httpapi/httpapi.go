package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
	"github.com/kvlog/kvlog/console"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/acl"
)

// Options are what the HTTP listener serves and how it checks users.
type Options struct {
	Logger *slog.Logger
	Clock  clock.Clock
	// Addr is the listener's host:port: /debug/pprof is served by
	// default only when it binds loopback, and basic authentication on
	// plain HTTP off loopback is warned about.
	Addr string
	// Pprof is kvlog.http.pprof.enable: "true", "false" or "auto".
	Pprof string
	// BasicAuth is kvlog.http.auth=basic: every route but the health
	// checks needs a user's password (CheckPassword).
	BasicAuth bool
	// TLS says whether the listener serves TLS (for the warning above).
	TLS bool
	// CheckPassword checks a user's password and returns the SASL
	// mechanism that accepted it.
	CheckPassword func(user, password string) (mechanism string, ok bool)
	// AuthFailDelay is connection.failed.authentication.delay.ms, read
	// at each failure.
	AuthFailDelay func() time.Duration
	// Authorizer checks the path ACLs of authenticated users; nil: none
	// (every authenticated user may use every route). Audit logs its
	// denials.
	Authorizer *acl.Authorizer
	Audit      *slog.Logger

	Metrics http.Handler // /metrics
	Cleaner http.Handler // cleanerstatus.Path
	Console http.Handler // console.Prefix; nil: no console
	// Ready is the broker's readiness and its reasons (/readyz); Closing
	// says whether it is shutting down (/healthz).
	Ready   func() (bool, []string)
	Closing func() bool
	// Routes adds the broker's other routes.
	Routes func(*http.ServeMux)
}

// Handler serves /metrics (Prometheus), /healthz (liveness) and /readyz
// (readiness, health.go), /cleaner (the log cleaner's status as JSON:
// every compacted partition with its dirty ratio, first dirty offset,
// last clean and state; `kvlog cleaner status` reads it) and Go's
// profiler under /debug/pprof/ (only on a loopback listener unless
// kvlog.http.pprof.enable says otherwise), the web console under /ui/
// and the routes of o.Routes; with basic authentication every path but
// the health checks needs a user's password (security.go).
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	if pprofEnabled(o.Pprof, o.Addr) {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if o.Console != nil {
		mux.Handle(console.Prefix, o.Console)
		mux.Handle("/ui", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
	}
	mux.Handle("/metrics", o.Metrics)
	mux.Handle(cleanerstatus.Path, o.Cleaner)
	mux.HandleFunc("/healthz", o.serveHealthz)
	mux.HandleFunc("/readyz", o.serveReadyz)
	if o.Routes != nil {
		o.Routes(mux)
	}
	return o.secure(mux)
}
