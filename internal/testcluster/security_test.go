package testcluster

import (
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/internal/testbroker"
	"github.com/kvlog/kvlog/server/security"
)

// TestSecureInterBroker: brokers reach each other on a SASL_SSL listener
// with SCRAM-SHA-512 (the broker user's credential written into
// ZooKeeper's /config/users as kafka-configs --zookeeper does): replica
// fetchers and controller requests work, acks=all produce and consume
// work; a broker whose inter-broker password is wrong registers but never
// joins an ISR (its fetchers are refused, and logged), while the others
// keep serving.
func TestSecureInterBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("process cluster tests are not short")
	}
	if why := ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	ca := testbroker.NewCA(t, "cluster CA")
	cert := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	jaas := func(pw string) string {
		return fmt.Sprintf(`listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="%s";`, pw)
	}
	props := append(slices.Clone(fastProps),
		"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL",
		"inter.broker.listener.name=INTERNAL",
		"sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
		"listener.name.internal.sasl.enabled.mechanisms=SCRAM-SHA-512",
		"ssl.keystore.location="+cert.File,
		"ssl.truststore.location="+ca.File,
		jaas("broker-secret"),
	)
	c := Start(t, Options{Bin: kvlogdBin, Brokers: 2, Props: props, SecureListener: "INTERNAL",
		BrokerProps: map[int32][]string{3: {jaas("not-the-password")}},
		Setup: func(c *Cluster) {
			cred, err := security.NewScramCredentialFromPassword(security.ScramSHA512, "broker-secret", 4096)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := json.Marshal(map[string]any{"version": 1, "config": map[string]string{security.ScramSHA512: cred.String()}})
			conn := c.ZKConn()
			for _, p := range []string{"/kvlog", "/kvlog/config", "/kvlog/config/users"} {
				if _, err := conn.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
					t.Fatal(err)
				}
			}
			if _, err := conn.Create("/kvlog/config/users/broker", data, 0, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
		}})
	c.AddBroker(3)
	c.WaitBrokers(3, 60*time.Second)

	const topic = "secure"
	adm := c.Admin()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if resp, err := adm.CreateTopic(ctx, 3, 3, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	// Partitions led by 1 or 2 (3 cannot fetch from them) end with ISR
	// {1,2}; a partition led by 3 keeps its ISR (1 and 2 fetch from it).
	isrOK := func() (bool, string) {
		parts, err := partitions(c, topic)
		if err != nil || len(parts) != 3 {
			return false, fmt.Sprint(err)
		}
		var desc []string
		ok := true
		for _, p := range parts {
			desc = append(desc, fmt.Sprintf("p%d leader %d isr %v", p.Partition, p.Leader, p.ISR))
			if p.Leader < 0 || len(p.ISR) < 2 || (p.Leader != 3 && slices.Contains(p.ISR, 3)) {
				ok = false
			}
		}
		return ok, strings.Join(desc, "; ")
	}
	var last string
	c.WaitFor(60*time.Second, "ISRs without broker 3 where it follows", func() bool {
		ok, d := isrOK()
		last = d
		return ok
	})
	t.Logf("partitions: %s", last)

	cl := c.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite())
	var recs []*kgo.Record
	for i := range 300 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("acks=all produce over a SASL_SSL inter-broker listener: %v", err)
	}
	got := map[string]bool{}
	cons := c.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for len(got) < 300 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 300", len(got))
		}
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	// Still out of the ISRs, after the produce moved the followers on.
	if ok, d := isrOK(); !ok {
		t.Fatalf("broker 3 joined an ISR with wrong inter-broker credentials: %s", d)
	}
	c.WaitFor(30*time.Second, "broker 3 to log its refused authentication", func() bool {
		return strings.Contains(c.Broker(3).Logs(), "authenticating to the leader failed")
	})
	// The good brokers authenticated each other and refused broker 3.
	okAuth, failed := 0.0, 0.0
	for _, id := range []int32{1, 2} {
		if v, err := strconv.ParseFloat(metric(c.Broker(id).HTTP, `kvlog_sasl_authentications_total{listener="INTERNAL",mechanism="SCRAM-SHA-512",result="success"}`), 64); err == nil {
			okAuth += v
		}
		if v, err := strconv.ParseFloat(metric(c.Broker(id).HTTP, `kvlog_sasl_authentications_total{listener="INTERNAL",mechanism="SCRAM-SHA-512",result="failure"}`), 64); err == nil {
			failed += v
		}
	}
	if okAuth == 0 || failed == 0 {
		t.Fatalf("inter-broker authentications on brokers 1 and 2: %v succeeded, %v failed; want both", okAuth, failed)
	}
}
