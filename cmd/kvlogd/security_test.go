package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// secureBroker is a kvlogd with one listener of each security protocol:
// PLAINTEXT (the harness's, also used to create SCRAM users), SSL with
// required client certificates (mTLS), SASL_SSL (SCRAM-SHA-512,
// SCRAM-SHA-256 and PLAIN) and SASL_PLAINTEXT (PLAIN), with certificates
// from a CA made for the test.
type secureBroker struct {
	*testbroker.Broker
	ca                       *testbroker.CA
	server, clientCert       *testbroker.Issued
	ssl, saslSSL, saslPlain  string // listener addresses
	plainUser, plainPassword string
	scramUser, scramPassword string
}

func startSecureBroker(t *testing.T, extra ...string) *secureBroker {
	t.Helper()
	return startSecureBrokerWith(t, func(*secureBroker) []string { return extra })
}

// startSecureBrokerWith is startSecureBroker with more properties made
// from the broker's certificates.
func startSecureBrokerWith(t *testing.T, more func(sb *secureBroker) []string) *secureBroker {
	t.Helper()
	ca := testbroker.NewCA(t, "kvlog test CA")
	sb := &secureBroker{
		ca:         ca,
		server:     ca.Issue(t, pkix.Name{CommonName: "localhost", Organization: []string{"kvlog"}}),
		clientCert: ca.Issue(t, pkix.Name{CommonName: "Client-One", OrganizationalUnit: []string{"Eng"}, Organization: []string{"Acme"}}),
		ssl:        testbroker.FreeAddr(t),
		saslSSL:    testbroker.FreeAddr(t),
		saslPlain:  testbroker.FreeAddr(t),
		plainUser:  "alice", plainPassword: "alice-secret",
		scramUser: "bob", scramPassword: "bob-secret",
	}
	addr := testbroker.FreeAddr(t)
	jaas := fmt.Sprintf(`org.apache.kafka.common.security.plain.PlainLoginModule required user_%s="%s";`, sb.plainUser, sb.plainPassword)
	props := append([]string{
		"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
		"ssl.keystore.location=" + sb.server.File,
		"ssl.truststore.location=" + ca.File,
		"listener.name.ssl.ssl.client.auth=required",
		`listener.name.ssl.ssl.principal.mapping.rules=RULE:^CN=([^,]*),.*$/$1/L,DEFAULT`,
		"listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
		"listener.name.sasl_ssl.plain.sasl.jaas.config=" + jaas,
		"listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN",
		"listener.name.sasl_plaintext.plain.sasl.jaas.config=" + jaas,
		"connection.failed.authentication.delay.ms=50",
	}, more(sb)...)
	sb.Broker = testbroker.Start(t, testbroker.Options{Race: true, Addr: addr,
		Listeners: fmt.Sprintf("PLAINTEXT://%s,SSL://%s,SASL_SSL://%s,SASL_PLAINTEXT://%s", addr, sb.ssl, sb.saslSSL, sb.saslPlain),
		Props:     props})
	// The SCRAM user, created on the PLAINTEXT listener.
	adm := sb.Admin(t)
	res, err := adm.AlterUserSCRAMs(testbroker.Context(t, 30*time.Second), nil, []kadm.UpsertSCRAM{
		{User: sb.scramUser, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: sb.scramPassword},
		{User: sb.scramUser, Mechanism: kadm.ScramSha256, Iterations: 8192, Password: sb.scramPassword},
	})
	if err != nil || res.AllFailed() || res.Error() != nil {
		t.Fatalf("creating the SCRAM user: %v %v", err, res.Error())
	}
	return sb
}

func (sb *secureBroker) client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DialTimeout(5 * time.Second), kgo.AllowAutoTopicCreation(),
		kgo.RequestRetries(0), kgo.RetryTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// roundTrip produces n records to topic through cl and reads them back.
func roundTrip(t *testing.T, cl *kgo.Client, topic string, n int) {
	t.Helper()
	ctx := testbroker.Context(t, 60*time.Second)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint("v", i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	cl.AddConsumeTopics(topic)
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}})
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume %s: %d of %d records: %v", topic, got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("consume %s: %v", topic, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if want := fmt.Sprint("v", r.Offset); string(r.Value) != want {
				t.Fatalf("offset %d: value %q, want %q", r.Offset, r.Value, want)
			}
			got++
		})
	}
}

