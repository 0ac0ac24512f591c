package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/security"
)

// SaslAuthenticate: v0-2
//
// Carries one token of the mechanism SaslHandshake v1 chose. The answer
// carries the server's token; once the exchange completes, the
// connection's principal is User:<name> and, with
// connections.max.reauth.ms, SessionLifetimeMs says when the client must
// re-authenticate (v1+). A failure is SASL_AUTHENTICATION_FAILED with one
// fixed message naming only the mechanism, answered after
// connection.failed.authentication.delay.ms, and the connection is closed.
// Outside an authentication (no SASL on the listener, or already
// authenticated) the answer is ILLEGAL_SASL_STATE, as Kafka's.
//
// Version notes:
//   - v1: SessionLifetimeMs (KIP-368).
//   - v2: flexible.
func init() { regKey(kmsg.SASLAuthenticate, 0, 2, (*Server).handleSaslAuthenticate) }

func (s *Server) handleSaslAuthenticate(r *request) {
	req := r.kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	a := r.c.auth
	if a == nil || !a.Exchanging() {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		msg := "SaslAuthenticate outside a SASL authentication"
		resp.ErrorMessage = &msg
		r.reply(resp)
		return
	}
	tok, done, err := r.c.authToken(req.SASLAuthBytes)
	if err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		msg := security.AuthFailedMessage(a.Mechanism())
		resp.ErrorMessage = &msg
		r.c.authFailed(r, result{resp: resp}, err)
		return
	}
	if tok == nil {
		tok = []byte{}
	}
	resp.SASLAuthBytes = tok
	if done {
		resp.SessionLifetimeMillis = r.c.sessionLifetime()
	}
	r.reply(resp)
}
