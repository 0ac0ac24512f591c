package config

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/cleaner"
)

func parseTestConfig(t *testing.T, lines ...string) *Broker {
	t.Helper()
	pp, err := ParseProperties(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(pp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCleanerConfigMapping: the log.cleaner.* keys (Kafka's defaults) and
// the topic keys become the cleaner's configuration.
func TestCleanerConfigMapping(t *testing.T) {
	def := parseTestConfig(t).Layers()
	if got, want := def.Cleaner(), cleaner.DefaultConfig(); got != want {
		t.Errorf("defaults: %+v, want %+v", got, want)
	}
	l := parseTestConfig(t, "log.cleaner.threads=0", "log.cleaner.io.max.bytes.per.second=1e6", "log.cleaner.backoff.ms=250",
		"kvlog.cleaner.bounded.tombstones=false", "log.cleaner.delete.retention.ms=1000", "log.cleaner.min.cleanable.ratio=0.2").Layers()
	c := l.Cleaner()
	if c.Enable || c.Threads != 1 || c.IOMaxBytesPerSecond != 1e6 || c.Backoff != 250*time.Millisecond || c.BoundedTombstones ||
		c.DeleteRetention != time.Second || c.MinCleanableRatio != 0.2 {
		t.Errorf("configured: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	// Topic settings: broker synonyms, then topic overrides.
	if tc := l.CleanerTopic(nil); tc.DeleteRetention != time.Second || tc.MinCleanableRatio != 0.2 || tc.MinCompactionLag != 0 {
		t.Errorf("topic defaults: %+v", tc)
	}
	tc := l.CleanerTopic(map[string]string{"delete.retention.ms": "5", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "60000"})
	if tc.DeleteRetention != 5*time.Millisecond || tc.MinCleanableRatio != 0.01 || tc.MinCompactionLag != time.Minute {
		t.Errorf("topic overrides: %+v", tc)
	}

	// Dynamic changes: Kafka's thread rules, and what the cleaner can run.
	cur := NewLayers(map[string]string{"log.cleaner.threads": "2"}, nil, nil)
	for _, tc := range []struct {
		set map[string]string
		ok  bool
	}{
		{map[string]string{"log.cleaner.threads": "1"}, true},
		{map[string]string{"log.cleaner.threads": "4"}, true},
		{map[string]string{"log.cleaner.threads": "5"}, false},
		{map[string]string{"log.cleaner.threads": "0"}, false},
		{map[string]string{"log.cleaner.dedupe.buffer.size": "30"}, false}, // no room for a key per thread
		{map[string]string{"log.cleaner.io.max.bytes.per.second": "100"}, true},
	} {
		next := cur.Next("1", tc.set)
		if err := CheckCleanerReconfig(cur, next); (err == nil) != tc.ok {
			t.Errorf("%v: %v, want ok=%v", tc.set, err, tc.ok)
		}
	}
	if c := NewLayers(nil, nil, nil).Cleaner(); !math.IsInf(c.IOMaxBytesPerSecond, 1) {
		t.Errorf("Kafka's unlimited throttle (Double.MAX_VALUE) is %v, want +Inf", c.IOMaxBytesPerSecond)
	}
}

// TestCleanerIdleRollConfig: kvlog.cleaner.idle.roll.ms becomes the
// cleaner's IdleRoll (30 s by default, 0 disables it), is dynamic, and is
// refused outside [0, 7 days] both in the file and as a dynamic value.
func TestCleanerIdleRollConfig(t *testing.T) {
	const key = "kvlog.cleaner.idle.roll.ms"
	if got := parseTestConfig(t).Layers().Cleaner().IdleRoll; got != 30*time.Second {
		t.Errorf("default idle roll %v, want 30s", got)
	}
	for v, want := range map[string]time.Duration{"0": 0, "5000": 5 * time.Second, "604800000": 7 * 24 * time.Hour} {
		if got := parseTestConfig(t, key+"="+v).Layers().Cleaner().IdleRoll; got != want {
			t.Errorf("%s=%s: idle roll %v, want %v", key, v, got, want)
		}
	}
	d := BrokerDef(key)
	if d == nil || !d.Dynamic {
		t.Fatalf("%s: %+v, want a dynamic broker config", key, d)
	}
	for _, v := range []string{"-1", "604800001"} {
		if err := d.Validate(v); err == nil {
			t.Errorf("%s=%s accepted", key, v)
		}
		pp, err := ParseProperties(strings.NewReader(key + "=" + v))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(pp, nil); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("file with %s=%s: %v, want an error naming the key", key, v, err)
		}
	}
	// A dynamic change applies through the same resolution, and the
	// cleaner refuses a value its own bound rejects.
	cur := NewLayers(nil, nil, nil)
	next := cur.Next("1", map[string]string{key: "0"})
	if err := CheckCleanerReconfig(cur, next); err != nil || next.Cleaner().IdleRoll != 0 {
		t.Errorf("dynamic %s=0: %v, idle roll %v", key, err, next.Cleaner().IdleRoll)
	}
	c := cleaner.DefaultConfig()
	c.IdleRoll = cleaner.MaxIdleRoll + time.Millisecond
	if c.Validate() == nil {
		t.Error("cleaner.Config accepts an idle roll above MaxIdleRoll")
	}
}