func scramMech(user, pass string, sha512 bool) sasl.Mechanism {
	a := scram.Auth{User: user, Pass: pass}
	if sha512 {
		return a.AsSha512Mechanism()
	}
	return a.AsSha256Mechanism()
}

// TestSecurityClients: franz-go over SASL_SSL with SCRAM-SHA-512,
// SCRAM-SHA-256 and PLAIN, over SSL with a client certificate, and over
// SASL_PLAINTEXT with PLAIN produces and consumes; a wrong password, an
// unknown user, a certificate from another CA, a client not trusting the
// broker and a mechanism the listener does not enable all fail with the
// client's ordinary errors; and the broker keeps serving.
func TestSecurityClients(t *testing.T) {
	sb := startSecureBroker(t)
	tlsCfg := sb.ca.TLS(t, nil)

	t.Run("SASL_SSL SCRAM-SHA-512", func(t *testing.T) {
		roundTrip(t, sb.client(t, sb.saslSSL, kgo.DialTLSConfig(tlsCfg), kgo.SASL(scramMech(sb.scramUser, sb.scramPassword, true))), "scram512", 200)
	})
	t.Run("SASL_SSL SCRAM-SHA-256", func(t *testing.T) {
		roundTrip(t, sb.client(t, sb.saslSSL, kgo.DialTLSConfig(tlsCfg), kgo.SASL(scramMech(sb.scramUser, sb.scramPassword, false))), "scram256", 20)
	})
	t.Run("SASL_SSL PLAIN", func(t *testing.T) {
		roundTrip(t, sb.client(t, sb.saslSSL, kgo.DialTLSConfig(tlsCfg), kgo.SASL(plain.Auth{User: sb.plainUser, Pass: sb.plainPassword}.AsMechanism())), "plainssl", 20)
	})
	t.Run("SASL_PLAINTEXT PLAIN", func(t *testing.T) {
		roundTrip(t, sb.client(t, sb.saslPlain, kgo.SASL(plain.Auth{User: sb.plainUser, Pass: sb.plainPassword}.AsMechanism())), "plaintext", 20)
	})
	t.Run("SSL mTLS", func(t *testing.T) {
		// Several fetches larger than the TLS copy buffer.
		cl := sb.client(t, sb.ssl, kgo.DialTLSConfig(sb.ca.TLS(t, sb.clientCert)), kgo.ProducerBatchMaxBytes(1<<20))
		ctx := testbroker.Context(t, 60*time.Second)
		big := make([]byte, 100<<10)
		for i := range big {
			big[i] = byte(i * 7)
		}
		for i := range 40 {
			big[0] = byte(i)
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "mtls", Value: append([]byte(nil), big...)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{"mtls": {0: kgo.NewOffset().AtStart()}})
		for got := 0; got < 40; {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("consumed %d of 40", got)
			}
			fs.EachError(func(_ string, _ int32, err error) { t.Fatal(err) })
			fs.EachRecord(func(r *kgo.Record) {
				big[0] = byte(r.Offset)
				if string(r.Value) != string(big) {
					t.Fatalf("offset %d: value differs", r.Offset)
				}
				got++
			})
		}
	})

	metadata := func(cl *kgo.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
		return err
	}
	failures := []struct {
		name string
		cl   func(t *testing.T) *kgo.Client
		want func(error) bool
	}{
		{"wrong password", func(t *testing.T) *kgo.Client {
			return sb.client(t, sb.saslSSL, kgo.DialTLSConfig(tlsCfg), kgo.SASL(scramMech(sb.scramUser, "nope", true)))
		}, func(err error) bool { return errors.Is(err, kerr.SaslAuthenticationFailed) }},
		{"unknown user", func(t *testing.T) *kgo.Client {
			return sb.client(t, sb.saslSSL, kgo.DialTLSConfig(tlsCfg), kgo.SASL(scramMech("mallory", sb.scramPassword, true)))
		}, func(err error) bool { return errors.Is(err, kerr.SaslAuthenticationFailed) }},
		{"wrong PLAIN password", func(t *testing.T) *kgo.Client {
			return sb.client(t, sb.saslPlain, kgo.SASL(plain.Auth{User: sb.plainUser, Pass: "x"}.AsMechanism()))
		}, func(err error) bool { return errors.Is(err, kerr.SaslAuthenticationFailed) }},
		{"wrong mechanism", func(t *testing.T) *kgo.Client {
			return sb.client(t, sb.saslPlain, kgo.SASL(scramMech(sb.scramUser, sb.scramPassword, true)))
		}, func(err error) bool { return errors.Is(err, kerr.UnsupportedSaslMechanism) }},
		{"untrusted client certificate", func(t *testing.T) *kgo.Client {
			other := testbroker.NewCA(t, "another CA")
			cfg := sb.ca.TLS(t, nil)
			is := other.Issue(t, pkix.Name{CommonName: "intruder"})
			pair, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
			return sb.client(t, sb.ssl, kgo.DialTLSConfig(cfg))
		}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "certificate") }},
		{"no client certificate", func(t *testing.T) *kgo.Client {
			return sb.client(t, sb.ssl, kgo.DialTLSConfig(sb.ca.TLS(t, nil)))
		}, func(err error) bool { return err != nil && strings.Contains(err.Error(), "certificate") }},
		{"broker not trusted", func(t *testing.T) *kgo.Client {
			return sb.client(t, sb.saslSSL, kgo.DialTLSConfig(testbroker.NewCA(t, "unrelated").TLS(t, nil)),
				kgo.SASL(scramMech(sb.scramUser, sb.scramPassword, true)))
		}, func(err error) bool {
			var ua x509UnknownAuthority
			return errors.As(err, &ua)
		}},
		{"plaintext client on TLS", func(t *testing.T) *kgo.Client {
			return sb.client(t, sb.saslSSL, kgo.DialTimeout(2*time.Second))
		}, func(err error) bool { return err != nil }},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			err := metadata(f.cl(t))
			if !f.want(err) {
				t.Fatalf("got %v (%T)", err, err)
			}
		})
	}
	// Still healthy: the good clients work again, on every listener.
	roundTrip(t, sb.client(t, sb.saslSSL, kgo.DialTLSConfig(tlsCfg), kgo.SASL(scramMech(sb.scramUser, sb.scramPassword, true))), "after", 5)
	if err := metadata(sb.client(t, sb.ssl, kgo.DialTLSConfig(sb.ca.TLS(t, sb.clientCert)))); err != nil {
		t.Fatal(err)
	}
	m := metricsText(t, sb.Broker)
	for _, want := range []string{
		`kvlog_sasl_authentications_total{listener="SASL_SSL",mechanism="SCRAM-SHA-512",result="failure"} 2`,
		`kvlog_sasl_authentications_total{listener="SASL_PLAINTEXT",mechanism="PLAIN",result="failure"} 1`,
		`kvlog_tls_handshake_failures_total{listener="SSL"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// x509UnknownAuthority matches the client's certificate verification
// error.
type x509UnknownAuthority = *tls.CertificateVerificationError

// TestSaslBeforeAuthentication: on a SASL listener, a request other than
// ApiVersions and SaslHandshake before authentication closes the
// connection without an answer; ApiVersions is answered; an oversized
// frame before authentication (sasl.server.max.receive.size) closes it.
func TestSaslBeforeAuthentication(t *testing.T) {
	sb := startSecureBroker(t, "listener.name.sasl_plaintext.sasl.server.max.receive.size=1024")
	dial := func() net.Conn {
		nc, err := net.DialTimeout("tcp", sb.saslPlain, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		return nc
	}
	// ApiVersions is served.
	nc := dial()
	if _, err := rawRequest(nc, kmsg.NewPtrApiVersionsRequest(), 1); err != nil {
		t.Fatalf("ApiVersions before authentication: %v", err)
	}
	// Metadata is not: the connection closes.
	if _, err := rawRequest(nc, kmsg.NewPtrMetadataRequest(), 2); err == nil {
		t.Fatal("Metadata answered before authentication")
	}
	// A large frame closes it too.
	nc = dial()
	frame := make([]byte, 4+2048)
	binary.BigEndian.PutUint32(frame, 2048)
	nc.Write(frame)
	if _, err := io.ReadFull(nc, make([]byte, 4)); err == nil {
		t.Fatal("an oversized frame before authentication was answered")
	}
	// SaslHandshake v0 then PLAIN as a bare token (kafka-python's way).
	nc = dial()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version = 0
	hs.Mechanism = "PLAIN"
	resp, err := rawRequest(nc, hs, 3)
	if err != nil || resp.(*kmsg.SASLHandshakeResponse).ErrorCode != 0 {
		t.Fatalf("SaslHandshake v0: %v %+v", err, resp)
	}
	tok := []byte("\x00" + sb.plainUser + "\x00" + sb.plainPassword)
	nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(tok))))
	nc.Write(tok)
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil || binary.BigEndian.Uint32(size[:]) != 0 {
		t.Fatalf("raw PLAIN answer: %v %v", err, size)
	}
	if _, err := rawRequest(nc, kmsg.NewPtrMetadataRequest(), 4); err != nil {
		t.Fatalf("Metadata after raw PLAIN: %v", err)
	}
}

// rawRequest writes req with correlation id corr on nc and reads its
// response.
func rawRequest(nc net.Conn, req kmsg.Request, corr int32) (kmsg.Response, error) {
	switch req.Key() {
	case kmsg.ApiVersions.Int16():
		req.SetVersion(3)
	case kmsg.Metadata.Int16():
		req.SetVersion(4)
	}
	b := []byte{0, 0, 0, 0}
	b = kbin.AppendInt16(b, req.Key())
	b = kbin.AppendInt16(b, req.GetVersion())
	b = kbin.AppendInt32(b, corr)
	id := "raw"
	b = kbin.AppendNullableString(b, &id)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	if _, err := nc.Write(b); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		return nil, err
	}
	resp := req.ResponseKind()
	body = body[4:]
	if resp.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		body = body[1:]
	}
	return resp, resp.ReadFrom(body)
}

// TestSecurityCertificateReload: setting the SSL listener's key store
// location again with AlterConfigs (the same path, new contents) makes new
// connections see the new certificate without a restart; a key store that
// cannot be read is refused with INVALID_CONFIG and the old one stays.
func TestSecurityCertificateReload(t *testing.T) {
	sb := startSecureBroker(t)
	ks := filepath.Join(t.TempDir(), "ks.pem")
	copyFile(t, sb.server.File, ks)
	alter := func(value string) error {
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		r := kmsg.NewIncrementalAlterConfigsRequestResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeBroker, "0"
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = "listener.name.ssl.ssl.keystore.location", kmsg.StringPtr(value)
		r.Configs = append(r.Configs, c)
		req.Resources = append(req.Resources, r)
		resp, err := req.RequestWith(testbroker.Context(t, 30*time.Second), sb.Client(t))
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	peerSerial := func() string {
		cfg := sb.ca.TLS(t, sb.clientCert)
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", sb.ssl, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if err := alter(ks); err != nil {
		t.Fatal(err)
	}
	before := peerSerial()
	next := sb.ca.Issue(t, pkix.Name{CommonName: "localhost", Organization: []string{"kvlog", "renewed"}})
	copyFile(t, next.File, ks)
	if err := alter(ks); err != nil {
		t.Fatal(err)
	}
	after := peerSerial()
	if before == after {
		t.Fatalf("still serving certificate %s after the reload", before)
	}
	if err := alter(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, kerr.InvalidConfig) {
		t.Fatalf("a missing key store: %v, want INVALID_CONFIG", err)
	}
	if got := peerSerial(); got != after {
		t.Fatalf("serving %s after a refused change, want %s", got, after)
	}
	// Sensitive keys are not revealed.
	dc := kmsg.NewPtrDescribeConfigsRequest()
	dr := kmsg.NewDescribeConfigsRequestResource()
	dr.ResourceType, dr.ResourceName = kmsg.ConfigResourceTypeBroker, "0"
	dr.ConfigNames = []string{"listener.name.sasl_ssl.plain.sasl.jaas.config", "listener.name.ssl.ssl.keystore.location"}
	dc.Resources = append(dc.Resources, dr)
	resp, err := dc.RequestWith(testbroker.Context(t, 30*time.Second), sb.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Resources[0].Configs {
		switch c.Name {
		case "listener.name.sasl_ssl.plain.sasl.jaas.config":
			if !c.IsSensitive || c.Value != nil {
				t.Errorf("jaas config described as %v sensitive=%v", c.Value, c.IsSensitive)
			}
		case "listener.name.ssl.ssl.keystore.location":
			if c.Value == nil || *c.Value != ks {
				t.Errorf("keystore location described as %v", c.Value)
			}
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// metricsText fetches the broker's /metrics.
func metricsText(t *testing.T, b *testbroker.Broker) string {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestSecurityKcat: kcat (librdkafka) produces and consumes over SASL_SSL
// with SCRAM-SHA-512 and over SSL with a client certificate; a wrong
// password fails with librdkafka's authentication error.
func TestSecurityKcat(t *testing.T) {
	kcat := testbroker.RequireKcat(t, "the kcat security suite")
	sb := startSecureBroker(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	os.WriteFile(certFile, sb.clientCert.CertPEM, 0o600)
	os.WriteFile(keyFile, sb.clientCert.KeyPEM, 0o600)
	scram := func(pw string) []string {
		return []string{"-b", sb.saslSSL, "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
			"-X", "sasl.username=" + sb.scramUser, "-X", "sasl.password=" + pw, "-X", "ssl.ca.location=" + sb.ca.File}
	}
	mtls := []string{"-b", sb.ssl, "-X", "security.protocol=SSL", "-X", "ssl.ca.location=" + sb.ca.File,
		"-X", "ssl.certificate.location=" + certFile, "-X", "ssl.key.location=" + keyFile}
	for name, args := range map[string][]string{"SASL_SSL SCRAM-SHA-512": scram(sb.scramPassword), "SSL mTLS": mtls} {
		t.Run(name, func(t *testing.T) {
			topic := strings.NewReplacer(" ", "-", "_", "-").Replace(name)
			var in strings.Builder
			for i := range 50 {
				fmt.Fprintf(&in, "k%d:v%d\n", i, i)
			}
			testbroker.RunTool(t, 60*time.Second, []byte(in.String()), kcat, append(args, "-P", "-t", topic, "-K", ":")...)
			out := testbroker.RunTool(t, 60*time.Second, nil, kcat, append(args, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k=%s\n")...)
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 50 || lines[0] != "k0=v0" || lines[49] != "k49=v49" {
				t.Fatalf("consumed %d lines: %q", len(lines), out)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, append(scram("wrong"), "-L", "-m", "10")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Authentication failed") {
		t.Fatalf("kcat with a wrong password: %v\n%s", err, out)
	}
	if err := ping(sb.Addr); err != nil {
		t.Fatalf("broker unhealthy after the failures: %v", err)
	}
}

const kafkaPythonSecurityScript = `
import sys, kafka
mode, addr, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
opts = dict(bootstrap_servers=[addr], request_timeout_ms=20000, api_version_auto_timeout_ms=20000)
if mode == "scram":
    opts.update(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=sys.argv[5], sasl_plain_password=sys.argv[6], ssl_cafile=sys.argv[7])
elif mode == "plain":
    opts.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_plain_username=sys.argv[5], sasl_plain_password=sys.argv[6])
