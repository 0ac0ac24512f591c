package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// hashTree returns every file under root with its size and content hash.
func hashTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			out[rel+"/"] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = fmt.Sprintf("%d:%s", len(b), hex.EncodeToString(sum[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, fmt.Sprintf("%s: %s -> %s", k, v, b[k]))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("%s: new %s", k, v))
		}
	}
	sort.Strings(d)
	return strings.Join(d, "\n")
}

func appendRecords(t *testing.T, l *Log, n int) {
	t.Helper()
	ts := int64(1_700_000_000_000)
	for i := 0; i < n; i++ {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts)}), 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSecondManagerRefusedByDirLock: a second Manager (in a broker: a
// second process) on a dir that is in use fails with ErrDirLocked naming
// the dir and its lock file, and changes nothing in the dir: no marker, no
// trimmed index, no checkpoint. Spelling the dir differently ("./x" vs
// the absolute path) does not get around the lock.
func TestSecondManagerRefusedByDirLock(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	cfg := DefaultConfig()
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	opts := ManagerOptions{Dirs: []string{"data"}, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
	m1, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := m1.CreateLog(TopicPartition{Topic: "live", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, l, 20)
	data := filepath.Join(root, "data")
	before := hashTree(t, data)
	for _, spelling := range []string{"./data", data, data + "/", "data/../data"} {
		m2, err := OpenManager(ManagerOptions{Dirs: []string{spelling}, Clock: clk, Logger: quietLogger})
		if err == nil {
			m2.Close()
			t.Fatalf("%s: a second manager opened a dir in use", spelling)
		}
		if !errors.Is(err, ErrDirLocked) || !strings.Contains(err.Error(), data) || !strings.Contains(err.Error(), LockFile) {
			t.Fatalf("%s: error %q: want ErrDirLocked naming %s and %s", spelling, err, data, LockFile)
		}
	}
	if d := diffTrees(before, hashTree(t, data)); d != "" {
		t.Fatalf("the refused manager changed the live dir:\n%s", d)
	}
	if _, err := os.Stat(filepath.Join(data, CleanShutdownFile)); err == nil {
		t.Fatal("clean-shutdown marker in a dir whose owner still runs")
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	// Released by Close: the next owner opens it, cleanly shut down.
	m3, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Close()
	if got := m3.Logs()[0].LogEndOffset(); got != 20 {
		t.Fatalf("log end %d after reopen, want 20", got)
	}
}

// TestOpenManagerRejectsDuplicateDirs: the same dir twice in log.dirs
// (however spelled) is a configuration error, not a self-deadlock.
func TestOpenManagerRejectsDuplicateDirs(t *testing.T) {
	root := t.TempDir()
	_, err := OpenManager(ManagerOptions{Dirs: []string{root, root + "/."}, Logger: quietLogger})
	if err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("err %v, want a duplicate-dir error", err)
	}
}

// TestRelativeLogDirCheckpoints: with a relative log dir (the default
// ./data) the recovery-point and log-start checkpoints name every
// partition, so a DeleteRecords survives a clean restart and an unclean
// restart rescans only from the recovery point.
func TestRelativeLogDirCheckpoints(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	cfg := DefaultConfig()
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	opts := ManagerOptions{Dirs: []string{"./data"}, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	tp := TopicPartition{Topic: "rel", Partition: 0}
	l, err := m.CreateLog(tp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRecords(t, l, 10)
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.DeleteRecordsBefore(6); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RecoveryPointCheckpointFile, LogStartCheckpointFile} {
		got, err := checkpoint.ReadOffsets(vfs.Default, filepath.Join(root, "data", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got[tp]; !ok {
			t.Fatalf("%s does not name %s: %v", name, tp, got)
		}
	}
	m, err = OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l = m.Logs()[0]
	if got := l.LogStartOffset(); got != 6 {
		t.Fatalf("log start %d after a clean restart, want 6: deleted records came back", got)
	}
	if got := readAll(t, l, l.LogStartOffset()); len(got) != 4 || got[0].offset != 6 {
		t.Fatalf("readable after restart: %d records from %v", len(got), got)
	}
}

// TestUnopenableLogLeftAsFound: a partition whose log cannot be opened at
// start-up does not stop the others from loading; its directory is left
// exactly as found, CreateLog refuses it (an empty log would hide its
// data), its checkpoint entries survive the next checkpoint write, and
// deleting it removes its directory.
func TestUnopenableLogLeftAsFound(t *testing.T) {
	root := t.TempDir()
	cfg := DefaultConfig()
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	opts := ManagerOptions{Dirs: []string{root}, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }}
	m, err := OpenManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	good, bad := TopicPartition{Topic: "t", Partition: 0}, TopicPartition{Topic: "t", Partition: 1}
	for _, tp := range []TopicPartition{good, bad} {
		l, err := m.CreateLog(tp, cfg)
		if err != nil {
			t.Fatal(err)
		}
		appendRecords(t, l, 10)
		l.SetHighWatermark(l.LogEndOffset())
		if err := l.DeleteRecordsBefore(3); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage bad: its segment becomes a directory, which no open can read.
	badDir := filepath.Join(root, PartitionDirName(bad))
	seg := filepath.Join(badDir, fmt.Sprintf("%020d%s", 0, LogSuffix))
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(seg, 0o755); err != nil {
		t.Fatal(err)
	}
	// An unclean stop with no recovery point: the load recovers (opens)
	// every segment, so the damage is met at start-up.
	for _, name := range []string{CleanShutdownFile, RecoveryPointCheckpointFile} {
		if err := os.Remove(filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	before := hashTree(t, badDir)

	m, err = OpenManager(opts)
	if err != nil {
		t.Fatalf("one unopenable partition stopped the start: %v", err)
	}
	if _, ok := m.Log(good); !ok {
		t.Fatal("the healthy partition was not loaded")
	}
	if err := m.Failed()[bad]; err == nil {
		t.Fatalf("failed partitions %v, want %s", m.Failed(), bad)
	}
	if _, err := m.CreateLog(bad, cfg); !errors.Is(err, ErrStorage) {
		t.Fatalf("CreateLog of the failed partition: %v, want ErrStorage", err)
	}
	if err := m.WriteCheckpoints(); err != nil {
		t.Fatal(err)
	}
	starts, err := checkpoint.ReadOffsets(vfs.Default, filepath.Join(root, LogStartCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if starts[bad] != 3 || starts[good] != 3 {
		t.Fatalf("log start checkpoint %v: want 3 for both partitions", starts)
	}
	if d := diffTrees(before, hashTree(t, badDir)); d != "" {
		t.Fatalf("the failed partition's directory changed:\n%s", d)
	}
	if err := m.DeleteLog(bad); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(badDir); !os.IsNotExist(err) {
		t.Fatalf("deleted failed partition still on disk: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}
