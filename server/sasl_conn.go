package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/security"
)

// A connection's authentication, as Kafka's SaslServerAuthenticator
// does it: on a SASL listener a connection first sends SaslHandshake
// (optionally after ApiVersions), then the mechanism's tokens — in
// SaslAuthenticate requests after a SaslHandshake v1, or as bare
// size-prefixed frames after v0 (kafka-python, old clients) — and only
// once authenticated are other requests served. Any other request before
// that closes the connection. A failure is answered after
// connection.failed.authentication.delay.ms with one message that never
// says which part was wrong, and the connection is closed; the reason goes
// to the broker's log only. With connections.max.reauth.ms the session
// expires: the client re-authenticates with a new SaslHandshake on the
// same connection (KIP-368, the principal may not change) or the
// connection is closed at its next request after expiry.
//
// The state is owned by the connection's reader goroutine: the SASL
// handlers run there, as every handler does.

type authState int

const (
	authNeedHandshake authState = iota // ApiVersions or SaslHandshake expected
	authInProgress                     // tokens expected (SaslAuthenticate, or raw after v0)
	authDone
)

type connAuth struct {
	state     authState
	raw       bool // handshake v0: tokens are bare frames
	mechanism string
	server    security.Server
	reauth    bool      // a re-authentication of an authenticated session
	expiry    time.Time // session end; zero: none
	settings  *config.ListenerSettings
	clientV1  bool // the client sent SaslAuthenticate v1+ (knows session lifetimes)
	failDelay time.Duration
}

// authenticated reports whether requests other than the SASL ones may be
// served.
func (c *conn) authenticated() bool {
	return c.auth == nil || c.auth.state == authDone || c.auth.reauth
}

// maxFrame is the largest frame the connection reads now: until a SASL
// connection authenticated, sasl.server.max.receive.size.
func (c *conn) maxFrame() int32 {
	if c.auth != nil && !c.authenticated() {
		return min(c.s.cfg.SocketRequestMaxBytes, c.auth.settings.MaxReceive)
	}
	return c.s.cfg.SocketRequestMaxBytes
}

// admit decides whether a parsed request may be served on this connection
// now; a non-empty reason closes the connection.
func (c *conn) admit(key int16) string {
	a := c.auth
	if a == nil {
		return ""
	}
	switch a.state {
	case authNeedHandshake:
		if key == kmsg.ApiVersions.Int16() || key == kmsg.SASLHandshake.Int16() {
			return ""
		}
		return fmt.Sprintf("%s before SASL authentication (only ApiVersions and SaslHandshake are served)", apiName(key))
	case authInProgress:
		if key == kmsg.SASLAuthenticate.Int16() {
			return ""
		}
		if a.reauth && key != kmsg.SASLHandshake.Int16() && !c.sessionExpired() {
			return ""
		}
		return fmt.Sprintf("%s during SASL authentication (SaslAuthenticate expected)", apiName(key))
	default:
		if key != kmsg.SASLHandshake.Int16() && c.sessionExpired() {
			return "SASL session expired (connections.max.reauth.ms) without re-authentication"
		}
		return ""
	}
}

func (c *conn) sessionExpired() bool {
	return !c.auth.expiry.IsZero() && time.Now().After(c.auth.expiry)
}

// startHandshake handles SaslHandshake (also the start of a
// re-authentication). It returns the response and, on failure, the error
// to log; the caller closes the connection after a failure.
func (c *conn) startHandshake(version int16, mechanism string) (*kmsg.SASLHandshakeResponse, error) {
	resp := kmsg.NewPtrSASLHandshakeResponse()
	resp.Version = version
	a := c.auth
	if a == nil {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, nil
	}
	set := c.l.sec.Settings()
	resp.SupportedMechanisms = append([]string(nil), set.Mechanisms...)
	switch a.state {
	case authInProgress:
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, errors.New("SaslHandshake during an authentication in progress")
	case authDone:
		if version < 1 {
			resp.ErrorCode = kerr.IllegalSaslState.Code
			return resp, errors.New("re-authentication needs SaslHandshake v1")
		}
		if mechanism != a.mechanism {
			resp.ErrorCode = kerr.IllegalSaslState.Code
			return resp, fmt.Errorf("re-authentication with mechanism %s after %s", mechanism, a.mechanism)
		}
		a.reauth = true
	}
	enabled := false
	for _, m := range set.Mechanisms {
		enabled = enabled || m == mechanism
	}
	if !enabled {
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return resp, fmt.Errorf("SASL mechanism %q is not enabled on listener %s", mechanism, c.l.name)
	}
	a.settings, a.failDelay = set, set.FailDelay
	a.mechanism = mechanism
	a.raw = version == 0
	a.state = authInProgress
	switch mechanism {
	case security.Plain:
		users := set.PlainUsers
		a.server = &security.PlainServer{Password: func(u string) (string, bool) { p, ok := users[u]; return p, ok }}
	default:
		a.server = &security.ScramServer{Mechanism: mechanism, Secret: c.s.scramSecret,
			Lookup: func(u string) (*security.ScramCredential, bool, error) { return c.s.scramCredential(u, mechanism) }}
	}
	return resp, nil
}

