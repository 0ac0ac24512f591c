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
