package engine

import (
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
)

// TestRollIdle: LastAppend follows appends as a leader and as a follower
// (the log's opening before any), and RollIdle rolls the active segment
// only when it is still the segment the caller looked at, holds data, and
// nothing was appended since the caller read LastAppend: an append racing
// with the cleaner's decision wins. After the roll the records are all
// readable, and the synced-tail checkpoint entry describes the new empty
// active segment once the log is synced.
func TestRollIdle(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.Compact, e.cfg.Delete = true, false
	l := e.open(true, -1)
	defer l.Close()
	if got := l.LastAppend(); !got.Equal(e.clk.Now()) {
		t.Fatalf("LastAppend of a new log %v, want its opening %v", got, e.clk.Now())
	}
	activeID := func() uint64 { s := l.CleanerSegments(); return s[len(s)-1].ID }
	if ok, err := l.RollIdle(activeID(), l.LastAppend()); ok || err != nil {
		t.Fatalf("rolled an empty active segment: %v %v", ok, err)
	}

	e.clk.Advance(time.Second)
	if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, e.clk.Now().UnixMilli())}), 0); err != nil {
		t.Fatal(err)
	}
	seen := l.LastAppend()
	if !seen.Equal(e.clk.Now()) {
		t.Fatalf("LastAppend %v after an append at %v", seen, e.clk.Now())
	}
	id := activeID()
	// An append after the caller's snapshot: no roll.
	e.clk.Advance(time.Minute)
	if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(2, e.clk.Now().UnixMilli())}), 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.RollIdle(id, seen); ok || err != nil {
		t.Fatalf("rolled though an append came after the snapshot: %v %v", ok, err)
	}
	// A replicated append moves LastAppend too.
	e.clk.Advance(time.Minute)
	follower := makeBatch(t, record.CodecNone, []testRecord{kv(3, e.clk.Now().UnixMilli())})
	record.Batch(follower).SetBaseOffset(int64(l.LogEndOffset()))
	if _, err := l.AppendReplicated(follower); err != nil {
		t.Fatal(err)
	}
	if got := l.LastAppend(); !got.Equal(e.clk.Now()) {
		t.Fatalf("LastAppend %v after a replicated append at %v", got, e.clk.Now())
	}
	if ok, err := l.RollIdle(id+1000, l.LastAppend()); ok || err != nil {
		t.Fatalf("rolled a segment other than the one named: %v %v", ok, err)
	}
	if n := len(l.CleanerSegments()); n != 1 {
		t.Fatalf("%d segments before the roll, want 1", n)
	}

	leo := l.LogEndOffset()
	if ok, err := l.RollIdle(id, l.LastAppend()); !ok || err != nil {
		t.Fatalf("idle roll refused: %v %v", ok, err)
	}
	segs := l.CleanerSegments()
	if len(segs) != 2 || segs[1].BaseOffset != leo || segs[1].Size != 0 || segs[0].NextOffset != leo {
		t.Fatalf("segments after the roll: %+v, want [0, %d) and an empty active one at %d", segs, leo, leo)
	}
	if ok, err := l.RollIdle(id, l.LastAppend()); ok || err != nil {
		t.Fatalf("rolled the old segment again: %v %v", ok, err)
	}
	if got := readAll(t, l, 0); len(got) != 3 {
		t.Fatalf("%d records readable after the roll, want 3", len(got))
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if tail, ok := l.syncedTail(); !ok || tail.Base != int64(leo) || tail.Bytes != 0 || tail.End != int64(leo) {
		t.Fatalf("synced tail after the roll: %+v %v, want the empty segment at %d", tail, ok, leo)
	}
}
