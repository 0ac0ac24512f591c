package config

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// mustPanic runs f and returns the panic's message ("" if it did not panic).
func mustPanic(t *testing.T, what string, f func()) string {
	t.Helper()
	var msg string
	func() {
		defer func() {
			if v := recover(); v != nil {
				msg, _ = v.(string)
				if msg == "" {
					msg = "panic"
				}
			}
		}()
		f()
	}()
	if msg == "" {
		t.Errorf("%s: no panic", what)
	}
	return msg
}

// TestLayersTypedReads: every source wins in order (dynamic broker,
// dynamic default, static, default) through the typed reads, time keys
// convert by their unit, listener-scoped forms are read typed too.
func TestLayersTypedReads(t *testing.T) {
	l := NewLayers(
		map[string]string{"replica.lag.time.max.ms": "5000", "queued.max.requests": "7", "log.cleaner.io.buffer.load.factor": "0.5",
			"listener.name.sasl.sasl.server.max.receive.size": "4096"},
		map[string]string{"log.cleaner.threads": "3"},
		map[string]string{"log.cleaner.threads": "2", "log.cleaner.backoff.ms": "250"})
	if got := l.Int("log.cleaner.threads"); got != 3 {
		t.Errorf("dynamic broker value: %d", got)
	}
	if got := l.Duration("log.cleaner.backoff.ms"); got != 250*time.Millisecond {
		t.Errorf("dynamic default value: %v", got)
	}
	if got := l.Duration("replica.lag.time.max.ms"); got != 5*time.Second {
		t.Errorf("static value: %v", got)
	}
	if got := l.Int("queued.max.requests"); got != 7 {
		t.Errorf("static value: %d", got)
	}
	if got := l.Float("log.cleaner.io.buffer.load.factor"); got != 0.5 {
		t.Errorf("double: %v", got)
	}
	if got := l.Duration("leader.imbalance.check.interval.seconds"); got != 300*time.Second {
		t.Errorf("seconds key: %v", got)
	}
	if got := l.Duration("offsets.retention.minutes"); got != 10080*time.Minute {
		t.Errorf("minutes key: %v", got)
	}
	if !l.Bool("controlled.shutdown.enable") || l.String("listeners") != "PLAINTEXT://127.0.0.1:9092" {
		t.Error("defaults")
	}
	if got := l.Int("listener.name.sasl.sasl.server.max.receive.size"); got != 4096 {
		t.Errorf("listener-scoped key: %d", got)
	}
	if got := l.Int("listener.name.other.sasl.server.max.receive.size"); got != 524288 {
		t.Errorf("listener-scoped key's default: %d", got)
	}
	if e := l.Broker("log.cleaner.threads"); e.Source != kmsg.ConfigSourceDynamicBrokerConfig || e.Value != "3" {
		t.Errorf("entry %+v", e)
	}
	if got := l.TopicDuration("retention.ms", map[string]string{"retention.ms": "-1"}); got != -1 {
		t.Errorf("unlimited retention: %v", got)
	}
	if got := l.TopicInt("max.message.bytes", nil); got != 1048588 {
		t.Errorf("topic default: %d", got)
	}
}

// TestLayersMisreadsPanic: a key the tables do not define, a key read as
// another type, and a number with no value are programming errors, never
// a silent zero (the string-typed reads they replace returned 0).
func TestLayersMisreadsPanic(t *testing.T) {
	l := Default().Layers()
	for what, f := range map[string]func(){
		"unknown key":            func() { l.Int("no.such.key") },
		"unknown key entry":      func() { l.Broker("no.such.key") },
		"string read as int":     func() { l.Int("listeners") },
		"int read as bool":       func() { l.Bool("num.partitions") },
		"int read as string":     func() { l.String("num.partitions") },
		"not a time key":         func() { l.Duration("num.partitions") },
		"null int":               func() { l.Int("zookeeper.connection.timeout.ms") },
		"unknown mechanism form": func() { l.Int("listener.name.x.gssapi.connections.max.reauth.ms") },
		"unknown topic key":      func() { l.TopicInt("no.such.key", nil) },
		"topic key as bool":      func() { l.TopicBool("segment.bytes", nil) },
	} {
		if msg := mustPanic(t, what, f); msg != "" && !strings.HasPrefix(msg, "config: ") {
			t.Errorf("%s: panic %q does not say it is the config's", what, msg)
		}
	}
	if !l.Broker("zookeeper.connection.timeout.ms").Null {
		t.Error("a key without default reads as null")
	}
}

// TestLayersNextValidates: a dynamic change builds new layers; the old ones
// are unchanged (readers of the previous snapshot keep their values).
func TestLayersNextValidates(t *testing.T) {
	cur := Default().Layers()
	next := cur.Next("0", map[string]string{"log.cleaner.backoff.ms": "5"})
	if cur.Duration("log.cleaner.backoff.ms") != 15*time.Second || next.Duration("log.cleaner.backoff.ms") != 5*time.Millisecond {
		t.Fatalf("cur %v next %v", cur.Duration("log.cleaner.backoff.ms"), next.Duration("log.cleaner.backoff.ms"))
	}
	bad := cur.Next("", map[string]string{"replica.fetch.wait.max.ms": "40000"})
	if err := bad.ValidateBroker(); err == nil {
		t.Error("cross-key rule not applied to the next layers")
	}
	if got := cur.Next("", map[string]string{"min.insync.replicas": "2"}).DynamicDefault(); got["min.insync.replicas"] != "2" {
		t.Errorf("dynamic defaults %v", got)
	}
}

// TestZooKeeperTimeouts: the connection timeout defaults to the session
// timeout.
func TestZooKeeperTimeouts(t *testing.T) {
	c := parseTestConfig(t, "zookeeper.session.timeout.ms=6000")
	if c.ZooKeeperSessionTimeout != 6*time.Second || c.ZooKeeperConnectionTimeout != 6*time.Second {
		t.Fatalf("session %v connection %v", c.ZooKeeperSessionTimeout, c.ZooKeeperConnectionTimeout)
	}
	c = parseTestConfig(t, "zookeeper.session.timeout.ms=6000", "zookeeper.connection.timeout.ms=1000")
	if c.ZooKeeperConnectionTimeout != time.Second {
		t.Fatalf("connection %v", c.ZooKeeperConnectionTimeout)
	}
}
