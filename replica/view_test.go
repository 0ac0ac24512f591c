package replica

import (
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

// writeGatedFS holds the next write to a segment's .log file while armed:
// the append doing it stays inside the partition's lock until released.
type writeGatedFS struct {
	vfs.FS
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

type writeGatedFile struct {
	vfs.File
	fs *writeGatedFS
}

func (g *writeGatedFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, engine.LogSuffix) {
		return f, err
	}
	return &writeGatedFile{File: f, fs: g}, nil
}

func (f *writeGatedFile) WriteAt(b []byte, off int64) (int, error) {
	if f.fs.armed.CompareAndSwap(true, false) {
		f.fs.entered <- struct{}{}
		<-f.fs.release
	}
	return f.File.WriteAt(b, off)
}

// TestViewWithoutPartitionLock: a consumer fetch checks the partition's
// role and leader epoch (Role, LeaderEpoch, View) for every partition it
// reads. They answer while a leader append holds the partition's lock
// writing its batch: the fetch does not queue behind the produce path it
// is waiting for. (They took the lock: a fetch arriving during an append,
// or a parked fetch woken by the commit, waited for the append's write.)
// They also follow every role and epoch change.
func TestViewWithoutPartitionLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	fs := &writeGatedFS{FS: vfs.Default, entered: make(chan struct{}), release: make(chan struct{})}
	l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{FS: fs, Clock: clock.NewManual(time.Unix(1_700_000_000, 0)),
		Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := New(l, Options{ID: 1, Logger: silent})
	if r, e := p.View(); r != RoleNone || e != -1 {
		t.Fatalf("new partition: view %v epoch %d, want none -1", r, e)
	}
	if _, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 3, ISR: []int32{1}, Replicas: []int32{1}}, time.Now()); err != nil {
		t.Fatal(err)
	}

	fs.armed.Store(true)
	appended := make(chan error, 1)
	go func() {
		_, _, err := p.AppendAsLeader(batch(t, "a", 2), false, 1)
		appended <- err
	}()
	<-fs.entered // the append holds the partition's lock, writing

	viewed := make(chan [3]int32, 1)
	go func() {
		r, e := p.View()
		viewed <- [3]int32{int32(r), e, int32(p.Role())*100 + p.LeaderEpoch()}
	}()
	select {
	case v := <-viewed:
		if Role(v[0]) != RoleLeader || v[1] != 3 || v[2] != int32(RoleLeader)*100+3 {
			t.Fatalf("during the append: view %v, want leader epoch 3", v)
		}
	case <-time.After(10 * time.Second):
		close(fs.release)
		<-appended
		t.Fatal("Role/LeaderEpoch/View waited for the append holding the partition's lock")
	}
	close(fs.release)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		do    func() error
		role  Role
		epoch int32
	}{
		{func() error {
			_, err := p.MakeFollower(State{Leader: 2, LeaderEpoch: 4, ISR: []int32{1, 2}, Replicas: []int32{1, 2}})
			return err
		}, RoleFollower, 4},
		{func() error {
			_, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 5, ISR: []int32{1}, Replicas: []int32{1, 2}}, time.Now())
			return err
		}, RoleLeader, 5},
		{func() error { p.Stop(); return nil }, RoleNone, 5},
	}
	for i, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if r, e := p.View(); r != st.role || e != st.epoch || p.Role() != st.role || p.LeaderEpoch() != st.epoch {
			t.Fatalf("step %d: view %v epoch %d, want %v %d", i, r, e, st.role, st.epoch)
		}
	}
}
