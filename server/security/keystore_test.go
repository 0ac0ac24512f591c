package security

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/internal/testbroker"
)

func lookup(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestJavaKeyStores: PKCS12 and JKS key and trust stores made by keytool
// load (with ssl.keystore.type/ssl.truststore.type set, and recognised by
// their content when the type is unset, since Kafka's default type is JKS
// and kvlog's PEM): the broker's key with its chain leaf first, and the CA
// as the trust anchor the chain verifies against. A wrong or missing
// password, a second private key and an unknown type are refused with the
// key named.
func TestJavaKeyStores(t *testing.T) {
	keyStores, trustStores := testbroker.KeytoolStores(t)
	for _, typ := range []string{"PKCS12", "JKS"} {
		t.Run(typ, func(t *testing.T) {
			ks, ts := keyStores[typ], trustStores[typ]
			keyPass := ""
			if typ == "JKS" {
				keyPass = "key-pass"
			}
			for _, typed := range []bool{true, false} {
				cfg := map[string]string{"ssl.keystore.location": ks, "ssl.keystore.password": "store-pass", "ssl.key.password": keyPass,
					"ssl.truststore.location": ts, "ssl.truststore.password": "trust-pass"}
				if typed {
					cfg["ssl.keystore.type"], cfg["ssl.truststore.type"] = typ, typ
				}
				cert, err := KeyPair(lookup(cfg))
				if err != nil {
					t.Fatalf("type set %v: key store: %v", typed, err)
				}
				if cert.Leaf.Subject.CommonName != "localhost" || len(cert.Certificate) != 2 {
					t.Fatalf("type set %v: leaf %s, chain of %d, want localhost and its CA", typed, cert.Leaf.Subject, len(cert.Certificate))
				}
				pool, err := TrustPool(lookup(cfg))
				if err != nil {
					t.Fatalf("type set %v: trust store: %v", typed, err)
				}
				if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
					t.Fatalf("type set %v: the key store's certificate does not verify against the trust store: %v", typed, err)
				}
				if _, err := ServerTLS(lookup(cfg)); err != nil {
					t.Fatalf("type set %v: ServerTLS: %v", typed, err)
				}
			}
			base := map[string]string{"ssl.keystore.type": typ, "ssl.keystore.location": ks, "ssl.keystore.password": "store-pass", "ssl.key.password": keyPass}
			for name, tc := range map[string]struct {
				change map[string]string
				want   string
			}{
				"wrong store password": {map[string]string{"ssl.keystore.password": "nope"}, "key store (" + typ + ")"},
				"no store password":    {map[string]string{"ssl.keystore.password": ""}, "ssl.keystore.password is not set"},
				"unknown type":         {map[string]string{"ssl.keystore.type": "BCFKS"}, "ssl.keystore.type BCFKS is not supported (PEM, PKCS12 and JKS are)"},
				"read as PEM":          {map[string]string{"ssl.keystore.type": "PEM"}, "no private key found"},
			} {
				cfg := map[string]string{}
				for k, v := range base {
					cfg[k] = v
				}
				for k, v := range tc.change {
					cfg[k] = v
				}
				if _, err := KeyPair(lookup(cfg)); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
				}
			}
			if typ == "JKS" {
				cfg := map[string]string{"ssl.keystore.type": typ, "ssl.keystore.location": ks, "ssl.keystore.password": "store-pass", "ssl.key.password": "wrong"}
				if _, err := KeyPair(lookup(cfg)); err == nil || !strings.Contains(err.Error(), `private key "broker"`) {
					t.Errorf("wrong key password: %v", err)
				}
			}
			if _, err := TrustPool(lookup(map[string]string{"ssl.truststore.type": typ, "ssl.truststore.location": ts})); err == nil ||
				!strings.Contains(err.Error(), "ssl.truststore.password is not set") {
				t.Errorf("trust store without a password: %v", err)
			}
			if _, err := TrustPool(lookup(map[string]string{"ssl.truststore.type": typ, "ssl.truststore.certificates": "x"})); err == nil ||
				!strings.Contains(err.Error(), "PEM only") {
				t.Errorf("inline trust store of type %s: %v", typ, err)
			}
		})
	}
	t.Run("two private keys", func(t *testing.T) {
		ks := filepath.Join(t.TempDir(), "two.jks")
		data, err := os.ReadFile(keyStores["JKS"])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ks, data, 0o600); err != nil {
			t.Fatal(err)
		}
		testbroker.Keytool(t, filepath.Dir(ks), "-genkeypair", "-alias", "other", "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=other",
			"-validity", "2", "-storetype", "JKS", "-keystore", ks, "-storepass", "store-pass", "-keypass", "key-pass")
		_, err = KeyPair(lookup(map[string]string{"ssl.keystore.type": "JKS", "ssl.keystore.location": ks, "ssl.keystore.password": "store-pass", "ssl.key.password": "key-pass"}))
		if err == nil || !strings.Contains(err.Error(), "kvlog needs exactly one") {
			t.Fatalf("a JKS store with two keys: %v", err)
		}
	})
}
