package security

import (
	"bytes"
	"crypto/subtle"
	"errors"
)

// SASL mechanism names.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// Mechanisms lists the mechanisms kvlog serves.
var Mechanisms = []string{Plain, ScramSHA256, ScramSHA512}

// KnownMechanism reports whether kvlog serves mechanism m.
func KnownMechanism(m string) bool {
	for _, k := range Mechanisms {
		if k == m {
			return true
		}
	}
	return false
}

// ErrAuthFailed is the one error a failed exchange reports to the caller
// (errors.Is); the client learns nothing more.
var ErrAuthFailed = errors.New("authentication failed")

// AuthError is a failed exchange: Reason is for the broker's log only.
type AuthError struct {
	User   string // the user the client named, if it got that far
	Reason string
}

func (e *AuthError) Error() string { return "authentication failed: " + e.Reason }
func (e *AuthError) Is(target error) bool {
	return target == ErrAuthFailed
}

func fail(user, reason string) error { return &AuthError{User: user, Reason: reason} }

// Server is the server side of one SASL exchange.
type Server interface {
	// Next takes the client's next token and returns the server's answer
	// and whether the exchange completed successfully. An error ends the
	// exchange as failed.
	Next(token []byte) (resp []byte, done bool, err error)
	// User is the authenticated user once Next reported done.
	User() string
}

// PlainServer is RFC 4616 PLAIN: one message
// [authzid] NUL authcid NUL passwd. As in Kafka, authzid must be empty or
// the user name itself, and neither user nor password may be empty.
type PlainServer struct {
	// Password returns the user's password, false for an unknown user.
	Password func(user string) (string, bool)
	user     string
	done     bool
}

// Next implements Server.
func (s *PlainServer) Next(token []byte) ([]byte, bool, error) {
	if s.done || s.user != "" {
		return nil, false, fail(s.user, "PLAIN takes one message")
	}
	parts := bytes.Split(token, []byte{0})
	if len(parts) != 3 {
		return nil, false, fail("", "PLAIN message is not authzid NUL user NUL password")
	}
	authz, user, pw := string(parts[0]), string(parts[1]), parts[2]
	if user == "" {
		return nil, false, fail("", "PLAIN: empty user name")
	}
	if len(pw) == 0 {
		return nil, false, fail(user, "PLAIN: empty password")
	}
	if authz != "" && authz != user {
		return nil, false, fail(user, "PLAIN: authorization id differs from the user name")
	}
	want, ok := s.Password(user)
	// Compare even for unknown users so both cases take the same time.
	if !ok {
		want = "\x00unknown user\x00"
	}
	match := subtle.ConstantTimeCompare([]byte(want), pw) == 1
	if !ok {
		return nil, false, fail(user, "PLAIN: unknown user")
	}
	if !match {
		return nil, false, fail(user, "PLAIN: wrong password")
	}
	s.user, s.done = user, true
	return []byte{}, true, nil
}

// User implements Server.
func (s *PlainServer) User() string { return s.user }
