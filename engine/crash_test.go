package engine

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// crashManager abandons a manager as a power cut would: no flush, no
// checkpoint, no clean-shutdown marker; files are only released so the crash
// simulation can rewrite them.
func crashManager(m *Manager) {
	for _, l := range m.Logs() {
		crashClose(l)
	}
	for _, j := range m.journals {
		j.close() // (no sync: the descriptor goes with the process)
	}
	m.handles.close()
	m.locks.Release() // the process is gone: so is its flock
}

// TestCrashConsistency appends, syncs, rolls, runs retention and writes
// checkpoints at random, closing every cold segment handle now and then
// (reopen on demand), over a file system that loses unsynced bytes and
// unsynced directory operations at a crash; after each crash the recovered
// log must be a contiguous run of what was appended (a prefix from its log
// start) that contains every record covered by a completed Sync.
func TestCrashConsistency(t *testing.T) {
	for seed := int64(1); seed <= 24; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 99))
			fs := vfs.NewCrashFS(seed)
			root := t.TempDir()
			clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
			cfg := DefaultConfig()
			cfg.SegmentBytes = int64(8192 + rng.IntN(8192))
			cfg.IndexIntervalBytes = 128
			cfg.SegmentIndexBytes = 1024
			cfg.RetentionBytes = -1
			cfg.FileDeleteDelay = 0
			opts := ManagerOptions{Dirs: []string{root}, FS: fs, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
			tp := TopicPartition{Topic: "crash", Partition: 0}
			var history []testRecord // by offset
			var epochOf []int32      // leader epoch each record was appended in
			synced := Offset(0)
			for round := 0; round < 4; round++ {
				m, err := OpenManager(opts)
				if err != nil {
					t.Fatalf("round %d: open: %v", round, err)
				}
				l, err := m.CreateLog(tp, cfg)
				if err != nil {
					t.Fatal(err)
				}
				checkRecovered(t, l, history, synced)
				checkRecoveredEpochs(t, l, epochOf)
				history = history[:l.LogEndOffset()]
				epochOf = epochOf[:l.LogEndOffset()]
				epoch := int32(len(epochOf)) // epochs only grow: a new one per restart
				if synced > l.LogEndOffset() {
					synced = l.LogEndOffset()
				}
				for op := 0; op < 80; op++ {
					clk.Advance(time.Second)
					if op%5 == 4 {
						// Every segment, the active one too, reopens on
						// its next use (as under a small budget).
						m.handles.evictCold()
					}
					switch k := rng.IntN(20); {
					case k < 14:
						if rng.IntN(6) == 0 {
							epoch++ // a leadership change: new epochs are assigned on the append path
						}
						recs := randomRecords(rng, clk.Now().UnixMilli())
						for i := range recs {
							if recs[i].key == nil {
								recs[i].key = []byte("k")
							}
						}
						res, err := l.Append(makeBatch(t, record.Codec(rng.IntN(5)), recs), epoch)
						if err != nil {
							t.Fatal(err)
						}
						if int(res.BaseOffset) != len(history) {
							t.Fatalf("base %d, history %d", res.BaseOffset, len(history))
						}
						history = append(history, recs...)
						for range recs {
							epochOf = append(epochOf, epoch)
						}
						l.SetHighWatermark(l.LogEndOffset())
					case k < 17:
						leo := l.LogEndOffset()
						if err := l.Sync(); err != nil {
							t.Fatal(err)
						}
						synced = leo
					case k < 18:
						if err := m.WriteCheckpoints(); err != nil {
							t.Fatal(err)
						}
					default:
						c := l.Config()
						c.RetentionBytes = l.Size() * 2 / 3
						l.SetConfig(c)
						l.EnforceRetention()
						l.ProcessDeletes()
						l.SetConfig(cfg)
					}
				}
				crashManager(m)
				mode := vfs.CrashOptions{KeepUnsynced: vfs.KeepMode(rng.IntN(3)), TornTail: rng.IntN(2) == 0}
				if err := fs.CrashWith(mode); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// checkRecoveredEpochs checks that the leader-epoch cache names, for every
// recovered offset, the epoch its batch was appended in: epochs assigned
// after the last flush are rebuilt from the batches by recovery.
func checkRecoveredEpochs(t *testing.T, l *Log, epochOf []int32) {
	t.Helper()
	for o := l.LogStartOffset(); o < l.LogEndOffset(); o++ {
		got, ok := l.Epochs().EpochForOffset(int64(o))
		if !ok || got != epochOf[o] {
			t.Fatalf("offset %d: epoch cache says %d (%v), appended in epoch %d; cache %v", o, got, ok, epochOf[o], l.Epochs().Entries())
		}
	}
}

func checkRecovered(t *testing.T, l *Log, history []testRecord, synced Offset) {
	t.Helper()
	leo := l.LogEndOffset()
	if int(leo) > len(history) {
		t.Fatalf("recovered log end %d beyond the %d records ever appended", leo, len(history))
	}
	if leo < synced && l.LogStartOffset() <= synced {
		t.Fatalf("recovered log end %d lost synced records below %d", leo, synced)
	}
	got := readAll(t, l, l.LogStartOffset())
	for i, r := range got {
		want := history[r.offset]
		if r.offset != l.LogStartOffset()+Offset(i) {
			t.Fatalf("gap: record %d has offset %d", i, r.offset)
		}
		if string(r.key) != string(want.key) || string(r.value) != string(want.value) || (r.value == nil) != (want.value == nil) {
			t.Fatalf("offset %d recovered wrong content", r.offset)
		}
	}
	if int(leo-l.LogStartOffset()) != len(got) {
		t.Fatalf("log [%d,%d) but %d records readable", l.LogStartOffset(), leo, len(got))
	}
}

// TestCrashGroupCommit: several partitions of one log dir are made durable
// together by group commits (seeds 1-12: one file-system sync for all of
// them; later seeds: each commit at random through one file-system sync,
// the logs' own fsyncs, or the rule SyncLogs applies, so that both
// strategies stay covered whatever that rule is), with segments rolling, leader epochs
// changing and cold segment handles closed now and then. Each round ends
// with a power loss inside a group commit of every partition: the process
// dies after a random number of file operations of it (possibly none,
// possibly all), then the unsynced state is lost at random. After each
// restart every partition must hold a contiguous run of what was appended
// to it, including everything a SyncLogs call reported durable for it.
func TestCrashGroupCommit(t *testing.T) {
	const parts = 6
	for seed := int64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			howRng := rand.New(rand.NewPCG(uint64(seed), 8)) // the sync strategies: rng's sequence stays as it was
			crash := vfs.NewCrashFS(seed)
			fsys := vfs.NewFailFS(crash)
			root := t.TempDir()
			clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
			cfg := DefaultConfig()
			cfg.SegmentBytes = int64(4096 + rng.IntN(4096))
			cfg.IndexIntervalBytes = 128
			cfg.SegmentIndexBytes = 1024
			cfg.RetentionBytes = -1
			opts := ManagerOptions{Dirs: []string{root}, FS: fsys, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
			var (
				history [parts][]testRecord
				epochOf [parts][]int32
				synced  [parts]Offset
			)
			epoch := int32(0)
			for round := 0; round < 4; round++ {
				fsys.SetBudget(-1)
				m, err := OpenManager(opts)
				if err != nil {
					t.Fatalf("round %d: open: %v", round, err)
				}
				logs := make([]*Log, parts)
				for i := range logs {
					if logs[i], err = m.CreateLog(TopicPartition{Topic: "group", Partition: int32(i)}, cfg); err != nil {
						t.Fatal(err)
					}
					l := logs[i]
					checkRecovered(t, l, history[i], synced[i])
					checkRecoveredEpochs(t, l, epochOf[i])
					history[i] = history[i][:l.LogEndOffset()]
					epochOf[i] = epochOf[i][:l.LogEndOffset()]
				}
				epoch++ // a new epoch per restart: the epoch checkpoints are written in group commits
				appendTo := func(i int) {
					l := logs[i]
					recs := randomRecords(rng, clk.Now().UnixMilli())
					for k := range recs {
						if recs[k].key == nil {
							recs[k].key = []byte("k")
						}
					}
					if _, err := l.Append(makeBatch(t, record.Codec(rng.IntN(3)), recs), epoch); err != nil {
						t.Fatal(err)
					}
					history[i] = append(history[i], recs...)
					for range recs {
						epochOf[i] = append(epochOf[i], epoch)
					}
				}
				// groupSync syncs a random group of partitions, with a
				// random strategy, and records what it made durable.
				groupSync := func(idx []int) {
					group := make([]*Log, len(idx))
					leos := make([]Offset, len(idx))
					for k, i := range idx {
						group[k], leos[k] = logs[i], logs[i].LogEndOffset()
					}
					how := SyncFileSystem
					if seed > 12 {
						how = []SyncStrategy{SyncAuto, SyncEachLog, SyncFileSystem}[howRng.IntN(3)]
					}
					for k, err := range SyncLogsWith(group, how) {
						if err == nil {
							synced[idx[k]] = max(synced[idx[k]], leos[k])
						}
					}
				}
				for op := 0; op < 60; op++ {
					clk.Advance(time.Second)
					if op%7 == 6 {
						m.handles.evictCold()
					}
					if rng.IntN(5) == 0 {
						epoch++
					}
					if rng.IntN(4) != 0 {
						appendTo(rng.IntN(parts))
						continue
					}
					idx := rng.Perm(parts)[:4+rng.IntN(parts-4+1)]
					groupSync(idx)
				}
				// The power loss, inside a group commit of every partition.
				for i := range logs {
					appendTo(i)
				}
				fsys.SetBudget(rng.IntN(12))
				groupSync(rng.Perm(parts))
				crashManager(m)
				mode := vfs.CrashOptions{KeepUnsynced: vfs.KeepMode(rng.IntN(3)), TornTail: rng.IntN(2) == 0}
				if err := crash.CrashWith(mode); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestSyncLogsOneFileSystemSync: a group commit through a file-system sync
// costs one syncfs and no fdatasync of any segment, whatever the number of
// partitions; a group smaller than GroupSyncMin always syncs each log's own
// files.
func TestSyncLogsOneFileSystemSync(t *testing.T) {
	crash := vfs.NewCrashFS(1)
	root := t.TempDir()
	cfg := DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, FS: crash, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var logs []*Log
	for i := 0; i < 40; i++ {
		l, err := m.CreateLog(TopicPartition{Topic: "many", Partition: int32(i)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// The first append adds the leader epoch, whose checkpoint is an
		// atomic file write of its own; then everything is synced.
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(0, 1)}), 0); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	count := func(trace []string) (syncs, syncfs int) {
		for _, line := range trace {
			switch {
			case strings.HasPrefix(line, "syncfs "):
				syncfs++
			case strings.HasPrefix(line, "sync "), strings.HasPrefix(line, "syncdir "):
				syncs++
			}
		}
		return syncs, syncfs
	}
	for _, n := range []int{GroupSyncMin, 40} {
		for _, l := range logs[:n] {
			if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, 1)}), 0); err != nil {
				t.Fatal(err)
			}
		}
		crash.StartTrace(root)
		for i, err := range SyncLogsWith(logs[:n], SyncFileSystem) {
			if err != nil {
				t.Fatalf("log %d: %v", i, err)
			}
		}
		syncs, syncfs := count(crash.StopTrace())
		if syncs != 0 || syncfs != 1 {
			t.Fatalf("group of %d: %d file syncs and %d file-system syncs, want 0 and 1", n, syncs, syncfs)
		}
		for _, l := range logs[:n] {
			if rp := l.RecoveryPoint(); rp != l.LogEndOffset() {
				t.Fatalf("%s: recovery point %d after the group commit, log end %d", l, rp, l.LogEndOffset())
			}
		}
	}
	// Below GroupSyncMin: each log's own fdatasync.
	small := logs[:GroupSyncMin-1]
	for _, l := range small {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(2, 2)}), 0); err != nil {
			t.Fatal(err)
		}
	}
	crash.StartTrace(root)
	for _, err := range SyncLogs(small) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if syncs, syncfs := count(crash.StopTrace()); syncs != len(small) || syncfs != 0 {
		t.Fatalf("group of %d: %d file syncs and %d file-system syncs, want %d and 0", len(small), syncs, syncfs, len(small))
	}
}

