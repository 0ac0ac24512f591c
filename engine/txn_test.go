package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// txnEvent is the model's view of one appended batch.
type txnEvent struct {
	base, last Offset
	pid        int64 // -1: no producer
	seqLast    int32
	kind       byte // 'd' transactional data, 'n' non-transactional, 'c' commit, 'a' abort
}

// txnModel replays events as Kafka defines transactions in a log.
type txnModel struct{ events []txnEvent }

func (m *txnModel) truncate(end Offset) {
	n := 0
	for n < len(m.events) && m.events[n].last < end {
		n++
	}
	m.events = m.events[:n]
}

// state returns the ongoing transactions (pid → first offset), the
// aborted list and each producer's next sequence.
func (m *txnModel) state() (map[int64]Offset, []AbortedTxn, map[int64]int32) {
	ongoing := map[int64]Offset{}
	seq := map[int64]int32{}
	var aborted []AbortedTxn
	for _, e := range m.events {
		switch e.kind {
		case 'd':
			if _, ok := ongoing[e.pid]; !ok {
				ongoing[e.pid] = e.base
			}
			seq[e.pid] = e.seqLast + 1
		case 'n':
			if e.pid >= 0 {
				seq[e.pid] = e.seqLast + 1
			}
		case 'c', 'a':
			first, ok := ongoing[e.pid]
			if !ok {
				first = e.base
			}
			delete(ongoing, e.pid)
			if e.kind == 'a' {
				lso := e.base + 1
				for _, o := range ongoing {
					if o < lso {
						lso = o
					}
				}
				aborted = append(aborted, AbortedTxn{ProducerID: e.pid, FirstOffset: first, LastOffset: e.base, LastStableOffset: lso})
			}
		}
	}
	return ongoing, aborted, seq
}

