package server

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/security"
)

// A connection's authentication: on a SASL listener, its
// security.Session (Kafka's SaslServerAuthenticator: the handshake, the
// mechanism's tokens, re-authentication, which requests are served
// before) driven by the connection and the SASL handlers; on an SSL
// listener, the principal of a verified client certificate. What stays
// here is the connection's side: the SASL server of each mechanism (PLAIN
// users, the SCRAM credentials of the metadata store), the principal, and
// a failure answered after connection.failed.authentication.delay.ms with
// the connection closed, the reason going to the broker's log only.

// sessionSettings are a listener's settings a SASL session follows.
func sessionSettings(set *config.ListenerSettings) security.SessionSettings {
	return security.SessionSettings{Mechanisms: set.Mechanisms, Reauth: set.Reauth, MaxReceive: set.MaxReceive}
}

// authenticated reports whether requests other than the SASL ones may be
// served.
func (c *conn) authenticated() bool {
	return c.auth == nil || c.auth.Authenticated()
}

// maxFrame is the largest frame the connection reads now: until a SASL
// connection authenticated, sasl.server.max.receive.size.
func (c *conn) maxFrame() int32 {
	if c.auth != nil && !c.authenticated() {
		return min(c.s.cfg.SocketRequestMaxBytes, c.auth.MaxReceive())
	}
	return c.s.cfg.SocketRequestMaxBytes
}

// admit decides whether a parsed request may be served on this connection
// now; a non-empty reason closes the connection.
func (c *conn) admit(key int16) string {
	if c.auth == nil {
		return ""
	}
	return c.auth.Admit(key, c.s.clock.Now())
}

// startHandshake handles SaslHandshake (also the start of a
// re-authentication). It returns the response and, on failure, the error
// to log; the caller closes the connection after a failure.
func (c *conn) startHandshake(version int16, mechanism string) (*kmsg.SASLHandshakeResponse, error) {
	if c.auth == nil {
		resp := kmsg.NewPtrSASLHandshakeResponse()
		resp.Version = version
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, nil
	}
	set := c.l.sec.Settings()
	return c.auth.Handshake(version, mechanism, c.l.name, sessionSettings(set), func(mechanism string) security.Server {
		if mechanism == security.Plain {
			users := set.PlainUsers
			return &security.PlainServer{Password: func(u string) (string, bool) { p, ok := users[u]; return p, ok }}
		}
		return &security.ScramServer{Mechanism: mechanism, Secret: c.s.scramSecret,
			Lookup: func(u string) (*security.ScramCredential, bool, error) { return c.s.scramCredential(u, mechanism) }}
	})
}

// authToken runs one token through the mechanism. It returns the answer
// and whether the exchange completed; an error is the failure (to log),
// after which the connection closes.
func (c *conn) authToken(token []byte) (resp []byte, done bool, err error) {
	if c.auth == nil {
		return nil, false, errors.New("SASL token outside an authentication")
	}
	resp, principal, err := c.auth.Token(token, c.s.clock.Now())
	if err != nil || principal == "" {
		return resp, false, err
	}
	c.setPrincipal(principal)
	c.s.metrics.Authentications.WithLabelValues(c.l.name, c.auth.Mechanism(), "success").Inc()
	return resp, true, nil
}

// sessionLifetime is SaslAuthenticate's SessionLifetimeMs after success.
func (c *conn) sessionLifetime() int64 { return c.auth.Lifetime(c.s.clock.Now()) }

// authFailed logs and counts a failed authentication, stops reading, and
// completes r with res after the failure delay; the writer then closes
// the connection.
func (c *conn) authFailed(r *request, res result, err error) {
	mech := ""
	delay := c.l.sec.Settings().FailDelay
	if c.auth != nil {
		mech = c.auth.Mechanism()
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
	tc.SetDeadline(time.Now().Add(timeout)) // a socket deadline: the kernel's timer, on real time
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
