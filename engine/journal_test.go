package engine

import (
	"fmt"
	"math/rand/v2"
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
			cfg.RetentionBytes = -1
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
					switch r := rng.IntN(20); {
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
