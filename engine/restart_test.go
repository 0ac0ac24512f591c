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
