package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// segmentFiles lists the .log files of a partition directory.
func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if filepath.Ext(e.Name()) == LogSuffix {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestNewLogCreatesNoFileUntilWritten: a partition created, and one
// restarted (cleanly or not) without ever being written, has no segment
// file and holds no descriptor; its first append creates the .log at the
// log start, and a flush makes that file durable with the record (a power
// loss keeping nothing unsynced keeps both). A follower truncating such a
// log fully starts it at the new offset as usual.
func TestNewLogCreatesNoFileUntilWritten(t *testing.T) {
	root := t.TempDir()
	crash := vfs.NewCrashFS(1)
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	cfg := DefaultConfig()
	opts := ManagerOptions{Dirs: []string{root}, FS: crash, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	var tps []TopicPartition
	var cfgs []Config
	for p := range int32(n) {
		tps = append(tps, TopicPartition{Topic: "u", Partition: p})
		cfgs = append(cfgs, cfg)
	}
	files := m.Budget().OpenFiles
	logs, errs := m.CreateLogs(tps, cfgs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%v: %v", tps[i], err)
		}
	}
	if got := m.Budget().OpenFiles; got != files {
		t.Fatalf("%d descriptors open after creating %d partitions, %d before", got, n, files)
	}
	for _, l := range logs {
		if f := segmentFiles(t, l.Dir()); len(f) != 0 {
			t.Fatalf("%v: segment files %v before its first record", l.TopicPartition(), f)
		}
		if l.LogEndOffset() != 0 || l.LogStartOffset() != 0 {
			t.Fatalf("%v: log [%d, %d)", l.TopicPartition(), l.LogStartOffset(), l.LogEndOffset())
		}
		if res, err := l.Read(0, 1<<20, l.LogEndOffset()); err != nil || res.Size != 0 {
			t.Fatalf("%v: read of the empty log: %v %v", l.TopicPartition(), res, err)
		}
	}
	// A clean restart and an unclean one create nothing either.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if m, err = OpenManager(opts); err != nil {
		t.Fatal(err)
	}
	crashManager(m)
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	if m, err = OpenManager(opts); err != nil {
		t.Fatal(err)
	}
	for _, tp := range tps {
		l, ok := m.Log(tp)
		if !ok {
			t.Fatalf("%v lost", tp)
		}
		if f := segmentFiles(t, l.Dir()); len(f) != 0 {
			t.Fatalf("%v: segment files %v after restarts", tp, f)
		}
	}
	// u-0 written and flushed; u-1 written, not flushed; u-2 truncated
	// fully to 5 (a follower behind its leader's log start); u-3 left.
	l0, _ := m.Log(tps[0])
	l1, _ := m.Log(tps[1])
	l2, _ := m.Log(tps[2])
	// u-0's epoch is on disk before its first record, so its flush has no
	// leader-epoch checkpoint to write (whose directory sync would cover
	// the new .log): the flush itself must sync the directory entry.
	if err := l0.Epochs().Assign(0, 0); err != nil {
		t.Fatal(err)
	}
	for _, l := range []*Log{l0, l1} {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, clk.Now().UnixMilli())}), 0); err != nil {
			t.Fatal(err)
		}
		if f := segmentFiles(t, l.Dir()); len(f) != 1 || f[0] != filepath.Base(LogFileName(l.Dir(), 0)) {
			t.Fatalf("%v: segment files %v after the first record", l.TopicPartition(), f)
		}
	}
	if err := l0.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l2.TruncateFullyAndStartAt(5); err != nil {
		t.Fatal(err)
	}
	if err := l2.Sync(); err != nil {
		t.Fatal(err)
	}
	if l2.LogStartOffset() != 5 || l2.LogEndOffset() != 5 {
		t.Fatalf("%v after the full truncation: [%d, %d)", tps[2], l2.LogStartOffset(), l2.LogEndOffset())
	}
	if err := m.WriteCheckpoints(); err != nil {
		t.Fatal(err)
	}
	crashManager(m)
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	if m, err = OpenManager(opts); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := map[int32][2]Offset{0: {0, 1}, 1: {0, 0}, 2: {5, 5}, 3: {0, 0}}
	for _, tp := range tps {
		l, _ := m.Log(tp)
		if w := want[tp.Partition]; l.LogStartOffset() != w[0] || l.LogEndOffset() != w[1] {
			t.Fatalf("%v after a power loss: [%d, %d), want [%d, %d)", tp, l.LogStartOffset(), l.LogEndOffset(), w[0], w[1])
		}
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(2, clk.Now().UnixMilli())}), 0); err != nil {
			t.Fatalf("%v: append after the power loss: %v", tp, err)
		}
	}
}
