package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestCrashGroupCommitJournal is TestCrashGroupCommit with the log dir's
// group-commit journal: group commits go through the journal (trimmed
// often: a small JournalMaxBytes), the logs' own fsyncs or one syncfs at
// random, with segments rolling, leader epochs changing, cold handles
// closed, followers' truncations (TruncateTo, TruncateFullyAndStartAt)
// and partitions deleted and created anew under the same name. Each round
// ends with a power loss inside a journal commit of every partition after
// a random number of file operations of it. After each restart (journal
// replayed) every partition must hold a contiguous run of its history,
// including everything a commit reported durable, and nothing a
// truncation or a deletion removed.
func TestCrashGroupCommitJournal(t *testing.T) {
	const parts = 6
	for seed := int64(1); seed <= 24; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			crash := vfs.NewCrashFS(seed)
			fsys := vfs.NewFailFS(crash)
			root := t.TempDir()
			clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
			cfg := DefaultConfig()
			cfg.SegmentBytes = int64(4096 + rng.IntN(4096))
			cfg.IndexIntervalBytes = 128
			cfg.SegmentIndexBytes = 1024
			cfg.RetentionBytes = int64(16384 + rng.IntN(16384))
			opts := ManagerOptions{Dirs: []string{root}, FS: fsys, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg },
				Journal: true, JournalMaxBytes: int64(2048 + rng.IntN(16384))}
			var (
				history [parts][]testRecord // nil entries: offsets never written (a full truncation's gap)
				ends    [parts][]Offset     // batch ends, for truncations at batch boundaries
				synced  [parts]Offset
			)
			tpOf := func(i int) TopicPartition { return TopicPartition{Topic: "group", Partition: int32(i)} }
			epoch := int32(0)
			for round := 0; round < 4; round++ {
				fsys.SetBudget(-1)
				m, err := OpenManager(opts)
				if err != nil {
					t.Fatalf("round %d: open: %v", round, err)
				}
				logs := make([]*Log, parts)
				for i := range logs {
					if logs[i], err = m.CreateLog(tpOf(i), cfg); err != nil {
						t.Fatal(err)
					}
					l := logs[i]
					checkRecoveredJournal(t, l, history[i], synced[i])
					history[i] = history[i][:l.LogEndOffset()]
					for len(ends[i]) > 0 && ends[i][len(ends[i])-1] > l.LogEndOffset() {
						ends[i] = ends[i][:len(ends[i])-1]
					}
				}
				epoch++
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
					ends[i] = append(ends[i], l.LogEndOffset())
				}
				groupSync := func(idx []int, how SyncStrategy) {
					group := make([]*Log, len(idx))
					leos := make([]Offset, len(idx))
					for k, i := range idx {
						group[k], leos[k] = logs[i], logs[i].LogEndOffset()
					}
					for k, err := range SyncLogsWith(group, how) {
						if err == nil {
							synced[idx[k]] = max(synced[idx[k]], leos[k])
							if d := group[k].Durable(); d < leos[k] {
								t.Fatalf("%s: commit (strategy %d) returned with Durable %d below %d", group[k].tp, how, d, leos[k])
							}
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
					switch r := rng.IntN(22); {
					case r >= 20:
						// DeleteRecords up to what is durable (the high
						// watermark cannot pass it), or retention.
						i := rng.IntN(parts)
						l := logs[i]
						l.SetHighWatermark(l.Durable())
						if r == 20 && l.HighWatermark() > l.LogStartOffset() {
							to := l.LogStartOffset() + Offset(rng.IntN(int(l.HighWatermark()-l.LogStartOffset())+1))
							if err := l.DeleteRecordsBefore(to); err != nil {
								t.Fatal(err)
							}
						} else {
							m.Maintain(true)
						}
					case r < 13:
						appendTo(rng.IntN(parts))
					case r < 17:
						idx := rng.Perm(parts)[:1+rng.IntN(parts)]
						how := []SyncStrategy{SyncJournal, SyncJournal, SyncAuto, SyncEachLog, SyncFileSystem}[rng.IntN(5)]
						groupSync(idx, how)
					case r == 17:
						// A follower's truncation to a batch boundary.
						i := rng.IntN(parts)
						if len(ends[i]) < 2 {
							continue
						}
						k := rng.IntN(len(ends[i]) - 1)
						to := ends[i][k]
						if to < logs[i].LogStartOffset() {
							continue
						}
						t.Logf("round %d: truncate %d to %d (leo %d)", round, i, to, logs[i].LogEndOffset())
						if err := logs[i].TruncateTo(to); err != nil {
							t.Fatal(err)
						}
						history[i], ends[i] = history[i][:to], ends[i][:k+1]
						synced[i] = min(synced[i], to)
					case r == 18:
						// A follower far behind: the log restarts empty further on.
						i := rng.IntN(parts)
						to := logs[i].LogEndOffset() + Offset(rng.IntN(5))
						t.Logf("round %d: truncate fully %d at %d", round, i, to)
						if err := logs[i].TruncateFullyAndStartAt(to); err != nil {
							t.Fatal(err)
						}
						for Offset(len(history[i])) < to {
							history[i] = append(history[i], testRecord{})
						}
						ends[i] = []Offset{to}
						synced[i] = to
					default:
						// The partition is deleted and created anew (a topic
						// re-created, a replica moved away and back).
						i := rng.IntN(parts)
						t.Logf("round %d: delete and create %d (leo %d)", round, i, logs[i].LogEndOffset())
						if err := m.DeleteLog(tpOf(i)); err != nil {
							t.Fatal(err)
						}
						if logs[i], err = m.CreateLog(tpOf(i), cfg); err != nil {
							t.Fatal(err)
						}
						history[i], ends[i], synced[i] = nil, nil, 0
					}
				}
				// The power loss, inside a journal commit of every partition.
				for i := range logs {
					appendTo(i)
				}
				fsys.SetBudget(rng.IntN(14))
				groupSync(rng.Perm(parts), SyncJournal)
				crashManager(m)
				mode := vfs.CrashOptions{KeepUnsynced: vfs.KeepMode(rng.IntN(3)), TornTail: rng.IntN(2) == 0}
				if err := crash.CrashWith(mode); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// checkRecoveredJournal is checkRecovered for histories with a full
// truncation's gap (zero records before the log start).
func checkRecoveredJournal(t *testing.T, l *Log, history []testRecord, synced Offset) {
	t.Helper()
	leo := l.LogEndOffset()
	if int(leo) > len(history) {
		t.Fatalf("%s: recovered log end %d beyond the %d records of its history", l.tp, leo, len(history))
	}
	if leo < synced {
		t.Fatalf("%s: recovered log end %d lost records committed below %d", l.tp, leo, synced)
	}
	got := readAll(t, l, l.LogStartOffset())
	for i, r := range got {
		want := history[r.offset]
		if r.offset != l.LogStartOffset()+Offset(i) {
			t.Fatalf("%s: gap: record %d has offset %d", l.tp, i, r.offset)
		}
		if string(r.key) != string(want.key) || string(r.value) != string(want.value) || (r.value == nil) != (want.value == nil) {
			t.Fatalf("%s: offset %d recovered wrong content", l.tp, r.offset)
		}
	}
	if int(leo-l.LogStartOffset()) != len(got) {
		t.Fatalf("%s: log [%d,%d) but %d records readable", l.tp, l.LogStartOffset(), leo, len(got))
	}
}

// journalFixture writes to parts partitions through journal commits only,
// then loses power with nothing but the journal synced: every committed
// record is in the journal alone. It returns what each partition holds.
func journalFixture(t *testing.T, fsys vfs.FS, crash *vfs.CrashFS, root string, parts int) (ManagerOptions, [][]testRecord) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SegmentBytes = 16384
	cfg.SegmentIndexBytes = 1024
	cfg.IndexIntervalBytes = 512
	cfg.RetentionBytes = -1
	opts := ManagerOptions{Dirs: []string{root}, FS: fsys, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	history := make([][]testRecord, parts)
	logs := make([]*Log, parts)
	for i := range logs {
		if logs[i], err = m.CreateLog(TopicPartition{Topic: "replay", Partition: int32(i)}, cfg); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 5; round++ {
		for i, l := range logs {
			recs := randomRecords(rng, 1_700_000_000_000)
			for k := range recs {
				if recs[k].key == nil {
					recs[k].key = []byte("k")
				}
			}
			if _, err := l.Append(makeBatch(t, record.CodecNone, recs), 1); err != nil {
				t.Fatal(err)
			}
			history[i] = append(history[i], recs...)
		}
		for i, err := range SyncLogsWith(logs, SyncJournal) {
			if err != nil {
				t.Fatalf("log %d: %v", i, err)
			}
		}
	}
	crashManager(m)
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	return opts, history
}

// TestJournalReplayIdempotent: the journal alone holds what was committed;
// replaying it restores every partition, replaying the same entries again
// changes nothing, and a power loss at any file operation of a replay
// followed by another replay gives the same logs as one replay.
func TestJournalReplayIdempotent(t *testing.T) {
	const parts = 5
	done := false
	for budget := -1; !done; budget++ {
		if budget > 400 {
			t.Fatal("a replay takes more than 400 file operations")
		}
		crash := vfs.NewCrashFS(int64(budget + 2))
		fsys := vfs.NewFailFS(crash)
		root := t.TempDir()
		opts, history := journalFixture(t, fsys, crash, root, parts)
		data, err := os.ReadFile(filepath.Join(root, JournalFile))
		if err != nil {
			t.Fatal(err)
		}
		_, ents, _, err := decodeJournal(data)
		if err != nil || len(ents) == 0 {
			t.Fatalf("journal: %d entries, %v", len(ents), err)
		}
		if budget >= 0 {
			// A replay cut short by a power loss.
			fsys.SetBudget(budget)
			if m, err := OpenManager(opts); err == nil {
				crashManager(m)
			}
			done = !fsys.Exhausted() // the whole replay ran: the last budget
			fsys.SetBudget(-1)
			if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepMode(budget % 3), TornTail: budget%2 == 0}); err != nil {
				t.Fatal(err)
			}
		}
		m, err := OpenManager(opts)
		if err != nil {
			t.Fatalf("budget %d: open: %v", budget, err)
		}
		logs := map[TopicPartition]*Log{}
		for i := 0; i < parts; i++ {
			tp := TopicPartition{Topic: "replay", Partition: int32(i)}
			l, ok := m.Log(tp)
			if !ok {
				t.Fatalf("budget %d: %s missing", budget, tp)
			}
			checkRecoveredJournal(t, l, history[i], Offset(len(history[i])))
			logs[tp] = l
		}
		changed, err := replayEntries(ents, func(tp TopicPartition) *Log { return logs[tp] })
		if err != nil || len(changed) != 0 {
			t.Fatalf("budget %d: second replay changed %d logs, %v", budget, len(changed), err)
		}
		for i := 0; i < parts; i++ {
			checkRecoveredJournal(t, logs[TopicPartition{Topic: "replay", Partition: int32(i)}], history[i], Offset(len(history[i])))
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// journalBatch is a batch of n records at base (values name the batch).
func journalBatch(t *testing.T, base Offset, n int, tag string) ([]byte, []testRecord) {
	t.Helper()
	recs := make([]testRecord, n)
	for i := range recs {
		recs[i] = testRecord{key: []byte("k"), value: []byte(fmt.Sprintf("%s-%d", tag, i)), ts: 1_700_000_000_000}
	}
	b := makeBatch(t, record.CodecNone, recs)
	binary.BigEndian.PutUint64(b, uint64(base))
	return b, recs
}

// TestJournalCorruption: what a damaged journal replays. Entries up to
// the damage are replayed, nothing after it; a journal whose header is
// damaged while entries follow stops the log dir from opening (its
// entries may hold acknowledged records).
func TestJournalCorruption(t *testing.T) {
	tp := TopicPartition{Topic: "c", Partition: 0}
	other := TopicPartition{Topic: "gone", Partition: 0}
	const gen = 7
	b0, r0 := journalBatch(t, 0, 3, "a")
	b1, r1 := journalBatch(t, 3, 2, "b")
	b2, r2 := journalBatch(t, 5, 4, "c")
	n0, rn := journalBatch(t, 0, 2, "new")
	entry := func(g uint64, kind uint8, tp TopicPartition, off Offset, payload []byte) []byte {
		return appendJournalEntry(nil, journalEntry{Gen: g, Kind: kind, TP: tp, Offset: off, Payload: payload})
	}
	e0, e1, e2 := entry(gen, journalData, tp, 0, b0), entry(gen, journalData, tp, 3, b1), entry(gen, journalData, tp, 5, b2)
	cat := func(parts ...[]byte) []byte {
		out := appendJournalHeader(nil, gen)
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	flip := func(b []byte, at int) []byte {
		c := append([]byte(nil), b...)
		c[at] ^= 0x40
		return c
	}
	all := append(append(append([]testRecord(nil), r0...), r1...), r2...)
	cases := []struct {
		name    string
		file    []byte
		want    []testRecord
		openErr bool
	}{
		{"intact", cat(e0, e1, e2), all, false},
		{"torn tail", cat(e0, e1, e2[:len(e2)-7]), all[:5], false},
		{"torn entry header", cat(e0, e1, e2[:5]), all[:5], false},
		{"bad CRC mid-file", cat(e0, flip(e1, 30), e2), all[:3], false},
		{"bad length mid-file", cat(e0, flip(e1, 0), e2), all[:3], false},
		{"older generation after the tail", cat(e0, e1, entry(gen-1, journalData, tp, 5, b2)), all[:5], false},
		{"unknown kind", cat(e0, entry(gen, 9, tp, 3, b1), e2), all[:3], false},
		{"wrong incarnation: entries before a void are not applied", cat(e0, e1, e2, entry(gen, journalVoid, tp, 0, nil), entry(gen, journalData, tp, 0, n0)), rn, false},
		{"partition without a log", cat(entry(gen, journalData, other, 0, b0), e0), all[:3], false},
		{"replayed twice in one file", cat(e0, e1, e0, e1, e2), all, false},
		{"header only", cat(), nil, false},
		{"short header (crash while created)", cat()[:10], nil, false},
		{"damaged header with entries", flip(cat(e0), 3), nil, true},
		{"header of another version", func() []byte { c := cat(e0); c[9] = 2; return c }(), nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := DefaultConfig()
			opts := ManagerOptions{Dirs: []string{root}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true}
			m, err := OpenManager(opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.CreateLog(tp, cfg); err != nil {
				t.Fatal(err)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, JournalFile), c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err = OpenManager(opts)
			if c.openErr {
				if !errors.Is(err, ErrStorage) {
					t.Fatalf("open: %v, want a storage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			l, _ := m.Log(tp)
			checkRecoveredJournal(t, l, c.want, Offset(len(c.want)))
			if _, ok := m.Log(other); ok {
				t.Fatal("replay created a log")
			}
			// The journal starts over: a restart replays nothing more.
			data, err := os.ReadFile(filepath.Join(root, JournalFile))
			if err != nil {
				t.Fatal(err)
			}
			if _, ents, end, err := decodeJournal(data); err != nil || len(ents) != 0 || end.Reason != "" {
				t.Fatalf("journal after replay: %d entries, %+v, %v", len(ents), end, err)
			}
		})
	}
}

// TestCrashJournalCommitEveryStep: a power loss at every file operation of
// a journal commit of six partitions (one that trims the journal first:
// syncs every partition, starts the next generation; and a plain one), for
// each way of losing unsynced state: what the commit reported durable,
// and everything committed before it, survives for every partition.
func TestCrashJournalCommitEveryStep(t *testing.T) {
	const parts = 6
	for _, trim := range []bool{false, true} {
		for _, mode := range []vfs.CrashOptions{{KeepUnsynced: vfs.KeepNone}, {KeepUnsynced: vfs.KeepRandom, TornTail: true}, {KeepUnsynced: vfs.KeepAll}} {
			done := false
			for budget := 0; !done; budget++ {
				if budget > 400 {
					t.Fatal("a commit takes more than 400 file operations")
				}
				crash := vfs.NewCrashFS(int64(budget))
				fsys := vfs.NewFailFS(crash)
				root := t.TempDir()
				cfg := DefaultConfig()
				cfg.SegmentBytes = 16384
				cfg.SegmentIndexBytes = 1024
				cfg.IndexIntervalBytes = 512
				cfg.RetentionBytes = -1
				maxBytes := int64(1 << 30)
				if trim {
					maxBytes = 1
				}
				opts := ManagerOptions{Dirs: []string{root}, FS: fsys, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true, JournalMaxBytes: maxBytes}
				m, err := OpenManager(opts)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(3, 4))
				history := make([][]testRecord, parts)
				synced := make([]Offset, parts)
				logs := make([]*Log, parts)
				for i := range logs {
					if logs[i], err = m.CreateLog(TopicPartition{Topic: "step", Partition: int32(i)}, cfg); err != nil {
						t.Fatal(err)
					}
				}
				commit := func(last bool) {
					for i, l := range logs {
						recs := randomRecords(rng, 1_700_000_000_000)
						for k := range recs {
							if recs[k].key == nil {
								recs[k].key = []byte("k")
							}
						}
						if _, err := l.Append(makeBatch(t, record.CodecNone, recs), int32(1+i)); err != nil {
							t.Fatal(err)
						}
						history[i] = append(history[i], recs...)
					}
					if last {
						fsys.SetBudget(budget)
					}
					for i, err := range SyncLogsWith(logs, SyncJournal) {
						if err == nil {
							synced[i] = Offset(len(history[i]))
						} else if !last {
							t.Fatalf("log %d: %v", i, err)
						}
					}
				}
				for range 3 {
					commit(false)
				}
				commit(true)
				if done = !fsys.Exhausted(); done {
					t.Logf("trim %v, %+v: the commit took %d file operations", trim, mode, budget)
				}
				fsys.SetBudget(-1)
				crashManager(m)
				if err := crash.CrashWith(mode); err != nil {
					t.Fatal(err)
				}
				m, err = OpenManager(opts)
				if err != nil {
					t.Fatalf("trim %v, budget %d, %+v: open: %v", trim, budget, mode, err)
				}
				for i := range logs {
					l, _ := m.Log(TopicPartition{Topic: "step", Partition: int32(i)})
					checkRecoveredJournal(t, l, history[i], synced[i])
				}
				if err := m.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestJournalCaptureFallback: a journal commit whose partitions' captures
// overflowed (or were never filled) reads their batches back from the
// segments; after a power loss that keeps nothing unsynced, the journal
// alone restores everything committed.
func TestJournalCaptureFallback(t *testing.T) {
	defer func(n int) { journalCaptureMax = n }(journalCaptureMax)
	journalCaptureMax = 400
	crash := vfs.NewCrashFS(1)
	root := t.TempDir()
	cfg := DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	opts := ManagerOptions{Dirs: []string{root}, FS: crash, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	const parts = 4
	logs := make([]*Log, parts)
	history := make([][]testRecord, parts)
	for i := range logs {
		if logs[i], err = m.CreateLog(TopicPartition{Topic: "cap", Partition: int32(i)}, cfg); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 3; round++ {
		for i, l := range logs {
			// Partition 0 overflows its capture every round; the others
			// fill it only in later rounds.
			n := 1 + round
			if i == 0 {
				n = 10
			}
			for range n {
				b, recs := journalBatch(t, 0, 3, fmt.Sprintf("r%d-p%d-%d", round, i, len(history[i])))
				if _, err := l.Append(b, 1); err != nil {
					t.Fatal(err)
				}
				history[i] = append(history[i], recs...)
			}
		}
		for i, err := range SyncLogsWith(logs, SyncJournal) {
			if err != nil {
				t.Fatalf("log %d: %v", i, err)
			}
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
		l, _ := m.Log(TopicPartition{Topic: "cap", Partition: int32(i)})
		checkRecoveredJournal(t, l, history[i], Offset(len(history[i])))
	}
}

// TestJournalKeptForOfflinePartition: a partition that fails to open has
// records in the journal: the journal is kept aside for it (renamed, same
// bytes), not discarded with the new generation.
func TestJournalKeptForOfflinePartition(t *testing.T) {
	root := t.TempDir()
	cfg := DefaultConfig()
	opts := ManagerOptions{Dirs: []string{root}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true}
	bad := TopicPartition{Topic: "bad", Partition: 0}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.CreateLog(bad, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, l, 3)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(root, PartitionDirName(bad), fmt.Sprintf("%020d%s", 0, LogSuffix))
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(seg, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CleanShutdownFile, RecoveryPointCheckpointFile} {
		if err := os.Remove(filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := journalBatch(t, 3, 2, "j")
	file := appendJournalEntry(appendJournalHeader(nil, 9), journalEntry{Gen: 9, Kind: journalData, TP: bad, Offset: 3, Payload: b})
	if err := os.WriteFile(filepath.Join(root, JournalFile), file, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err = OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Failed()[bad] == nil {
		t.Fatalf("failed partitions %v, want %s", m.Failed(), bad)
	}
	kept, err := os.ReadFile(filepath.Join(root, JournalFile+".kept-9"))
	if err != nil || string(kept) != string(file) {
		t.Fatalf("journal kept aside: %d bytes, %v", len(kept), err)
	}
	if _, err := os.Stat(filepath.Join(root, JournalFile)); err != nil {
		t.Fatalf("no new journal: %v", err)
	}
}

// TestJournalDiskFull: a journal write refused by a full file system (part
// of it written) fails that commit with a storage error and leaves the
// journal as it was: once space is back, commits go on, and after a power
// loss keeping nothing unsynced every record of a successful commit is
// there, nothing of the failed one's partial write in the way.
func TestJournalDiskFull(t *testing.T) {
	crash := vfs.NewCrashFS(1)
	full := vfs.NewFullFS(crash)
	root := t.TempDir()
	cfg := DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	opts := ManagerOptions{Dirs: []string{root}, FS: full, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	const parts = 4
	logs := make([]*Log, parts)
	history := make([][]testRecord, parts)
	committed := make([]Offset, parts)
	for i := range logs {
		if logs[i], err = m.CreateLog(TopicPartition{Topic: "full", Partition: int32(i)}, cfg); err != nil {
			t.Fatal(err)
		}
	}
	for round := 0; round < 4; round++ {
		for i, l := range logs {
			b, recs := journalBatch(t, 0, 3, fmt.Sprintf("r%d-p%d", round, i))
			if _, err := l.Append(b, 1); err != nil {
				t.Fatal(err)
			}
			history[i] = append(history[i], recs...)
		}
		if round == 1 {
			full.SetSpace(100) // the journal write gets 100 bytes in
		}
		for i, err := range SyncLogsWith(logs, SyncJournal) {
			switch {
			case round == 1 && !errors.Is(err, ErrStorage):
				t.Fatalf("round 1, log %d: %v, want a storage error (disk full)", i, err)
			case round != 1 && err != nil:
				t.Fatalf("round %d, log %d: %v", round, i, err)
			case err == nil:
				committed[i] = Offset(len(history[i]))
			}
		}
		full.SetSpace(-1)
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
		l, _ := m.Log(TopicPartition{Topic: "full", Partition: int32(i)})
		checkRecoveredJournal(t, l, history[i], committed[i])
	}
}

// TestJournalCaptureOnlyWhenCommitted: a log no journal commit takes (a
// follower's) keeps no copy of its appends; one that overflows its
// capture stops capturing until a commit takes it again.
func TestJournalCaptureOnlyWhenCommitted(t *testing.T) {
	defer func(n int) { journalCaptureMax = n }(journalCaptureMax)
	journalCaptureMax = 1000
	root := t.TempDir()
	cfg := DefaultConfig()
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.CreateLog(TopicPartition{Topic: "f", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	captured := func() int {
		l.jcap.mu.Lock()
		defer l.jcap.mu.Unlock()
		return len(l.jcap.data)
	}
	appendRecords(t, l, 5)
	if n := captured(); n != 0 {
		t.Fatalf("a log never committed through the journal captured %d bytes", n)
	}
	if err := SyncLogsWith([]*Log{l}, SyncJournal)[0]; err != nil {
		t.Fatal(err)
	}
	appendRecords(t, l, 1)
	if captured() == 0 {
		t.Fatal("a log committed through the journal captured nothing")
	}
	for range 50 {
		appendRecords(t, l, 1)
	}
	if n := captured(); n != 0 {
		t.Fatalf("an overflowed capture holds %d bytes", n)
	}
}
