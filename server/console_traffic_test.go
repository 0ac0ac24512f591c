package server

import (
	"testing"

	"github.com/kvlog/kvlog/console"
)

// TestIdleConsoleSampleLooksAtNoPartition: the console's traffic sample
// (every kvlog.console.sample.interval.ms) of a broker where nothing
// moved since the last one looks at no partition (it walked every
// partition of every topic), and still reports the traffic once records
// arrive.
func TestIdleConsoleSampleLooksAtNoPartition(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b, "traffic", 20, nil)
	produceTo(t, b, "traffic", 3, 5)
	ct := &consoleTraffic{s: b.s}
	hw := func(tt []console.TopicTraffic) int64 {
		t.Helper()
		for _, tr := range tt {
			if tr.Topic == "traffic" {
				return tr.HighWatermark
			}
		}
		t.Fatalf("no sample of topic traffic in %+v", tt)
		return 0
	}
	if got := hw(ct.sample()); got != 5 {
		t.Fatalf("first sample: high watermarks sum to %d, want 5", got)
	}
	looked := ct.looked
	if looked < 20 {
		t.Fatalf("first sample looked at %d partitions, want at least 20", looked)
	}
	for i := range 5 {
		if got := hw(ct.sample()); got != 5 {
			t.Fatalf("idle sample %d: high watermarks sum to %d, want 5", i, got)
		}
		if ct.looked != looked {
			t.Fatalf("idle sample %d looked at %d partitions, want 0", i, ct.looked-looked)
		}
	}
	produceTo(t, b, "traffic", 7, 2)
	if got := hw(ct.sample()); got != 7 {
		t.Fatalf("sample after 2 more records: high watermarks sum to %d, want 7", got)
	}
}