func (m *txnModel) check(t *testing.T, l *Log, rng *rand.Rand, where string) {
	t.Helper()
	ongoing, aborted, _ := m.state()
	l.SetHighWatermark(l.LogEndOffset())
	want := l.HighWatermark()
	for _, o := range ongoing {
		if o < want {
			want = o
		}
	}
	if got := l.LastStableOffset(); got != want {
		t.Fatalf("%s: LSO %d, model %d (ongoing %v)", where, got, want, ongoing)
	}
	got, err := l.AbortedTxns(0, l.LogEndOffset()+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(aborted) || (len(got) > 0 && !reflect.DeepEqual(got, aborted)) {
		t.Fatalf("%s: aborted %+v, model %+v", where, got, aborted)
	}
	for i := 0; i < 5; i++ {
		from := Offset(rng.Int64N(int64(l.LogEndOffset()) + 1))
		to := from + Offset(rng.Int64N(20))
		got, err := l.AbortedTxns(from, to)
		if err != nil {
			t.Fatal(err)
		}
		var w []AbortedTxn
		for _, a := range aborted {
			if a.LastOffset >= from && a.FirstOffset < to {
				w = append(w, a)
			}
		}
		if len(got) != len(w) || (len(got) > 0 && !reflect.DeepEqual(got, w)) {
			t.Fatalf("%s: aborted in [%d,%d) %+v, model %+v", where, from, to, got, w)
		}
	}
}

func txnBatch(t *testing.T, pid int64, seq int32, transactional bool, n int, ts int64) []byte {
	t.Helper()
	var bl record.Builder
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = pid, 0, seq
	if pid < 0 {
		bl.ProducerEpoch, bl.BaseSequence = -1, -1
	}
	if transactional {
		bl.Attributes = record.AttrTransactional
	}
	bl.BaseTimestamp, bl.MaxTimestamp, bl.LastOffsetDelta = ts, -1, -1
	for i := 0; i < n; i++ {
		bl.Add(record.Record{OffsetDelta: int32(i), Key: []byte("k"), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	b, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTxnModel appends transactional and plain batches from a few
// producers, commits and aborts at random, truncates, rolls small
// segments, corrupts .txnindex files and crashes (over a file system that
// loses unsynced data); after every step the log's last stable offset and
// aborted transactions (whole list and random ranges) equal the model's
// replay of the batches that survived.
func TestTxnModel(t *testing.T) {
	for seed := int64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			fs := vfs.NewCrashFS(seed)
			root := t.TempDir()
			clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
			cfg := DefaultConfig()
			cfg.SegmentBytes = int64(1024 + rng.IntN(2048))
			cfg.IndexIntervalBytes = 128
			cfg.SegmentIndexBytes = 1024
			cfg.RetentionBytes = -1
			opts := ManagerOptions{Dirs: []string{root}, FS: fs, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
			tp := TopicPartition{Topic: "txn", Partition: 0}
			var m txnModel
			for round := 0; round < 5; round++ {
				mgr, err := OpenManager(opts)
				if err != nil {
					t.Fatalf("round %d: open: %v", round, err)
				}
				l, err := mgr.CreateLog(tp, cfg)
				if err != nil {
					t.Fatal(err)
				}
				m.truncate(l.LogEndOffset())
				m.check(t, l, rng, fmt.Sprintf("round %d open", round))
				for op := 0; op < 60; op++ {
					clk.Advance(time.Millisecond)
					_, _, seq := m.state()
					pid := int64(rng.IntN(4))
					switch k := rng.IntN(20); {
					case k < 10:
						n := 1 + rng.IntN(3)
						res, err := l.Append(txnBatch(t, pid, seq[pid], true, n, clk.Now().UnixMilli()), 0)
						if err != nil {
							t.Fatal(err)
						}
						m.events = append(m.events, txnEvent{base: res.BaseOffset, last: res.LastOffset, pid: pid, seqLast: seq[pid] + int32(n) - 1, kind: 'd'})
					case k < 12:
						res, err := l.Append(txnBatch(t, -1, -1, false, 1, clk.Now().UnixMilli()), 0)
						if err != nil {
							t.Fatal(err)
						}
						m.events = append(m.events, txnEvent{base: res.BaseOffset, last: res.LastOffset, pid: -1, kind: 'n'})
					case k < 17:
						commit := rng.IntN(2) == 0
						res, err := l.AppendMarker(Marker{ProducerID: pid, CoordinatorEpoch: 0, Commit: commit}, 0)
						if err != nil {
							t.Fatal(err)
						}
						kind := byte('a')
						if commit {
							kind = 'c'
						}
						m.events = append(m.events, txnEvent{base: res.BaseOffset, last: res.LastOffset, pid: pid, kind: kind})
					case k < 18:
						if err := l.Sync(); err != nil {
							t.Fatal(err)
						}
					case k < 19 && len(m.events) > 0:
						to := m.events[rng.IntN(len(m.events))].base
						if err := l.TruncateTo(to); err != nil {
							t.Fatal(err)
						}
						m.truncate(to)
					default:
						if err := mgr.WriteCheckpoints(); err != nil {
							t.Fatal(err)
						}
					}
					m.check(t, l, rng, fmt.Sprintf("round %d op %d", round, op))
				}
				switch rng.IntN(3) {
				case 0: // clean restart
					if err := mgr.Close(); err != nil {
						t.Fatal(err)
					}
				default:
					crashManager(mgr)
					if err := fs.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepMode(rng.IntN(3)), TornTail: rng.IntN(2) == 0}); err != nil {
						t.Fatal(err)
					}
				}
				if rng.IntN(3) == 0 {
					corruptSomeTxnIndex(t, root+"/txn-0", rng)
				}
			}
			ongoing, aborted, _ := m.state()
			t.Logf("%d batches, %d aborted, %d ongoing at the end", len(m.events), len(aborted), len(ongoing))
		})
	}
}

// corruptSomeTxnIndex damages one .txnindex file (a torn entry or a bad
// version), as a disk fault would.
func corruptSomeTxnIndex(t *testing.T, dir string, rng *rand.Rand) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if _, suffix, ok := parseOffsetFileName(e.Name()); !ok || suffix != TxnIndexSuffix {
			continue
		}
		p := dir + "/" + e.Name()
		data, err := os.ReadFile(p)
		if err != nil || len(data) == 0 {
			continue
		}
		if rng.IntN(2) == 0 {
			data = append(data, 1, 2, 3)
		} else {
			data[0] = 9
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
}

// TestTxnMarkerChecks: a marker from an older producer epoch or an older
// coordinator epoch is refused; a plain batch from a producer inside a
// transaction is INVALID_TXN_STATE; a non-transactional read of the
// markers' type works.
func TestTxnMarkerChecks(t *testing.T) {
	e := newTestEnv(t)
	l := e.open(true, 0)
	defer l.Close()
	if _, err := l.Append(txnBatch(t, 5, 0, true, 2, 1), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(txnBatch(t, 5, 2, false, 1, 1), 0); !errors.Is(err, ErrInvalidTxnState) {
		t.Fatalf("plain batch inside a transaction: %v", err)
	}
	if _, err := l.AppendMarker(Marker{ProducerID: 5, ProducerEpoch: 0, CoordinatorEpoch: 3, Commit: true}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendMarker(Marker{ProducerID: 5, ProducerEpoch: 0, CoordinatorEpoch: 2}, 0); !errors.Is(err, ErrCoordinatorFenced) {
		t.Fatalf("older coordinator epoch: %v", err)
	}
	if _, err := l.AppendMarker(Marker{ProducerID: 5, ProducerEpoch: 1, CoordinatorEpoch: 3}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendMarker(Marker{ProducerID: 5, ProducerEpoch: 0, CoordinatorEpoch: 3}, 0); !errors.Is(err, ErrInvalidProducerEpoch) {
		t.Fatalf("older producer epoch: %v", err)
	}
	var types []int16
	if err := l.ReadBatches(0, l.LogEndOffset(), func(b record.Batch) error {
		if b.IsControl() {
			typ, err := ControlType(b)
			if err != nil {
				return err
			}
			types = append(types, typ)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(types, []int16{ControlCommit, ControlAbort}) {
		t.Fatalf("marker types %v", types)
	}
}

// TestTxnIndexCorruptionTable: a log with committed, aborted and ongoing
// transactions over several segments; each case damages its .txnindex
// files, snapshots or tail, then the log is reopened and must report the
// LSO and aborted transactions of the batches that survive.
func TestTxnIndexCorruptionTable(t *testing.T) {
	cases := []struct {
		name  string
		clean bool
		poke  func(t *testing.T, dir string, m *txnModel)
	}{
		{"intact_clean", true, func(*testing.T, string, *txnModel) {}},
		{"intact_unclean", false, func(*testing.T, string, *txnModel) {}},
		{"torn_entry", true, func(t *testing.T, dir string, _ *txnModel) {
			editTxnIndexes(t, dir, func(b []byte) []byte { return append(b, 0, 0, 1) })
		}},
		{"bad_version", true, func(t *testing.T, dir string, _ *txnModel) {
			editTxnIndexes(t, dir, func(b []byte) []byte { b[0] = 1; return b })
		}},
		{"entry_outside_segment", true, func(t *testing.T, dir string, _ *txnModel) {
			editTxnIndexes(t, dir, func(b []byte) []byte { b[18] = 0x7f; return b })
		}},
		{"entries_out_of_order", true, func(t *testing.T, dir string, _ *txnModel) {
			editTxnIndexes(t, dir, func(b []byte) []byte { return append(b, b[:TxnIndexEntrySize]...) })
		}},
		{"snapshots_missing", true, func(t *testing.T, dir string, _ *txnModel) {
			removeAll(t, dir, SnapshotSuffix)
		}},
		{"snapshots_missing_and_index_garbage", false, func(t *testing.T, dir string, _ *txnModel) {
			removeAll(t, dir, SnapshotSuffix)
			editTxnIndexes(t, dir, func(b []byte) []byte { return b[:len(b)-1] })
		}},
		// The active segment's last abort marker is cut by recovery (a
		// torn tail): its index entry goes, its transaction is ongoing.
		{"abort_marker_cut_by_recovery", false, func(t *testing.T, dir string, m *txnModel) {
			last := m.events[len(m.events)-1]
			if last.kind != 'a' {
				t.Fatalf("the fill ends with %c, want an abort", last.kind)
			}
			segs, _ := os.ReadDir(dir)
			var active string
			for _, e := range segs {
				if _, suffix, ok := parseOffsetFileName(e.Name()); ok && suffix == LogSuffix {
					active = dir + "/" + e.Name()
				}
			}
			fi, err := os.Stat(active)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(active, fi.Size()-3); err != nil {
				t.Fatal(err)
			}
			m.truncate(last.base)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.cfg.SegmentBytes = 600
			l := e.open(true, -1)
			var m txnModel
			seq := map[int64]int32{}
			add := func(pid int64, kind byte) {
				var res AppendResult
				var err error
				switch kind {
				case 'd':
					res, err = l.Append(txnBatch(t, pid, seq[pid], true, 2, 1), 0)
					m.events = append(m.events, txnEvent{base: res.BaseOffset, last: res.LastOffset, pid: pid, seqLast: seq[pid] + 1, kind: kind})
					seq[pid] += 2
				default:
					res, err = l.AppendMarker(Marker{ProducerID: pid, Commit: kind == 'c'}, 0)
					m.events = append(m.events, txnEvent{base: res.BaseOffset, last: res.LastOffset, pid: pid, kind: kind})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 4; i++ {
				add(1, 'd')
				add(2, 'd')
				add(1, 'a')
				add(3, 'd')
				add(2, 'c')
				add(3, 'a')
				add(4, 'd')
			}
			add(5, 'd')
			add(5, 'a')
			if len(l.Segments()) < 3 {
				t.Fatalf("want several segments, got %d", len(l.Segments()))
			}
			rng := rand.New(rand.NewPCG(1, 2))
			m.check(t, l, rng, "before")
			if tc.clean {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				crashClose(l)
			}
			tc.poke(t, e.dir, &m)
			l = e.open(tc.clean, 0)
			defer l.Close()
			m.check(t, l, rng, "after reopen")
		})
	}
}

// editTxnIndexes rewrites every .txnindex file of dir with edit.
func editTxnIndexes(t *testing.T, dir string, edit func([]byte) []byte) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if _, suffix, ok := parseOffsetFileName(e.Name()); !ok || suffix != TxnIndexSuffix {
			continue
		}
		p := dir + "/" + e.Name()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, edit(data), 0o644); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no .txnindex to damage")
	}
}

// TestTxnReplicatedAndRetention: a follower copying the leader's batches
// (AppendReplicated) ends up with the same last stable offset and aborted
// transactions, .txnindex files included; retention deleting the oldest
// segments drops their aborted transactions with their files.
func TestTxnReplicatedAndRetention(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 500
	e.cfg.FileDeleteDelay = 0
	l := e.open(true, -1)
	defer l.Close()
	var m txnModel
	seq := map[int64]int32{}
	for i := 0; i < 6; i++ {
		for _, pid := range []int64{1, 2} {
			res, err := l.Append(txnBatch(t, pid, seq[pid], true, 2, 1), 0)
			if err != nil {
				t.Fatal(err)
			}
			m.events = append(m.events, txnEvent{base: res.BaseOffset, last: res.LastOffset, pid: pid, seqLast: seq[pid] + 1, kind: 'd'})
			seq[pid] += 2
		}
		res, err := l.AppendMarker(Marker{ProducerID: 1, Commit: i%2 == 0}, 0)
		if err != nil {
			t.Fatal(err)
		}
		m.events = append(m.events, txnEvent{base: res.BaseOffset, last: res.LastOffset, pid: 1, kind: map[bool]byte{true: 'c', false: 'a'}[i%2 == 0]})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	m.check(t, l, rng, "leader")

	f := &testEnv{t: t, dir: t.TempDir() + "/topic-0", fs: e.fs, clk: e.clk, cfg: e.cfg}
	fl := f.open(true, -1)
	var all []byte
	if err := l.ReadBatches(0, l.LogEndOffset(), func(b record.Batch) error { all = append(all, b...); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.AppendReplicated(all); err != nil {
		t.Fatal(err)
	}
	m.check(t, fl, rng, "follower")
	if err := fl.Close(); err != nil {
		t.Fatal(err)
	}
	fl = f.open(true, 0)
	m.check(t, fl, rng, "follower reopened")
	fl.Close()

	// Retention: the log start moves past the first segments, which go.
	segs := l.Segments()
	start := segs[2].BaseOffset
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.DeleteRecordsBefore(start); err != nil {
		t.Fatal(err)
	}
	l.EnforceRetention()
	l.ProcessDeletes()
	if got := l.Segments()[0].BaseOffset; got != start {
		t.Fatalf("first segment %d after retention, want %d", got, start)
	}
	_, aborted, _ := m.state()
	var want []AbortedTxn
	for _, a := range aborted {
		if a.LastOffset >= start {
			want = append(want, a)
		}
	}
	l.txnMu.Lock()
	got := append([]AbortedTxn(nil), l.aborted...)
	l.txnMu.Unlock()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("aborted after retention %+v, want %+v", got, want)
	}
}

// TestEmptiedControlBatch: a control batch without records, as Apache
// Kafka's cleaner leaves once a transaction's data is gone (a log dir
// written by Kafka, or replicated from a leader serving one), is appended
// by a follower and skipped by producer-state loading, as Kafka skips it:
// it ends no transaction and is not an error.
func TestEmptiedControlBatch(t *testing.T) {
	e := newTestEnv(t)
	l := e.open(false, -1)
	data := record.Builder{
		Attributes: record.AttrTransactional, BaseTimestamp: e.clk.Now().UnixMilli(), MaxTimestamp: -1, LastOffsetDelta: -1,
		ProducerID: 7, ProducerEpoch: 0, BaseSequence: 0,
	}
	data.Add(record.Record{Key: []byte("k"), Value: []byte("v")})
	db, err := data.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	commit := BuildMarkerBatch(Marker{ProducerID: 7, Commit: true}, e.clk.Now().UnixMilli())
	record.Batch(commit).SetBaseOffset(1)
	record.Batch(commit).UpdateCRC()
	// The emptied marker: the commit batch's header with no records.
	empty := append([]byte(nil), commit[:record.OffRecords]...)
	eb := record.Batch(empty)
	binary.BigEndian.PutUint32(empty[record.OffLength:], uint32(len(empty)-record.LogOverhead))
	binary.BigEndian.PutUint32(empty[record.OffNumRecords:], 0)
	eb.SetBaseOffset(2)
	eb.UpdateCRC()
	for i, b := range [][]byte{db, commit, empty} {
		if _, err := l.AppendReplicated(b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	l.SetHighWatermark(3)
	if got := l.LastStableOffset(); got != 3 {
		t.Fatalf("last stable offset %d, want 3", got)
	}
	crashClose(l)
	l = e.open(false, 0) // unclean: producer state rebuilt from the batches
	defer l.Close()
	if got := l.LastStableOffset(); got != 3 {
		t.Fatalf("after recovery: last stable offset %d, want 3", got)
	}
}
