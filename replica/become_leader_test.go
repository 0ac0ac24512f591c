package replica

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// syncCountFS counts the fsyncs of leader-epoch checkpoint files.
type syncCountFS struct {
	vfs.FS
	syncs atomic.Int32
}

type syncCountFile struct {
	vfs.File
	fs *syncCountFS
}

func (c *syncCountFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.Contains(filepath.Base(name), engine.LeaderEpochCheckpointFile) {
		return f, err
	}
	return &syncCountFile{File: f, fs: c}, nil
}

func (f *syncCountFile) Sync() error {
	f.fs.syncs.Add(1)
	return f.File.Sync()
}

// TestMakeLeaderWritesTheEpochWithTheData: becoming leader of a log that
// holds records writes no leader-epoch checkpoint (an fsynced file per
// partition made a fail-over moving thousands of leaders wait for
// thousands of fsyncs): the new epoch is known at once (OffsetForLeaderEpoch
// answers from it) and reaches the checkpoint with the next flush of the
// log, before the records of the epoch count as durable; a log closed
// before any such record writes it on close.
func TestMakeLeaderWritesTheEpochWithTheData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	fs := &syncCountFS{FS: vfs.Default}
	cfg := engine.DefaultConfig()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	open := func() *engine.Log {
		l, err := engine.OpenLog(dir, simTP, cfg, engine.LogOptions{FS: fs, Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open()
	m := NewManager(ManagerConfig{ID: 1, Logger: silent})
	p := m.Add(l)
	st := State{Leader: 1, LeaderEpoch: 3, ISR: []int32{1, 2}, Replicas: []int32{1, 2}, ZkVersion: 1}
	if _, err := p.MakeLeader(st, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Append(p, batch(t, "a", 3), false, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	leo := l.LogEndOffset()
	before := fs.syncs.Load()

	// A new leadership of the non-empty log: no checkpoint written.
	st.LeaderEpoch, st.ZkVersion = 5, 2
	if _, err := p.MakeLeader(st, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if n := fs.syncs.Load() - before; n != 0 {
		t.Fatalf("becoming leader fsynced the leader-epoch checkpoint %d times", n)
	}
	es := l.Epochs().Entries()
	if last := es[len(es)-1]; last.Epoch != 5 || last.StartOffset != int64(leo) {
		t.Fatalf("epochs %v: want epoch 5 from %d", es, leo)
	}
	// The epoch's first records are made durable with the entry.
	if _, err := m.Append(p, batch(t, "b", 2), false, 1); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if fs.syncs.Load() == before {
		t.Fatal("the flush of the epoch's records did not write the leader-epoch checkpoint")
	}
	data, err := os.ReadFile(filepath.Join(dir, engine.LeaderEpochCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\n5 ") {
		t.Fatalf("checkpoint after the flush:\n%s", data)
	}

	// A leadership without records reaches the checkpoint on close (a
	// reload then drops it, as Kafka's does: no record starts at the log
	// end).
	st.LeaderEpoch, st.ZkVersion = 8, 3
	if _, err := p.MakeLeader(st, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(filepath.Join(dir, engine.LeaderEpochCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), fmt.Sprintf("\n8 %d", leo+2)) {
		t.Fatalf("checkpoint after close:\n%s", data)
	}
}
