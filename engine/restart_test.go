package engine

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/record"
)

// inode returns the inode number of path.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// writeLogs creates n partitions of "r" in a manager on a fresh dir, each
// with records appended, flushed and checkpointed, and returns the dir.
func writeLogs(t *testing.T, e *testEnv, n, records int) string {
	t.Helper()
	dir := t.TempDir()
	m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Clock: e.clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return e.cfg }})
	if err != nil {
		t.Fatal(err)
	}
	ts := e.clk.Now().UnixMilli()
	for p := 0; p < n; p++ {
		l, err := m.CreateLog(TopicPartition{Topic: "r", Partition: int32(p)}, e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < records; i++ {
			if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts), kv(i+1, ts)}), 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.WriteCheckpoints(); err != nil {
		t.Fatal(err)
	}
	m.handles.evictCold()
	crashManager(m) // no clean-shutdown marker
	return dir
}

// TestUncleanRestartSkipsFlushedLogs: after an unclean stop, a log whose
// active segment ends exactly at its checkpointed recovery point is not
// recovered: its index files are not rebuilt (the original rebuilt both
// indexes of every active segment, with their fsyncs), nothing is opened
// until it is used, and it reads and appends as before.
func TestUncleanRestartSkipsFlushedLogs(t *testing.T) {
	e := newTestEnv(t)
	dir := writeLogs(t, e, 3, 40)
	pdir := filepath.Join(dir, "r-0")
	idx, tidx := inode(t, IndexFileName(pdir, 0)), inode(t, TimeIndexFileName(pdir, 0))
	m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Clock: e.clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return e.cfg }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if st := m.Budget(); st.OpenFiles != 0 || st.Mappings != 0 {
		t.Fatalf("files open after the load: %+v", st)
	}
	if inode(t, IndexFileName(pdir, 0)) != idx || inode(t, TimeIndexFileName(pdir, 0)) != tidx {
		t.Fatal("the flushed log's indexes were rebuilt")
	}
	l, _ := m.Log(TopicPartition{Topic: "r", Partition: 0})
	if l.LogEndOffset() != 80 || len(readAll(t, l, 0)) != 80 {
		t.Fatalf("log end %d", l.LogEndOffset())
	}
	if res, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, e.clk.Now().UnixMilli())}), 0); err != nil || res.BaseOffset != 80 {
		t.Fatalf("append after the restart: %+v %v", res, err)
	}
}

// TestUncleanRestartRecoversUnflushedTail: a log with bytes past its
// checkpointed recovery point is still recovered (a torn tail cut off).
func TestUncleanRestartRecoversUnflushedTail(t *testing.T) {
	e := newTestEnv(t)
	dir := writeLogs(t, e, 1, 10)
	path := LogFileName(filepath.Join(dir, "r-0"), 0)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(makeBatch(t, record.CodecNone, []testRecord{kv(1, 1)})[:30]) // torn
	f.Close()
	m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Clock: e.clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return e.cfg }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, _ := m.Log(TopicPartition{Topic: "r", Partition: 0})
	if l.LogEndOffset() != 20 || len(readAll(t, l, 0)) != 20 {
		t.Fatalf("log end %d", l.LogEndOffset())
	}
	if res, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, e.clk.Now().UnixMilli())}), 0); err != nil || res.BaseOffset != 20 {
		t.Fatalf("append after the recovery: %+v %v", res, err)
	}
}

// TestCleanRestartIsLazy: after a clean shutdown nothing of a log is opened
// at load; its active segment's tail is read on first use, and a
// checkpoint that disagrees with the segment (damaged) loses to the
// segment before anything is appended.
func TestCleanRestartIsLazy(t *testing.T) {
	e := newTestEnv(t)
	dir := writeLogs(t, e, 2, 30)
	open := func() *Manager {
		m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Clock: e.clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return e.cfg }})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := open() // unclean: recovered, then closed cleanly
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = open()
	if st := m.Budget(); st.OpenFiles != 0 || st.Mappings != 0 {
		t.Fatalf("files open after a clean load: %+v", st)
	}
	l, _ := m.Log(TopicPartition{Topic: "r", Partition: 1})
	if l.LogEndOffset() != 60 {
		t.Fatalf("log end %d", l.LogEndOffset())
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// A recovery point checkpoint behind the data with the clean marker
	// present: the first append learns the segment's end.
	cp := filepath.Join(dir, RecoveryPointCheckpointFile)
	if err := checkpoint.WriteOffsets(e.fs, cp, map[TopicPartition]int64{{Topic: "r", Partition: 0}: 58, {Topic: "r", Partition: 1}: 60}); err != nil {
		t.Fatal(err)
	}
	m = open()
	defer m.Close()
	l, _ = m.Log(TopicPartition{Topic: "r", Partition: 0})
	res, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, e.clk.Now().UnixMilli())}), 0)
	if err != nil || res.BaseOffset != 60 || l.LogEndOffset() != 61 || len(readAll(t, l, 0)) != 61 {
		t.Fatalf("append after a stale checkpoint: %+v %v, log end %d", res, err, l.LogEndOffset())
	}
}

