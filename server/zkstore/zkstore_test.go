package zkstore

import (
	"encoding/json"
	"errors"
	"github.com/twmb/franz-go/pkg/kmsg"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/internal/testcluster"
	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/metastore"
)

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

func open(t *testing.T, connect string, broker int32, session time.Duration) *Store {
	t.Helper()
	s, err := Open(Options{Connect: connect, SessionTimeout: session, BrokerID: broker, Logger: quiet, ClusterID: "test-cluster"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// raw reads a znode's JSON as a generic map (to check Kafka's layout).
func raw(t *testing.T, s *Store, rel string) map[string]any {
	t.Helper()
	data, _, err := s.conn.Get(s.p(rel))
	if err != nil {
		t.Fatalf("get %s: %v", rel, err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v: %q", rel, err, data)
	}
	return m
}

// One ZooKeeper for every test in the package (each test uses its own chroot).
func TestZKStore(t *testing.T) {
	zkSrv := testcluster.StartZooKeeper(t)
	t.Run("Layout", func(t *testing.T) { testLayout(t, zkSrv.Addr+"/layout") })
	t.Run("Brokers", func(t *testing.T) { testBrokers(t, zkSrv.Addr+"/brokers") })
	t.Run("ControllerFencing", func(t *testing.T) { testControllerFencing(t, zkSrv.Addr+"/ctl") })
	t.Run("ProducerIDs", func(t *testing.T) { testProducerIDs(t, zkSrv.Addr+"/pids") })
	t.Run("ScramCredentials", func(t *testing.T) { testScramCredentials(t, zkSrv.Addr+"/scram") })
	t.Run("ACLs", func(t *testing.T) { testACLs(t, zkSrv.Addr+"/acls") })
	t.Run("ClientQuotas", func(t *testing.T) { testClientQuotas(t, zkSrv.Addr+"/quotas") })
	t.Run("ConnectionLoss", func(t *testing.T) { testConnectionLoss(t, zkSrv.Addr, "/cut") })
}

// testACLs: Kafka's ZooKeeper ACL layout — LITERAL under /kafka-acl,
// PREFIXED under /kafka-acl-extended/prefixed, Kafka's JSON, a change
// notification per write in the path of its pattern type (readable back
// as the pattern) — and an emptied pattern's znode removed.
func testACLs(t *testing.T, connect string) {
	s := open(t, connect, 1, 5*time.Second)
	lit := acl.Pattern{Type: kmsg.ACLResourceTypeTopic, Name: "orders", PatternType: kmsg.ACLResourcePatternTypeLiteral}
	pre := acl.Pattern{Type: kmsg.ACLResourceTypeGroup, Name: "app-", PatternType: kmsg.ACLResourcePatternTypePrefixed}
	read := acl.Entry{Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow}
	deny := acl.Entry{Principal: "User:*", Host: "10.0.0.1", Operation: kmsg.ACLOperationDescribeConfigs, Permission: kmsg.ACLPermissionTypeDeny}
	add := func(p acl.Pattern, cur []acl.Entry) []acl.Entry {
		if p == lit {
			return append(cur, read)
		}
		return append(cur, deny)
	}
	if _, err := s.UpdateAcls([]acl.Pattern{lit, pre}, add); err != nil {
		t.Fatal(err)
	}
	m := raw(t, s, "/kafka-acl/Topic/orders")
	acls, _ := m["acls"].([]any)
	if m["version"] != 1.0 || len(acls) != 1 {
		t.Fatalf("/kafka-acl/Topic/orders: %v", m)
	}
	if e := acls[0].(map[string]any); e["principal"] != "User:alice" || e["permissionType"] != "Allow" || e["operation"] != "Read" || e["host"] != "*" {
		t.Fatalf("entry %v", e)
	}
	if e := raw(t, s, "/kafka-acl-extended/prefixed/Group/app-")["acls"].([]any)[0].(map[string]any); e["operation"] != "DescribeConfigs" || e["permissionType"] != "Deny" {
		t.Fatalf("prefixed entry %v", e)
	}
	all, err := s.Acls()
	if err != nil || len(all) != 2 || len(all[lit]) != 1 || all[pre][0] != deny {
		t.Fatalf("Acls: %v %v", all, err)
	}
	for _, ext := range []bool{false, true} {
		names, _, err := s.AclChangesW(ext)
		if err != nil || len(names) != 1 {
			t.Fatalf("changes (extended %v): %v %v", ext, names, err)
		}
		want := lit
		if ext {
			want = pre
		}
		if p, ok := s.AclChange(ext, names[0]); !ok || p != want {
			t.Fatalf("change (extended %v): %v %v", ext, p, ok)
		}
	}
	data, _, err := s.conn.Get(s.p("/kafka-acl-changes/" + func() string { n, _, _ := s.AclChangesW(false); return n[0] }()))
	if err != nil || string(data) != "Topic:orders" {
		t.Fatalf("literal change notification %q %v", data, err)
	}
	if _, err := s.UpdateAcls([]acl.Pattern{lit}, func(acl.Pattern, []acl.Entry) []acl.Entry { return nil }); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := s.conn.Exists(s.p("/kafka-acl/Topic/orders")); ok {
		t.Fatal("an emptied pattern's znode is left")
	}
}

// testClientQuotas: quotas are entity configs under /config/users,
// /config/users/<u>/clients, /config/clients and /config/ips, values as
// Java writes doubles, beside SCRAM credentials, with change
// notifications.
func testClientQuotas(t *testing.T, connect string) {
	s := open(t, connect, 1, 5*time.Second)
	creds := map[string]string{"SCRAM-SHA-256": "salt=YQ==,stored_key=Yg==,server_key=Yw==,iterations=4096"}
	if err := s.SetScramCredentials("alice", creds); err != nil {
		t.Fatal(err)
	}
	err := s.SetClientQuotas(map[string]map[string]float64{
		"users/alice":                 {"producer_byte_rate": 1024},
		"users/alice/clients/app":     {"request_percentage": 12.5},
		"clients/<default>":           {"consumer_byte_rate": 2048},
		"ips/10.0.0.1":                {"connection_creation_rate": 5},
		"users/<default>/clients/app": {"producer_byte_rate": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := raw(t, s, "/config/users/alice")["config"].(map[string]any); cfg["producer_byte_rate"] != "1024.0" || cfg["SCRAM-SHA-256"] != creds["SCRAM-SHA-256"] {
		t.Fatalf("/config/users/alice %v", cfg)
	}
	if cfg := raw(t, s, "/config/users/alice/clients/app")["config"].(map[string]any); cfg["request_percentage"] != "12.5" {
		t.Fatalf("/config/users/alice/clients/app %v", cfg)
	}
	got, err := s.ClientQuotas()
	if err != nil || len(got) != 5 || got["clients/<default>"]["consumer_byte_rate"] != 2048 || got["ips/10.0.0.1"]["connection_creation_rate"] != 5 {
		t.Fatalf("ClientQuotas %v %v", got, err)
	}
	if c, err := s.ScramCredentials("alice"); err != nil || len(c) != 1 {
		t.Fatalf("credentials beside quotas: %v %v", c, err)
	}
}

// testScramCredentials: credentials live in /config/users/<sanitized user>
// as Kafka's ZooKeeper mode keeps them, other keys of the user's config
// survive, a change notification names the user, and removing every
// credential leaves the user unlisted.
func testScramCredentials(t *testing.T, connect string) {
	s := open(t, connect, 1, 5*time.Second)
	user := "al ice*~"
	if got := SanitizeUser(user); got != "al%20ice%2A%7E" {
		t.Fatalf("sanitized %q", got)
	}
	if err := s.setConfig(userConfigPath(user), "users/"+SanitizeUser(user), map[string]string{"producer_byte_rate": "1024"}); err != nil {
		t.Fatal(err)
	}
	creds := map[string]string{"SCRAM-SHA-512": "salt=YQ==,stored_key=Yg==,server_key=Yw==,iterations=4096"}
	if err := s.SetScramCredentials(user, creds); err != nil {
		t.Fatal(err)
	}
	m := raw(t, s, "/config/users/al%20ice%2A%7E")
	cfg, _ := m["config"].(map[string]any)
	if m["version"] != 1.0 || cfg["SCRAM-SHA-512"] != creds["SCRAM-SHA-512"] || cfg["producer_byte_rate"] != "1024" {
		t.Fatalf("znode %v", m)
	}
	if v, ok, err := s.ScramCredential(user, "SCRAM-SHA-512"); err != nil || !ok || v != creds["SCRAM-SHA-512"] {
		t.Fatalf("credential %q %v %v", v, ok, err)
	}
	if _, ok, err := s.ScramCredential("nobody", "SCRAM-SHA-512"); err != nil || ok {
		t.Fatalf("unknown user: %v %v", ok, err)
	}
	if users, err := s.ScramUsers(); err != nil || len(users) != 1 || users[0] != user {
		t.Fatalf("users %v %v", users, err)
	}
	changes, _, err := s.ConfigChangesW()
	if err != nil || len(changes) == 0 {
		t.Fatalf("changes %v %v", changes, err)
	}
	if m := raw(t, s, pathConfigChanges+"/"+changes[len(changes)-1]); m["entity_path"] != "users/al%20ice%2A%7E" {
		t.Fatalf("change notification %v", m)
	}
	if err := s.SetScramCredentials(user, nil); err != nil {
		t.Fatal(err)
	}
	if users, err := s.ScramUsers(); err != nil || len(users) != 0 {
		t.Fatalf("users after removal %v %v", users, err)
	}
	if m := raw(t, s, "/config/users/al%20ice%2A%7E"); m["config"].(map[string]any)["producer_byte_rate"] != "1024" {
		t.Fatalf("other keys lost: %v", m)
	}
}

func testLayout(t *testing.T, connect string) {
	s := open(t, connect, 1, 5*time.Second)
	if s.ClusterID() != "test-cluster" {
		t.Fatalf("cluster id %q", s.ClusterID())
	}
	if m := raw(t, s, "/cluster/id"); m["id"] != "test-cluster" || m["version"] != "1" {
		t.Fatalf("/cluster/id %v", m)
	}
	for _, id := range []int32{1, 2, 3} {
		if _, err := s.RegisterBroker(Broker{ID: id, Endpoints: []Endpoint{{"PLAINTEXT", "127.0.0.1", 9090 + id}}}); err != nil && id == 1 {
			t.Fatal(err)
		} else if err != nil {
			// other ids registered by this same session: fine
			t.Fatal(err)
		}
	}
	id := metastore.NewTopicID()
	err := s.CreateTopic(metastore.Topic{Name: "users", ID: id, Partitions: 4, ReplicationFactor: 3, Configs: map[string]string{"cleanup.policy": "compact"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTopic(metastore.Topic{Name: "users", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, metastore.ErrTopicExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	m := raw(t, s, "/brokers/topics/users")
	parts := m["partitions"].(map[string]any)
	if len(parts) != 4 || m["topic_id"] != encodeTopicID(id) {
		t.Fatalf("assignment %v", m)
	}
	a, err := s.Assignment("users")
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]int{}
	for p, rs := range a.Replicas {
		if len(rs) != 3 || len(slices.Compact(slices.Sorted(slices.Values(rs)))) != 3 {
			t.Fatalf("partition %d replicas %v", p, rs)
		}
		leaders[rs[0]]++
	}
	if len(leaders) != 3 {
		t.Fatalf("preferred leaders not spread: %v", a.Replicas)
	}
	if c := raw(t, s, "/config/topics/users"); c["config"].(map[string]any)["cleanup.policy"] != "compact" {
		t.Fatalf("topic config %v", c)
	}
	topics := s.Topics()
	if len(topics) != 1 || topics[0].Partitions != 4 || topics[0].ReplicationFactor != 3 || topics[0].ID != id || topics[0].Configs["cleanup.policy"] != "compact" {
		t.Fatalf("Topics() = %+v", topics)
	}
	// Config change with a notification.
	if err := s.SetTopicConfigs("users", map[string]string{"cleanup.policy": "compact", "segment.ms": "1000"}); err != nil {
		t.Fatal(err)
	}
	changes, _, err := s.ConfigChangesW()
	if err != nil || len(changes) == 0 {
		t.Fatalf("config changes %v %v", changes, err)
	}
	if ep, _ := s.TakeConfigChange(changes[len(changes)-1]); ep != "topics/users" {
		t.Fatalf("entity path %q", ep)
	}
	// More partitions.
	if err := s.SetPartitionCount("users", 6); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Assignment("users"); len(a.Replicas) != 6 {
		t.Fatalf("after adding partitions: %v", a.Replicas)
	}
	// Partition state JSON.
	f, err := s.Elect(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePartitionState(f, "users", 0, PartitionState{Leader: 1, LeaderEpoch: 0, ISR: []int32{1, 2, 3}, ControllerEpoch: f.Epoch}); err != nil {
		t.Fatal(err)
	}
	st := raw(t, s, "/brokers/topics/users/partitions/0/state")
	if st["leader"] != 1.0 || st["leader_epoch"] != 0.0 || st["version"] != 1.0 || st["controller_epoch"] != float64(f.Epoch) || len(st["isr"].([]any)) != 3 {
		t.Fatalf("state %v", st)
	}
	// Deletion: marked, still readable, then gone.
	if err := s.DeleteTopic("users"); err != nil {
		t.Fatal(err)
	}
	if len(s.Topics()) != 0 || len(s.PendingDeletions()) != 1 {
		t.Fatalf("after delete: topics %v pending %v", s.Topics(), s.PendingDeletions())
	}
	if err := s.CreateTopic(metastore.Topic{Name: "users", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, metastore.ErrTopicExists) {
		t.Fatalf("create while pending deletion: %v", err)
	}
	if err := s.DeletionDone("users"); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := s.conn.Exists(s.p("/brokers/topics/users")); ok {
		t.Fatal("topic znode left after deletion")
	}
	if len(s.PendingDeletions()) != 0 {
		t.Fatal("deletion mark left")
	}
	// Broker configs.
	if err := s.SetBrokerConfigs("", map[string]string{"log.cleaner.threads": "2"}); err != nil {
		t.Fatal(err)
	}
	if c := s.BrokerConfigs(""); c["log.cleaner.threads"] != "2" {
		t.Fatalf("broker configs %v", c)
	}
	if _, _, err := s.conn.Get(s.p("/config/brokers/<default>")); err != nil {
		t.Fatalf("default broker config znode: %v", err)
	}
}

func testBrokers(t *testing.T, connect string) {
	a := open(t, connect, 1, 2*time.Second)
	ep1, err := a.RegisterBroker(Broker{ID: 1, Endpoints: []Endpoint{{"PLAINTEXT", "127.0.0.1", 9001}}})
	if err != nil {
		t.Fatal(err)
	}
	m := raw(t, a, "/brokers/ids/1")
	if m["version"] != 5.0 || m["host"] != "127.0.0.1" || m["port"] != 9001.0 || m["endpoints"].([]any)[0] != "PLAINTEXT://127.0.0.1:9001" {
		t.Fatalf("registration %v", m)
	}
	// A second live broker with the same id is refused (after waiting out a
	// possible stale session), not kept waiting.
	b := open(t, connect, 1, 2*time.Second)
	refused := make(chan error, 1)
	go func() {
		_, err := b.RegisterBroker(Broker{ID: 1, Endpoints: []Endpoint{{"PLAINTEXT", "127.0.0.1", 9002}}})
		refused <- err
	}()
	select {
	case err := <-refused:
		if !errors.Is(err, ErrBrokerIDTaken) {
			t.Fatalf("duplicate id: %v", err)
		}
	case <-time.After(time.Minute): // hang guard: the wait is bounded by two session timeouts (4 s)
		t.Fatal("registering a live broker's id still waiting after a minute")
	}
	// Once the first goes away, the id can be taken, with a larger epoch.
	a.Close()
	ep2, err := b.RegisterBroker(Broker{ID: 1, Endpoints: []Endpoint{{"PLAINTEXT", "127.0.0.1", 9002}}})
	if err != nil {
		t.Fatal(err)
	}
	if ep2 <= ep1 {
		t.Fatalf("broker epoch %d after %d", ep2, ep1)
	}
	bs, _, err := b.Brokers()
	if err != nil || len(bs) != 1 || bs[0].Epoch != ep2 || bs[0].Endpoints[0].Port != 9002 {
		t.Fatalf("brokers %+v %v", bs, err)
	}
}

func testControllerFencing(t *testing.T, connect string) {
	a := open(t, connect, 1, 2*time.Second)
	b := open(t, connect, 2, 2*time.Second)
	fa, err := a.Elect(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Elect(2); !errors.Is(err, ErrNotElected) {
		t.Fatalf("second election: %v", err)
	}
	if id, _, _ := b.ControllerID(); id != 1 {
		t.Fatalf("controller %d", id)
	}
	if err := a.CreateTopic(metastore.Topic{Name: "t", Partitions: 1, ReplicationFactor: 2, Assignment: [][]int32{{1, 2}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreatePartitionState(fa, "t", 0, PartitionState{Leader: 1, ISR: []int32{1, 2}, ControllerEpoch: fa.Epoch}); err != nil {
		t.Fatal(err)
	}
	// a's session ends (as a controller paused past its session would):
	// b takes over with a higher epoch; a's writes are fenced.
	a.conn.Close()
	var fb Fence
	deadline := time.Now().Add(10 * time.Second)
	for {
		fb, err = b.Elect(2)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNotElected) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fb.Epoch != fa.Epoch+1 {
		t.Fatalf("epoch %d after %d", fb.Epoch, fa.Epoch)
	}
	// The zombie's fence is stale: a write through any session with it fails.
	st, _, _ := b.PartitionState("t", 0)
	st.Leader, st.LeaderEpoch = 2, st.LeaderEpoch+1
	if _, err := b.SetPartitionState(fa, "t", 0, st); !errors.Is(err, ErrFenced) {
		t.Fatalf("zombie controller write: %v", err)
	}
	v, err := b.SetPartitionState(fb, "t", 0, st)
	if err != nil {
		t.Fatal(err)
	}
	// A leader's ISR update with a stale version fails; with the current one works.
	st.ISR = []int32{2}
	if _, err := b.UpdateISR("t", 0, st); !errors.Is(err, ErrBadVersion) {
		t.Fatalf("stale ISR update: %v", err)
	}
	st.ZkVersion = v
	if _, err := b.UpdateISR("t", 0, st); err != nil {
		t.Fatal(err)
	}
	names, _, err := b.ISRChangesW()
	if err != nil || len(names) != 1 {
		t.Fatalf("isr change notifications %v %v", names, err)
	}
	tps, _ := b.TakeISRChange(names[0])
	if len(tps) != 1 || tps[0] != (TopicPartition{"t", 0}) {
		t.Fatalf("notification %v", tps)
	}
	if data, _, _ := b.conn.Get(b.p("/controller_epoch")); string(data) != "2" {
		t.Fatalf("/controller_epoch %q", data)
	}
}

func testProducerIDs(t *testing.T, connect string) {
	a := open(t, connect, 1, 5*time.Second)
	b := open(t, connect, 2, 5*time.Second)
	seen := map[int64]bool{}
	for i := 0; i < 1500; i++ {
		for _, s := range []*Store{a, b} {
			id, err := s.NextProducerID()
			if err != nil {
				t.Fatal(err)
			}
			if seen[id] {
				t.Fatalf("producer id %d handed out twice", id)
			}
			seen[id] = true
		}
	}
	m := raw(t, a, "/latest_producer_id_block")
	if m["block_end"] != "3999" || m["version"] != 1.0 {
		t.Fatalf("block %v", m)
	}
}

func TestAssignReplicas(t *testing.T) {
	a, err := AssignReplicas([]int32{3, 1, 2}, 6, 3, -1)
	if err != nil {
		t.Fatal(err)
	}
	for p, rs := range a {
		if rs[0] != int32(p%3+1) {
			t.Fatalf("partition %d preferred leader %d: %v", p, rs[0], a)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(rs)))) != 3 {
			t.Fatalf("partition %d duplicate replicas %v", p, rs)
		}
	}
	if _, err := AssignReplicas([]int32{1}, 1, 2, -1); !errors.Is(err, ErrNoBrokers) {
		t.Fatalf("rf above brokers: %v", err)
	}
	_ = zk.ErrNoNode
}
