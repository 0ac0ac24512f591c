package kafkaproc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestProperties: a KRaft node names itself as the single voter and
// listens on both listeners; a ZooKeeper node has broker.id and
// zookeeper.connect and no KRaft settings; Props come last (they win).
func TestProperties(t *testing.T) {
	dir := t.TempDir()
	k := Node{Dir: dir, Addr: "127.0.0.1:9092", Controller: "127.0.0.1:9093", Props: []string{"num.io.threads=8"}}
	p := k.Properties()
	for _, want := range []string{
		"process.roles=broker,controller", "node.id=1", "controller.quorum.voters=1@127.0.0.1:9093",
		"listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093", "log.dirs=" + filepath.Join(dir, "data"),
	} {
		if !slices.Contains(p, want) {
			t.Errorf("KRaft properties lack %q: %v", want, p)
		}
	}
	if p[len(p)-1] != "num.io.threads=8" {
		t.Errorf("Props not last: %v", p)
	}
	z := Node{Dir: dir, Addr: "127.0.0.1:9092", ZooKeeper: "127.0.0.1:2181/kafka", ID: 3}
	zp := z.Properties()
	if !slices.Contains(zp, "broker.id=3") || !slices.Contains(zp, "zookeeper.connect=127.0.0.1:2181/kafka") {
		t.Errorf("ZooKeeper properties: %v", zp)
	}
	for _, l := range zp {
		if strings.HasPrefix(l, "process.roles") || strings.HasPrefix(l, "controller.") {
			t.Errorf("ZooKeeper node has KRaft setting %q", l)
		}
	}
	if err := k.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(k.ConfigPath())
	if err != nil || !strings.Contains(string(b), "node.id=1\n") {
		t.Fatalf("server.properties: %v %q", err, b)
	}
	flags := k.ServerJVMFlags(Heap)
	if !slices.Contains(flags, "-Xmx1G") || !slices.Contains(flags, "-Xms1G") || !slices.Contains(flags, "-XX:+UseG1GC") {
		t.Errorf("JVM flags %v", flags)
	}
	if _, err := ReadClasspath(filepath.Join(dir, "missing.txt")); err == nil {
		t.Error("ReadClasspath of a missing file succeeded")
	}
}