elif mode == "ssl":
    opts.update(security_protocol="SSL", ssl_cafile=sys.argv[5], ssl_certfile=sys.argv[6], ssl_keyfile=sys.argv[7])
try:
    p = kafka.KafkaProducer(**opts)
except Exception as e:
    print("ERROR", type(e).__name__, e)
    sys.exit(3)
for i in range(n):
    p.send(topic, key=b"k%d" % i, value=b"v%d" % i)
p.flush(30)
p.close()
c = kafka.KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=30000, **opts)
got = []
for m in c:
    got.append(m.value.decode())
    if len(got) >= n:
        break
c.close()
print("CONSUMED", len(got), got[0] if got else "", got[-1] if got else "")
`

// TestSecurityKafkaPython: Debian's kafka-python (2.0.x: SaslHandshake v0,
// tokens as bare frames) over SASL_SSL with SCRAM-SHA-512, SASL_PLAINTEXT
// with PLAIN and SSL with a client certificate; a wrong password fails.
func TestSecurityKafkaPython(t *testing.T) {
	script := testbroker.RequireKafkaPython(t, "the kafka-python security suite", kafkaPythonSecurityScript)
	sb := startSecureBroker(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	os.WriteFile(certFile, sb.clientCert.CertPEM, 0o600)
	os.WriteFile(keyFile, sb.clientCert.KeyPEM, 0o600)
	for name, args := range map[string][]string{
		"scram": {"scram", sb.saslSSL, "py-scram", "30", sb.scramUser, sb.scramPassword, sb.ca.File},
		"plain": {"plain", sb.saslPlain, "py-plain", "30", sb.plainUser, sb.plainPassword},
		"ssl":   {"ssl", sb.ssl, "py-ssl", "30", sb.ca.File, certFile, keyFile},
	} {
		t.Run(name, func(t *testing.T) {
			out := testbroker.RunTool(t, 120*time.Second, nil, testbroker.PythonWithKafka, append([]string{script}, args...)...)
			if !strings.Contains(string(out), "CONSUMED 30 v0 v29") {
				t.Fatalf("kafka-python %s: %s", name, out)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testbroker.PythonWithKafka, script, "scram", sb.saslSSL, "py-bad", "1", sb.scramUser, "wrong", sb.ca.File).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "ERROR") {
		t.Fatalf("kafka-python with a wrong password: %v\n%s", err, out)
	}
	if err := ping(sb.Addr); err != nil {
		t.Fatalf("broker unhealthy after the failures: %v", err)
	}
}

// ping asks the broker for metadata on its PLAINTEXT listener.
func ping(addr string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

// saslPlainRaw authenticates nc with SaslHandshake v1 and one
// SaslAuthenticate v1 PLAIN token, returning the response.
func saslPlainRaw(t *testing.T, nc net.Conn, user, pass string, corr int32) (*kmsg.SASLAuthenticateResponse, error) {
	t.Helper()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version = 1
	hs.Mechanism = "PLAIN"
	resp, err := rawRequest(nc, hs, corr)
	if err != nil {
		return nil, err
	}
	if code := resp.(*kmsg.SASLHandshakeResponse).ErrorCode; code != 0 {
		return nil, kerr.ErrorForCode(code)
	}
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version = 1
	au.SASLAuthBytes = []byte("\x00" + user + "\x00" + pass)
	resp, err = rawRequest(nc, au, corr+1)
	if err != nil {
		return nil, err
	}
	return resp.(*kmsg.SASLAuthenticateResponse), nil
}

// TestSaslReauthentication (KIP-368): with connections.max.reauth.ms the
// session lifetime is announced; a connection that does not
// re-authenticate is closed at its first request after expiry; one that
// re-authenticates (same principal) keeps serving, and re-authenticating
// as another user closes it; franz-go re-authenticates by itself and keeps
// producing.
func TestSaslReauthentication(t *testing.T) {
	sb := startSecureBroker(t, "listener.name.sasl_plaintext.connections.max.reauth.ms=1500",
		`listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret" user_carol="carol-secret";`)
	dial := func() net.Conn {
		nc, err := net.DialTimeout("tcp", sb.saslPlain, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(30 * time.Second))
		return nc
	}
	// Without re-authentication: closed after expiry.
	nc := dial()
	ar, err := saslPlainRaw(t, nc, sb.plainUser, sb.plainPassword, 1)
	if err != nil || ar.ErrorCode != 0 {
		t.Fatalf("authenticate: %v %+v", err, ar)
	}
	if ar.SessionLifetimeMillis <= 0 || ar.SessionLifetimeMillis > 1500 {
		t.Fatalf("session lifetime %d ms, want (0, 1500]", ar.SessionLifetimeMillis)
	}
	served := 0
	for corr := int32(10); ; corr++ {
		if _, err := rawRequest(nc, kmsg.NewPtrApiVersionsRequest(), corr); err != nil {
			break
		}
		served++
		if corr > 10+300 {
			t.Fatal("the connection outlived its session")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if served == 0 {
		t.Fatal("nothing served before the session expired")
	}
	// Re-authenticating keeps the connection; as another user closes it.
	nc = dial()
	if ar, err := saslPlainRaw(t, nc, sb.plainUser, sb.plainPassword, 1); err != nil || ar.ErrorCode != 0 {
		t.Fatalf("authenticate: %v %+v", err, ar)
	}
	if ar, err := saslPlainRaw(t, nc, sb.plainUser, sb.plainPassword, 3); err != nil || ar.ErrorCode != 0 || ar.SessionLifetimeMillis <= 0 {
		t.Fatalf("re-authenticate: %v %+v", err, ar)
	}
	if _, err := rawRequest(nc, kmsg.NewPtrMetadataRequest(), 5); err != nil {
		t.Fatalf("after re-authentication: %v", err)
	}
	ar, err = saslPlainRaw(t, nc, "carol", "carol-secret", 6)
	if err == nil && ar.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("re-authentication as another user: %+v", ar)
	}
	if _, err := rawRequest(nc, kmsg.NewPtrMetadataRequest(), 8); err == nil {
		t.Fatal("served after a re-authentication that changed the principal")
	}
	// franz-go re-authenticates on its own: produce across several
	// session lifetimes until the broker counted a re-authentication.
	cl := sb.client(t, sb.saslPlain, kgo.SASL(plain.Auth{User: sb.plainUser, Pass: sb.plainPassword}.AsMechanism()))
	ctx := testbroker.Context(t, 60*time.Second)
	success := func() string {
		for _, line := range strings.Split(metricsText(t, sb.Broker), "\n") {
			if v, ok := strings.CutPrefix(line, `kvlog_sasl_authentications_total{listener="SASL_PLAINTEXT",mechanism="PLAIN",result="success"} `); ok {
				return v
			}
		}
		return ""
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "reauth", Value: []byte("0")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	start := success()
	for i := 1; success() == start; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "reauth", Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatalf("produce %d across re-authentications: %v", i, err)
		}
		if i > 400 {
			t.Fatal("franz-go never re-authenticated")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestSecurityJavaKeyStores: key and trust stores made by Java's keytool,
// as a Kafka operator has them, serve TLS unchanged: an SSL listener with
// a PKCS12 key store and, for client certificates, a JKS trust store
// (ssl.*.type set), and one with a JKS key store whose type is not set
// (Kafka's default type is JKS; kvlog recognises the file) and whose key
// has its own ssl.key.password. franz-go, trusting keytool's CA, produces
// and consumes through both, presenting the PKCS12 store's certificate
// where client certificates are required.
func TestSecurityJavaKeyStores(t *testing.T) {
	ks, ts := testbroker.KeytoolStores(t)
	caPEM, err := os.ReadFile(filepath.Join(filepath.Dir(ks["PKCS12"]), "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	p12, err := os.ReadFile(ks["PKCS12"])
	if err != nil {
		t.Fatal(err)
	}
	key, leaf, cas, err := pkcs12.DecodeChain(p12, "store-pass")
	if err != nil {
		t.Fatal(err)
	}
	clientCert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}
	for _, c := range cas {
		clientCert.Certificate = append(clientCert.Certificate, c.Raw)
	}
	addr, p12Addr, jksAddr := testbroker.FreeAddr(t), testbroker.FreeAddr(t), testbroker.FreeAddr(t)
	b := testbroker.Start(t, testbroker.Options{Race: true, Addr: addr,
		Listeners: fmt.Sprintf("PLAINTEXT://%s,P12://%s,JKS://%s", addr, p12Addr, jksAddr),
		Props: []string{
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,P12:SSL,JKS:SSL",
			"listener.name.p12.ssl.keystore.type=PKCS12",
			"listener.name.p12.ssl.keystore.location=" + ks["PKCS12"],
			"listener.name.p12.ssl.keystore.password=store-pass",
			"listener.name.p12.ssl.truststore.type=JKS",
			"listener.name.p12.ssl.truststore.location=" + ts["JKS"],
			"listener.name.p12.ssl.truststore.password=trust-pass",
			"listener.name.p12.ssl.client.auth=required",
			"listener.name.jks.ssl.keystore.location=" + ks["JKS"],
			"listener.name.jks.ssl.keystore.password=store-pass",
			"listener.name.jks.ssl.key.password=key-pass",
		}})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("keytool's ca.crt holds no certificate")
	}
	sb := &secureBroker{Broker: b}
	t.Run("PKCS12 key store, JKS trust store, mTLS", func(t *testing.T) {
		cfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}
		roundTrip(t, sb.client(t, p12Addr, kgo.DialTLSConfig(cfg)), "p12", 50)
	})
	t.Run("JKS key store, type unset", func(t *testing.T) {
		roundTrip(t, sb.client(t, jksAddr, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})), "jks", 50)
	})
}
