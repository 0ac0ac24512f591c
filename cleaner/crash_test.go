package cleaner

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// TestCrashDuringClean kills the broker at every file operation of a clean
// pass — writing .cleaned files, each rename of the swap, the directory sync,
// the cleaner-offset-checkpoint — then power-fails the file system (keeping
// all, none or a random share of what was not synced) and restarts engine
// and cleaner. With one group per pass the recovered log must be exactly the
// pre-clean or the post-clean log; with several groups, each group is old or
// new, so the log lies between the two (new ⊆ recovered ⊆ old) and replays to
// the same state. Either way no .cleaned/.swap file remains and the next
// clean completes to the post-clean log. "key-ranges" is "one" with more
// keys than the offset map holds: the pass maps them in several scans, one
// key range at a time, before it writes anything.
func TestCrashDuringClean(t *testing.T) {
	for _, groups := range []string{"one", "several", "key-ranges"} {
		t.Run(groups, func(t *testing.T) {
			if groups == "key-ranges" {
				testCrashDuringClean(t, false, 1000, 200, 100)
				return
			}
			testCrashDuringClean(t, groups == "several", 200, 15, 0)
		})
	}
}

// testCrashDuringClean writes records over keys keys and crashes the pass
// cleaning them; mapKeys > 0 sizes the offset map for that many keys.
func testCrashDuringClean(t *testing.T, several bool, records, keys, mapKeys int) {
	modes := []vfs.CrashOptions{{KeepUnsynced: vfs.KeepAll}, {KeepUnsynced: vfs.KeepNone}, {KeepUnsynced: vfs.KeepRandom, TornTail: true}}
	setup := func(e *env, fs vfs.FS, codec record.Codec) *engine.Log {
		t.Helper()
		e.close()
		e.fs = fs
		e.ecfg.SegmentBytes = 2048
		if mapKeys > 0 {
			e.ccfg.DedupeBufferSize = int64(mapKeys) * EntrySize * 10 / 9
		}
		e.open()
		l := e.log(testTP)
		fillKeys(t, e, l, records, keys, codec)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		if !several {
			c := l.Config()
			c.SegmentBytes = 1 << 20 // one group
			l.SetConfig(c)
		}
		return l
	}
	// The reference outcome, without failures.
	e := newEnv(t)
	l := setup(e, vfs.Default, record.CodecNone)
	oldRecs, _ := readLog(t, l)
	results := e.cleanAll(20)
	newRecs, _ := readLog(t, l)
	e.close()
	if len(newRecs) >= len(oldRecs) {
		t.Fatal("nothing to compact")
	}
	if mapKeys > 0 && (len(results) != 1 || results[0].Stats.MapScans < 2) {
		t.Fatalf("want one pass in key ranges: %d passes", len(results))
	}
	sawOld, sawNew, sawMiddle := false, false, false
	for step := 0; ; step++ {
		completed := false
		for mi, mode := range modes {
			crashFS := vfs.NewCrashFS(int64(step*7 + mi))
			ffs := vfs.NewFailFS(crashFS)
			e := newEnv(t)
			l := setup(e, ffs, record.Codec(step%5))
			ffs.SetBudget(step)
			res, ran := e.cm.RunOnce(t.Context())
			if !ran {
				t.Fatal("nothing to clean")
			}
			if res.Err == nil && !ffs.Exhausted() {
				completed = true
			}
			e.close() // every write fails from here on: no flush, no clean-shutdown marker
			if err := crashFS.CrashWith(mode); err != nil {
				t.Fatal(err)
			}
			e.fs = crashFS
			e.ecfg.SegmentBytes = 2048
			e.open()
			l = e.log(testTP)
			got, _ := readLog(t, l)
			switch {
			case sameRecs(got, oldRecs):
				sawOld = true
			case sameRecs(got, newRecs):
				sawNew = true
			case several && between(got, newRecs, oldRecs):
				sawMiddle = true
			default:
				t.Fatalf("step %d mode %+v: recovered %d records: not a valid old/new combination", step, mode, len(got))
			}
			if d := diffState(state(got), state(oldRecs)); d != "" {
				t.Fatalf("step %d: replay differs: %s", step, d)
			}
			for _, suffix := range []string{engine.CleanedSuffix, engine.SwapSuffix} {
				if m, _ := filepath.Glob(filepath.Join(e.dir, "*", "*"+suffix)); len(m) != 0 {
					t.Fatalf("step %d: leftover %v", step, m)
				}
			}
			if !several {
				c := l.Config()
				c.SegmentBytes = 1 << 20
				l.SetConfig(c)
			}
			e.cleanAll(20)
			if got, _ := readLog(t, l); !sameRecs(got, newRecs) {
				t.Fatalf("step %d: clean after recovery: %d records, want %d", step, len(got), len(newRecs))
			}
			e.close()
		}
		if completed {
			t.Logf("a pass took %d file operations", step)
			break
		}
		if step > 400 {
			t.Fatal("the pass never completed")
		}
	}
	if !sawOld || !sawNew || several && !sawMiddle {
		t.Fatalf("outcomes covered: old %v new %v between %v", sawOld, sawNew, sawMiddle)
	}
}

