package engine

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestTruncateLowersCheckpointedRecoveryPoint: a truncation below the
// recovery point on disk rewrites the checkpoint before TruncateTo returns,
// so that a crash after the truncated range is written again cannot make
// recovery trust unsynced bytes below a stale checkpoint.
func TestTruncateLowersCheckpointedRecoveryPoint(t *testing.T) {
	root := t.TempDir()
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	cfg := DefaultConfig()
	cfg.SegmentBytes = 4096
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tp := TopicPartition{Topic: "trunc", Partition: 0}
	l, err := m.CreateLog(tp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 60; i++ {
		recs := []testRecord{{key: []byte(fmt.Sprint("k", i)), value: make([]byte, 200)}}
		if _, err := l.Append(makeBatch(t, record.CodecNone, recs), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteCheckpoints(); err != nil {
		t.Fatal(err)
	}
	read := func() int64 {
		t.Helper()
		rps, err := checkpoint.ReadOffsets(m.opts.FS, filepath.Join(root, RecoveryPointCheckpointFile))
		if err != nil {
			t.Fatal(err)
		}
		return rps[checkpoint.TopicPartition(tp)]
	}
	if got := read(); got != 60 {
		t.Fatalf("checkpointed recovery point %d, want 60", got)
	}
	if err := l.TruncateTo(25); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != 25 {
		t.Fatalf("after TruncateTo(25) the checkpoint says %d", got)
	}
	if err := l.TruncateFullyAndStartAt(10); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != 10 {
		t.Fatalf("after TruncateFullyAndStartAt(10) the checkpoint says %d", got)
	}
}
