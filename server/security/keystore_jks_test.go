package security

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
)

// jksFixture is a valid JKS key store (password "pw") holding one private
// key entry with a one-certificate chain, and the offset of the chain's
// count in it.
func jksFixture(t testing.TB) (data []byte, chainCountAt int) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ks := keystore.New()
	entry := keystore.PrivateKeyEntry{CreationTime: time.Unix(0, 0), PrivateKey: pk,
		CertificateChain: []keystore.Certificate{{Type: "X.509", Content: der}}}
	if err := ks.SetPrivateKeyEntry("broker", entry, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ks.Store(&buf, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	data = buf.Bytes()
	// magic, version, count, tag, alias "broker", creation time, key length + key
	at := 4 + 4 + 4 + 4 + 2 + len("broker") + 8
	at += 4 + int(binary.BigEndian.Uint32(data[at:]))
	return data, at
}

// TestJKSDeclaredLengthsBounded: a JKS file declaring lengths or counts
// larger than itself is refused with the field named, before the decoder
// allocates them (a chain count of 2³²−1 made it allocate ~160 GiB: a
// fatal out-of-memory that killed the broker at start or on a store
// reload).
func TestJKSDeclaredLengthsBounded(t *testing.T) {
	valid, chainAt := jksFixture(t)
	if _, err := javaKeyStore("JKS", valid, "pw", ""); err != nil {
		t.Fatalf("the valid fixture: %v", err)
	}
	patch := func(at int, v uint32) []byte {
		d := bytes.Clone(valid)
		binary.BigEndian.PutUint32(d[at:], v)
		return d
	}
	keyLenAt := 4 + 4 + 4 + 4 + 2 + len("broker") + 8
	certLenAt := chainAt + 4 + 2 + len("X.509")
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"chain count 2^32-1", patch(chainAt, 0xFFFFFFFF), "certificate chain length"},
		{"entry count 2^32-1", patch(8, 0xFFFFFFFF), "entry count"},
		{"private key length 2^32-1", patch(keyLenAt, 0xFFFFFFFF), "private key"},
		{"certificate length 2^31", patch(certLenAt, 1<<31), "certificate"},
		{"alias length past the end", append(bytes.Clone(valid[:16]), append([]byte{0xFF, 0xFF}, valid[18:]...)...), "alias"},
		{"truncated digest", valid[:len(valid)-5], "digest"},
		{"bad version", patch(4, 7), "version 7"},
		{"bad magic", patch(0, 0xCAFEBABE), "bad magic"},
	} {
		_, err := javaKeyStore("JKS", tc.data, "pw", "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
		if _, err := javaTrustStore("JKS", tc.data, "pw"); err == nil {
			t.Errorf("%s: the trust store loaded", tc.name)
		}
	}
}

// FuzzJKSStore: whatever a key or trust store file holds, loading it as
// JKS returns a key store or an error — no panic and no allocation beyond
// the file's size.
func FuzzJKSStore(f *testing.F) {
	valid, chainAt := jksFixture(f)
	f.Add(valid)
	f.Add(valid[:chainAt+4])
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = checkJKSBounds(data)
		_, _ = javaKeyStore("JKS", data, "pw", "")
		_, _ = javaTrustStore("JKS", data, "pw")
	})
}