func sameRecs(a, b []rec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameRec(a[i], b[i]) {
			return false
		}
	}
	return true
}

// between reports new ⊆ got ⊆ old (by offset, same content).
func between(got, newRecs, oldRecs []rec) bool {
	in := func(r rec, set []rec) bool {
		for _, x := range set {
			if x.offset == r.offset {
				return sameRec(x, r)
			}
		}
		return false
	}
	for _, r := range newRecs {
		if !in(r, got) {
			return false
		}
	}
	for _, r := range got {
		if !in(r, oldRecs) {
			return false
		}
	}
	return true
}

// TestCrashDuringCleanTxn is TestCrashDuringClean for a log with
// transactions: committed and aborted ones whose data the crashed pass
// removes, markers whose horizon passed (the pass removes them), markers it
// stamps, and a transaction still open at the end (the last stable offset
// bounds the pass). At every file operation of the pass the broker is
// killed and the file system power-fails; after recovery the log is the
// old or the new one, markers included; every .txnindex entry has its abort
// marker; a read_committed consumer (skipping from the .txnindex and the
// markers, as Kafka's clients do) sees no aborted record and every
// committed one the new log keeps; and the next clean completes to the new
// log.
func TestCrashDuringCleanTxn(t *testing.T) {
	modes := []vfs.CrashOptions{{KeepUnsynced: vfs.KeepAll}, {KeepUnsynced: vfs.KeepNone}, {KeepUnsynced: vfs.KeepRandom, TornTail: true}}
	p, q, r := &producer{id: 7}, &producer{id: 8}, &producer{id: 9}
	setup := func(e *env, fs vfs.FS) *engine.Log {
		t.Helper()
		e.close()
		e.fs = fs
		e.ecfg.SegmentBytes = 2048
		e.open()
		*p, *q, *r = producer{id: 7}, producer{id: 8}, producer{id: 9}
		l := e.log(testTP)
		txn := func(pr *producer, prefix, value string, n int) {
			var recs []rec
			for i := 0; i < n; i++ {
				recs = append(recs, rec{key: []byte(fmt.Sprintf("%s%d", prefix, i)), value: []byte(value), ts: e.clk.Now().UnixMilli()})
			}
			appendTxn(t, l, pr, recs)
		}
		roll := func() {
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
		}
		// Transactions whose data is gone and whose markers' horizons
		// have passed by the crashed pass.
		txn(p, "k", "committed-a", 5)
		endTxn(t, l, p, true)
		txn(p, "k", "aborted-a", 5)
		endTxn(t, l, p, false)
		endTxn(t, l, p, false)
		fillKeys(t, e, l, 60, 15, record.CodecNone)
		roll()
		e.cleanAll(20)
		e.clk.Advance(30 * time.Minute)
		appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte("x"), value: []byte("x"), ts: e.clk.Now().UnixMilli()}})
		roll()
		e.cleanAll(20)
		e.clk.Advance(2 * time.Hour)
		// What the crashed pass cleans: an aborted transaction (its data
		// goes, its marker and entry stay), a committed one partly
		// superseded, a marker without data (stamped), more records.
		txn(q, "k", "aborted-b", 8)
		endTxn(t, l, q, false)
		txn(q, "q", "committed-b", 4)
		endTxn(t, l, q, true)
		endTxn(t, l, q, true)
		fillKeys(t, e, l, 120, 15, record.CodecNone)
		txn(p, "p", "committed-c", 3)
		endTxn(t, l, p, true)
		// Open at the end: the pass stops at its segment.
		txn(r, "k", "open", 2)
		roll()
		fillKeys(t, e, l, 10, 15, record.CodecNone)
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		c := l.Config()
		c.SegmentBytes = 1 << 20 // one group
		l.SetConfig(c)
		return l
	}
	markerSet := func(l *engine.Log) map[int64]bool {
		out := map[int64]bool{}
		for o := range markersOf(t, l) {
			out[o] = true
		}
		return out
	}
	sameSet := func(a, b map[int64]bool) bool {
		if len(a) != len(b) {
			return false
		}
		for k := range a {
			if !b[k] {
				return false
			}
		}
		return true
	}
	checkTxn := func(step int, l *engine.Log, committedNew []rec) {
		t.Helper()
		ms := markersOf(t, l)
		ab, err := l.AbortedTxns(0, l.LogEndOffset())
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range ab {
			b, ok := ms[int64(a.LastOffset)]
			if !ok {
				t.Fatalf("step %d: .txnindex entry %+v without its marker", step, a)
			}
			if typ, err := engine.ControlType(b); err != nil || typ != engine.ControlAbort {
				t.Fatalf("step %d: .txnindex entry %+v: marker type %d %v", step, a, typ, err)
			}
		}
		got := readCommitted(t, l)
		in := map[engine.Offset]bool{}
		for _, x := range got {
			if v := string(x.value); strings.HasPrefix(v, "aborted") || v == "open" {
				t.Fatalf("step %d: read_committed reads %v", step, x)
			}
			in[x.offset] = true
		}
		for _, x := range committedNew {
			if !in[x.offset] {
				t.Fatalf("step %d: read_committed misses committed record %v", step, x)
			}
		}
	}

	// The reference outcome, without failures.
	e := newEnv(t)
	l := setup(e, vfs.Default)
	oldRecs, _ := readLog(t, l)
	oldMarkers := markerSet(l)
	res, ran := e.cm.RunOnce(t.Context())
	if !ran || res.Err != nil {
		t.Fatalf("reference pass: %v %v", ran, res.Err)
	}
	if res.Stats.MarkersRemoved == 0 || res.Stats.MarkersStamped == 0 || res.Stats.AbortedRecords == 0 {
		t.Fatalf("the pass does not exercise transactions: %+v", res.Stats)
	}
	newRecs, _ := readLog(t, l)
	newMarkers := markerSet(l)
	committedNew := readCommitted(t, l)
	checkTxn(-1, l, committedNew)
	e.close()
	sawOld, sawNew := false, false
	for step := 0; ; step++ {
		completed := false
		// One power-failure mode per step, in turn (the file operations
		// are those of TestCrashDuringClean; this is about transactions).
		for mi, mode := range modes[step%len(modes) : step%len(modes)+1] {
			crashFS := vfs.NewCrashFS(int64(step*7 + mi))
			ffs := vfs.NewFailFS(crashFS)
			e := newEnv(t)
			l := setup(e, ffs)
			ffs.SetBudget(step)
			res, ran := e.cm.RunOnce(t.Context())
			if !ran {
				t.Fatal("nothing to clean")
			}
			if res.Err == nil && !ffs.Exhausted() {
				completed = true
			}
			e.close()
			if err := crashFS.CrashWith(mode); err != nil {
				t.Fatal(err)
			}
			e.fs = crashFS
			e.ecfg.SegmentBytes = 2048
			e.open()
			l = e.log(testTP)
			got, _ := readLog(t, l)
			gotMarkers := markerSet(l)
			switch {
			case sameRecs(got, oldRecs) && sameSet(gotMarkers, oldMarkers):
				sawOld = true
			case sameRecs(got, newRecs) && sameSet(gotMarkers, newMarkers):
				sawNew = true
			default:
				t.Fatalf("step %d mode %+v: recovered %d records, %d markers: neither the old log nor the new", step, mode, len(got), len(gotMarkers))
			}
			checkTxn(step, l, committedNew)
			for _, suffix := range []string{engine.CleanedSuffix, engine.SwapSuffix} {
				if m, _ := filepath.Glob(filepath.Join(e.dir, "*", "*"+suffix)); len(m) != 0 {
					t.Fatalf("step %d: leftover %v", step, m)
				}
			}
			c := l.Config()
			c.SegmentBytes = 1 << 20
			l.SetConfig(c)
			e.cleanAll(20)
			if got, _ := readLog(t, l); !sameRecs(got, newRecs) || !sameSet(markerSet(l), newMarkers) {
				t.Fatalf("step %d: clean after recovery: %d records, want %d", step, len(got), len(newRecs))
			}
			checkTxn(step, l, committedNew)
			e.close()
		}
		if completed {
			t.Logf("a pass took %d file operations", step)
			break
		}
		if step > 400 {
			t.Fatal("the pass never completed")
		}
	}
	if !sawOld || !sawNew {
		t.Fatalf("outcomes covered: old %v new %v", sawOld, sawNew)
	}
}
