package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// exchange runs a franz-go client mechanism against a server.
func exchange(t *testing.T, m sasl.Mechanism, srv Server) error {
	t.Helper()
	sess, tok, err := m.Authenticate(context.Background(), "broker")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		resp, done, err := srv.Next(tok)
		if err != nil {
			return err
		}
		cdone, next, cerr := sess.Challenge(resp)
		if cerr != nil {
			return cerr
		}
		if done {
			if !cdone {
				t.Fatalf("server done, client not")
			}
			return nil
		}
		tok = next
	}
	t.Fatal("exchange did not finish")
	return nil
}

func TestScramAgainstFranzGo(t *testing.T) {
	for _, mech := range []string{ScramSHA256, ScramSHA512} {
		cred, err := NewScramCredentialFromPassword(mech, "s3cret,=", 4096)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := ParseScramCredential(cred.String())
		if err != nil {
			t.Fatal(err)
		}
		lookup := func(u string) (*ScramCredential, bool, error) {
			if u == "al,i=ce" {
				return stored, true, nil
			}
			return nil, false, nil
		}
		newServer := func() *ScramServer { return &ScramServer{Mechanism: mech, Lookup: lookup, Secret: []byte("k")} }
		client := func(user, pass string) sasl.Mechanism {
			a := scram.Auth{User: user, Pass: pass}
			if mech == ScramSHA256 {
				return a.AsSha256Mechanism()
			}
			return a.AsSha512Mechanism()
		}
		srv := newServer()
		if err := exchange(t, client("al,i=ce", "s3cret,="), srv); err != nil {
			t.Fatalf("%s: good password: %v", mech, err)
		}
		if srv.User() != "al,i=ce" {
			t.Fatalf("user %q", srv.User())
		}
		for _, c := range []struct{ user, pass, reason string }{
			{"al,i=ce", "wrong", "wrong password"},
			{"bob", "s3cret,=", "unknown user"},
		} {
			err := exchange(t, client(c.user, c.pass), newServer())
			var ae *AuthError
			if !errors.Is(err, ErrAuthFailed) || !errors.As(err, &ae) || !strings.Contains(ae.Reason, c.reason) {
				t.Fatalf("%s %s/%s: got %v, want a failure for %s", mech, c.user, c.pass, err, c.reason)
			}
		}
	}
}

func TestPlainServer(t *testing.T) {
	users := map[string]string{"alice": "pw"}
	pw := func(u string) (string, bool) { p, ok := users[u]; return p, ok }
	if err := exchange(t, plain.Auth{User: "alice", Pass: "pw"}.AsMechanism(), &PlainServer{Password: pw}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"\x00alice\x00bad", "\x00bob\x00pw", "x\x00alice\x00pw", "alice\x00pw", "\x00\x00pw", "\x00alice\x00", "\x00alice\x00pw\x00"} {
		if _, _, err := (&PlainServer{Password: pw}).Next([]byte(tok)); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("%q: %v", tok, err)
		}
	}
	if _, done, err := (&PlainServer{Password: pw}).Next([]byte("alice\x00alice\x00pw")); err != nil || !done {
		t.Fatalf("authzid = user: %v", err)
	}
}

