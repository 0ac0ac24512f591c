package engine

import (
	"os"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// TestNewSegmentIndexFilesCreatedWithTheirFirstEntry: a partition just
// created has no segment file and holds no descriptor; one holding less
// than index.interval.bytes has no index files and holds one descriptor
// (its .log), also after its active
// segment was closed for the budget and reopened, and after a restart; the
// first index entry creates them; a roll leaves both files on the sealed
// segment (as Kafka's data directory has them); every record stays
// readable throughout.
func TestNewSegmentIndexFilesCreatedWithTheirFirstEntry(t *testing.T) {
	e := newTestEnv(t)
	m, l := e.openManager()
	oPath, tPath := IndexFileName(e.dir, 0), TimeIndexFileName(e.dir, 0)
	noIndexFiles := func(when string) {
		t.Helper()
		for _, p := range []string{oPath, tPath} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("%s: %s exists (%v)", when, p, err)
			}
		}
	}
	noIndexFiles("created")
	if st := m.Budget(); st.OpenFiles != 0 {
		t.Fatalf("created: %d descriptors, want none (the .log comes with the first record)", st.OpenFiles)
	}
	ts := e.clk.Now().UnixMilli()
	if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(0, ts)}), 0); err != nil {
		t.Fatal(err)
	}
	noIndexFiles("one small batch")
	if st := m.Budget(); st.OpenFiles != 1 {
		t.Fatalf("one small batch: %d descriptors, want 1", st.OpenFiles)
	}
	// Closed for the budget and reopened: still no files, still readable.
	if n := m.handles.evictCold(); n == 0 {
		t.Fatal("nothing evicted")
	}
	noIndexFiles("evicted")
	if got := len(readAll(t, l, 0)); got != 1 {
		t.Fatalf("after eviction: %d records", got)
	}
	noIndexFiles("reopened")

	// More than index.interval.bytes: the first entries create the files.
	for i := 1; i < 40; i++ {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts+int64(i))}), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{oPath, tPath} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("after index entries: %v", err)
		}
	}
	// A roll onto a new empty segment: the sealed one has both files, the
	// new one none.
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	next := l.LogEndOffset()
	for _, p := range []string{IndexFileName(e.dir, next), TimeIndexFileName(e.dir, next)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("new active segment: %s exists (%v)", p, err)
		}
	}
	if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(40, ts+40)}), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// Restarted, cleanly and after an unclean stop (the clean-shutdown
	// marker removed): every record is read back and the active segment
	// still has no index files.
	for _, clean := range []bool{true, false} {
		if !clean {
			for _, d := range []string{e.dir + "/.."} {
				_ = os.Remove(d + "/" + CleanShutdownFile)
			}
		}
		m, l = e.openManager()
		if got := len(readAll(t, l, 0)); got != 41 {
			t.Fatalf("restart (clean %v): %d records, want 41", clean, got)
		}
		for _, p := range []string{IndexFileName(e.dir, next), TimeIndexFileName(e.dir, next)} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("restart (clean %v): %s exists (%v)", clean, p, err)
			}
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