// TestCrashDuringClose: a shutdown closes every log without fsyncs of its
// own and syncs the file system once before the checkpoints and the
// clean-shutdown marker. The process dies after every possible number of
// file operations of Manager.Close, then the power goes (unsynced state
// lost at random): after the restart every partition holds a contiguous
// run of what was appended, with everything synced before the shutdown;
// when Close completed, nothing appended is lost and the producer state
// is the one at the log end.
func TestCrashDuringClose(t *testing.T) {
	const parts = 5
	for steps := 0; ; steps++ {
		crash := vfs.NewCrashFS(int64(steps))
		fsys := vfs.NewFailFS(crash)
		root := t.TempDir()
		rng := rand.New(rand.NewPCG(uint64(steps), 3))
		clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
		cfg := DefaultConfig()
		cfg.SegmentBytes = 4096
		cfg.IndexIntervalBytes = 128
		cfg.SegmentIndexBytes = 1024
		opts := ManagerOptions{Dirs: []string{root}, FS: fsys, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
		m, err := OpenManager(opts)
		if err != nil {
			t.Fatal(err)
		}
		var (
			history [parts][]testRecord
			synced  [parts]Offset
			seqs    [parts]int32
		)
		logs := make([]*Log, parts)
		for i := range logs {
			if logs[i], err = m.CreateLog(TopicPartition{Topic: "close", Partition: int32(i)}, cfg); err != nil {
				t.Fatal(err)
			}
		}
		for op := 0; op < 30; op++ {
			i := rng.IntN(parts)
			// An idempotent producer per partition: the close writes a
			// producer snapshot.
			recs := []testRecord{{key: []byte("k"), value: []byte("v0")}, {key: []byte("k"), value: []byte("v1")}}
			b := txnBatch(t, 42+int64(i), seqs[i], false, len(recs), clk.Now().UnixMilli())
			seqs[i] += int32(len(recs))
			if _, err := logs[i].Append(b, 0); err != nil {
				t.Fatal(err)
			}
			history[i] = append(history[i], recs...)
			if rng.IntN(6) == 0 {
				leo := logs[i].LogEndOffset()
				if err := logs[i].Sync(); err != nil {
					t.Fatal(err)
				}
				synced[i] = leo
			}
		}
		fsys.SetBudget(steps)
		closeErr := m.Close()
		died := fsys.Exhausted()
		if !died && closeErr != nil {
			t.Fatalf("close with no failure injected: %v", closeErr)
		}
		if died {
			crashManager(m)
		}
		fsys.SetBudget(-1)
		if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepMode(rng.IntN(3)), TornTail: rng.IntN(2) == 0}); err != nil {
			t.Fatal(err)
		}
		m, err = OpenManager(opts)
		if err != nil {
			t.Fatalf("after dying at step %d of close: %v", steps, err)
		}
		if n := m.manifestLoads.Load(); !died && n != parts {
			t.Fatalf("after a clean close %d of %d logs loaded from the start-up manifest", n, parts)
		}
		for i := range logs {
			l, err := m.CreateLog(TopicPartition{Topic: "close", Partition: int32(i)}, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := synced[i]
			if !died {
				want = Offset(len(history[i]))
			}
			checkRecovered(t, l, history[i], want)
			checkRecoveredEpochs(t, l, make([]int32, l.LogEndOffset())) // every batch in epoch 0
			if !died && seqs[i] > 0 {
				if leo := l.LogEndOffset(); int(leo) != len(history[i]) {
					t.Fatalf("closed cleanly: %s ends at %d, %d records appended", l, leo, len(history[i]))
				}
				// The producer state came back at the log end: the next
				// sequence is accepted, a replay of the last is a duplicate.
				if res, err := l.Append(txnBatch(t, 42+int64(i), seqs[i]-2, false, 2, 1), 0); err != nil || !res.Duplicate {
					t.Fatalf("%s: the last batch again after the clean close: %+v, %v (want a duplicate)", l, res, err)
				}
				if res, err := l.Append(txnBatch(t, 42+int64(i), seqs[i], false, 1, 1), 0); err != nil || res.Duplicate {
					t.Fatalf("%s: next sequence after the clean close: %+v, %v", l, res, err)
				}
			}
		}
		crashManager(m)
		if !died {
			if steps < 3 {
				t.Fatalf("close completed within %d file operations", steps)
			}
			return // every step of Close was cut once
		}
	}
}

