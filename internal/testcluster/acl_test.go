package testcluster

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// TestClusterACLs: three brokers with the ACL authorizer, talking to each
// other as User:broker (a super user) on a SASL_PLAINTEXT listener:
// replication and the controller's requests work (acks=all produce,
// full ISRs). An ACL created through one broker is enforced by the others
// (ZooKeeper's /kafka-acl-changes notifications). A plain client on the
// PLAINTEXT listener (User:ANONYMOUS) sending LeaderAndIsr or StopReplica
// is refused with CLUSTER_AUTHORIZATION_FAILED and the partition keeps
// being served.
func TestClusterACLs(t *testing.T) {
	if testing.Short() {
		t.Skip("process cluster tests are not short")
	}
	if why := ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	props := append(slices.Clone(fastProps),
		"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:SASL_PLAINTEXT",
		"inter.broker.listener.name=INTERNAL",
		"sasl.mechanism.inter.broker.protocol=PLAIN",
		"listener.name.internal.sasl.enabled.mechanisms=PLAIN",
		`listener.name.internal.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="broker-secret" user_broker="broker-secret" user_admin="admin-secret";`,
		"authorizer.class.name=kafka.security.authorizer.AclAuthorizer",
		"super.users=User:broker;User:admin",
	)
	c := Start(t, Options{Bin: kvlogdBin, Brokers: 3, Props: props, SecureListener: "INTERNAL"})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var secure []string
	for _, id := range c.IDs() {
		secure = append(secure, c.Broker(id).SecureAddr)
	}
	admin := c.Client(kgo.SeedBrokers(secure...), kgo.SASL(plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism()))
	adm := kadm.NewClient(admin)

	const topic = "guarded"
	if resp, err := adm.CreateTopic(ctx, 3, 3, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	// Followers fetch (CLUSTER_ACTION as the super user): every ISR fills.
	c.WaitFor(60*time.Second, "full ISRs", func() bool {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil || td[topic].Err != nil || len(td[topic].Partitions) != 3 {
			return false
		}
		for _, p := range td[topic].Partitions {
			if p.Leader < 0 || len(p.ISR) != 3 {
				return false
			}
		}
		return true
	})
	prod := c.Client(kgo.SeedBrokers(secure...), kgo.SASL(plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte("v")})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("acks=all produce with ACLs on: %v", err)
	}

	// An ACL created through broker 1 reaches brokers 2 and 3.
	anonMeta := func(id int32) int16 {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := c.RequestTo(id, req, 5*time.Second)
		if err != nil {
			return -1
		}
		return resp.(*kmsg.MetadataResponse).Topics[0].ErrorCode
	}
	for _, id := range c.IDs() {
		if code := anonMeta(id); code != kerr.TopicAuthorizationFailed.Code {
			t.Fatalf("broker %d: anonymous metadata of %s: %v, want TOPIC_AUTHORIZATION_FAILED", id, topic, kerr.ErrorForCode(code))
		}
	}
	b1 := c.Client(kgo.SeedBrokers(c.Broker(1).SecureAddr), kgo.SASL(plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism()))
	acl := kadm.NewACLs().Allow("User:ANONYMOUS").Topics(topic).Operations(kadm.OpDescribe).ResourcePatternType(kadm.ACLPatternLiteral)
	if res, err := kadm.NewClient(b1).CreateACLs(ctx, acl); err != nil || res[0].Err != nil {
		t.Fatalf("create ACL: %v %v", err, res)
	}
	for _, id := range c.IDs() {
		c.WaitFor(30*time.Second, "the ACL on broker "+strconv.Itoa(int(id)), func() bool { return anonMeta(id) == 0 })
	}

	// A plain client cannot make a broker stop serving a partition.
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	p0 := td[topic].Partitions[0]
	lai := kmsg.NewPtrLeaderAndISRRequest()
	lai.Version, lai.ControllerID, lai.ControllerEpoch, lai.BrokerEpoch = 4, p0.Leader, 1_000_000, 1<<40
	ts := kmsg.NewLeaderAndISRRequestTopicState()
	ts.Topic = topic
	ps := kmsg.NewLeaderAndISRRequestTopicPartition()
	ps.Topic, ps.Partition, ps.Leader, ps.LeaderEpoch, ps.ISR, ps.Replicas = topic, 0, -1, 1_000_000, []int32{}, []int32{p0.Leader}
	ts.PartitionStates = append(ts.PartitionStates, ps)
	lai.TopicStates = append(lai.TopicStates, ts)
	stop := kmsg.NewPtrStopReplicaRequest()
	stop.Version, stop.ControllerID, stop.ControllerEpoch, stop.BrokerEpoch = 3, p0.Leader, 1_000_000, 1<<40
	st := kmsg.NewStopReplicaRequestTopic()
	st.Topic = topic
	sps := kmsg.NewStopReplicaRequestTopicPartitionState()
	sps.Partition, sps.LeaderEpoch, sps.Delete = 0, 1_000_000, true
	st.PartitionStates = append(st.PartitionStates, sps)
	stop.Topics = append(stop.Topics, st)
	for _, req := range []kmsg.Request{lai, stop} {
		resp, err := c.RequestTo(p0.Leader, req, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
		}
		var code int16
		switch r := resp.(type) {
		case *kmsg.LeaderAndISRResponse:
			code = r.ErrorCode
		case *kmsg.StopReplicaResponse:
			code = r.ErrorCode
		}
		if code != kerr.ClusterAuthorizationFailed.Code {
			t.Errorf("plain client's %s: %v, want CLUSTER_AUTHORIZATION_FAILED", kmsg.NameForKey(req.Key()), kerr.ErrorForCode(code))
		}
	}
	if !stringsContain(c.Broker(p0.Leader).Logs(), "authorization denied") {
		t.Error("no audit log line for the refused requests")
	}
	// Partition 0 is still led and served.
	one := &kgo.Record{Topic: topic, Partition: 0, Key: []byte("after"), Value: []byte("v")}
	manual := c.Client(kgo.SeedBrokers(secure...), kgo.SASL(plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism()),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := manual.ProduceSync(ctx, one).FirstErr(); err != nil {
		t.Fatalf("partition 0 after the refused requests: %v", err)
	}
}

func stringsContain(s, sub string) bool { return strings.Contains(s, sub) }
