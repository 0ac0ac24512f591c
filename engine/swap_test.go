package engine

import (
	"os"
	"testing"
)

// TestRecoverInterruptedSwap leaves the files of each step of a cleaner swap
// (docs/storage.md#cleaner-swap) and checks that reopening yields exactly the old segment
// set (before every .cleaned reached .swap) or exactly the new one (after).
func TestRecoverInterruptedSwap(t *testing.T) {
	const (
		oldSet = "old"
		newSet = "new"
	)
	steps := []struct {
		name   string
		setup  func(t *testing.T, dir string, a, b Offset, cleaned []byte)
		result string
	}{
		{"cleaned_written", func(t *testing.T, dir string, a, b Offset, cleaned []byte) {
			writeFile(t, LogFileName(dir, a)+CleanedSuffix, cleaned)
		}, oldSet},
		{"swap_renamed_old_present", func(t *testing.T, dir string, a, b Offset, cleaned []byte) {
			writeFile(t, LogFileName(dir, a)+SwapSuffix, cleaned)
		}, newSet},
		{"old_renamed_deleted", func(t *testing.T, dir string, a, b Offset, cleaned []byte) {
			writeFile(t, LogFileName(dir, a)+SwapSuffix, cleaned)
			for _, o := range []Offset{a, b} {
				rename(t, LogFileName(dir, o), LogFileName(dir, o)+DeletedSuffix)
				rename(t, IndexFileName(dir, o), IndexFileName(dir, o)+DeletedSuffix)
			}
		}, newSet},
		{"swap_final_deleted_left", func(t *testing.T, dir string, a, b Offset, cleaned []byte) {
			for _, o := range []Offset{a, b} {
				rename(t, LogFileName(dir, o), LogFileName(dir, o)+DeletedSuffix)
				rename(t, TimeIndexFileName(dir, o), TimeIndexFileName(dir, o)+DeletedSuffix)
			}
			_ = os.Remove(IndexFileName(dir, a))
			writeFile(t, LogFileName(dir, a), cleaned)
		}, newSet},
		{"cleaned_and_swap_mixed", func(t *testing.T, dir string, a, b Offset, cleaned []byte) {
			// A group at a lower base reached .swap, a later group is still .cleaned:
			// the whole pass is undone from the smallest .cleaned offset.
			writeFile(t, LogFileName(dir, a)+CleanedSuffix, cleaned)
			writeFile(t, LogFileName(dir, b)+SwapSuffix, []byte{})
		}, oldSet},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.cfg.SegmentBytes = 300
			l := e.open(true, -1)
			fill(t, e, l, 6)
			segs := l.Segments()
			if len(segs) < 3 {
				t.Fatalf("need 3 segments, got %d", len(segs))
			}
			a, b, c := segs[0].BaseOffset, segs[1].BaseOffset, segs[2].BaseOffset
			// The "cleaned" replacement of [a, c): the records of b only,
			// keeping their offsets (a compaction that dropped a's records).
			cleaned := readFile(t, LogFileName(l.dir, b))
			total := l.LogEndOffset()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			st.setup(t, l.dir, a, b, cleaned)
			l = e.open(true, -1)
			defer l.Close()
			got := readAll(t, l, l.LogStartOffset())
			switch st.result {
			case oldSet:
				if l.LogStartOffset() != a || len(got) != int(total-a) {
					t.Fatalf("want old set: start %d, %d records", l.LogStartOffset(), len(got))
				}
			case newSet:
				if len(got) != int(total-b) || got[0].offset != b {
					t.Fatalf("want new set from %d: %d records, first %d", b, len(got), got[0].offset)
				}
			}
			for _, r := range got {
				if string(r.key) != string(kv(int(r.offset), 0).key) {
					t.Fatalf("record %d has key %q", r.offset, r.key)
				}
			}
			if _, err := os.Stat(LogFileName(l.dir, c)); err != nil {
				t.Fatalf("segment %d outside the swap range must stay: %v", c, err)
			}
			for _, suffix := range []string{CleanedSuffix, SwapSuffix, DeletedSuffix} {
				if m, _ := globDir(l.dir, suffix); len(m) > 0 {
					t.Fatalf("leftover %s files: %v", suffix, m)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rename(t *testing.T, a, b string) {
	t.Helper()
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
}
