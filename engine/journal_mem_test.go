package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

// TestJournalCommitMemoryBounded: a journal commit holds at most about
// journalStageMax bytes of what it journals, however much that is. Batches
// it reads back from the segments (the logs' captures never filled, as
// after a capture stopped) are read a piece at a time, each piece its own
// entry of at most journalStageMax bytes plus one batch, and written
// before the next is read; the commit used to read every batch since each
// log's last commit into one growing buffer (hundreds of megabytes with a
// slow sync and a fast producer). After a power loss keeping nothing
// unsynced, the journal alone restores everything committed.
func TestJournalCommitMemoryBounded(t *testing.T) {
	defer func(n int) { journalStageMax = n }(journalStageMax)
	const parts, perBatch = 4, 40
	cfg := DefaultConfig()
	cfg.SegmentIndexBytes = 4096 // the crash simulation copies the preallocated indexes
	// fill appends batches batches to each of parts fresh logs of m; it
	// returns the logs, their records, their bytes and the largest batch.
	fill := func(m *Manager, topic string, batches int) (logs []*Log, history [][]testRecord, total int64, largest int) {
		logs = make([]*Log, parts)
		history = make([][]testRecord, parts)
		for i := range logs {
			l, err := m.CreateLog(TopicPartition{Topic: topic, Partition: int32(i)}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			logs[i] = l
			for k := range batches {
				b, recs := journalBatch(t, 0, perBatch, fmt.Sprintf("p%d-b%d-%0100d", i, k, 0))
				largest = max(largest, len(b))
				if _, err := l.Append(b, 1); err != nil {
					t.Fatal(err)
				}
				history[i] = append(history[i], recs...)
			}
			total += l.segments()[0].size.Load()
		}
		if total < 32*int64(journalStageMax) {
			t.Fatalf("the logs hold %d bytes: too few to tell a bounded commit from one buffer", total)
		}
		return logs, history, total, largest
	}
	commit := func(logs []*Log) {
		t.Helper()
		for i, err := range SyncLogsWith(logs, SyncJournal) {
			if err != nil {
				t.Fatalf("log %d: %v", i, err)
			}
		}
	}

	// What the commit allocates, on the real file system (the crash
	// simulation keeps every unsynced write in memory).
	journalStageMax = 32 << 10
	{
		m, err := OpenManager(ManagerOptions{Dirs: []string{t.TempDir()}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true})
		if err != nil {
			t.Fatal(err)
		}
		logs, _, total, _ := fill(m, "alloc", 160)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		commit(logs)
		runtime.ReadMemStats(&after)
		// A few stage buffers and the reads' bookkeeping, not the data
		// (one buffer of it all: more than total).
		if got := after.TotalAlloc - before.TotalAlloc; got > uint64(total)/4 {
			t.Errorf("the commit of %d bytes allocated %d bytes", total, got)
		}
		m.Close()
	}

	journalStageMax = 8 << 10
	crash := vfs.NewCrashFS(1)
	root := t.TempDir()
	opts := ManagerOptions{Dirs: []string{root}, FS: crash, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	logs, history, _, largest := fill(m, "mem", 40)
	commit(logs)
	data, err := os.ReadFile(filepath.Join(root, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	_, ents, end, err := decodeJournal(data)
	if err != nil || end.Reason != "" {
		t.Fatalf("journal: %v, ends early: %+v", err, end)
	}
	perLog := map[TopicPartition]int{}
	for _, e := range ents {
		if len(e.Payload) > journalStageMax+largest {
			t.Fatalf("entry of %s at %d holds %d bytes, more than %d + one batch", e.TP, e.Offset, len(e.Payload), journalStageMax)
		}
		perLog[e.TP]++
	}
	for _, l := range logs {
		if perLog[l.tp] < 2 {
			t.Fatalf("%s: %d entries, want its batches in pieces", l.tp, perLog[l.tp])
		}
	}

	crashManager(m)
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	if m, err = OpenManager(opts); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := range logs {
		l, _ := m.Log(TopicPartition{Topic: "mem", Partition: int32(i)})
		checkRecoveredJournal(t, l, history[i], Offset(len(history[i])))
	}
}

// TestJournalCaptureSkipsLargeBatches: a batch larger than
// journalCaptureBatchMax stops a log's capture (the commit reads it back
// in bounded pieces) instead of being copied into it.
func TestJournalCaptureSkipsLargeBatches(t *testing.T) {
	defer func(n int) { journalCaptureBatchMax = n }(journalCaptureBatchMax)
	journalCaptureBatchMax = 200
	root := t.TempDir()
	cfg := DefaultConfig()
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.CreateLog(TopicPartition{Topic: "big", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	captured := func() (int, bool) {
		l.jcap.mu.Lock()
		defer l.jcap.mu.Unlock()
		return len(l.jcap.data), l.jcap.on
	}
	appendRecords(t, l, 1)
	if err := SyncLogsWith([]*Log{l}, SyncJournal)[0]; err != nil {
		t.Fatal(err)
	}
	appendRecords(t, l, 1) // a small batch, after a commit took the log: captured
	if n, _ := captured(); n == 0 {
		t.Fatal("a small batch was not captured")
	}
	big, _ := journalBatch(t, 0, 20, fmt.Sprintf("%0200d", 0))
	if len(big) <= journalCaptureBatchMax {
		t.Fatalf("batch of %d bytes, want more than %d", len(big), journalCaptureBatchMax)
	}
	if _, err := l.Append(big, 1); err != nil {
		t.Fatal(err)
	}
	if n, on := captured(); n != 0 || on {
		t.Fatalf("after a large batch the capture holds %d bytes (on %v), want it stopped", n, on)
	}
	if err := SyncLogsWith([]*Log{l}, SyncJournal)[0]; err != nil {
		t.Fatal(err)
	}
	if got := Offset(l.journaled.Load()); got != l.LogEndOffset() {
		t.Fatalf("journaled to %d, log end %d", got, l.LogEndOffset())
	}
}