func TestPrincipalRules(t *testing.T) {
	dn := "CN=Kafka-Client,OU=Eng,O=Acme,C=US"
	for _, c := range []struct{ rules, want string }{
		{"DEFAULT", dn},
		{"", dn},
		{`RULE:^CN=(.*?),OU=(.*?),O=(.*?),C=(.*?)$/$1@$2/L,DEFAULT`, "kafka-client@eng"},
		{`RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,DEFAULT`, dn},
		{`RULE:^CN=([^,]*).*$/$1/U`, "KAFKA-CLIENT"},
		{`RULE:^.*[Cc][Nn]=([a-zA-Z0-9.-]*).*$/$1/L, DEFAULT`, "kafka-client"},
	} {
		pr, err := ParsePrincipalRules(c.rules)
		if err != nil {
			t.Fatalf("%q: %v", c.rules, err)
		}
		got, err := pr.Name(dn)
		if err != nil || got != c.want {
			t.Fatalf("%q: got %q, %v; want %q", c.rules, got, err, c.want)
		}
	}
	pr, _ := ParsePrincipalRules(`RULE:^CN=admin.*$/admin/`)
	if _, err := pr.Name(dn); err == nil {
		t.Fatal("no rule applies: want an error")
	}
	for _, bad := range []string{"RULE:[", "NOPE", "RULE:a/b/X"} {
		if _, err := ParsePrincipalRules(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestJAAS(t *testing.T) {
	mods, err := ParseJAASEntry(`org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="adm;in" user_admin="adm;in" user_alice='al"ice';`)
	if err != nil {
		t.Fatal(err)
	}
	users := PlainUsers(mods)
	if users["admin"] != "adm;in" || users["alice"] != `al"ice` || len(users) != 2 {
		t.Fatalf("users %v", users)
	}
	if u, p, ok := ClientCredentials(mods, Plain); !ok || u != "admin" || p != "adm;in" {
		t.Fatalf("client %q %q", u, p)
	}
	file := `// broker
KafkaServer {
   org.apache.kafka.common.security.scram.ScramLoginModule required
   username="broker" password="b-secret";
   org.apache.kafka.common.security.plain.PlainLoginModule required
   user_bob="b0b"; /* more */
};
Client { x required; };`
	secs, err := ParseJAASFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if u, p, ok := ClientCredentials(secs["KafkaServer"], ScramSHA512); !ok || u != "broker" || p != "b-secret" {
		t.Fatalf("scram client %q %q", u, p)
	}
	if PlainUsers(secs["KafkaServer"])["bob"] != "b0b" || len(secs["Client"]) != 1 {
		t.Fatalf("sections %+v", secs)
	}
	for _, bad := range []string{`x`, `x required user="a"`, `x maybe;`, `x required a=;`, `"x" required;`} {
		if _, err := ParseJAASEntry(bad); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestEncryptedPKCS8(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	enc, err := EncryptPKCS8(der, []byte("pw"), []byte("saltsalt"), make([]byte, 16), 2048)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decryptPKCS8(enc, []byte("pw"))
	if err != nil || string(got) != string(der) {
		t.Fatalf("decrypt: %v", err)
	}
	// A wrong password fails the padding check, or (1 in ~256) passes it
	// and yields bytes that are not a key.
	if bad, err := decryptPKCS8(enc, []byte("nope")); err == nil {
		if _, perr := x509.ParsePKCS8PrivateKey(bad); perr == nil {
			t.Fatal("wrong password decrypted to a key")
		}
	}
	// Through a key store: the encrypted key with its certificate.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "b"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	store := append(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})...)
	path := filepath.Join(t.TempDir(), "ks.pem")
	os.WriteFile(path, store, 0o600)
	lookup := func(pw string) Lookup {
		return func(key string) (string, bool) {
			switch key {
			case "ssl.keystore.location":
				return path, true
			case "ssl.key.password":
				return pw, pw != ""
			}
			return "", false
		}
	}
	if _, err := ServerTLS(lookup("pw")); err != nil {
		t.Fatalf("encrypted key store: %v", err)
	}
	for _, pw := range []string{"", "nope"} {
		if _, err := ServerTLS(lookup(pw)); err == nil {
			t.Fatalf("key store opened with password %q", pw)
		}
	}
}

func TestProtocolsAndSuites(t *testing.T) {
	if _, _, err := ProtocolRange("TLSv1.1,TLSv1.3"); err == nil {
		t.Fatal("gap accepted")
	}
	if min, max, err := ProtocolRange("TLSv1.3"); err != nil || min != max {
		t.Fatal(min, max, err)
	}
	if _, err := CipherSuites("TLS_RSA_WITH_RC4_128_SHA"); err == nil {
		t.Fatal("RC4 accepted")
	}
	if s, err := CipherSuites("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256"); err != nil || len(s) != 1 {
		t.Fatal(s, err)
	}
}

// TestCheckScramPassword: the stored credential accepts its password and
// nothing else, for both mechanisms.
func TestCheckScramPassword(t *testing.T) {
	for _, mech := range []string{ScramSHA256, ScramSHA512} {
		c, err := NewScramCredentialFromPassword(mech, "s3cret", 4096)
		if err != nil {
			t.Fatal(err)
		}
		if !CheckScramPassword(mech, c, "s3cret") {
			t.Errorf("%s: the right password is refused", mech)
		}
		for _, wrong := range []string{"", "s3cre", "s3cret ", "S3cret"} {
			if CheckScramPassword(mech, c, wrong) {
				t.Errorf("%s: password %q accepted", mech, wrong)
			}
		}
	}
	if CheckScramPassword(ScramSHA256, nil, "x") {
		t.Error("a missing credential accepted a password")
	}
}
