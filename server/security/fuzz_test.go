package security

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The SASL mechanisms parse whatever an unauthenticated client sends:
// malformed tokens must fail as ErrAuthFailed, never panic, and never
// authenticate.

func FuzzPlainServer(f *testing.F) {
	for _, s := range []string{"\x00alice\x00pw", "alice\x00alice\x00pw", "\x00\x00", "", "\x00alice\x00pw\x00x", "\xff\x00\xfe\x00\xfd"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, tok []byte) {
		srv := &PlainServer{Password: func(u string) (string, bool) { return "pw", u == "alice" }}
		_, done, err := srv.Next(tok)
		if err != nil && !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("error %v is not an authentication failure", err)
		}
		if done && srv.User() != "alice" {
			t.Fatalf("authenticated as %q", srv.User())
		}
		if _, _, err := srv.Next(tok); err == nil {
			t.Fatal("a second PLAIN message was accepted")
		}
	})
}

func FuzzScramServer(f *testing.F) {
	cred, err := NewScramCredentialFromPassword(ScramSHA256, "pw", ScramMinIterations)
	if err != nil {
		f.Fatal(err)
	}
	// A genuine exchange as seeds, plus malformed variants.
	sess, first, _ := scram.Auth{User: "alice", Pass: "pw"}.AsSha256Mechanism().Authenticate(context.Background(), "h")
	srv := &ScramServer{Mechanism: ScramSHA256, Secret: []byte("s"), Lookup: func(string) (*ScramCredential, bool, error) { return cred, true, nil }}
	sf, _, _ := srv.Next(first)
	_, final, _ := sess.Challenge(sf)
	f.Add(first, final)
	f.Add([]byte("n,,n=alice,r=abc"), []byte("c=biws,r=abc,p=AAAA"))
	f.Add([]byte("y,,n=alice,r=abc"), []byte(""))
	f.Add([]byte("n,a=bob,n=alice,r=abc,ext=1"), []byte("c=bixx,r=,p="))
	f.Add([]byte("n,,n=al=2Cice=3D,r=abc,tokenauth=true"), []byte("c=biws,r=abcd,e=x,p=====,"))
	f.Add([]byte("n,,n=a=ZZ,r=\x7f"), []byte(",p="))
	f.Fuzz(func(t *testing.T, first, final []byte) {
		s := &ScramServer{Mechanism: ScramSHA256, Secret: []byte("s"), Lookup: func(u string) (*ScramCredential, bool, error) {
			return cred, u == "alice", nil
		}}
		resp, _, err := s.Next(first)
		if err != nil {
			if !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("first: %v is not an authentication failure", err)
			}
			return
		}
		if len(resp) == 0 {
			t.Fatal("empty server-first message")
		}
		_, done, err := s.Next(final)
		if err != nil && !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("final: %v is not an authentication failure", err)
		}
		// A fuzzed final message cannot carry a valid proof for the
		// random server nonce of this run.
		if done {
			t.Fatalf("authenticated with first %q final %q", first, final)
		}
		if _, _, err := s.Next(final); err == nil {
			t.Fatal("a message after the exchange was accepted")
		}
	})
}

func FuzzJAAS(f *testing.F) {
	f.Add(`org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="b" user_a="b";`)
	f.Add("KafkaServer { x required a=\"b\\\"\"; }; /* c */ // d")
	f.Fuzz(func(t *testing.T, s string) {
		ParseJAASEntry(s)
		ParseJAASFile(s)
	})
}

func FuzzPrincipalRules(f *testing.F) {
	f.Add(`RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L,DEFAULT`, "CN=a,OU=b")
	f.Add(`RULE:\/x\//y/U, RULE:(/$9$10/`, "x")
	f.Fuzz(func(t *testing.T, rules, dn string) {
		if pr, err := ParsePrincipalRules(rules); err == nil {
			pr.Name(dn)
		}
	})
}
