package pycompat

import (
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// TestPythonClientsSecure: confluent-kafka and kafka-python 3.x produce
// (idempotent, lz4), consume in a group with commits and resume, and
// administer over SASL_SSL with SCRAM-SHA-512 and over SSL with a client
// certificate, each configured with its own ordinary settings, against one
// kvlogd running the ACL authorizer with the SCRAM user and the
// certificate's mapped principal as super users. A wrong password and a
// missing client certificate fail with the client's authentication error.
func TestPythonClientsSecure(t *testing.T) {
	py := requirePython(t)
	ca := testbroker.NewCA(t, "kvlog python CA")
	server := ca.Issue(t, pkix.Name{CommonName: "localhost", Organization: []string{"kvlog"}})
	client := ca.Issue(t, pkix.Name{CommonName: "Py-Client", Organization: []string{"Acme"}})
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
			"super.users=User:ANONYMOUS;User:alice;User:py-client",
			"connection.failed.authentication.delay.ms=50",
			"group.initial.rebalance.delay.ms=0",
		}})
	res, err := b.Admin(t).AlterUserSCRAMs(testbroker.Context(t, 30*time.Second), nil, []kadm.UpsertSCRAM{
		{User: "alice", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "alice-secret"}})
	if err != nil || res.Error() != nil {
		t.Fatalf("creating the SCRAM user alice: %v %v", err, res.Error())
	}

	// Each client's own names for the same settings.
	config := map[string]func(password string, sasl, cert bool) map[string]any{
		"confluent": func(password string, sasl, cert bool) map[string]any {
			c := map[string]any{"security.protocol": "SSL", "ssl.ca.location": ca.File}
			if sasl {
				c["security.protocol"], c["sasl.mechanisms"], c["sasl.username"], c["sasl.password"] = "SASL_SSL", "SCRAM-SHA-512", "alice", password
			}
			if cert {
				c["ssl.certificate.location"], c["ssl.key.location"] = client.File, client.File
			}
			return c
		},
		"kafka-python": func(password string, sasl, cert bool) map[string]any {
			c := map[string]any{"security_protocol": "SSL", "ssl_cafile": ca.File}
			if sasl {
				c["security_protocol"], c["sasl_mechanism"], c["sasl_plain_username"], c["sasl_plain_password"] = "SASL_SSL", "SCRAM-SHA-512", "alice", password
			}
			if cert {
				c["ssl_certfile"], c["ssl_keyfile"] = client.File, client.File
			}
			return c
		},
	}
	cases := []string{"produce-codecs=lz4", "group-resume", "admin"}
	for _, client := range []string{"confluent", "kafka-python"} {
		for _, run := range []struct {
			name, bootstrap string
			config          map[string]any
			cases           []string
		}{
			{"SASL_SSL SCRAM-SHA-512", saslSSL, config[client]("alice-secret", true, false), cases},
			{"SSL mTLS", ssl, config[client]("", false, true), cases},
			{"SASL_SSL wrong password", saslSSL, config[client]("wrong", true, false), []string{"auth-refused=sasl"}},
			{"SSL without a certificate", ssl, config[client]("", false, false), []string{"auth-refused=ssl"}},
		} {
			t.Run(client+" "+run.name, func(t *testing.T) {
				prefix := "pys-" + client + "-" + strings.ToLower(strings.Fields(run.name)[0])
				const refusal = "SASL authentication failed; closing connection"
				refusedBefore := strings.Count(b.Log(), refusal)
				got := runCasesWith(t, run.config, py, client, run.bootstrap, prefix, run.cases...)
				for _, c := range run.cases {
					t.Run(c, func(t *testing.T) {
						r, ok := got[c]
						if !ok {
							t.Fatalf("%s, case %s: no result", client, c)
						}
						if !r.OK {
							t.Fatalf("%s, case %s: %s failed: %s", r.Client, c, r.API, r.Error)
						}
						t.Logf("%s, case %s: ok in %d ms; %.400s", r.Client, c, r.Ms, r.Data)
						if c == "produce-codecs=lz4" {
							checkModel(t, b, prefix+"-codec-lz4", "lz4")
						}
						if c == "auth-refused=sasl" && strings.Count(b.Log(), refusal) == refusedBefore {
							t.Fatalf("%s: the broker logged no failed SASL authentication", client)
						}
					})
				}
			})
		}
	}
	if _, err := b.Admin(t).ListBrokers(testbroker.Context(t, 30*time.Second)); err != nil {
		t.Fatalf("the broker after the refused Python clients: %v", err)
	}
}
