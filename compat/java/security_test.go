package javacompat

import (
	"crypto/x509/pkix"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// clientConfig writes a Kafka client configuration file (key=value lines)
// and returns the JVM flag that hands it to kvlog.compat.Main.
func clientConfig(t *testing.T, lines ...string) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "client.properties")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-Dkvlog.client.config=" + f}
}

// TestJavaClientsSecure runs the Java client's producer, consumer group and
// admin cases over SASL_SSL with SCRAM-SHA-512 and over SSL with a client
// certificate (mTLS), configured with the settings an application gives
// Apache Kafka (security.protocol, sasl.mechanism, sasl.jaas.config with
// ScramLoginModule, PEM trust and key stores), against one kvlogd running
// the ACL authorizer, whose super users are the SCRAM user and the
// certificate's mapped principal (so the principals are what Kafka would
// make of them). A wrong password and a missing client certificate fail
// with the client's ordinary authentication exceptions.
func TestJavaClientsSecure(t *testing.T) {
	cp4, cp3 := requireJava(t)
	ca := testbroker.NewCA(t, "kvlog java CA")
	server := ca.Issue(t, pkix.Name{CommonName: "localhost", Organization: []string{"kvlog"}})
	client := ca.Issue(t, pkix.Name{CommonName: "Java-Client", OrganizationalUnit: []string{"Eng"}, Organization: []string{"Acme"}})
	addr, saslSSL, ssl := testbroker.FreeAddr(t), testbroker.FreeAddr(t), testbroker.FreeAddr(t)
	b := testbroker.Start(t, testbroker.Options{Race: true, Addr: addr,
		Listeners: fmt.Sprintf("PLAINTEXT://%s,SASL_SSL://%s,SSL://%s", addr, saslSSL, ssl),
		Props: []string{
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
			"sasl.enabled.mechanisms=SCRAM-SHA-512",
			"ssl.keystore.location=" + server.File,
			"ssl.truststore.location=" + ca.File,
			"listener.name.ssl.ssl.client.auth=required",
			`ssl.principal.mapping.rules=RULE:^CN=([^,]*),.*$/$1/L,DEFAULT`,
			"authorizer.class.name=kafka.security.authorizer.AclAuthorizer",
			"super.users=User:ANONYMOUS;User:alice;User:java-client",
			"connection.failed.authentication.delay.ms=50",
			"group.initial.rebalance.delay.ms=0",
		}})
	res, err := b.Admin(t).AlterUserSCRAMs(testbroker.Context(t, 30*time.Second), nil, []kadm.UpsertSCRAM{
		{User: "alice", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "alice-secret"}})
	if err != nil || res.Error() != nil {
		t.Fatalf("creating the SCRAM user alice: %v %v", err, res.Error())
	}

	scram := func(password string) []string {
		return clientConfig(t,
			"security.protocol=SASL_SSL",
			"sasl.mechanism=SCRAM-SHA-512",
			`sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="`+password+`";`,
			"ssl.truststore.type=PEM",
			"ssl.truststore.location="+ca.File)
	}
	mtls := func(withCert bool) []string {
		lines := []string{"security.protocol=SSL", "ssl.truststore.type=PEM", "ssl.truststore.location=" + ca.File}
		if withCert {
			lines = append(lines, "ssl.keystore.type=PEM", "ssl.keystore.location="+client.File)
		}
		return clientConfig(t, lines...)
	}

	cases := []string{"produce-acks1", "group-assignors=range", "admin-topics"}
	for _, run := range []struct {
		name, cp, prefix, bootstrap string
		jvm                         []string
		cases                       []string
	}{
		{"kafka-clients-4 SASL_SSL SCRAM-SHA-512", cp4, "s4", saslSSL, scram("alice-secret"), cases},
		{"kafka-clients-3 SASL_SSL SCRAM-SHA-512", cp3, "s3", saslSSL, scram("alice-secret"), cases},
		{"kafka-clients-4 SSL mTLS", cp4, "m4", ssl, mtls(true), cases},
		{"kafka-clients-4 SASL_SSL wrong password", cp4, "w4", saslSSL, scram("wrong"), []string{"auth-refused=sasl"}},
		{"kafka-clients-4 SSL without a certificate", cp4, "n4", ssl, mtls(false), []string{"auth-refused=ssl"}},
	} {
		t.Run(run.name, func(t *testing.T) {
			got := runCasesWith(t, run.jvm, run.cp, run.bootstrap, run.prefix, 4*time.Minute, run.cases...)
			for _, c := range run.cases {
				t.Run(c, func(t *testing.T) {
					check(t, got, c)
					if c == "produce-acks1" {
						checkModel(t, b, run.prefix+"-acks1", "acks1")
					}
				})
			}
		})
	}
	// The refused clients left the broker serving.
	if _, err := b.Admin(t).ListBrokers(testbroker.Context(t, 30*time.Second)); err != nil {
		t.Fatalf("the broker after the refused Java clients: %v", err)
	}
}
