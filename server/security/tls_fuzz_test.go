package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

// selfSigned returns a PEM key and certificate for 127.0.0.1.
func selfSigned(t testing.TB) (keyPEM, certPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// clientHello is the first flight a TLS client sends to a listener.
func clientHello(t testing.TB) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		cl := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "broker"})
		_ = cl.Handshake()
		c.Close()
	}()
	buf := make([]byte, 64<<10)
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := s.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// FuzzTLSHandshake: whatever an unauthenticated peer sends as the start of
// a TLS handshake to a listener configured by ServerTLS (malformed or
// truncated client hellos, garbage, a plaintext Kafka request), the
// server side fails the handshake without panicking or hanging, and
// never completes it.
func FuzzTLSHandshake(f *testing.F) {
	key, cert := selfSigned(f)
	var cfgs []*tls.Config // without and with client certificates required
	for _, auth := range []string{"none", "required"} {
		cfg, err := ServerTLS(lookup(map[string]string{
			"ssl.keystore.key": key, "ssl.keystore.certificate.chain": cert, "ssl.client.auth": auth,
			"ssl.truststore.certificates": cert,
		}))
		if err != nil || cfg == nil {
			f.Fatalf("ServerTLS (ssl.client.auth=%s): %v", auth, err)
		}
		cfgs = append(cfgs, cfg)
	}
	hello := clientHello(f)
	f.Add(hello)
	for _, n := range []int{1, 5, 6, 9, 40, len(hello) / 2, len(hello) - 1} {
		if n < len(hello) {
			f.Add(hello[:n])
		}
	}
	f.Add([]byte{0, 0, 0, 20, 0, 18, 0, 3, 0, 0, 0, 1, 0, 4, 'k', 'c', 'a', 't'}) // a plaintext ApiVersions
	f.Add([]byte{0x16, 0x03, 0x01, 0xff, 0xff})                                   // a record header promising 64 KiB
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, cfg := range cfgs {
			handshakeFails(t, cfg, data)
		}
	})
}

// handshakeFails runs a server handshake against a peer that writes data
// and closes.
func handshakeFails(t *testing.T, cfg *tls.Config, data []byte) {
	c, s := net.Pipe()
	defer c.Close()
	go func() {
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		c.Write(data)
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv := tls.Server(s, cfg)
	defer srv.Close()
	if err := srv.HandshakeContext(ctx); err == nil {
		t.Fatal("a handshake completed with a peer that only sent bytes and closed")
	}
	if ctx.Err() != nil {
		t.Fatal("the handshake did not fail within 5 s of the peer closing")
	}
}
