package cleaner

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestStatusDurationsInMilliseconds pins the /cleaner document's
// durations as milliseconds (Kafka's unit for these settings), not Go's
// nanoseconds.
func TestStatusDurationsInMilliseconds(t *testing.T) {
	cfg := Config{Backoff: 15 * time.Second, DeleteRetention: 24 * time.Hour, MinCompactionLag: time.Minute}
	b, err := json.Marshal(cfg.status())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"backoff_ms":15000`, `"delete_retention_ms":86400000`, `"min_compaction_lag_ms":60000`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config %s lacks %s", b, want)
		}
	}
	b, err = json.Marshal(PassStats{Duration: 1500 * time.Microsecond, MapDone: 250 * time.Microsecond}.status())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"duration_ms":1.5`, `"map_duration_ms":0.25`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pass %s lacks %s", b, want)
		}
	}
	if strings.Contains(string(b), "_ns") {
		t.Errorf("nanoseconds left: %s", b)
	}
}

// TestStatusTransactionCounts: a pass's transaction work (aborted records
// removed, markers stamped and removed) is in the /cleaner document.
func TestStatusTransactionCounts(t *testing.T) {
	b, err := json.Marshal(PassStats{AbortedRecords: 7, MarkersStamped: 2, MarkersRemoved: 1}.status())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"aborted_records":7`, `"markers_stamped":2`, `"markers_removed":1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pass %s lacks %s", b, want)
		}
	}
}
