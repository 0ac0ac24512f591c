package goclients

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Main(m)) }

const (
	scramUser     = "alice"
	scramPassword = "alice-secret"
	// certPrincipal is the client certificate's principal after
	// ssl.principal.mapping.rules (its CN, lower-cased).
	certPrincipal = "go-client"
)

// secureBroker is a kvlogd with PLAINTEXT (the harness's), SASL_SSL
// (SCRAM-SHA-512) and SSL (client certificates required) listeners.
type secureBroker struct {
	*testbroker.Broker
	ca         *testbroker.CA
	clientCert *testbroker.Issued
	saslSSL    string
	ssl        string
}

func startSecureBroker(t *testing.T) *secureBroker {
	t.Helper()
	ca := testbroker.NewCA(t, "kvlog go-clients CA")
	server := ca.Issue(t, pkix.Name{CommonName: "localhost", Organization: []string{"kvlog"}})
	sb := &secureBroker{
		ca:         ca,
		clientCert: ca.Issue(t, pkix.Name{CommonName: "Go-Client", Organization: []string{"Acme"}}),
		saslSSL:    testbroker.FreeAddr(t),
		ssl:        testbroker.FreeAddr(t),
	}
	addr := testbroker.FreeAddr(t)
	sb.Broker = testbroker.Start(t, testbroker.Options{Race: true, Addr: addr,
		Listeners: fmt.Sprintf("PLAINTEXT://%s,SASL_SSL://%s,SSL://%s", addr, sb.saslSSL, sb.ssl),
		Props: []string{
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
			"sasl.enabled.mechanisms=SCRAM-SHA-512",
			"ssl.keystore.location=" + server.File,
			"ssl.truststore.location=" + ca.File,
			"listener.name.ssl.ssl.client.auth=required",
			`ssl.principal.mapping.rules=RULE:^CN=([^,]*),.*$/$1/L,DEFAULT`,
			"authorizer.class.name=kafka.security.authorizer.AclAuthorizer",
			"super.users=User:ANONYMOUS;User:" + scramUser + ";User:" + certPrincipal,
			"connection.failed.authentication.delay.ms=50",
			"group.initial.rebalance.delay.ms=0",
		}})
	res, err := sb.Admin(t).AlterUserSCRAMs(testbroker.Context(t, 30*time.Second), nil, []kadm.UpsertSCRAM{
		{User: scramUser, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: scramPassword}})
	if err != nil || res.Error() != nil {
		t.Fatalf("creating the SCRAM user %s: %v %v", scramUser, err, res.Error())
	}
	return sb
}

// untrustedClientTLS is a client TLS configuration that trusts the
// broker but presents a certificate from another CA. It presents it
// whatever CAs the broker names: Go's client on its own sends no
// certificate whose issuer the broker does not list, which would only
// repeat the missing-certificate case.
func (sb *secureBroker) untrustedClientTLS(t *testing.T) *tls.Config {
	t.Helper()
	other := testbroker.NewCA(t, "another CA")
	is := other.Issue(t, pkix.Name{CommonName: "intruder"})
	pair, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sb.ca.TLS(t, nil)
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	return cfg
}

// record is what a client produced or read, independent of the client.
type record struct {
	Key       string
	Value     string
	Tombstone bool
	Partition int32
	Offset    int64
}

// keyedBatch is the batch every client produces: n keyed records, then a
// tombstone for the first key.
func keyedBatch(n int) []record {
	var out []record
	for i := range n {
		out = append(out, record{Key: fmt.Sprintf("key-%d", i%7), Value: fmt.Sprintf("value-%d", i)})
	}
	return append(out, record{Key: "key-0", Tombstone: true})
}

// checkTopic reads topic back with franz-go over PLAINTEXT and checks that
// it holds exactly want, in order per key, tombstone included, and that a
// key always went to one partition.
func checkTopic(t *testing.T, b *secureBroker, topic string, want []record) {
	t.Helper()
	got := b.ReadTopic(t, topic)
	checkRecords(t, "franz-go reading "+topic, toRecords(got), want)
}

func toRecords(rs []*kgo.Record) []record {
	var out []record
	for _, r := range rs {
		out = append(out, record{Key: string(r.Key), Value: string(r.Value), Tombstone: r.Value == nil, Partition: r.Partition, Offset: r.Offset})
	}
	return out
}

// checkRecords compares what a client read with what was produced: the
// same records per key in the same order, each key in a single partition,
// the tombstone a null value.
func checkRecords(t *testing.T, what string, got, want []record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d: %+v", what, len(got), len(want), got)
	}
	perKey := func(rs []record) map[string][]record {
		m := map[string][]record{}
		for _, r := range rs {
			m[r.Key] = append(m[r.Key], r)
		}
		return m
	}
	g, w := perKey(got), perKey(want)
	for k, ws := range w {
		gs := g[k]
		if len(gs) != len(ws) {
			t.Fatalf("%s: key %s: %d records, want %d", what, k, len(gs), len(ws))
		}
		for i := range ws {
			if gs[i].Tombstone != ws[i].Tombstone || gs[i].Value != ws[i].Value {
				t.Fatalf("%s: key %s record %d: value %q tombstone %v, want %q tombstone %v",
					what, k, i, gs[i].Value, gs[i].Tombstone, ws[i].Value, ws[i].Tombstone)
			}
			if gs[i].Partition != gs[0].Partition {
				t.Fatalf("%s: key %s in partitions %d and %d", what, k, gs[0].Partition, gs[i].Partition)
			}
			if i > 0 && gs[i].Offset <= gs[i-1].Offset {
				t.Fatalf("%s: key %s: offset %d after %d", what, k, gs[i].Offset, gs[i-1].Offset)
			}
		}
	}
}

// checkCommitted checks, with franz-go, that group committed the end
// offset of every partition of topic.
func checkCommitted(t *testing.T, b *secureBroker, group, topic string) {
	t.Helper()
	ctx := testbroker.Context(t, 30*time.Second)
	adm := b.Admin(t)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("offsets of group %s: %v", group, err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset == 0 {
			return
		}
		c, ok := committed.Lookup(topic, o.Partition)
		if !ok || c.Err != nil || c.At != o.Offset {
			t.Errorf("group %s, %s-%d: committed %+v, want %d", group, topic, o.Partition, c, o.Offset)
		}
	})
}

// checkHealthy checks that the broker still serves a franz-go client on
// the PLAINTEXT listener.
func checkHealthy(t *testing.T, b *secureBroker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := b.Admin(t).ListBrokers(ctx); err != nil {
		t.Fatalf("the broker after the refused clients: %v", err)
	}
}