// TestCloseOneFileSystemSync: closing a manager costs a few file-system
// syncs per log dir plus the checkpoint files' own syncs, not a sync of
// every partition's segment, snapshot and directory.
func TestCloseOneFileSystemSync(t *testing.T) {
	crash := vfs.NewCrashFS(1)
	root := t.TempDir()
	cfg := DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, FS: crash, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
	if err != nil {
		t.Fatal(err)
	}
	const parts = 30
	for i := 0; i < parts; i++ {
		l, err := m.CreateLog(TopicPartition{Topic: "shut", Partition: int32(i)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(txnBatch(t, 9, 0, false, 3, 1), 0); err != nil {
			t.Fatal(err)
		}
	}
	crash.StartTrace(root)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var syncs, syncfs, snapshotRenames int
	for _, line := range crash.StopTrace() {
		switch {
		case strings.HasPrefix(line, "syncfs "):
			syncfs++
		case strings.HasPrefix(line, "sync "), strings.HasPrefix(line, "syncdir "):
			syncs++
		case strings.HasPrefix(line, "rename ") && strings.Contains(line, SnapshotSuffix):
			snapshotRenames++
		}
	}
	// Each producer snapshot is written in place (its CRC tells a torn
	// one): the original staged and renamed every one of them.
	if snapshotRenames != 0 {
		t.Fatalf("closing %d partitions renamed %d producer snapshots, want none", parts, snapshotRenames)
	}
	// Two file-system syncs (before and after the staged leader-epoch
	// checkpoints and producer snapshots are renamed into place), then
	// three checkpoint files (recovery points, log starts, synced tails),
	// the start-up manifest and the marker, each a file sync and a
	// directory sync.
	if syncfs != 2 || syncs > 10 {
		t.Fatalf("closing %d partitions: %d file and directory syncs, %d file-system syncs; want at most 10 and 2", parts, syncs, syncfs)
	}
}

// noSyncFS is a file system without syncfs(2) (ENOSYS).
type noSyncFS struct{ vfs.FS }

func (noSyncFS) SyncFS(name string) error {
	return &os.PathError{Op: "syncfs", Path: name, Err: syscall.ENOSYS}
}

// TestSyncLogsWithoutSyncFS: where the file system has no syncfs, a group
// commit syncs each log's own files, and what it reported durable
// survives a power loss.
func TestSyncLogsWithoutSyncFS(t *testing.T) {
	crash := vfs.NewCrashFS(5)
	root := t.TempDir()
	cfg := DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	opts := ManagerOptions{Dirs: []string{root}, FS: noSyncFS{crash}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*Log
	for i := 0; i < 2*GroupSyncMin; i++ {
		l, err := m.CreateLog(TopicPartition{Topic: "nosyncfs", Partition: int32(i)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, 1), kv(i+1, 1)}), 0); err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	for i, err := range SyncLogsWith(logs, SyncFileSystem) {
		if err != nil {
			t.Fatalf("log %d: %v", i, err)
		}
	}
	crashManager(m)
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	m, err = OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer crashManager(m)
	for i := range logs {
		l, err := m.CreateLog(TopicPartition{Topic: "nosyncfs", Partition: int32(i)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if leo := l.LogEndOffset(); leo != 2 {
			t.Fatalf("partition %d: log end %d after the power loss, 2 records were synced", i, leo)
		}
	}
}

// TestCloseWithoutSyncFS: on a file system without syncfs a shutdown
// syncs each log's files itself, and after a power loss right after it
// everything is there and the stop counts as clean.
func TestCloseWithoutSyncFS(t *testing.T) {
	crash := vfs.NewCrashFS(6)
	root := t.TempDir()
	cfg := DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	opts := ManagerOptions{Dirs: []string{root}, FS: noSyncFS{crash}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		l, err := m.CreateLog(TopicPartition{Topic: "nosyncfs", Partition: int32(i)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(txnBatch(t, 7, 0, false, 2, 1), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, CleanShutdownFile)); err != nil {
		t.Fatalf("clean-shutdown marker after the close: %v", err)
	}
	m, err = OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := 0; i < 3; i++ {
		l, err := m.CreateLog(TopicPartition{Topic: "nosyncfs", Partition: int32(i)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if leo := l.LogEndOffset(); leo != 2 {
			t.Fatalf("partition %d: log end %d after the power loss, 2 records closed", i, leo)
		}
		if res, err := l.Append(txnBatch(t, 7, 0, false, 2, 1), 0); err != nil || !res.Duplicate {
			t.Fatalf("partition %d: the producer's last batch again: %+v, %v (want a duplicate)", i, res, err)
		}
	}
}

// TestCrashRolledSegmentLosesTail: the power goes after a roll and before
// the flush the roll scheduled has run (it waits for Log.syncMu, held
// here), and the crash keeps the new segment's first batch while the
// rolled segment loses its unsynced tail (write-back persists each file on
// its own). The recovered log must still be what was appended up to some
// offset: a hole at the segment boundary would keep the later batch while
// the records before it are gone (a retried idempotent producer would
// then see its later batch as a duplicate and append the earlier one
// after it). Covered: an explicit roll, a roll by an append that does not
// fit, and a follower's roll at a batch that jumps past the log end.
func TestCrashRolledSegmentLosesTail(t *testing.T) {
	for _, name := range []string{"roll", "append rolls", "follower gap"} {
		t.Run(name, func(t *testing.T) {
			crash := vfs.NewCrashFS(1)
			e := newTestEnv(t)
			e.fs = crash
			// The flush scheduled by the roll fails after the crash: not
			// worth an error line.
			l, err := OpenLog(e.dir, TopicPartition{Topic: "topic"}, e.cfg, LogOptions{FS: crash, Clock: e.clk, Logger: slog.New(slog.DiscardHandler), RecoveryPoint: -1, LogStartOffset: -1})
			if err != nil {
				t.Fatal(err)
			}
			ts := e.clk.Now().UnixMilli()
			var appended []readRecord // in append order
			add := func(first Offset, recs []testRecord) []byte {
				b := makeBatch(t, record.CodecNone, recs)
				for i, r := range recs {
					appended = append(appended, readRecord{offset: first + Offset(i), key: r.key, value: r.value})
				}
				return b
			}
			batch := func(i int) []testRecord { return []testRecord{kv(3*i, ts), kv(3*i+1, ts), kv(3*i+2, ts)} }
			for i := 0; i < 2; i++ {
				if _, err := l.Append(add(Offset(3*i), batch(i)), 0); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					if err := l.Sync(); err != nil { // offsets [0,3) are durable
						t.Fatal(err)
					}
				}
			}
			l.syncMu.Lock() // the flush after the roll does not run before the crash
			cfg := e.cfg
			cfg.SegmentBytes = l.active().size.Load() // the next batch does not fit
			switch name {
			case "roll":
				if err := l.Roll(); err != nil {
					t.Fatal(err)
				}
				fallthrough
			case "append rolls":
				l.SetConfig(cfg)
				if _, err := l.Append(add(6, batch(2)), 0); err != nil {
					t.Fatal(err)
				}
			case "follower gap":
				l.SetConfig(cfg)
				b := add(10, batch(2)) // a compacted leader's batch after a gap
				record.Batch(b).SetBaseOffset(10)
				if _, err := l.AppendReplicated(b); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(l.segments()); n != 2 {
				t.Fatalf("%d segments, want the rolled one and the new one", n)
			}
			rolled := LogFileName(e.dir, 0)
			if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepFile: func(p string) (vfs.KeepMode, bool) {
				return vfs.KeepNone, p == rolled
			}}); err != nil {
				t.Fatal(err)
			}
			l.syncMu.Unlock() // the scheduled flush now fails on the dead handles
			crashClose(l)

			l = e.open(false, 3) // the checkpoint may say 3: that much was synced
			defer l.Close()
			got := readAll(t, l, 0)
			if len(got) < 3 {
				t.Fatalf("%d records recovered, the first 3 were synced", len(got))
			}
			for i, r := range got {
				if i >= len(appended) || r.offset != appended[i].offset || string(r.key) != string(appended[i].key) || string(r.value) != string(appended[i].value) {
					t.Fatalf("recovered record %d is offset %d key %q; appended record %d was offset %d key %q: not a prefix of what was appended", i, r.offset, r.key, i, appended[min(i, len(appended)-1)].offset, appended[min(i, len(appended)-1)].key)
				}
			}
			if want := got[len(got)-1].offset + 1; l.LogEndOffset() != want {
				t.Fatalf("log end %d after recovering records up to %d", l.LogEndOffset(), want-1)
			}
		})
	}
}

// TestCrashAfterRecoveryCut: recovery cuts a segment at a corrupt batch
// and deletes the segments after it; a power loss right after must not
// bring those segments back next to the shortened one, which a second
// recovery would take for a gap compaction left (the records after the
// cut would reappear after a hole).
func TestCrashAfterRecoveryCut(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 700
	l := e.open(false, -1)
	sizes := fill(t, e, l, 12)
	if len(l.segments()) < 3 {
		t.Fatalf("%d segments, want at least 3", len(l.segments()))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Corrupt the records of the first segment's second batch.
	flipByte(t, LogFileName(e.dir, 0), int64(sizes[0]+record.HeaderSize+2))

	crash := vfs.NewCrashFS(1)
	e.fs = crash
	l = e.open(false, -1) // the cut: offsets from 3 on are gone
	if leo := l.LogEndOffset(); leo != 3 {
		t.Fatalf("log end %d after the cut, want 3", leo)
	}
	crashClose(l)
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	l = e.open(false, -1)
	defer l.Close()
	if leo := l.LogEndOffset(); leo != 3 {
		t.Fatalf("log end %d after a power loss following the cut, want 3 (segments %v)", leo, l.Segments())
	}
	if got := readAll(t, l, 0); len(got) != 3 {
		t.Fatalf("%d records readable, want 3", len(got))
	}
}

// TestCrashAfterTruncation: a follower's truncation deletes the segments
// above the truncation point and cuts the one holding it; a power loss
// right after must not bring the deleted segments back next to the cut
// one: recovery would take the gap for one compaction left and the
// diverging records the truncation removed would be back after it.
func TestCrashAfterTruncation(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 700
	crash := vfs.NewCrashFS(1)
	e.fs = crash
	l := e.open(false, -1)
	fill(t, e, l, 12)
	if len(l.segments()) < 3 {
		t.Fatalf("%d segments, want at least 3", len(l.segments()))
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateTo(3); err != nil {
		t.Fatal(err)
	}
	crashClose(l)
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	l = e.open(false, 3) // the lowered recovery point was persisted
	defer l.Close()
	if leo := l.LogEndOffset(); leo != 3 {
		t.Fatalf("log end %d after a power loss following the truncation to 3 (segments %v)", leo, l.Segments())
	}
	if got := readAll(t, l, 0); len(got) != 3 {
		t.Fatalf("%d records readable, want 3", len(got))
	}
}

// TestRollSyncsSealedIndexesOfASyncedSegment: a segment whose .log was
// already synced when it rolled still has its sealed indexes (trimmed, the
// largest timestamp last in the time index) synced by a later flush, by a
// single log's flush and by a group commit: the recovery point moves past
// the segment, so a restart trusts those files without rebuilding them.
func TestRollSyncsSealedIndexesOfASyncedSegment(t *testing.T) {
	for _, how := range []string{"flush after the roll", "group commit"} {
		t.Run(how, func(t *testing.T) {
			crash := vfs.NewCrashFS(1)
			root := t.TempDir()
			clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
			cfg := DefaultConfig()
			cfg.IndexIntervalBytes = 1 // an index entry with every batch
			m, err := OpenManager(ManagerOptions{Dirs: []string{root}, FS: crash, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var logs []*Log
			for p := range GroupSyncMin {
				l, err := m.CreateLog(TopicPartition{Topic: "t", Partition: int32(p)}, cfg)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 3 {
					if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, clk.Now().UnixMilli()+int64(i))}), 0); err != nil {
						t.Fatal(err)
					}
				}
				if err := l.Sync(); err != nil { // the whole .log is durable
					t.Fatal(err)
				}
				logs = append(logs, l)
			}
			l := logs[0]
			if how == "group commit" {
				l.syncMu.Lock() // the flush after the roll runs after the group commit
			}
			crash.StartTrace(root)
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			if how == "group commit" {
				for _, l := range logs {
					if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(9, clk.Now().UnixMilli())}), 0); err != nil {
						t.Fatal(err)
					}
				}
				done := make(chan []error)
				go func() { done <- SyncLogsWith(logs, SyncFileSystem) }()
				l.syncMu.Unlock()
				for _, err := range <-done {
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			l.wg.Wait() // the flush after the roll
			trace := crash.StopTrace()
			synced := map[string]bool{}
			for _, op := range trace {
				if f, ok := strings.CutPrefix(op, "sync "); ok {
					synced[filepath.Base(f)] = true
				}
				if strings.HasPrefix(op, "syncfs ") {
					synced["*"] = true
				}
			}
			for _, f := range []string{"00000000000000000000.index", "00000000000000000000.timeindex"} {
				if !synced[f] && !synced["*"] {
					t.Errorf("the sealed %s of a segment synced before its roll was never synced; trace:\n%s", f, strings.Join(trace, "\n"))
				}
			}
			if l.segments()[0].indexesUnsynced.Load() {
				t.Error("the rolled segment's indexes are still marked unsynced")
			}
		})
	}
}

// TestCrashAfterSealedSyncedTail: the sealed synced-tail entry makes an
// unclean start trust a log's index files as the last clean close left
// them (no reopen to seal them again). Each round closes partitions
// cleanly, starts again, writes some of them (flushed or not) and
// checkpoints, then loses power with any unsynced state kept, lost or
// torn: every log reads back what was synced (and nothing it did not
// hold), its records found by offset and by timestamp, through the
// unclean start, the clean close after it and the clean start after that,
// where every log appends and rolls. (Half the rounds read every log
// before the close after the unclean start, half close without.)
func TestCrashAfterSealedSyncedTail(t *testing.T) {
	const parts = 4
	sealedStarts := 0 // rounds whose unclean start trusted a sealed entry
	for seed := int64(1); seed <= 12; seed++ {
		crash := vfs.NewCrashFS(seed)
		root := t.TempDir()
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
		cfg := DefaultConfig()
		cfg.SegmentBytes = 4096
		cfg.IndexIntervalBytes = 128
		cfg.SegmentIndexBytes = 1024
		opts := ManagerOptions{Dirs: []string{root}, FS: crash, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
		open := func() *Manager {
			t.Helper()
			m, err := OpenManager(opts)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			return m
		}
		tp := func(p int) TopicPartition { return TopicPartition{Topic: "sealed", Partition: int32(p)} }
		ts0 := clk.Now().UnixMilli()
		var (
			history [parts][]testRecord
			synced  [parts]Offset
		)
		appendSome := func(l *Log, p, n int) {
			for range n {
				i := len(history[p])
				r := kv(i, ts0+int64(i)) // timestamps ascending: record i at ts0+i
				if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{r}), 0); err != nil {
					t.Fatal(err)
				}
				history[p] = append(history[p], r)
			}
		}
		check := func(m *Manager, what string) {
			t.Helper()
			for p := range parts {
				l, ok := m.Log(tp(p))
				if !ok {
					t.Fatalf("seed %d, %s: partition %d missing", seed, what, p)
				}
				checkRecovered(t, l, history[p], synced[p])
				for i := Offset(0); i < l.HighWatermark(); i += 1 + Offset(rng.IntN(7)) { // (a lookup stops at the high watermark)
					if off, _, ok, err := l.OffsetForTimestamp(ts0 + int64(i)); err != nil || !ok || off != i {
						t.Fatalf("seed %d, %s: partition %d: offset for timestamp of %d: %d %v %v", seed, what, p, i, off, ok, err)
					}
				}
			}
		}
		m := open()
		for p := range parts {
			l, err := m.CreateLog(tp(p), cfg)
			if err != nil {
				t.Fatal(err)
			}
			appendSome(l, p, rng.IntN(60)) // from none to past several index entries and a roll
		}
		if rng.IntN(2) == 0 {
			m.handles.evictCold()
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		for p := range parts {
			synced[p] = Offset(len(history[p]))
		}
		m = open()
		for p := range parts {
			l, _ := m.Log(tp(p))
			switch rng.IntN(3) {
			case 0: // left alone: its entry is sealed
			case 1:
				appendSome(l, p, 1+rng.IntN(20))
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				synced[p] = Offset(len(history[p]))
			case 2:
				appendSome(l, p, 1+rng.IntN(20))
			}
		}
		if err := m.WriteCheckpoints(); err != nil {
			t.Fatal(err)
		}
		crashManager(m)
		if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepMode(rng.IntN(3)), TornTail: rng.IntN(2) == 0}); err != nil {
			t.Fatal(err)
		}
		m = open()
		for _, l := range m.Logs() {
			if l.active().sealedSinceLoad() {
				sealedStarts++
				break
			}
		}
		if seed%2 == 0 {
			// Odd rounds close without reading first: the close leaves
			// the sealed segments as they are.
			check(m, "unclean start")
		}
		for p := range parts {
			l, _ := m.Log(tp(p))
			history[p] = history[p][:l.LogEndOffset()]
			synced[p] = l.LogEndOffset()
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
			t.Fatal(err)
		}
		m = open()
		check(m, "clean start after the unclean one")
		for p := range parts {
			l, _ := m.Log(tp(p))
			appendSome(l, p, 1)
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
			synced[p] = 0
		}
		check(m, "appended and rolled")
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if sealedStarts == 0 {
		t.Fatal("no round's unclean start trusted a sealed synced-tail entry")
	}
}
