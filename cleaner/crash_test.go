package cleaner

import (
	"path/filepath"
	"testing"

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
