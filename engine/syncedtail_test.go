package engine

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// openDir opens a Manager over dir with e's settings.
func (e *testEnv) openDir(dir string) *Manager {
	e.t.Helper()
	m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Clock: e.clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return e.cfg }})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// readTails reads dir's synced-tail checkpoint.
func readTails(t *testing.T, dir string) map[TopicPartition]checkpoint.Tail {
	t.Helper()
	tails, err := checkpoint.ReadTails(vfs.Default, filepath.Join(dir, SyncedTailCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	return tails
}

// TestUncleanRestartTrustsSyncedTails: after a kill, a log whose active
// segment the synced-tail checkpoint describes (same base, same length,
// ending at the checkpointed recovery point) is neither recovered nor read:
// the original read every such log's active segment from its last index
// entry on (open, map the index, read) to find out what the checkpoint
// says. It reads and appends as before.
func TestUncleanRestartTrustsSyncedTails(t *testing.T) {
	e := newTestEnv(t)
	dir := writeLogs(t, e, 3, 40)
	if n := len(readTails(t, dir)); n != 3 {
		t.Fatalf("%d synced-tail entries, want 3", n)
	}
	m := e.openDir(dir)
	defer m.Close()
	for _, l := range m.Logs() {
		if r := l.Recovered(); r.TailRead || r.Segments != 0 {
			t.Fatalf("%s: %+v after a kill with every log synced and checkpointed", l.tp, r)
		}
	}
	if st := m.Budget(); st.OpenFiles != 0 || st.Mappings != 0 {
		t.Fatalf("files open after the load: %+v", st)
	}
	l, _ := m.Log(TopicPartition{Topic: "r", Partition: 2})
	if l.LogEndOffset() != 80 || len(readAll(t, l, 0)) != 80 {
		t.Fatalf("log end %d", l.LogEndOffset())
	}
	if res, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, e.clk.Now().UnixMilli())}), 0); err != nil || res.BaseOffset != 80 {
		t.Fatalf("append after the restart: %+v %v", res, err)
	}
}

// TestSyncedTailNotTrustedWhenTheSegmentChanged: a segment longer than its
// entry says (bytes appended after the last checkpoint), or an entry whose
// end is not the checkpointed recovery point, is read and recovered as
// without the checkpoint.
func TestSyncedTailNotTrustedWhenTheSegmentChanged(t *testing.T) {
	e := newTestEnv(t)
	dir := writeLogs(t, e, 2, 10)
	// r-0: a whole batch written after the checkpoint (never synced).
	f, err := os.OpenFile(LogFileName(filepath.Join(dir, "r-0"), 0), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := makeBatch(t, record.CodecNone, []testRecord{kv(1, 1)})
	record.Batch(b).SetBaseOffset(20)
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// r-1: the recovery point checkpoint disagrees with the entry.
	cp := filepath.Join(dir, RecoveryPointCheckpointFile)
	if err := checkpoint.WriteOffsets(e.fs, cp, map[TopicPartition]int64{{Topic: "r", Partition: 0}: 20, {Topic: "r", Partition: 1}: 18}); err != nil {
		t.Fatal(err)
	}
	m := e.openDir(dir)
	defer m.Close()
	l0, _ := m.Log(TopicPartition{Topic: "r", Partition: 0})
	if r := l0.Recovered(); !r.TailRead || r.Segments == 0 || l0.LogEndOffset() != 21 {
		t.Fatalf("r-0 with bytes past its entry: %+v, log end %d", r, l0.LogEndOffset())
	}
	l1, _ := m.Log(TopicPartition{Topic: "r", Partition: 1})
	if r := l1.Recovered(); !r.TailRead || r.Segments == 0 || l1.LogEndOffset() != 20 {
		t.Fatalf("r-1 with its entry past the recovery point: %+v, log end %d", r, l1.LogEndOffset())
	}
}

// TestSyncedTailAfterTruncationAndSameLengthRewrite: a truncation below
// the recovery point rewrites the entry with the checkpoints, so a crash
// after the same number of bytes was appended again, unsynced, does not
// find the old entry vouching for them.
func TestSyncedTailAfterTruncationAndSameLengthRewrite(t *testing.T) {
	e := newTestEnv(t)
	dir := writeLogs(t, e, 1, 10)
	m := e.openDir(dir)
	tp := TopicPartition{Topic: "r", Partition: 0}
	before := readTails(t, dir)[tp]
	l, _ := m.Log(tp)
	if err := l.TruncateTo(18); err != nil {
		t.Fatal(err)
	}
	if got := readTails(t, dir)[tp]; got == before || got.End != 18 {
		t.Fatalf("entry after the truncation %+v (before %+v)", got, before)
	}
	// The same records again: the file is as long as the old entry says.
	ts := e.clk.Now().UnixMilli()
	if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(9, ts), kv(10, ts)}), 1); err != nil {
		t.Fatal(err)
	}
	if l.active().size.Load() != before.Bytes {
		t.Fatalf("segment %d bytes, want the old entry's %d", l.active().size.Load(), before.Bytes)
	}
	crashManager(m)
	m = e.openDir(dir)
	defer m.Close()
	l, _ = m.Log(tp)
	if r := l.Recovered(); !r.TailRead {
		t.Fatalf("tail not read after a rewrite below the old entry: %+v", r)
	}
	if l.LogEndOffset() != 20 {
		t.Fatalf("log end %d", l.LogEndOffset())
	}
}

