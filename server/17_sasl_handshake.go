package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SaslHandshake: v0-1
//
// Chooses the SASL mechanism of a connection on a SASL listener and lists
// the enabled ones (sasl.enabled.mechanisms). v0 means the mechanism's
// tokens follow as bare size-prefixed frames; v1 that they come in
// SaslAuthenticate requests. On an authenticated connection it starts a
// re-authentication (KIP-368; v1 only, same mechanism). A mechanism not
// enabled is answered UNSUPPORTED_SASL_MECHANISM and the connection is
// closed after connection.failed.authentication.delay.ms. On a listener
// without SASL the answer is ILLEGAL_SASL_STATE, as Kafka's. The
// connection state machine is in sasl_conn.go.
func init() { regKey(kmsg.SASLHandshake, 0, 1, (*Server).handleSaslHandshake) }

func (s *Server) handleSaslHandshake(r *request) {
	req := r.kreq.(*kmsg.SASLHandshakeRequest)
	resp, err := r.c.startHandshake(req.Version, req.Mechanism)
	if err != nil {
		r.c.authFailed(r, result{resp: resp}, err)
		return
	}
	r.reply(resp)
}
