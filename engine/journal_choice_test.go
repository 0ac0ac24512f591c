package engine

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// TestJournalOnlyForSmallBatches: a group commit (SyncLogs) of four or
// more logs goes through the journal while they have little each to make
// durable, and syncs the logs themselves when they have large batches
// (the journal would write every byte twice for a sync or two saved).
func TestJournalOnlyForSmallBatches(t *testing.T) {
	root := t.TempDir()
	cfg := DefaultConfig()
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const parts = 4
	logs := make([]*Log, parts)
	for i := range logs {
		if logs[i], err = m.CreateLog(TopicPartition{Topic: "choice", Partition: int32(i)}, cfg); err != nil {
			t.Fatal(err)
		}
	}
	journalSize := func() int64 {
		j := logs[0].jr
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.size
	}
	appendEach := func(valueBytes, records int) {
		t.Helper()
		for i, l := range logs {
			recs := make([]testRecord, records)
			for k := range recs {
				recs[k] = testRecord{key: []byte(fmt.Sprintf("k%d-%d", i, k)), value: bytes.Repeat([]byte{'v'}, valueBytes), ts: 1_700_000_000_000}
			}
			if _, err := l.Append(makeBatch(t, record.CodecNone, recs), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit := func() {
		t.Helper()
		for i, err := range SyncLogs(logs) {
			if err != nil {
				t.Fatalf("log %d: %v", i, err)
			}
		}
		for i, l := range logs {
			if l.Durable() != l.LogEndOffset() {
				t.Fatalf("log %d durable to %d, log end %d", i, l.Durable(), l.LogEndOffset())
			}
		}
	}

	// Small batches (1 KiB each): one journal write and sync, the
	// segments left for later.
	appendEach(100, 10)
	before := journalSize()
	commit()
	if journalSize() <= before {
		t.Fatal("a commit of small batches did not go through the journal")
	}
	for i, l := range logs {
		if l.RecoveryPoint() != 0 {
			t.Fatalf("log %d synced (recovery point %d) by a journal commit", i, l.RecoveryPoint())
		}
	}

	// Large batches (64 KiB each): the logs are synced, the journal
	// stays as it was.
	appendEach(1000, 64)
	before = journalSize()
	commit()
	if got := journalSize(); got != before {
		t.Fatalf("a commit of 64 KiB batches wrote %d bytes to the journal", got-before)
	}
	for i, l := range logs {
		if l.RecoveryPoint() != l.LogEndOffset() {
			t.Fatalf("log %d: recovery point %d, log end %d after a commit of large batches", i, l.RecoveryPoint(), l.LogEndOffset())
		}
	}

	// Small batches again: the journal again.
	appendEach(100, 10)
	before = journalSize()
	commit()
	if journalSize() <= before {
		t.Fatal("a commit of small batches after large ones did not go through the journal")
	}
}
