package security

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A connection's SASL authentication, as Kafka's SaslServerAuthenticator
// does it: on a SASL listener a connection first sends SaslHandshake
// (optionally after ApiVersions), then the mechanism's tokens — in
// SaslAuthenticate requests after a SaslHandshake v1, or as bare
// size-prefixed frames after v0 (kafka-python, old clients) — and only
// once authenticated are other requests served. Any other request before
// that closes the connection. With connections.max.reauth.ms the session
// expires: the client re-authenticates with a new SaslHandshake on the
// same connection (KIP-368, the principal may not change) or the
// connection is closed at its next request after expiry. The broker
// answers a failure after connection.failed.authentication.delay.ms with
// one message that never says which part was wrong (AuthFailedMessage),
// and closes the connection.

type sessionState int

const (
	needHandshake sessionState = iota // ApiVersions or SaslHandshake expected
	inProgress                        // tokens expected (SaslAuthenticate, or raw after v0)
	authenticated
)

// SessionSettings are a SASL listener's settings a session follows, as
// they are at its handshake.
type SessionSettings struct {
	Mechanisms []string                 // sasl.enabled.mechanisms
	Reauth     map[string]time.Duration // connections.max.reauth.ms per mechanism
	MaxReceive int32                    // sasl.server.max.receive.size
}

// Session is one connection's SASL state. It is not safe for concurrent
// use: the connection's reader goroutine owns it (the SASL handlers run
// there, as every handler does).
type Session struct {
	state     sessionState
	raw       bool // handshake v0: tokens are bare frames
	mechanism string
	server    Server
	reauth    bool      // a re-authentication of an authenticated session
	expiry    time.Time // session end; zero: none
	settings  SessionSettings
	principal string // once authenticated
}

// NewSession starts the SASL state of a new connection on a listener
// with settings set.
func NewSession(set SessionSettings) *Session { return &Session{settings: set} }

// Authenticated reports whether requests other than the SASL ones may be
// served (during a re-authentication too).
func (s *Session) Authenticated() bool { return s.state == authenticated || s.reauth }

// MaxReceive is sasl.server.max.receive.size: the largest frame read
// before authentication.
func (s *Session) MaxReceive() int32 { return s.settings.MaxReceive }

// RawTokens reports whether the next frame is a bare token (after a
// SaslHandshake v0), not a request.
func (s *Session) RawTokens() bool { return s.raw && s.state == inProgress }

// Exchanging reports whether SaslAuthenticate requests are expected now
// (an authentication after a SaslHandshake v1 is in progress).
func (s *Session) Exchanging() bool { return s.state == inProgress && !s.raw }

// Mechanism is the mechanism of the last handshake.
func (s *Session) Mechanism() string { return s.mechanism }

// Admit decides whether a request with API key key may be served now; a
// non-empty reason closes the connection.
func (s *Session) Admit(key int16, now time.Time) string {
	switch s.state {
	case needHandshake:
		if key == kmsg.ApiVersions.Int16() || key == kmsg.SASLHandshake.Int16() {
			return ""
		}
		return fmt.Sprintf("%s before SASL authentication (only ApiVersions and SaslHandshake are served)", apiName(key))
	case inProgress:
		if key == kmsg.SASLAuthenticate.Int16() {
			return ""
		}
		if s.reauth && key != kmsg.SASLHandshake.Int16() && !s.expired(now) {
			return ""
		}
		return fmt.Sprintf("%s during SASL authentication (SaslAuthenticate expected)", apiName(key))
	default:
		if key != kmsg.SASLHandshake.Int16() && s.expired(now) {
			return "SASL session expired (connections.max.reauth.ms) without re-authentication"
		}
		return ""
	}
}

func apiName(key int16) string {
	if n := kmsg.NameForKey(key); n != "Unknown" {
		return n
	}
	return fmt.Sprintf("Unknown%d", key)
}

func (s *Session) expired(now time.Time) bool {
	return !s.expiry.IsZero() && now.After(s.expiry)
}

// Handshake handles SaslHandshake (also the start of a
// re-authentication) on listener with its current settings set; newServer
// makes the server side of the chosen mechanism. It returns the response
// and, on failure, the error to log; the caller closes the connection
// after a failure.
func (s *Session) Handshake(version int16, mechanism, listener string, set SessionSettings, newServer func(mechanism string) Server) (*kmsg.SASLHandshakeResponse, error) {
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.Version = version
	resp.SupportedMechanisms = append([]string(nil), set.Mechanisms...)
	switch s.state {
	case inProgress:
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, errors.New("SaslHandshake during an authentication in progress")
	case authenticated:
		if version < 1 {
			resp.ErrorCode = kerr.IllegalSaslState.Code
			return resp, errors.New("re-authentication needs SaslHandshake v1")
		}
		if mechanism != s.mechanism {
			resp.ErrorCode = kerr.IllegalSaslState.Code
			return resp, fmt.Errorf("re-authentication with mechanism %s after %s", mechanism, s.mechanism)
		}
		s.reauth = true
	}
	enabled := false
	for _, m := range set.Mechanisms {
		enabled = enabled || m == mechanism
	}
	if !enabled {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return resp, fmt.Errorf("SASL mechanism %q is not enabled on listener %s", mechanism, listener)
	}
	s.settings = set
	s.mechanism = mechanism
	s.raw = version == 0
	s.state = inProgress
	s.server = newServer(mechanism)
	return resp, nil
}

// Token runs one token through the mechanism at now. It returns the
// answer and, once the exchange completed, the authenticated principal
// (User:<name>); an error is the failure (to log), after which the
// connection closes.
func (s *Session) Token(token []byte, now time.Time) (resp []byte, principal string, err error) {
	if s.state != inProgress || s.server == nil {
		return nil, "", errors.New("SASL token outside an authentication")
	}
	resp, done, err := s.server.Next(token)
	if err != nil {
		s.server = nil
		return nil, "", err
	}
	if !done {
		return resp, "", nil
	}
	principal = UserType + ":" + s.server.User()
	if s.reauth && principal != s.principal {
		return nil, "", fmt.Errorf("re-authentication as %s changes the principal %s", principal, s.principal)
	}
	s.server = nil
	s.state, s.reauth, s.raw = authenticated, false, false
	s.principal = principal
	s.expiry = time.Time{}
	if d := s.settings.Reauth[s.mechanism]; d > 0 {
		s.expiry = now.Add(d)
	}
	return resp, principal, nil
}

// Lifetime is SaslAuthenticate's SessionLifetimeMs after success, at now.
func (s *Session) Lifetime(now time.Time) int64 {
	if s.expiry.IsZero() {
		return 0
	}
	return max(s.expiry.Sub(now).Milliseconds(), 1)
}

// AuthFailedMessage is what a client is told, whatever went wrong.
func AuthFailedMessage(mechanism string) string {
	return "Authentication failed during authentication due to invalid credentials with SASL mechanism " + mechanism
}