// TestRecoveredLogHasNoSyncedTailUntilFlushed: recovery reads what the page
// cache holds, which may never have been synced, so the recovered log gets
// no entry until a flush syncs its active segment.
func TestRecoveredLogHasNoSyncedTailUntilFlushed(t *testing.T) {
	e := newTestEnv(t)
	dir := writeLogs(t, e, 1, 10)
	f, err := os.OpenFile(LogFileName(filepath.Join(dir, "r-0"), 0), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := makeBatch(t, record.CodecNone, []testRecord{kv(1, 1)})
	record.Batch(b).SetBaseOffset(20)
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m := e.openDir(dir)
	defer m.Close()
	tp := TopicPartition{Topic: "r", Partition: 0}
	l, _ := m.Log(tp)
	if r := l.Recovered(); r.Segments == 0 || l.LogEndOffset() != 21 {
		t.Fatalf("not recovered: %+v, log end %d", r, l.LogEndOffset())
	}
	if err := m.WriteCheckpoints(); err != nil {
		t.Fatal(err)
	}
	if tail, ok := readTails(t, dir)[tp]; ok {
		t.Fatalf("entry %+v for a recovered log nothing synced", tail)
	}
	if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(2, e.clk.Now().UnixMilli())}), 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteCheckpoints(); err != nil {
		t.Fatal(err)
	}
	if tail, ok := readTails(t, dir)[tp]; !ok || tail.End != 22 || tail.Bytes != l.active().size.Load() {
		t.Fatalf("entry %+v (present %v) after a flush", tail, ok)
	}
}

// renameCountFS counts the renames onto paths with a given base name.
type renameCountFS struct {
	vfs.FS
	base string
	n    atomic.Int64
}

func (f *renameCountFS) Rename(from, to string) error {
	if filepath.Base(to) == f.base {
		f.n.Add(1)
	}
	return f.FS.Rename(from, to)
}

// TestRestartKeepsEpochCheckpointOfEmptyLog: a partition nothing was
// written to, whose leader epoch starts at its (empty) end, restarts
// without its leader-epoch-checkpoint being rewritten: the original
// truncated the cache to the log end at load and wrote the file at once
// (two fsyncs per such partition at every start-up), then the leader
// assigned the same epoch again and the close rewrote it.
func TestRestartKeepsEpochCheckpointOfEmptyLog(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	tp := TopicPartition{Topic: "empty", Partition: 0}
	fs := &renameCountFS{FS: vfs.Default, base: LeaderEpochCheckpointFile}
	open := func() *Manager {
		m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, FS: fs, Clock: e.clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return e.cfg }})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open()
	l, err := m.CreateLog(tp, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	lead := func(l *Log) {
		t.Helper()
		if err := l.Epochs().AssignDeferred(3, int64(l.LogEndOffset())); err != nil {
			t.Fatal(err)
		}
	}
	lead(l)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if fs.n.Load() != 1 {
		t.Fatalf("%d leader-epoch-checkpoint writes at the first close, want 1", fs.n.Load())
	}
	for i := 0; i < 2; i++ {
		m = open()
		l, _ = m.Log(tp)
		if got := l.Epochs().Entries(); len(got) != 0 {
			t.Fatalf("entries %v at load, want none (the epoch starts at the log end)", got)
		}
		lead(l)
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if fs.n.Load() != 1 {
			t.Fatalf("restart %d rewrote the leader-epoch-checkpoint (%d writes in all)", i+1, fs.n.Load())
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "empty-0", LeaderEpochCheckpointFile))
	if err != nil || string(b) != "0\n1\n3 0\n" {
		t.Fatalf("leader-epoch-checkpoint %q %v", b, err)
	}
}
