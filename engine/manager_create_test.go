package engine

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// syncCountFS counts the directory fsyncs of one directory.
type syncCountFS struct {
	vfs.FS
	dir   string
	syncs atomic.Int64
}

func (f *syncCountFS) SyncDir(name string) error {
	if filepath.Clean(name) == filepath.Clean(f.dir) {
		f.syncs.Add(1)
	}
	return f.FS.SyncDir(name)
}

// TestCreateLogsOneDirSync: CreateLogs of many partitions fsyncs the log
// dir once for all the new partition directories (CreateLog fsyncs it once
// per partition), returns the existing log for a partition that has one
// and the same log for a partition named twice, and every log is
// writable.
func TestCreateLogsOneDirSync(t *testing.T) {
	root := t.TempDir()
	fs := &syncCountFS{FS: vfs.Default, dir: root}
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	cfg := DefaultConfig()
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, FS: fs, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	first, err := m.CreateLog(TopicPartition{Topic: "t", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := fs.syncs.Load()
	const n = 200
	var tps []TopicPartition
	var cfgs []Config
	for p := range int32(n) {
		tps = append(tps, TopicPartition{Topic: "t", Partition: p})
		cfgs = append(cfgs, cfg)
	}
	tps = append(tps, TopicPartition{Topic: "t", Partition: 7}) // twice
	cfgs = append(cfgs, cfg)
	logs, errs := m.CreateLogs(tps, cfgs)
	if got := fs.syncs.Load() - before; got != 1 {
		t.Fatalf("%d fsyncs of the log dir for %d new partitions, want 1", got, n-1)
	}
	for i, e := range errs {
		if e != nil || logs[i] == nil {
			t.Fatalf("partition %v: %v", tps[i], e)
		}
	}
	if logs[0] != first {
		t.Fatal("an existing partition got a new log")
	}
	if logs[n] != logs[7] {
		t.Fatal("a partition named twice got two logs")
	}
	if len(m.Logs()) != n {
		t.Fatalf("%d logs in the manager, want %d", len(m.Logs()), n)
	}
	for i, l := range logs[:n] {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, clk.Now().UnixMilli())}), 0); err != nil {
			t.Fatalf("append to %v: %v", tps[i], err)
		}
	}
}

// TestCreateLogsDurableDirs: after CreateLogs and a synced append to each
// new log, a power loss keeps every partition directory and its record
// (the one log-dir fsync covers every new directory).
func TestCreateLogsDurableDirs(t *testing.T) {
	root := t.TempDir()
	fs := vfs.NewCrashFS(7)
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	cfg := DefaultConfig()
	opts := ManagerOptions{Dirs: []string{root}, FS: fs, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var tps []TopicPartition
	var cfgs []Config
	for p := range int32(n) {
		tps = append(tps, TopicPartition{Topic: "d", Partition: p})
		cfgs = append(cfgs, cfg)
	}
	logs, errs := m.CreateLogs(tps, cfgs)
	for i, l := range logs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, clk.Now().UnixMilli())}), 0); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	crashManager(m)
	if err := fs.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	m2, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	for i, tp := range tps {
		l, ok := m2.Log(tp)
		if !ok {
			t.Fatalf("%v lost in the crash", tp)
		}
		if l.LogEndOffset() != 1 {
			t.Fatalf("%v: log end %d after the crash, want 1 (partition %d)", tp, l.LogEndOffset(), i)
		}
	}
}
