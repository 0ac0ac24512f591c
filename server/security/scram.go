package security

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SCRAM (RFC 5802) as Kafka serves it: no channel binding (the GS2 header
// is "n,," or "n,a=<user>,"), user names with =2C and =3D escapes,
// extensions after the client nonce (only tokenauth, which Kafka uses for
// delegation tokens and kvlog refuses), and credentials stored as
// salt, StoredKey, ServerKey and iterations.

// Iteration bounds of Kafka: a credential needs at least 4096 iterations
// and AlterUserScramCredentials accepts at most 16384.
const (
	ScramMinIterations = 4096
	ScramMaxIterations = 16384
)

// ScramMechanism ids on the wire (DescribeUserScramCredentials,
// AlterUserScramCredentials).
const (
	ScramTypeUnknown int8 = 0
	ScramTypeSHA256  int8 = 1
	ScramTypeSHA512  int8 = 2
)

// ScramName is the mechanism name of a wire id, "" if unknown.
func ScramName(t int8) string {
	switch t {
	case ScramTypeSHA256:
		return ScramSHA256
	case ScramTypeSHA512:
		return ScramSHA512
	}
	return ""
}

// ScramType is the wire id of a mechanism name.
func ScramType(name string) int8 {
	switch name {
	case ScramSHA256:
		return ScramTypeSHA256
	case ScramSHA512:
		return ScramTypeSHA512
	}
	return ScramTypeUnknown
}

func scramHash(mech string) (func() hash.Hash, error) {
	switch mech {
	case ScramSHA256:
		return sha256.New, nil
	case ScramSHA512:
		return sha512.New, nil
	}
	return nil, fmt.Errorf("unknown SCRAM mechanism %q", mech)
}

// ScramCredential is what the broker stores for a user and mechanism.
type ScramCredential struct {
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
	Iterations int
}

// String is Kafka's stored form:
// salt=<b64>,stored_key=<b64>,server_key=<b64>,iterations=<n>.
func (c *ScramCredential) String() string {
	b := base64.StdEncoding
	return "salt=" + b.EncodeToString(c.Salt) + ",stored_key=" + b.EncodeToString(c.StoredKey) +
		",server_key=" + b.EncodeToString(c.ServerKey) + ",iterations=" + strconv.Itoa(c.Iterations)
}

// ParseScramCredential reads the stored form.
func ParseScramCredential(s string) (*ScramCredential, error) {
	c := &ScramCredential{}
	seen := 0
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("scram credential: %q is not key=value", kv)
		}
		var err error
		switch k {
		case "salt":
			c.Salt, err = base64.StdEncoding.DecodeString(v)
		case "stored_key":
			c.StoredKey, err = base64.StdEncoding.DecodeString(v)
		case "server_key":
			c.ServerKey, err = base64.StdEncoding.DecodeString(v)
		case "iterations":
			c.Iterations, err = strconv.Atoi(v)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("scram credential: %s: %w", k, err)
		}
		seen++
	}
	if seen != 4 || len(c.Salt) == 0 || len(c.StoredKey) == 0 || len(c.ServerKey) == 0 || c.Iterations <= 0 {
		return nil, errors.New("scram credential: incomplete")
	}
	return c, nil
}

// SaltPassword is SCRAM's Hi(password, salt, iterations).
func SaltPassword(mech, password string, salt []byte, iterations int) ([]byte, error) {
	h, err := scramHash(mech)
	if err != nil {
		return nil, err
	}
	return pbkdf2.Key(h, password, salt, iterations, h().Size())
}

// NewScramCredential derives the stored credential from a salted password
// (what AlterUserScramCredentials carries).
func NewScramCredential(mech string, salt, saltedPassword []byte, iterations int) (*ScramCredential, error) {
	h, err := scramHash(mech)
	if err != nil {
		return nil, err
	}
	clientKey := hmacOf(h, saltedPassword, []byte("Client Key"))
	stored := h()
	stored.Write(clientKey)
	return &ScramCredential{
		Salt:       append([]byte(nil), salt...),
		StoredKey:  stored.Sum(nil),
		ServerKey:  hmacOf(h, saltedPassword, []byte("Server Key")),
		Iterations: iterations,
	}, nil
}

// NewScramCredentialFromPassword salts password with a random salt.
func NewScramCredentialFromPassword(mech, password string, iterations int) (*ScramCredential, error) {
	salt := make([]byte, 32)
	rand.Read(salt)
	sp, err := SaltPassword(mech, password, salt, iterations)
	if err != nil {
		return nil, err
	}
	return NewScramCredential(mech, salt, sp, iterations)
}

func hmacOf(h func() hash.Hash, key, msg []byte) []byte {
	m := hmac.New(h, key)
	m.Write(msg)
	return m.Sum(nil)
}

// ScramServer is the server side of one SCRAM exchange.
type ScramServer struct {
	Mechanism string
	// Lookup returns the user's credential for Mechanism; ok false for an
	// unknown user.
	Lookup func(user string) (cred *ScramCredential, ok bool, err error)
	// Secret keys the made-up credential of unknown users (so they get a
	// salt that is stable and a failure only at the proof, like a wrong
	// password).
	Secret []byte

	state       int // 0: client-first expected, 1: client-final expected, 2: done
	user        string
	known       bool
	gs2         string
	cred        *ScramCredential
	nonce       string
	clientFirst string // client-first-message-bare
	serverFirst string
}

// Next implements Server.
func (s *ScramServer) Next(token []byte) ([]byte, bool, error) {
	switch s.state {
	case 0:
		resp, err := s.first(string(token))
		if err != nil {
			s.state = 2
			return nil, false, err
		}
		s.state = 1
		return resp, false, nil
	case 1:
		s.state = 2
		resp, err := s.final(string(token))
		if err != nil {
			return nil, false, err
		}
		return resp, true, nil
	}
	return nil, false, fail(s.user, "SCRAM exchange already finished")
}

