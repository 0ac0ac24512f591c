package kafka

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

var kafkaAcls = tool{"kafka-acls", "org.apache.kafka.tools.AclCommand"}

// TestKafkaToolsSecure drives kafka-topics and kafka-acls with
// --command-config files (SASL_SSL, SCRAM-SHA-512, a PEM trust store:
// what an operator writes for Apache Kafka) against a kvlogd running the
// ACL authorizer. The super user "admin" creates topics and ACLs; "bob",
// without ACLs, gets what Apache Kafka gives him: TopicAuthorizationException
// ("Authorization failed.") for CreateTopics and DeleteTopics, a topic he
// may not describe reported as not existing, and ClusterAuthorizationException
// for CreateAcls and DescribeAcls; with DESCRIBE alone kafka-topics
// --describe fails at DescribeConfigs ("Topic authorization failed.");
// with DESCRIBE_CONFIGS too, he sees the topic.
func TestKafkaToolsSecure(t *testing.T) {
	classpath(t)
	ca := testbroker.NewCA(t, "kvlog tools CA")
	server := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	addr, saslSSL := testbroker.FreeAddr(t), testbroker.FreeAddr(t)
	b := testbroker.Start(t, testbroker.Options{LogLevel: "warn", Addr: addr,
		Listeners: fmt.Sprintf("PLAINTEXT://%s,SASL_SSL://%s", addr, saslSSL),
		Props: []string{
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
			"sasl.enabled.mechanisms=SCRAM-SHA-512",
			"ssl.keystore.location=" + server.File,
			"authorizer.class.name=kafka.security.authorizer.AclAuthorizer",
			// The PLAINTEXT listener (loopback, the harness's) creates the users.
			"super.users=User:admin;User:ANONYMOUS",
		}})
	res, err := b.Admin(t).AlterUserSCRAMs(testbroker.Context(t, 30*time.Second), nil, []kadm.UpsertSCRAM{
		{User: "admin", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "admin-secret"},
		{User: "bob", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "bob-secret"},
	})
	if err != nil || res.Error() != nil {
		t.Fatalf("creating the SCRAM users: %v %v", err, res.Error())
	}
	commandConfig := func(user string) string {
		f := filepath.Join(t.TempDir(), user+".properties")
		props := strings.Join([]string{
			"security.protocol=SASL_SSL",
			"sasl.mechanism=SCRAM-SHA-512",
			`sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="` + user + `" password="` + user + `-secret";`,
			"ssl.truststore.type=PEM",
			"ssl.truststore.location=" + ca.File,
		}, "\n") + "\n"
		if err := os.WriteFile(f, []byte(props), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	admin, bob := commandConfig("admin"), commandConfig("bob")
	as := func(cfg string, more ...string) []string {
		return append([]string{"--bootstrap-server", saslSSL, "--command-config", cfg}, more...)
	}
	denied := func(tl tool, api, exception, message string, args ...string) {
		t.Helper()
		r := runTool(t, tl, api, "", args...)
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, exception) || !strings.Contains(r.stdout+r.stderr, message) {
			t.Errorf("%s %s (%s) as bob: exit %d, want 1 with %s and %q\nstdout:\n%s\nstderr:\n%s", tl.name, quote(args), api, r.code, exception, message, r.stdout, r.stderr)
		}
	}

	out := ok(t, kafkaTopics, "CreateTopics", "", as(admin, "--create", "--topic", "secured", "--partitions", "2")...)
	expect(t, kafkaTopics, "CreateTopics", out, `^Created topic secured\.$`)

	denied(kafkaTopics, "CreateTopics", "TopicAuthorizationException", "Authorization failed.",
		as(bob, "--create", "--topic", "bobs", "--partitions", "1")...)
	// Metadata leaves out what bob may not describe: TopicCommand reports it missing.
	denied(kafkaTopics, "Metadata", "", "Topic 'secured' does not exist", as(bob, "--describe", "--topic", "secured")...)
	if out := ok(t, kafkaTopics, "Metadata", "", as(bob, "--list")...); strings.TrimSpace(out) != "" {
		t.Errorf("kafka-topics --list (Metadata) as bob without ACLs printed:\n%s", out)
	}
	denied(kafkaAcls, "CreateAcls", "ClusterAuthorizationException", "",
		as(bob, "--add", "--allow-principal", "User:bob", "--operation", "All", "--topic", "secured")...)
	denied(kafkaAcls, "DescribeAcls", "ClusterAuthorizationException", "", as(bob, "--list")...)

	out = ok(t, kafkaAcls, "CreateAcls", "", as(admin, "--add", "--allow-principal", "User:bob", "--operation", "Describe", "--topic", "secured")...)
	expect(t, kafkaAcls, "CreateAcls", out, "^Adding ACLs for resource `ResourcePattern\\(resourceType=TOPIC, name=secured, patternType=LITERAL\\)`:")
	out = ok(t, kafkaAcls, "DescribeAcls", "", as(admin, "--list", "--topic", "secured")...)
	expect(t, kafkaAcls, "DescribeAcls", out, `\(principal=User:bob, host=\*, operation=DESCRIBE, permissionType=ALLOW\)`)

	// kafka-topics --describe reads the topic's configs too: DESCRIBE alone
	// is refused there with Kafka's own message.
	denied(kafkaTopics, "DescribeConfigs", "TopicAuthorizationException", "Topic authorization failed.",
		as(bob, "--describe", "--topic", "secured")...)
	ok(t, kafkaAcls, "CreateAcls", "", as(admin, "--add", "--allow-principal", "User:bob", "--operation", "DescribeConfigs", "--topic", "secured")...)
	out = ok(t, kafkaTopics, "Metadata", "", as(bob, "--describe", "--topic", "secured")...)
	expect(t, kafkaTopics, "Metadata", out, `^Topic: secured\tTopicId: \S+\tPartitionCount: 2\t`)
	denied(kafkaTopics, "DeleteTopics", "TopicAuthorizationException", "", as(bob, "--delete", "--topic", "secured")...)
	ok(t, kafkaTopics, "DeleteTopics", "", as(admin, "--delete", "--topic", "secured")...)
	waitTopicGone(t, b, "secured")
}
