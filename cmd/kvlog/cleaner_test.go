package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kvlog/kvlog/cleaner"
)

// TestNormaliseKvlogdCleanerStatus keeps the CLI and the broker's /cleaner
// document (cleaner.Status as JSON) in step.
func TestNormaliseKvlogdCleanerStatus(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	st := cleaner.Status{Enabled: true, Threads: 1, Config: cleaner.DefaultConfig(), Partitions: []cleaner.PartitionStatus{
		{Topic: "t", Partition: 1, State: "idle", DirtyRatio: 0.5, FirstDirtyOffset: 42, LastCleanTime: &at,
			LastPass: &cleaner.PassStats{BytesRead: 1000, BytesWritten: 300}},
		{Topic: "t", Partition: 0, State: "uncleanable", Uncleanable: true, Error: "cleaner: corrupt batch"},
	}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	ps, err := normaliseCleaner(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 {
		t.Fatalf("normalised %d partitions: %+v", len(ps), ps)
	}
	p0, p1 := ps[0], ps[1]
	if p0.Partition != 0 || p0.State != "uncleanable" || p0.Cause != "cleaner: corrupt batch" || p0.BytesReclaimed != nil || p0.LastClean != "" {
		t.Errorf("uncleanable partition: %+v", p0)
	}
	if p1.Partition != 1 || p1.State != "idle" || p1.DirtyRatio == nil || *p1.DirtyRatio != 0.5 ||
		p1.FirstDirtyOffset == nil || *p1.FirstDirtyOffset != 42 || p1.LastClean != "2025-01-02T03:04:05Z" ||
		p1.BytesReclaimed == nil || *p1.BytesReclaimed != 700 {
		t.Errorf("cleaned partition: %+v", p1)
	}
}
