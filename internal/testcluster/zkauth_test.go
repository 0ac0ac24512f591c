package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// zkJAAS writes a JAAS file whose Client section is ZooKeeper's
// DigestLoginModule with the given credentials, as a Kafka broker's.
func zkJAAS(t *testing.T, user, password string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "kvlog_jaas.conf")
	text := fmt.Sprintf("Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  username=%q\n  password=%q;\n};\n", user, password)
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestZooKeeperACLs: brokers with zookeeper.set.acl=true and ZooKeeper
// credentials (the Client section of the JAAS file) create their znodes
// with Kafka's ACLs. The cluster replicates as usual; a ZooKeeper client
// without the credentials reads the topic znodes but can neither change
// nor delete them, nor mark a topic for deletion, nor take the controller,
// and cannot read SCRAM credentials; one with them can. A broker with other
// credentials cannot join: it exits at start-up, refused by ZooKeeper.
func TestZooKeeperACLs(t *testing.T) {
	if testing.Short() {
		t.Skip("process cluster tests are not short")
	}
	if why := ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	props := append(slices.Clone(fastProps), "zookeeper.set.acl=true", "kvlog.sasl.jaas.file="+zkJAAS(t, "kvlog", "zk-secret"))
	c := Start(t, Options{Bin: kvlogdBin, Brokers: 2, Props: props})

	const topic = "guarded"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	adm := c.Admin()
	if resp, err := adm.CreateTopic(ctx, 2, 2, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Err)
	}
	if res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "alice", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "alice-secret"}}); err != nil || res.Error() != nil {
		t.Fatalf("creating a SCRAM user: %v %v", err, res.Error())
	}
	c.WaitFor(30*time.Second, "both replicas of "+topic+" in sync", func() bool {
		parts, err := partitions(c, topic)
		if err != nil || len(parts) != 2 {
			return false
		}
		for _, p := range parts {
			if len(p.ISR) != 2 {
				return false
			}
		}
		return true
	})
	cl := c.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite())
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("acks=all produce with ZooKeeper ACLs on: %v", err)
	}

	anon := c.ZKConn()
	topicZnode := "/kvlog/brokers/topics/" + topic
	if _, _, err := anon.Get(topicZnode); err != nil {
		t.Fatalf("reading %s without credentials: %v (Kafka leaves it world-readable)", topicZnode, err)
	}
	refused := map[string]error{}
	_, err := anon.Set(topicZnode, []byte(`{"version":3,"partitions":{"0":[9]}}`), -1)
	refused["set "+topicZnode] = err
	refused["delete /kvlog/controller"] = anon.Delete("/kvlog/controller", -1)
	_, err = anon.Create("/kvlog/admin/delete_topics/"+topic, nil, 0, zk.WorldACL(zk.PermAll))
	refused["create /kvlog/admin/delete_topics/"+topic] = err
	_, err = anon.Create("/kvlog/brokers/ids/7", []byte(`{}`), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
	refused["create /kvlog/brokers/ids/7"] = err
	_, _, err = anon.Get("/kvlog/config/users/alice")
	refused["get /kvlog/config/users/alice"] = err
	for what, err := range refused {
		if !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s without credentials: %v, want %v", what, err, zk.ErrNoAuth)
		}
	}
	if err := anon.AddAuth("digest", []byte("kvlog:zk-secret")); err != nil {
		t.Fatal(err)
	}
	if data, _, err := anon.Get("/kvlog/config/users/alice"); err != nil || !bytes.Contains(data, []byte("SCRAM-SHA-512")) {
		t.Fatalf("reading /kvlog/config/users/alice with the brokers' credentials: %q %v", data, err)
	}
	// (ZooKeeper shows a digest identity's hash only to its holder.)
	acls, _, err := anon.GetACL(topicZnode)
	if err != nil {
		t.Fatal(err)
	}
	want := []zk.ACL{{Perms: zk.PermAll, Scheme: "digest", ID: "kvlog:" + digestHash("kvlog", "zk-secret")}, {Perms: zk.PermRead, Scheme: "world", ID: "anyone"}}
	if !slices.Equal(acls, want) {
		t.Fatalf("ACL of %s: %+v, want %+v", topicZnode, acls, want)
	}
	if acls, _, err := anon.GetACL("/kvlog/config/users/alice"); err != nil || !slices.Equal(acls, want[:1]) {
		t.Fatalf("ACL of /kvlog/config/users/alice: %+v %v, want %+v (not world-readable)", acls, err, want[:1])
	}
	if parts, err := partitions(c, topic); err != nil || len(parts) != 2 {
		t.Fatalf("%s after the refused writes: %v %v", topic, parts, err)
	}

	// A broker with another password is refused by ZooKeeper and exits.
	dir := t.TempDir()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "server.properties")
	lines := []string{"broker.id=3", fmt.Sprintf("listeners=PLAINTEXT://127.0.0.1:%d", port), "log.dirs=" + filepath.Join(dir, "data"),
		"zookeeper.connect=" + c.Connect, "zookeeper.connection.timeout.ms=30000", "kvlog.http.listener=",
		"zookeeper.set.acl=true", "kvlog.sasl.jaas.file=" + zkJAAS(t, "kvlog", "not-the-secret")}
	if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runCtx, runCancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer runCancel()
	out, err := exec.CommandContext(runCtx, kvlogdBin, "--config", cfg).CombinedOutput()
	if runCtx.Err() != nil || err == nil || !strings.Contains(string(out), "not authenticated") {
		t.Fatalf("a broker with the wrong ZooKeeper password: %v (want a start-up failure naming ZooKeeper's refusal)\n%s", err, tail(string(out), 4000))
	}
	t.Logf("the broker with the wrong ZooKeeper password: %s", lastLine(string(out)))
	if ids, _, err := anon.Children("/kvlog/brokers/ids"); err != nil || slices.Contains(ids, "3") {
		t.Fatalf("registered brokers %v (%v): broker 3 must not have registered", ids, err)
	}
}

// digestHash is ZooKeeper's digest of user:password, as its digest
// scheme names an identity: base64(SHA-1("user:password")).
func digestHash(user, password string) string {
	acl := zk.DigestACL(zk.PermAll, user, password)
	_, hash, _ := strings.Cut(acl[0].ID, ":")
	return hash
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
