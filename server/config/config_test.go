package config

import (
	"bytes"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestParseProperties(t *testing.T) {
	in := "# comment\n" +
		"! also a comment\n" +
		"   \n" +
		"a=1\n" +
		"b : 2\n" +
		"c 3\n" +
		"  d\t=\t  spaced value  \n" +
		"e=first \\\n" +
		"    second \\\n" +
		"  third\n" +
		"f=\\u0041\\tB\\\\\n" +
		"key\\ with\\ spaces=x\n" +
		"g=\n" +
		"h\n" +
		"a=override\n" +
		"url=PLAINTEXT://h:1\n" +
		"trail=ends \\\\\n"
	props, err := ParseProperties(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range props {
		got[p.Key] = p.Value
	}
	want := map[string]string{
		"a": "override", "b": "2", "c": "3", "d": "spaced value  ", "e": "first second third",
		"f": "A\tB\\", "key with spaces": "x", "g": "", "h": "", "url": "PLAINTEXT://h:1", "trail": "ends \\",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d keys %v, want %d", len(got), got, len(want))
	}
	if props[0].Line != 4 {
		t.Errorf("first property line = %d, want 4", props[0].Line)
	}
	if _, err := ParseProperties(strings.NewReader("x=\\u12\n")); err == nil {
		t.Error("malformed \\u escape accepted")
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Default()
	if c.NodeID != 0 || len(c.Listeners) != 1 || c.Listeners[0].String() != "PLAINTEXT://127.0.0.1:9092" {
		t.Fatalf("listeners %v node %d", c.Listeners, c.NodeID)
	}
	if len(c.LogDirs) != 1 || c.LogDirs[0] != "./data" {
		t.Fatalf("log dirs %v", c.LogDirs)
	}
	if c.SocketRequestMaxBytes != 104857600 || !c.AutoCreateTopics || c.NumPartitions != 1 || !c.FsyncAcksAll {
		t.Fatalf("defaults: %+v", c)
	}
	if c.HTTPListener != "127.0.0.1:9644" || c.ConnectionsMaxIdle != 10*time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	if c.ReplicaLagTimeMax != 30*time.Second || c.ReplicaFetchWaitMax != 500*time.Millisecond || c.ReplicaFetchMaxBytes != 1048576 ||
		c.ReplicaFetchResponseMaxBytes != 10485760 || c.ReplicaFetchMinBytes != 1 || c.ReplicaFetchBackoff != time.Second ||
		c.ReplicaSocketTimeout != 30*time.Second || !c.ControlledShutdownEnable || c.ControlledShutdownMaxRetries != 3 ||
		c.ControlledShutdownRetryBackoff != 5*time.Second || !c.AutoLeaderRebalance || c.LeaderImbalanceCheckInterval != 5*time.Minute ||
		c.ZooKeeperSessionTimeout != 18*time.Second || c.ZooKeeperConnectionTimeout != 18*time.Second {
		t.Fatalf("replication defaults: %+v", c)
	}
	ec := c.Layers().EngineConfig(nil)
	if ec.SegmentBytes != 1<<30 || ec.RetentionTime != 168*time.Hour || !ec.Delete || ec.Compact || ec.MaxMessageBytes != 1048588 {
		t.Fatalf("engine config %+v", ec)
	}
	if ec.FlushInterval != time.Duration(math.MaxInt64) || ec.MaxCompactionLag != time.Duration(math.MaxInt64) {
		t.Fatalf("engine config %+v", ec)
	}
}

func TestConfigParse(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	props, _ := ParseProperties(strings.NewReader(`
broker.id=3
listeners=PLAINTEXT://0.0.0.0:9092,INTERNAL://127.0.0.1:9093
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT
advertised.listeners=PLAINTEXT://kafka.example:9092
log.dirs=/a, /b
log.retention.hours=1
log.segment.bytes=1048576
log.cleanup.policy=compact
num.partitions=3
no.such.key=1
`))
	c, err := Parse(props, logger)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != 3 || len(c.LogDirs) != 2 || c.LogDirs[1] != "/b" || c.NumPartitions != 3 {
		t.Fatalf("%+v", c)
	}
	if c.AdvertisedListeners[0].Host != "kafka.example" || c.AdvertisedListeners[1].Name != "INTERNAL" || c.AdvertisedListeners[1].Host != "127.0.0.1" {
		t.Fatalf("advertised %v", c.AdvertisedListeners)
	}
	if !strings.Contains(logs.String(), "no.such.key") {
		t.Errorf("unknown key not warned: %s", logs.String())
	}
	l := c.Layers()
	if e := l.Topic("retention.ms", nil); e.Value != "3600000" || e.Source != kmsg.ConfigSourceStaticBrokerConfig {
		t.Errorf("retention.ms = %+v", e)
	}
	ec := l.EngineConfig(map[string]string{"cleanup.policy": "compact,delete"})
	if ec.SegmentBytes != 1<<20 || ec.RetentionTime != time.Hour || !ec.Compact || !ec.Delete {
		t.Errorf("engine config %+v", ec)
	}
	if ec := l.EngineConfig(nil); !ec.Compact || ec.Delete {
		t.Errorf("broker default policy not applied: %+v", ec)
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct{ in, key string }{
		{"num.partitions=zero", "num.partitions"},
		{"num.partitions=0", "num.partitions"},
		{"auto.create.topics.enable=yes", "auto.create.topics.enable"},
		{"listeners=127.0.0.1:9092", "listeners"},
		{"listeners=FOO://127.0.0.1:9092", "listeners"},
		{"listeners=PLAINTEXT://127.0.0.1:99999", "listeners"},
		{"listeners=PLAINTEXT://0.0.0.0:9092", "advertised.listeners"},
		{"log.cleanup.policy=shred", "log.cleanup.policy"},
		{"log.cleaner.min.cleanable.ratio=1.5", "log.cleaner.min.cleanable.ratio"},
		{"broker.id=1\nnode.id=2", "node.id"},
		{"log.segment.bytes=10", "log.segment.bytes"},
		{"log.cleaner.min.compaction.lag.ms=10\nlog.cleaner.max.compaction.lag.ms=5", "min.compaction.lag.ms"},
	} {
		props, err := ParseProperties(strings.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(props, nil)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v does not name %s", tc.in, err, tc.key)
		}
	}
}

func TestTopicConfigSynonyms(t *testing.T) {
	l := NewLayers(map[string]string{"log.retention.hours": "2", "log.retention.minutes": "30"}, nil, map[string]string{"log.retention.ms": "1000"})
	syn := l.TopicSynonyms("retention.ms", map[string]string{"retention.ms": "5"})
	want := []Entry{
		{"retention.ms", "5", false, kmsg.ConfigSourceDynamicTopicConfig},
		{"log.retention.ms", "1000", false, kmsg.ConfigSourceDynamicDefaultBrokerConfig},
		{"log.retention.minutes", "1800000", false, kmsg.ConfigSourceStaticBrokerConfig},
		{"log.retention.hours", "7200000", false, kmsg.ConfigSourceStaticBrokerConfig},
		{"log.retention.ms", "604800000", false, kmsg.ConfigSourceDefaultConfig},
	}
	if len(syn) != len(want) {
		t.Fatalf("synonyms %+v", syn)
	}
	for i := range want {
		if syn[i] != want[i] {
			t.Errorf("synonym %d = %+v, want %+v", i, syn[i], want[i])
		}
	}
	if e := l.Topic("retention.ms", nil); e.Value != "1000" || e.Name != "retention.ms" {
		t.Errorf("value %+v", e)
	}
	if err := l.ValidateTopicConfigs(map[string]string{"segment.bytes": "abc"}); err == nil || !strings.Contains(err.Error(), "segment.bytes") {
		t.Errorf("bad segment.bytes: %v", err)
	}
	if err := l.ValidateTopicConfigs(map[string]string{"nope": "1"}); err == nil {
		t.Error("unknown key accepted")
	}
	if err := l.ValidateTopicConfigs(map[string]string{"min.cleanable.dirty.ratio": "0.1", "cleanup.policy": "compact", "delete.retention.ms": "100"}); err != nil {
		t.Error(err)
	}
	// Every topic key's default validates, and every synonym is a broker key.
	for name, d := range topicDefs {
		if err := d.Validate(d.Default); err != nil {
			t.Errorf("%s default %q: %v", name, d.Default, err)
		}
		for _, s := range d.Synonyms {
			if brokerDefs[s.Name] == nil {
				t.Errorf("%s synonym %s is not a broker key", name, s.Name)
			}
		}
	}
	for name, d := range brokerDefs {
		if !d.NoDefault {
			if err := d.Validate(d.Default); err != nil {
				t.Errorf("%s default %q: %v", name, d.Default, err)
			}
		}
	}
}

// TestSampleServerProperties: the sample file parses, and documents every
// key kvlog reads with its default.
func TestSampleServerProperties(t *testing.T) {
	b, err := os.ReadFile("../../config/server.properties")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseProperties(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	// Uncommenting every "#key=value" line must give a valid config.
	var lines []string
	documented := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "#"), "="); ok && strings.HasPrefix(line, "#") && !strings.Contains(k, " ") {
			documented[k] = v
			if v != "" && k != "advertised.listeners" {
				lines = append(lines, k+"="+v)
			}
		}
	}
	for name, d := range brokerDefs {
		v, ok := documented[name]
		if !ok {
			t.Errorf("key %s is not documented in config/server.properties", name)
			continue
		}
		if !d.NoDefault && v != d.Default && name != "log.dirs" {
			t.Errorf("%s documented as %q, default is %q", name, v, d.Default)
		}
	}
	props, _ := ParseProperties(strings.NewReader(strings.Join(lines, "\n")))
	if _, err := Parse(props, nil); err != nil {
		t.Errorf("documented defaults do not parse: %v", err)
	}
}
