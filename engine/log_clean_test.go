package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// testCompact is a minimal cleaner for engine tests: it replaces the
// inactive segments group (followed by next) with one cleaned segment
// keeping, per key, only the record at latest[key] (records whose key is not
// in latest are kept), and always keeping the group's last batch (emptied if
// need be), as the cleaner does.
func testCompact(t testing.TB, l *Log, group []SegmentRef, next SegmentRef, latest map[string]Offset) error {
	t.Helper()
	w, err := l.NewCleanedSegment(group[0].BaseOffset)
	if err != nil {
		return err
	}
	var (
		dec record.Decoder
		bl  record.Builder
		out []byte
		end Offset
	)
	for gi, ref := range group {
		v, err := l.ViewSegment(ref)
		if err != nil {
			w.Abort()
			return err
		}
		for rest := v.Data; len(rest) > 0; {
			b, r, err := record.ReadBatch(rest)
			if err != nil {
				v.Release()
				w.Abort()
				return err
			}
			rest = r
			lastOfGroup := gi == len(group)-1 && len(rest) == 0
			end = Offset(b.LastOffset()) + 1
			bl.Reset()
			bl.HeaderFrom(b)
			dropped := false
			if err := dec.Records(b, func(rec *record.Record) error {
				o := Offset(b.BaseOffset() + int64(rec.OffsetDelta))
				if lo, ok := latest[string(rec.Key)]; ok && lo != o {
					dropped = true
					return nil
				}
				bl.Add(*rec)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			switch {
			case !dropped:
				out = append(out, b...)
			case bl.Len() > 0 || lastOfGroup:
				if bl.Len() == 0 {
					bl.BaseTimestamp, bl.MaxTimestamp = record.NoTimestamp, b.MaxTimestamp()
				}
				if out, err = bl.Build(out); err != nil {
					t.Fatal(err)
				}
			}
		}
		v.Release()
		if err := w.Append(out); err != nil {
			w.Abort()
			return err
		}
		out = out[:0]
	}
	if err := w.Finish(end); err != nil {
		w.Abort()
		return err
	}
	if err := l.ReplaceSegments([]*CleanedSegment{w}, group, next); err != nil {
		w.Abort()
		return err
	}
	return nil
}

// latestByKey maps every key to the offset of its last record.
func latestByKey(recs []readRecord) map[string]Offset {
	m := map[string]Offset{}
	for _, r := range recs {
		m[string(r.key)] = r.offset
	}
	return m
}

// compactModel is what a reader must see after testCompact over [from, to).
func compactModel(recs []readRecord, latest map[string]Offset, lo, hi Offset) []readRecord {
	var out []readRecord
	for _, r := range recs {
		if r.offset >= lo && r.offset < hi && latest[string(r.key)] != r.offset {
			continue
		}
		out = append(out, r)
	}
	return out
}

func sameRecords(a, b []readRecord) bool {
	return slices.EqualFunc(a, b, func(x, y readRecord) bool {
		return x.offset == y.offset && string(x.key) == string(y.key) && string(x.value) == string(y.value) && (x.value == nil) == (y.value == nil)
	})
}

// fillKeys appends n single-record batches over keys k0..k(keys-1).
func fillKeys(t testing.TB, e *testEnv, l *Log, n, keys int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e.clk.Advance(1)
		r := testRecord{key: []byte(fmt.Sprintf("k%d", i%keys)), value: []byte(fmt.Sprintf("v%d", i)), ts: e.clk.Now().UnixMilli()}
		if _, err := l.Append(makeBatch(t, record.Codec(i%5), []testRecord{r}), 1); err != nil {
			t.Fatal(err)
		}
	}
	l.SetHighWatermark(l.LogEndOffset())
}

func TestReplaceSegments(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 600
	e.cfg.IndexIntervalBytes = 64
	l := e.open(true, -1)
	fillKeys(t, e, l, 60, 7)
	segs := l.CleanerSegments()
	if len(segs) < 5 {
		t.Fatalf("want 5+ segments, got %d", len(segs))
	}
	before := readAll(t, l, 0)
	latest := latestByKey(before)
	group, next := segs[1:4], segs[4]
	if err := testCompact(t, l, group, next, latest); err != nil {
		t.Fatal(err)
	}
	want := compactModel(before, latest, group[0].BaseOffset, next.BaseOffset)
	if len(want) >= len(before) {
		t.Fatal("test compaction removed nothing")
	}
	check := func(l *Log, what string) {
		t.Helper()
		if got := readAll(t, l, 0); !sameRecords(got, want) {
			t.Fatalf("%s: read %d records, want %d", what, len(got), len(want))
		}
		// Reads from every offset still start at the right record.
		for o := Offset(0); o < l.LogEndOffset(); o += 3 {
			got := readAll(t, l, o)
			i := slices.IndexFunc(want, func(r readRecord) bool { return r.offset >= o })
			if !sameRecords(got, want[i:]) {
				t.Fatalf("%s: read from %d: %d records, want %d", what, o, len(got), len(want[i:]))
			}
		}
	}
	check(l, "after swap")
	if n := len(l.CleanerSegments()); n != len(segs)-2 {
		t.Fatalf("%d segments, want %d", n, len(segs)-2)
	}
	if m, _ := filepath.Glob(filepath.Join(l.dir, "*"+DeletedSuffix)); len(m) != 3*len(group) {
		t.Fatalf(".deleted files: %v", m)
	}
	// Appends and rolls continue after the swap.
	fillKeys(t, e, l, 5, 7)
	after := readAll(t, l, 0)
	want = append(want, after[len(want):]...)
	l.ProcessDeletes()
	e.clk.Advance(e.cfg.FileDeleteDelay)
	l.ProcessDeletes()
	if m, _ := filepath.Glob(filepath.Join(l.dir, "*"+DeletedSuffix)); len(m) != 0 {
		t.Fatalf(".deleted files left after the delay: %v", m)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = e.open(true, l.RecoveryPoint())
	check(l, "clean reopen")
	crashClose(l)
	l = e.open(false, 0)
	check(l, "recovery")
	l.Close()
}

// TestCleanedSegmentIndexes checks that a cleaned segment gets exactly the
// index entries an append of the same batches would have made.
func TestCleanedSegmentIndexes(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.IndexIntervalBytes = 100
	l := e.open(true, -1)
	fillKeys(t, e, l, 40, 1000)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	segs := l.CleanerSegments()
	v, err := l.ViewSegment(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.NewCleanedSegment(segs[0].BaseOffset)
	if err != nil {
		t.Fatal(err)
	}
	// Append in uneven chunks: entries depend on batches, not on calls.
	for rest, k := v.Data, 1; len(rest) > 0; k++ {
		var chunk []byte
		for i := 0; i < k%3+1 && len(rest) > 0; i++ {
			b, r, err := record.ReadBatch(rest)
			if err != nil {
				t.Fatal(err)
			}
			chunk, rest = append(chunk, b...), r
		}
		if err := w.Append(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(segs[0].NextOffset); err != nil {
		t.Fatal(err)
	}
	h, err := l.segments()[0].acquire()
	if err != nil {
		t.Fatal(err)
	}
	if h.oidx.Entries() == 0 || h.oidx.Entries() != w.h.oidx.Entries() || h.tidx.Entries() != w.h.tidx.Entries() {
		t.Fatalf("entries: log %d/%d, cleaned %d/%d", h.oidx.Entries(), h.tidx.Entries(), w.h.oidx.Entries(), w.h.tidx.Entries())
	}
	for i := 0; i < h.oidx.Entries(); i++ {
		o1, p1 := h.oidx.Entry(i)
		o2, p2 := w.h.oidx.Entry(i)
		if o1 != o2 || p1 != p2 {
			t.Fatalf("offset entry %d: log (%d,%d) cleaned (%d,%d)", i, o1, p1, o2, p2)
		}
	}
	for i := 0; i < h.tidx.Entries(); i++ {
		t1, o1 := h.tidx.Entry(i)
		t2, o2 := w.h.tidx.Entry(i)
		if t1 != t2 || o1 != o2 {
			t.Fatalf("time entry %d: log (%d,%d) cleaned (%d,%d)", i, t1, o1, t2, o2)
		}
	}
	h.release()
	v.Release()
	w.Abort()
	if m, _ := filepath.Glob(filepath.Join(l.dir, "*"+CleanedSuffix)); len(m) != 0 {
		t.Fatalf("Abort left %v", m)
	}
	l.Close()
}

// TestReplaceSegmentsDetectsChanges: a swap is refused when the log changed
// under the pass in a way that matters (retention, truncation, deletion),
// and allowed when only later segments changed (appends, rolls).
func TestReplaceSegmentsDetectsChanges(t *testing.T) {
	cases := []struct {
		name    string
		change  func(t *testing.T, e *testEnv, l *Log, group []SegmentRef)
		refused bool
	}{
		{"appends_and_rolls", func(t *testing.T, e *testEnv, l *Log, _ []SegmentRef) { fillKeys(t, e, l, 30, 5) }, false},
		{"retention", func(t *testing.T, e *testEnv, l *Log, g []SegmentRef) {
			if err := l.DeleteRecordsBefore(g[0].NextOffset); err != nil {
				t.Fatal(err)
			}
			if l.EnforceRetention() == 0 {
				t.Fatal("retention deleted nothing")
			}
		}, true},
		{"truncate_inside_group_and_reappend", func(t *testing.T, e *testEnv, l *Log, g []SegmentRef) {
			// Truncate into the last segment of the group, then append and
			// roll until the log has as many segments as before: only the
			// successor check can tell.
			if err := l.TruncateTo(g[len(g)-1].BaseOffset + 1); err != nil {
				t.Fatal(err)
			}
			fillKeys(t, e, l, 40, 5)
		}, true},
		{"truncate_in_successor", func(t *testing.T, e *testEnv, l *Log, g []SegmentRef) {
			if err := l.TruncateTo(g[len(g)-1].NextOffset + 1); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"truncate_fully", func(t *testing.T, e *testEnv, l *Log, g []SegmentRef) {
			if err := l.TruncateFullyAndStartAt(l.LogEndOffset()); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"closed", func(t *testing.T, e *testEnv, l *Log, g []SegmentRef) { _ = l.Close() }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.cfg.SegmentBytes = 600
			l := e.open(true, -1)
			defer l.Close()
			fillKeys(t, e, l, 60, 5)
			segs := l.CleanerSegments()
			group, next := segs[0:2], segs[2]
			latest := latestByKey(readAll(t, l, 0))
			c.change(t, e, l, group)
			err := testCompact(t, l, group, next, latest)
			if c.refused {
				if !errors.Is(err, ErrSegmentsChanged) && !errors.Is(err, ErrClosed) {
					t.Fatalf("want ErrSegmentsChanged, got %v", err)
				}
				for _, suffix := range []string{CleanedSuffix, SwapSuffix} {
					if m, _ := filepath.Glob(filepath.Join(l.dir, "*"+suffix)); len(m) != 0 {
						t.Fatalf("refused swap left %v", m)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("swap refused: %v", err)
			}
		})
	}
}

// TestSwapTrace pins the exact sequence of file operations of a clean and
// swap (the protocol in log_clean.go).
func TestSwapTrace(t *testing.T) {
	e := newTestEnv(t)
	fs := vfs.NewCrashFS(1)
	e.fs = fs
	e.cfg.SegmentBytes = 600
	l := e.open(true, -1)
	defer l.Close()
	fillKeys(t, e, l, 30, 5)
	segs := l.CleanerSegments()
	latest := latestByKey(readAll(t, l, 0))
	l.wg.Wait() // background flushes after rolls would interleave syncs
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	fs.StartTrace(l.dir)
	if err := testCompact(t, l, segs[0:2], segs[2], latest); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(fs.StopTrace(), "\n")
	const a, b = "00000000000000000000", "00000000000000000007"
	want := strings.Join([]string{
		"create " + a + ".log.cleaned",
		"create " + a + ".index.cleaned",
		"truncate " + a + ".index.cleaned 4096",
		"create " + a + ".timeindex.cleaned",
		"truncate " + a + ".timeindex.cleaned 6144",
		"write " + a + ".log.cleaned 0 *",
		"truncate " + a + ".index.cleaned 0",
		// Index entries are written with pwrite (through the vfs), never
		// through the mapping.
		"write " + a + ".timeindex.cleaned 0 12",
		"truncate " + a + ".timeindex.cleaned 12",
		"sync " + a + ".log.cleaned",
		"sync " + a + ".index.cleaned",
		"sync " + a + ".timeindex.cleaned",
		"rename " + a + ".index.cleaned " + a + ".index.swap",
		"rename " + a + ".timeindex.cleaned " + a + ".timeindex.swap",
		"rename " + a + ".log.cleaned " + a + ".log.swap",
		"rename " + a + ".log " + a + ".log.deleted",
		"rename " + a + ".index " + a + ".index.deleted",
		"rename " + a + ".timeindex " + a + ".timeindex.deleted",
		"rename " + b + ".log " + b + ".log.deleted",
		"rename " + b + ".index " + b + ".index.deleted",
		"rename " + b + ".timeindex " + b + ".timeindex.deleted",
		"rename " + a + ".log.swap " + a + ".log",
		"rename " + a + ".index.swap " + a + ".index",
		"rename " + a + ".timeindex.swap " + a + ".timeindex",
		"syncdir .",
	}, "\n")
	if !traceMatch(got, want) {
		t.Fatalf("trace:\n%s\nwant:\n%s", got, want)
	}
}

// traceMatch compares traces line by line; "*" in want matches one word.
func traceMatch(got, want string) bool {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		gf, wf := strings.Fields(g[i]), strings.Fields(w[i])
		if len(gf) != len(wf) {
			return false
		}
		for j := range gf {
			if wf[j] != "*" && wf[j] != gf[j] {
				return false
			}
		}
	}
	return true
}

// TestSwapCrashAtEveryStep makes the process die at every file operation of
// a clean and swap (writing the .cleaned files, every rename, the directory
// sync), then power-fails the file system (keeping all, none or a random
// share of what was not synced) and reopens: the log must be exactly the
// pre-clean or the post-clean log, no .cleaned/.swap file may remain, and a
// new clean must complete.
func TestSwapCrashAtEveryStep(t *testing.T) {
	modes := []vfs.CrashOptions{
		{KeepUnsynced: vfs.KeepAll},
		{KeepUnsynced: vfs.KeepNone},
		{KeepUnsynced: vfs.KeepRandom, TornTail: true},
	}
	sawOld, sawNew := false, false
	for step := 1; ; step++ {
		completed := false
		for mi, mode := range modes {
			seed := int64(step*10 + mi)
			crashFS := vfs.NewCrashFS(seed)
			ffs := vfs.NewFailFS(crashFS)
			e := newTestEnv(t)
			e.fs = ffs
			e.cfg.SegmentBytes = 600
			l := e.open(true, -1)
			fillKeys(t, e, l, 60, 6)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			segs := l.CleanerSegments()
			oldRecs := readAll(t, l, 0)
			latest := latestByKey(oldRecs)
			group, next := segs[0:3], segs[3]
			newRecs := compactModel(oldRecs, latest, group[0].BaseOffset, next.BaseOffset)

			ffs.SetBudget(step)
			err := testCompact(t, l, group, next, latest)
			if err == nil && !ffs.Exhausted() {
				completed = true
			} else if err != nil && !errors.Is(err, vfs.ErrInjected) {
				t.Fatalf("step %d: unexpected error %v", step, err)
			}
			crashClose(l)
			if err := crashFS.CrashWith(mode); err != nil {
				t.Fatal(err)
			}
			e.fs = crashFS
			l = e.open(false, 0)
			got := readAll(t, l, 0)
			switch {
			case sameRecords(got, oldRecs):
				sawOld = true
			case sameRecords(got, newRecs):
				sawNew = true
			default:
				t.Fatalf("step %d mode %+v: recovered %d records, neither the old (%d) nor the new (%d) log", step, mode, len(got), len(oldRecs), len(newRecs))
			}
			for _, suffix := range []string{CleanedSuffix, SwapSuffix, DeletedSuffix} {
				if m, _ := filepath.Glob(filepath.Join(l.dir, "*"+suffix)); len(m) != 0 {
					t.Fatalf("step %d: leftover %v", step, m)
				}
			}
			// The next clean completes and yields the compacted log.
			segs = l.CleanerSegments()
			i := slices.IndexFunc(segs, func(s SegmentRef) bool { return s.BaseOffset >= next.BaseOffset })
			if err := testCompact(t, l, segs[:i], segs[i], latest); err != nil {
				t.Fatalf("step %d: clean after recovery: %v", step, err)
			}
			if got := readAll(t, l, 0); !sameRecords(got, newRecs) {
				t.Fatalf("step %d: clean after recovery read %d records, want %d", step, len(got), len(newRecs))
			}
			l.Close()
		}
		if completed {
			t.Logf("clean and swap took %d file operations", step-1)
			break
		}
		if step > 200 {
			t.Fatal("the swap never completed")
		}
	}
	if !sawOld || !sawNew {
		t.Fatalf("crash points covered old=%v new=%v", sawOld, sawNew)
	}
}
