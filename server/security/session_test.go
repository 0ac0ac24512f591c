package security

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestSessionStates: a SASL session serves only ApiVersions and
// SaslHandshake before its handshake and SaslAuthenticate during the
// exchange; a mechanism the listener does not enable is refused;
// authenticated, every request is served until connections.max.reauth.ms
// passes, then only a new SaslHandshake; a re-authentication may not
// change the principal.
func TestSessionStates(t *testing.T) {
	users := map[string]string{"alice": "a-pw", "bob": "b-pw"}
	set := SessionSettings{Mechanisms: []string{Plain}, Reauth: map[string]time.Duration{Plain: time.Minute}, MaxReceive: 512}
	plain := func(string) Server {
		return &PlainServer{Password: func(u string) (string, bool) { p, ok := users[u]; return p, ok }}
	}
	now := time.Unix(1_700_000_000, 0)
	s := NewSession(set)
	if s.Authenticated() || s.MaxReceive() != 512 {
		t.Fatalf("a new session: authenticated %v, max receive %d", s.Authenticated(), s.MaxReceive())
	}
	for key, served := range map[kmsg.Key]bool{kmsg.ApiVersions: true, kmsg.SASLHandshake: true, kmsg.Metadata: false, kmsg.SASLAuthenticate: false} {
		if got := s.Admit(key.Int16(), now) == ""; got != served {
			t.Errorf("before the handshake, %v served: %v, want %v", key, got, served)
		}
	}
	if resp, err := s.Handshake(1, ScramSHA256, "SASL_PLAINTEXT", set, plain); err == nil || resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code {
		t.Fatalf("a mechanism not enabled: code %d, err %v", resp.ErrorCode, err)
	}
	if resp, err := s.Handshake(1, Plain, "SASL_PLAINTEXT", set, plain); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("handshake: code %d, err %v", resp.ErrorCode, err)
	}
	if !s.Exchanging() || s.RawTokens() || s.Admit(kmsg.Metadata.Int16(), now) == "" || s.Admit(kmsg.SASLAuthenticate.Int16(), now) != "" {
		t.Fatal("during the exchange only SaslAuthenticate is served")
	}
	if _, p, err := s.Token([]byte("\x00alice\x00a-pw"), now); err != nil || p != "User:alice" {
		t.Fatalf("token: principal %q, err %v", p, err)
	}
	if !s.Authenticated() || s.Lifetime(now) != time.Minute.Milliseconds() || s.Admit(kmsg.Metadata.Int16(), now) != "" {
		t.Fatalf("authenticated %v, lifetime %d", s.Authenticated(), s.Lifetime(now))
	}
	later := now.Add(time.Minute + time.Second)
	if s.Admit(kmsg.Metadata.Int16(), later) == "" || s.Admit(kmsg.SASLHandshake.Int16(), later) != "" {
		t.Fatal("after the session expired, only SaslHandshake is served")
	}
	if _, err := s.Handshake(1, Plain, "SASL_PLAINTEXT", set, plain); err != nil {
		t.Fatalf("re-authentication handshake: %v", err)
	}
	if s.Admit(kmsg.Metadata.Int16(), now) != "" {
		t.Fatal("requests are served during a re-authentication of a live session")
	}
	if _, _, err := s.Token([]byte("\x00bob\x00b-pw"), now); err == nil {
		t.Fatal("a re-authentication changed the principal")
	}
}
