package main

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
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
	}, extra...)
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
