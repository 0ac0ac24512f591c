package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
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

// TestRecoveryTrustsOnlyUpToTheRecoveryPoint: after an unclean stop, batches
// of the segment holding the checkpointed recovery point that end below it
// are not CRC-checked, but only when the trusted prefix ends exactly at the
// recovery point; a checkpoint beyond the data (or off a batch boundary)
// makes recovery check every batch, so a corrupt tail is still cut.
func TestRecoveryTrustsOnlyUpToTheRecoveryPoint(t *testing.T) {
	for _, c := range []struct {
		name      string
		claimedRP int64 // written over the checkpoint before the restart; -1: keep
		want      Offset
	}{
		{"checkpoint at the flushed end", -1, 20},
		{"checkpoint beyond the data", 1_000_000, 20},
		{"checkpoint inside a batch", 21, 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
			cfg := DefaultConfig()
			opts := ManagerOptions{Dirs: []string{root}, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
			m, err := OpenManager(opts)
			if err != nil {
				t.Fatal(err)
			}
			tp := TopicPartition{Topic: "trust", Partition: 0}
			l, err := m.CreateLog(tp, cfg)
			if err != nil {
				t.Fatal(err)
			}
			appendN := func(from, n int) {
				for i := from; i < from+n; i++ {
					recs := []testRecord{{key: []byte(fmt.Sprint("k", i)), value: make([]byte, 100)}, {key: []byte(fmt.Sprint("j", i)), value: nil}}
					if _, err := l.Append(makeBatch(t, record.CodecNone, recs), 0); err != nil {
						t.Fatal(err)
					}
				}
			}
			appendN(0, 10) // offsets 0..19, two records per batch
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := m.WriteCheckpoints(); err != nil {
				t.Fatal(err)
			}
			flushedSize := l.Size()
			appendN(10, 3) // offsets 20..25, never flushed
			crashManager(m)
			// Corrupt the first unflushed batch's last byte: its CRC no
			// longer matches.
			path := LogFileName(filepath.Join(root, PartitionDirName(tp)), 0)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, _, err := record.ReadBatch(data[flushedSize:])
			if err != nil {
				t.Fatal(err)
			}
			data[flushedSize+int64(len(b))-1] ^= 0xff
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if c.claimedRP >= 0 {
				ck := filepath.Join(root, RecoveryPointCheckpointFile)
				if err := checkpoint.WriteOffsets(vfs.Default, ck, map[checkpoint.TopicPartition]int64{checkpoint.TopicPartition(tp): c.claimedRP}); err != nil {
					t.Fatal(err)
				}
			}
			m2, err := OpenManager(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Close()
			l2 := m2.Logs()[0]
			if got := l2.LogEndOffset(); got != c.want {
				t.Fatalf("recovered log end %d, want %d (the corrupt batch at 20 must be cut)", got, c.want)
			}
			if got := len(readAll(t, l2, 0)); got != int(c.want) {
				t.Fatalf("%d records readable, want %d", got, c.want)
			}
		})
	}
}