// TestUncleanRestartLeavesSealedActiveSegmentsAlone: a log written, closed
// cleanly and then not written again carries a sealed synced-tail entry
// (its index files as the clean close sealed and synced them); after a
// kill, the restart's close does not reopen its active segment to seal it
// again, and nothing of it is rebuilt. The original reopened every such
// segment at the close (the .log opened, its tail read, its indexes
// checked, rebuilt when they had no file, sealed): 30,000 of them at
// 30,000 partitions. A log written and flushed after the clean start is
// reopened by the close (its files were writable) but its indexes, which
// have no entry, are not rebuilt; one written and not flushed is
// recovered as before: its tail read and its indexes rebuilt.
func TestUncleanRestartLeavesSealedActiveSegmentsAlone(t *testing.T) {
	e := newTestEnv(t)
	dir := t.TempDir()
	tp := func(p int) TopicPartition { return TopicPartition{Topic: "r", Partition: int32(p)} }
	m := e.openDir(dir)
	ts := e.clk.Now().UnixMilli()
	// Partitions 0-2 one small batch (no index entry), 3 forty (entries).
	for p := 0; p < 4; p++ {
		l, err := m.CreateLog(tp(p), e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 1+39*(p/3); i++ {
			if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts+int64(i))}), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.handles.evictCold()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// A clean start; partition 1 written and flushed, 2 written only.
	m = e.openDir(dir)
	for p := 1; p <= 2; p++ {
		l, _ := m.Log(tp(p))
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(9, ts)}), 0); err != nil {
			t.Fatal(err)
		}
	}
	l1, _ := m.Log(tp(1))
	if err := l1.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteCheckpoints(); err != nil {
		t.Fatal(err)
	}
	tails := readTails(t, dir)
	for p, want := range []bool{true, false, false, true} {
		if tl, ok := tails[tp(p)]; p != 2 && (!ok || tl.Sealed != want) {
			t.Fatalf("partition %d: synced-tail entry %+v (present %v), want sealed %v", p, tl, ok, want)
		}
	}
	if _, ok := tails[tp(2)]; ok {
		t.Fatal("partition 2 (not flushed) has a synced-tail entry")
	}
	crashManager(m)

	m = e.openDir(dir)
	for p := 0; p < 4; p++ {
		l, _ := m.Log(tp(p))
		if r := l.Recovered(); (r.Segments != 0) != (p == 2) {
			t.Fatalf("partition %d: recovered %+v", p, r)
		}
	}
	if n := m.handles.rebuilds.Load(); n != 1 {
		t.Fatalf("%d index rebuilds at the unclean start, want 1 (the unflushed tail's)", n)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// Partition 1's files were writable when the process died: the close
	// reopens it to seal them. 0 and 3 are left as they were.
	if n := m.handles.activeOpens.Load(); n != 1 {
		t.Fatalf("the close after the unclean start reopened %d active segments, want 1", n)
	}
	if n := m.handles.rebuilds.Load(); n != 1 {
		t.Fatalf("%d index rebuilds by the close after the unclean start, want 0", n-1)
	}

	// Everything reads, by offset and by time, appends and rolls as before.
	m = e.openDir(dir)
	defer m.Close()
	for p, n := range []int{1, 2, 2, 40} {
		l, _ := m.Log(tp(p))
		if got := readAll(t, l, 0); len(got) != n || l.LogEndOffset() != Offset(n) {
			t.Fatalf("partition %d: %d records, log end %d, want %d", p, len(got), l.LogEndOffset(), n)
		}
		last := ts // partitions 0-2: every record at ts or ts+0
		if p == 3 {
			last = ts + 39
		}
		if off, _, ok, err := l.OffsetForTimestamp(last); err != nil || !ok || (p == 3 && off != 39) || (p < 3 && off != 0) {
			t.Fatalf("partition %d: offset for the last timestamp %d %v %v", p, off, ok, err)
		}
		if res, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, ts)}), 0); err != nil || res.BaseOffset != Offset(n) {
			t.Fatalf("partition %d: append %+v %v", p, res, err)
		}
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, l, 0); len(got) != n+1 {
			t.Fatalf("partition %d after a roll: %d records", p, len(got))
		}
	}
}
