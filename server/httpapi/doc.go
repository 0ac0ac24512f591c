// Package httpapi is the broker's HTTP listener (kvlog.http.listener):
// the routes (/metrics, /healthz, /readyz, /cleaner, /debug/pprof, the
// web console under /ui/ and the routes the broker adds, such as the key
// lookups), its TLS configuration (reloaded when its files change) and
// its security: basic authentication against the broker's SASL users and
// cluster ACLs per path (docs/security.md, "The HTTP listener"), and
// which of the broker's listeners the web console, a Kafka client of the
// broker served under /ui/, connects to (ConsoleConnect).
// docs/operations.md describes the routes.
//
// The package knows the broker only through Options (handlers to mount,
// the password check, the authorizer, readiness), so it has no *Server.
package httpapi
