package testcluster

import (
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kvlog/kvlog/internal/testbroker"
	"github.com/kvlog/kvlog/server/security"
)

// secureClusterOptions are the options of a cluster secured end to end,
// `make chaos CHAOS_SECURITY=SASL_SSL`: every broker has a SASL_SSL
// listener (SCRAM-SHA-512, certificates from a CA made for the test) that
// is the inter-broker listener and the one the test's clients use (user
// "chaos"); the brokers authenticate to ZooKeeper (digest, the JAAS
// file's Client section) and create their znodes with ACLs
// (zookeeper.set.acl). The SCRAM credentials of "broker" and "chaos" are
// written into ZooKeeper before the brokers start, as kafka-configs
// --zookeeper does. The harness's own requests (Metadata, RequestTo) stay
// on the PLAINTEXT listener.
func secureClusterOptions(t *testing.T) Options {
	t.Helper()
	ca := testbroker.NewCA(t, "chaos CA")
	cert := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	props := append(slices.Clone(fastProps),
		"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL",
		"inter.broker.listener.name=SECURE",
		"sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
		"listener.name.secure.sasl.enabled.mechanisms=SCRAM-SHA-512",
		"ssl.keystore.location="+cert.File,
		"ssl.truststore.location="+ca.File,
		`listener.name.secure.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";`,
		"zookeeper.set.acl=true",
		"kvlog.sasl.jaas.file="+zkJAAS(t, "kvlog", "zk-secret"),
	)
	return Options{Bin: kvlogdBin, Props: props, SecureListener: "SECURE", SecureClients: true,
		ClientOpts: []kgo.Opt{kgo.DialTLSConfig(ca.TLS(t, nil)), kgo.SASL(scram.Auth{User: "chaos", Pass: "chaos-secret"}.AsSha512Mechanism())},
		Setup: func(c *Cluster) {
			conn := c.ZKConn()
			for _, p := range []string{"/kvlog", "/kvlog/config", "/kvlog/config/users"} {
				if _, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
					t.Fatal(err)
				}
			}
			// Only the brokers' ZooKeeper identity may read the credentials.
			acl := zk.DigestACL(zk.PermAll, "kvlog", "zk-secret")
			for user, pw := range map[string]string{"broker": "broker-secret", "chaos": "chaos-secret"} {
				cred, err := security.NewScramCredentialFromPassword(security.ScramSHA512, pw, 4096)
				if err != nil {
					t.Fatal(err)
				}
				data, _ := json.Marshal(map[string]any{"version": 1, "config": map[string]string{security.ScramSHA512: cred.String()}})
				if _, err := conn.Create("/kvlog/config/users/"+user, data, 0, acl); err != nil {
					t.Fatal(err)
				}
			}
		}}
}

// startChaosCluster starts TestChaos's cluster: plain, or secured as
// security ("SASL_SSL") says.
func startChaosCluster(t *testing.T, security string) *Cluster {
	t.Helper()
	switch security {
	case "", "PLAINTEXT":
		return startCluster(t)
	case "SASL_SSL":
		if why := ZooKeeperAvailable(); why != "" {
			t.Skip("ZooKeeper unavailable: " + why)
		}
		return Start(t, secureClusterOptions(t))
	}
	t.Fatalf("KVLOG_CHAOS_SECURITY=%s: PLAINTEXT or SASL_SSL", security)
	return nil
}