// authToken runs one token through the mechanism. It returns the answer
// and whether the exchange completed; an error is the failure (to log),
// after which the connection closes.
func (c *conn) authToken(token []byte) (resp []byte, done bool, err error) {
	a := c.auth
	if a == nil || a.state != authInProgress || a.server == nil {
		return nil, false, errors.New("SASL token outside an authentication")
	}
	resp, done, err = a.server.Next(token)
	if err != nil {
		a.server = nil
		return nil, false, err
	}
	if !done {
		return resp, false, nil
	}
	principal := security.UserType + ":" + a.server.User()
	if a.reauth && principal != c.principal() {
		return nil, false, fmt.Errorf("re-authentication as %s changes the principal %s", principal, c.principal())
	}
	a.server = nil
	a.state, a.reauth, a.raw = authDone, false, false
	a.expiry = time.Time{}
	if d := a.settings.Reauth[a.mechanism]; d > 0 {
		a.expiry = time.Now().Add(d)
	}
	c.setPrincipal(principal)
	c.s.metrics.Authentications.WithLabelValues(c.l.name, a.mechanism, "success").Inc()
	return resp, true, nil
}

// sessionLifetime is SaslAuthenticate's SessionLifetimeMs after success.
func (c *conn) sessionLifetime() int64 {
	if c.auth.expiry.IsZero() {
		return 0
	}
	return max(time.Until(c.auth.expiry).Milliseconds(), 1)
}

// authFailed logs and counts a failed authentication, stops reading, and
// completes r with res after the failure delay; the writer then closes
// the connection.
func (c *conn) authFailed(r *request, res result, err error) {
	mech := ""
	delay := c.l.sec.Settings().FailDelay
	if c.auth != nil {
		mech = c.auth.mechanism
	}
	var ae *security.AuthError
	user := ""
	if errors.As(err, &ae) {
		user = ae.User
	}
	c.s.logger.Info("SASL authentication failed; closing connection", "listener", c.l.name, "remote", c.remote,
		"mechanism", mech, "user", user, "reason", err)
	c.s.metrics.Authentications.WithLabelValues(c.l.name, mech, "failure").Inc()
	c.stopReading()
	res.closeAfter = true
	clock.AfterFunc(c.s.clock, delay, func() { r.finish(res) })
}

// authFailedMessage is what a client is told, whatever went wrong.
func authFailedMessage(mechanism string) string {
	return "Authentication failed during authentication due to invalid credentials with SASL mechanism " + mechanism
}

// handleRawToken serves a bare SASL token (after SaslHandshake v0): the
// answer is a bare size-prefixed frame; a failure closes the connection
// without an answer (after the delay).
func (c *conn) handleRawToken(frame []byte, mem int64) bool {
	r := c.newRequest(requestHeader{key: kmsg.SASLAuthenticate.Int16()}, nil, mem)
	c.w.Queue(r)
	resp, _, err := c.authToken(frame)
	if err != nil {
		c.authFailed(r, result{skip: true}, err)
		return true
	}
	if resp == nil {
		resp = []byte{}
	}
	r.finish(result{raw: resp})
	return true
}

// principal is the connection's principal: User:ANONYMOUS, the SASL user
// or the mapped certificate subject.
func (c *conn) principal() string {
	if p := c.princ.Load(); p != nil {
		return *p
	}
	return security.Anonymous
}

func (c *conn) setPrincipal(p string) { c.princ.Store(&p) }

// tlsHandshake completes the TLS handshake of an SSL or SASL_SSL
// connection within connections.max.idle.ms (at most 10 s) and takes the
// principal of a verified client certificate (SSL listeners; on SASL_SSL
// the SASL user is the principal).
func (c *conn) tlsHandshake(tc *tls.Conn) error {
	timeout := min(c.s.cfg.ConnectionsMaxIdle, 10*time.Second)
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		return err
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	if c.auth == nil && len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
		dn := security.SubjectDN(st.PeerCertificates[0])
		name, err := c.l.sec.Settings().Rules.Name(dn)
		if err != nil {
			return err
		}
		c.setPrincipal(security.UserType + ":" + name)
	}
	return nil
}