// User implements Server.
func (s *ScramServer) User() string { return s.user }

// first handles client-first-message: gs2-header client-first-message-bare.
func (s *ScramServer) first(msg string) ([]byte, error) {
	var authz string
	switch {
	case strings.HasPrefix(msg, "n,,"):
		s.gs2 = "n,,"
	case strings.HasPrefix(msg, "n,a="):
		end := strings.IndexByte(msg[4:], ',')
		if end < 0 {
			return nil, fail("", "SCRAM: malformed GS2 header")
		}
		authz = msg[4 : 4+end]
		s.gs2 = msg[:4+end+1]
	case strings.HasPrefix(msg, "y,") || strings.HasPrefix(msg, "p="):
		return nil, fail("", "SCRAM: channel binding is not supported")
	default:
		return nil, fail("", "SCRAM: malformed GS2 header")
	}
	bare := msg[len(s.gs2):]
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, fail("", "SCRAM: malformed client-first message")
	}
	user, ok := scramUnescape(attrs[0][2:])
	if !ok || user == "" {
		return nil, fail("", "SCRAM: bad user name")
	}
	s.user = user
	if authz != "" {
		if a, ok := scramUnescape(authz); !ok || a != user {
			return nil, fail(user, "SCRAM: authorization id differs from the user name")
		}
	}
	cnonce := attrs[1][2:]
	if cnonce == "" || !printableNoComma(cnonce) {
		return nil, fail(user, "SCRAM: bad client nonce")
	}
	for _, ext := range attrs[2:] {
		k, v, ok := strings.Cut(ext, "=")
		if !ok || k == "" {
			return nil, fail(user, "SCRAM: malformed extension")
		}
		if k == "tokenauth" && strings.EqualFold(v, "true") {
			return nil, fail(user, "SCRAM: delegation tokens are not supported")
		}
	}
	cred, known, err := s.Lookup(user)
	if err != nil {
		return nil, fail(user, "SCRAM: credential lookup: "+err.Error())
	}
	if !known || cred == nil {
		cred = s.fakeCredential(user)
	}
	s.cred, s.known = cred, known
	snonce := make([]byte, 24)
	rand.Read(snonce)
	s.nonce = cnonce + base64.RawStdEncoding.EncodeToString(snonce)
	s.clientFirst = bare
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(cred.Salt) + ",i=" + strconv.Itoa(cred.Iterations)
	return []byte(s.serverFirst), nil
}

// fakeCredential is an unknown user's made-up credential.
func (s *ScramServer) fakeCredential(user string) *ScramCredential {
	h, _ := scramHash(s.Mechanism)
	salt := hmacOf(h, s.Secret, []byte("salt:"+user))[:16]
	key := hmacOf(h, s.Secret, []byte("key:"+user))
	return &ScramCredential{Salt: salt, StoredKey: key, ServerKey: key, Iterations: ScramMinIterations}
}

// final handles client-final-message: c=..,r=..[,ext],p=...
func (s *ScramServer) final(msg string) ([]byte, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return nil, fail(s.user, "SCRAM: client-final message has no proof")
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, fail(s.user, "SCRAM: malformed client-final message")
	}
	cb, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil || string(cb) != s.gs2 {
		return nil, fail(s.user, "SCRAM: channel binding does not match the GS2 header")
	}
	// The nonce must end with the one the server sent, as Kafka checks it:
	// librdkafka sends its client nonce followed by the whole combined
	// nonce (client nonce twice); the proof covers what the client sent.
	if !strings.HasSuffix(attrs[1][2:], s.nonce) {
		return nil, fail(s.user, "SCRAM: nonce mismatch")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	h, _ := scramHash(s.Mechanism)
	if err != nil || len(proof) != h().Size() {
		return nil, fail(s.user, "SCRAM: malformed proof")
	}
	authMsg := []byte(s.clientFirst + "," + s.serverFirst + "," + withoutProof)
	sig := hmacOf(h, s.cred.StoredKey, authMsg)
	clientKey := make([]byte, len(proof))
	for j := range proof {
		clientKey[j] = proof[j] ^ sig[j]
	}
	sum := h()
	sum.Write(clientKey)
	ok := subtle.ConstantTimeCompare(sum.Sum(nil), s.cred.StoredKey) == 1
	if !s.known {
		return nil, fail(s.user, "SCRAM: unknown user")
	}
	if !ok {
		return nil, fail(s.user, "SCRAM: wrong password")
	}
	serverSig := hmacOf(h, s.cred.ServerKey, authMsg)
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), nil
}

// scramUnescape decodes a saslname: =2C is ',' and =3D is '='; any other
// '=' is invalid.
func scramUnescape(s string) (string, bool) {
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

func printableNoComma(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}

// CheckScramPassword reports whether password is the one c was derived
// from (c stored for mech): the password is salted with c's salt and
// iteration count and the resulting StoredKey compared in constant time.
// It is how a service that holds only the stored credential (the HTTP
// listener's basic authentication) checks a plain password.
func CheckScramPassword(mech string, c *ScramCredential, password string) bool {
	if c == nil {
		return false
	}
	sp, err := SaltPassword(mech, password, c.Salt, c.Iterations)
	if err != nil {
		return false
	}
	derived, err := NewScramCredential(mech, c.Salt, sp, c.Iterations)
	if err != nil {
		return false
	}
	return hmac.Equal(derived.StoredKey, c.StoredKey)
}
