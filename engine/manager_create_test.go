package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
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

// opCountFS counts the listings and removals made inside directories
// whose name starts with prefix, and fails the directory syncs of failDir.
type opCountFS struct {
	vfs.FS
	prefix, failDir string
	lists, removes  atomic.Int64
	syncsRefused    atomic.Int64
}

func (f *opCountFS) inPartition(name string) bool {
	return strings.HasPrefix(filepath.Base(filepath.Dir(name)), f.prefix) || strings.HasPrefix(filepath.Base(name), f.prefix)
}

func (f *opCountFS) ReadDir(name string) ([]os.DirEntry, error) {
	if f.inPartition(name) {
		f.lists.Add(1)
	}
	return f.FS.ReadDir(name)
}

func (f *opCountFS) Remove(name string) error {
	if f.inPartition(name) {
		f.removes.Add(1)
	}
	return f.FS.Remove(name)
}

func (f *opCountFS) SyncDir(name string) error {
	if f.failDir != "" && filepath.Clean(name) == f.failDir {
		f.syncsRefused.Add(1)
		return &os.PathError{Op: "fsync", Path: name, Err: syscall.EIO}
	}
	return f.FS.SyncDir(name)
}

// TestCreateLogsNewDirsNotListed: the logs of partition directories
// CreateLogs just made are opened without listing the directory or
// clearing stale segment files from it (they are empty), and their first
// append loads the producer state without listing it for transaction
// indexes: each cost a system call or three per partition of a topic
// created. The logs are writable and survive a restart.
func TestCreateLogsNewDirsNotListed(t *testing.T) {
	root := t.TempDir()
	fs := &opCountFS{FS: vfs.Default, prefix: "fresh-"}
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	cfg := DefaultConfig()
	opts := ManagerOptions{Dirs: []string{root}, FS: fs, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var tps []TopicPartition
	var cfgs []Config
	for p := range int32(n) {
		tps = append(tps, TopicPartition{Topic: "fresh", Partition: p})
		cfgs = append(cfgs, cfg)
	}
	logs, errs := m.CreateLogs(tps, cfgs)
	for i, e := range errs {
		if e != nil {
			t.Fatalf("%v: %v", tps[i], e)
		}
	}
	if l, r := fs.lists.Load(), fs.removes.Load(); l != 0 || r != 0 {
		t.Fatalf("creating %d partitions listed their directories %d times and removed %d files in them, want none", n, l, r)
	}
	for i, l := range logs {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, clk.Now().UnixMilli())}), 0); err != nil {
			t.Fatalf("append to %v: %v", tps[i], err)
		}
	}
	// Nor does the first append list them (for transaction indexes).
	if l := fs.lists.Load(); l != 0 {
		t.Fatalf("the first appends listed the new partitions' directories %d times", l)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m, err = OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tp := range tps {
		if l, ok := m.Log(tp); !ok || l.LogEndOffset() != 1 {
			t.Fatalf("%v after a restart: %v", tp, ok)
		}
	}
}

// TestCreateLogsRemovesDirsOfFailed: when the log dir's sync after the
// new partition directories fails, none of them is created and every
// directory CreateLogs made goes again (left, each would come back as an
// empty log at the next start); a path that existed before the call (here
// a file where a partition directory belongs) is left as found, and an
// existing log stays. A later CreateLogs creates them.
func TestCreateLogsRemovesDirsOfFailed(t *testing.T) {
	root := t.TempDir()
	fs := &opCountFS{FS: vfs.Default, prefix: "none"}
	cfg := DefaultConfig()
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, FS: fs, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	existing, err := m.CreateLog(TopicPartition{Topic: "f", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// f-5's path is taken by a file the manager did not make.
	if err := os.WriteFile(filepath.Join(root, "f-5"), []byte("not a log"), 0o644); err != nil {
		t.Fatal(err)
	}
	var tps []TopicPartition
	var cfgs []Config
	for p := range int32(8) {
		tps = append(tps, TopicPartition{Topic: "f", Partition: p})
		cfgs = append(cfgs, cfg)
	}
	fs.failDir = filepath.Clean(root)
	logs, errs := m.CreateLogs(tps, cfgs)
	fs.failDir = ""
	if fs.syncsRefused.Load() == 0 {
		t.Fatal("the fault was not injected")
	}
	for i, tp := range tps {
		_, statErr := os.Stat(filepath.Join(root, PartitionDirName(tp)))
		switch tp.Partition {
		case 0:
			if errs[i] != nil || logs[i] != existing || statErr != nil {
				t.Fatalf("%v: the existing log: %v %v", tp, errs[i], statErr)
			}
		case 5:
			if errs[i] == nil {
				t.Fatalf("%v: created over a file", tp)
			}
			if b, err := os.ReadFile(filepath.Join(root, "f-5")); err != nil || string(b) != "not a log" {
				t.Fatalf("%v: the file found in its place was touched: %q %v", tp, b, err)
			}
		default:
			if errs[i] == nil || !errors.Is(errs[i], ErrStorage) {
				t.Fatalf("%v: %v, want a storage error", tp, errs[i])
			}
			if !os.IsNotExist(statErr) {
				t.Fatalf("%v: the directory made for it is left (%v)", tp, statErr)
			}
			if _, ok := m.Log(tp); ok {
				t.Fatalf("%v: a partition not created has a log", tp)
			}
		}
	}
	_, errs = m.CreateLogs(tps, cfgs)
	for i, tp := range tps {
		if (errs[i] == nil) == (tp.Partition == 5) {
			t.Fatalf("%v, created again: %v", tp, errs[i])
		}
	}
}

// TestCreateLogsCrashAtEveryStep: a power loss at every file operation of
// a CreateLogs of several new partitions beside one that exists, losing
// all or a random part of the unsynced state: the log dir opens again, every partition
// CreateLogs reported created exists (empty and writable), and the
// existing partition keeps its synced record. (A partition whose creation
// failed may or may not exist.)
func TestCreateLogsCrashAtEveryStep(t *testing.T) {
	const parts = 3
	for _, mode := range []vfs.CrashOptions{{KeepUnsynced: vfs.KeepNone}, {KeepUnsynced: vfs.KeepRandom}} {
		done := false
		for budget := 0; !done; budget++ {
			if budget > 200 {
				t.Fatal("a creation takes more than 200 file operations")
			}
			crash := vfs.NewCrashFS(int64(budget))
			fsys := vfs.NewFailFS(crash)
			root := t.TempDir()
			cfg := DefaultConfig()
			opts := ManagerOptions{Dirs: []string{root}, FS: fsys, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
			m, err := OpenManager(opts)
			if err != nil {
				t.Fatal(err)
			}
			existing := TopicPartition{Topic: "c", Partition: 0}
			l, err := m.CreateLog(existing, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(0, 1_700_000_000_000)}), 0); err != nil {
				t.Fatal(err)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			var tps []TopicPartition
			var cfgs []Config
			for p := range int32(parts + 1) {
				tps = append(tps, TopicPartition{Topic: "c", Partition: p})
				cfgs = append(cfgs, cfg)
			}
			fsys.SetBudget(budget)
			_, errs := m.CreateLogs(tps, cfgs)
			if done = !fsys.Exhausted(); done {
				t.Logf("%+v: the creation took %d file operations", mode, budget)
			}
			fsys.SetBudget(-1)
			crashManager(m)
			if err := crash.CrashWith(mode); err != nil {
				t.Fatal(err)
			}
			m, err = OpenManager(opts)
			if err != nil {
				t.Fatalf("budget %d, %+v: open: %v", budget, mode, err)
			}
			for i, tp := range tps {
				l, ok := m.Log(tp)
				if !ok {
					if errs[i] == nil {
						t.Fatalf("budget %d, %+v: %v was created, lost in the crash", budget, mode, tp)
					}
					continue
				}
				want := Offset(0)
				if tp == existing {
					want = 1
				}
				if l.LogEndOffset() != want {
					t.Fatalf("budget %d, %+v: %v: log end %d after the crash, want %d", budget, mode, tp, l.LogEndOffset(), want)
				}
				if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(1, 1_700_000_000_000)}), 0); err != nil {
					t.Fatalf("budget %d, %+v: append to %v after the crash: %v", budget, mode, tp, err)
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
