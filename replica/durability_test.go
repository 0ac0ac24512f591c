package replica

import (
	"errors"
	"io"
	"log/slog"
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

// gatedFS holds every fsync of a segment (.log) file, once armed, until
// the test lets it through (or fails it, as a power loss before the fsync
// would), so the test sees the partition while its fsync is in flight.
type gatedFS struct {
	vfs.FS
	armed   atomic.Bool
	entered chan struct{}
	release chan error // nil: do the fsync; an error: fail it
}

type gatedFile struct {
	vfs.File
	fs *gatedFS
}

func (g *gatedFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, engine.LogSuffix) {
		return f, err
	}
	return &gatedFile{File: f, fs: g}, nil
}

func (f *gatedFile) Sync() error {
	if !f.fs.armed.Load() {
		return f.File.Sync()
	}
	f.fs.entered <- struct{}{}
	if err := <-f.fs.release; err != nil {
		return err
	}
	return f.File.Sync()
}

// silent drops the failed fsync's ERROR, which the test causes.
var silent = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestDurabilityRuleSameForSingleNodeAndCluster: a single node's partition
// (Manager.LeadAlone) and a cluster partition whose ISR is its leader alone
// (replication factor 1, or 2 with the follower out of the ISR) follow one
// rule with kvlog.fsync.acks.all: the high watermark passes only fsynced
// offsets, for acks=1 appends as for acks=all, and acks=all is answered
// only then. So after a power loss every acknowledged acks=all batch is
// there, and nothing a consumer could ever see (the HW) was lost. Each
// fsync is held at a gate, so the states in between are checked
// deterministically.
func TestDurabilityRuleSameForSingleNodeAndCluster(t *testing.T) {
	modes := []struct {
		name string
		lead func(t *testing.T, m *Manager, l *engine.Log) *Partition
	}{
		{"single node", func(t *testing.T, m *Manager, l *engine.Log) *Partition {
			p, err := m.LeadAlone(l, 0)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"cluster, replication factor 1", func(t *testing.T, m *Manager, l *engine.Log) *Partition {
			p := m.Add(l)
			if _, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 4, ISR: []int32{1}, Replicas: []int32{1}, ZkVersion: 3}, time.Now()); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"cluster, ISR shrunk to the leader", func(t *testing.T, m *Manager, l *engine.Log) *Partition {
			p := m.Add(l)
			if _, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 7, ISR: []int32{1}, Replicas: []int32{1, 2}, ZkVersion: 9}, time.Now()); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
			crash := vfs.NewCrashFS(1)
			fs := &gatedFS{FS: crash, entered: make(chan struct{}), release: make(chan error)}
			cfg := engine.DefaultConfig()
			cfg.SegmentBytes = 1 << 20
			clk := clock.NewManual(time.Unix(1_700_000_000, 0))
			open := func(clean bool) *engine.Log {
				l, err := engine.OpenLog(dir, simTP, cfg, engine.LogOptions{FS: fs, Clock: clk, Logger: quiet, CleanShutdown: clean, RecoveryPoint: -1, LogStartOffset: -1})
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			l := open(true)
			m := NewManager(ManagerConfig{ID: 1, SyncAlone: true, Logger: silent})
			p := mode.lead(t, m, l)
			fs.armed.Store(true)

			// seen is the highest HW a consumer could have read.
			var seen Offset
			observe := func(step string) {
				t.Helper()
				hw := l.HighWatermark()
				if durable := l.RecoveryPoint(); hw > durable {
					t.Fatalf("%s: high watermark %d above the fsynced offset %d", step, hw, durable)
				}
				seen = max(seen, hw)
			}
			acks := func(last Offset) chan error {
				done := make(chan error, 1)
				waits := []AckWait{{P: p, Last: last, MinISR: 1}}
				m.AwaitAcks(waits, time.Hour, func() { done <- waits[0].Err })
				return done
			}
			appendBatch := func(prefix string, acksAll bool) Offset {
				t.Helper()
				res, err := m.Append(p, batch(t, prefix, 3), acksAll, 1)
				if err != nil {
					t.Fatal(err)
				}
				observe("after appending " + prefix)
				return res.LastOffset
			}
			pending := func(ch chan error, what string) {
				t.Helper()
				select {
				case err := <-ch:
					t.Fatalf("%s answered (%v) before its fsync", what, err)
				default:
				}
			}

			// An acks=all batch: its fsync starts and is held.
			lastA := appendBatch("a", true)
			ackA := acks(lastA)
			<-fs.entered
			observe("a's fsync in flight")
			pending(ackA, "acks=all a")
			// An acks=1 batch meanwhile: answered by Append, not visible.
			lastB := appendBatch("b", false)
			ackB := acks(lastB) // observes the HW passing b
			fs.release <- nil   // a's fsync (it covers b's bytes, not its offsets)
			if err := <-ackA; err != nil {
				t.Fatalf("acks=all a: %v", err)
			}
			observe("a acknowledged")
			pending(ackB, "b's high watermark")
			<-fs.entered // the group commit of what arrived during a's fsync
			observe("b's fsync in flight")
			fs.release <- nil
			if err := <-ackB; err != nil {
				t.Fatal(err)
			}
			observe("b fsynced")
			if seen != lastB+1 {
				t.Fatalf("high watermark %d after every fsync, want %d", seen, lastB+1)
			}

			// An acks=1 batch whose fsync never happens: the power goes.
			lastC := appendBatch("c", false)
			<-fs.entered
			observe("c's fsync in flight")
			fs.release <- errors.New("power lost")
			m.Close() // the flush goroutine has ended
			l.Abandon()
			fs.armed.Store(false)
			if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
				t.Fatal(err)
			}

			l = open(false)
			defer l.Close()
			if leo := l.LogEndOffset(); leo < seen || leo != lastB+1 {
				t.Fatalf("after the power loss the log ends at %d; consumers saw up to %d, acks=all up to %d, c (never fsynced) ended at %d",
					leo, seen, lastA+1, lastC+1)
			}
			m = NewManager(ManagerConfig{ID: 1, SyncAlone: true, Logger: silent})
			defer m.Close()
			p = mode.lead(t, m, l)
			if hw := l.HighWatermark(); hw != lastB+1 {
				t.Fatalf("high watermark %d after leading again, want %d", hw, lastB+1)
			}
			got := map[string]bool{}
			for _, k := range keysOf(t, l) {
				got[k] = true
			}
			for _, k := range []string{"a-0", "a-2", "b-0", "b-2"} {
				if !got[k] {
					t.Fatalf("lost %s after the power loss; have %v", k, got)
				}
			}
		})
	}
}

// groupFS counts the file-system syncs (SyncFS) and the fsyncs of segment
// files, and holds each SyncFS, once armed, at a gate like gatedFS.
type groupFS struct {
	vfs.FS
	armed    atomic.Bool
	syncfs   atomic.Int32
	logSyncs atomic.Int32
	entered  chan struct{}
	release  chan error
}

type countedFile struct {
	vfs.File
	fs *groupFS
}

func (g *groupFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, engine.LogSuffix) {
		return f, err
	}
	return &countedFile{File: f, fs: g}, nil
}

func (f *countedFile) Sync() error {
	f.fs.logSyncs.Add(1)
	return f.File.Sync()
}

func (g *groupFS) SyncFS(name string) error {
	g.syncfs.Add(1)
	if g.armed.Load() {
		g.entered <- struct{}{}
		if err := <-g.release; err != nil {
			return err
		}
	}
	return g.FS.SyncFS(name)
}

// TestGroupCommitAcrossPartitions: acks=all produces to many partitions
// of one log dir, appended within one request (HoldCommits), are made
// durable by one file-system sync for all of them (the strategy the
// manager is configured to here), not an fsync per partition; none is answered before that sync completes, all are after.
// When the sync fails (the power goes during it) none is answered with
// success, and after the power loss every partition holds what was
// acknowledged before.
func TestGroupCommitAcrossPartitions(t *testing.T) {
	const parts = 12
	root := t.TempDir()
	crash := vfs.NewCrashFS(3)
	fs := &groupFS{FS: crash, entered: make(chan struct{}), release: make(chan error)}
	cfg := engine.DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	open := func(i int, clean bool) *engine.Log {
		tp := engine.TopicPartition{Topic: "g", Partition: int32(i)}
		l, err := engine.OpenLog(filepath.Join(root, engine.PartitionDirName(tp)), tp, cfg, engine.LogOptions{FS: fs, Clock: clk, Logger: quiet, CleanShutdown: clean, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	m := NewManager(ManagerConfig{ID: 1, SyncAlone: true, Logger: silent, GroupSync: engine.SyncFileSystem})
	logs := make([]*engine.Log, parts)
	ps := make([]*Partition, parts)
	for i := range ps {
		logs[i] = open(i, true)
		p, err := m.LeadAlone(logs[i], 0)
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	// produce appends one batch to every partition as one request and
	// returns the channel its acks=all answer arrives on.
	produce := func(prefix string) chan []error {
		release := m.HoldCommits()
		waits := make([]AckWait, parts)
		for i, p := range ps {
			res, err := m.Append(p, batch(t, prefix, 2), true, 1)
			if err != nil {
				t.Fatal(err)
			}
			waits[i] = AckWait{P: p, Last: res.LastOffset, MinISR: 1}
		}
		release()
		done := make(chan []error, 1)
		m.AwaitAcks(waits, time.Hour, func() {
			errs := make([]error, len(waits))
			for i := range waits {
				errs[i] = waits[i].Err
			}
			done <- errs
		})
		return done
	}
	// The first produce appends each partition's first epoch: its
	// checkpoint is written then, not measured here.
	for i, err := range <-produce("warm") {
		if err != nil {
			t.Fatalf("partition %d: %v", i, err)
		}
	}
	fs.syncfs.Store(0)
	fs.logSyncs.Store(0)

	// entered waits for the group commit's file-system sync, held at the
	// gate.
	entered := func() {
		t.Helper()
		select {
		case <-fs.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("no file-system sync started; %d segment fsyncs", fs.logSyncs.Load())
		}
	}
	fs.armed.Store(true)
	ack := produce("a")
	entered()
	select {
	case errs := <-ack:
		t.Fatalf("acks=all answered (%v) before the group commit's sync", errs)
	default:
	}
	for i, l := range logs {
		if hw, durable := l.HighWatermark(), l.RecoveryPoint(); hw > durable {
			t.Fatalf("partition %d: high watermark %d above the durable offset %d", i, hw, durable)
		}
	}
	fs.release <- nil
	for i, err := range <-ack {
		if err != nil {
			t.Fatalf("partition %d: %v", i, err)
		}
	}
	if n, s := fs.syncfs.Load(), fs.logSyncs.Load(); n != 1 || s != 0 {
		t.Fatalf("one request to %d partitions: %d file-system syncs and %d segment fsyncs, want 1 and 0", parts, n, s)
	}

	// The power goes during the next group commit's sync.
	ack = produce("b")
	entered()
	fs.release <- errors.New("power lost")
	for i, err := range <-ack {
		if err == nil {
			t.Fatalf("partition %d: acks=all answered with success though its sync failed", i)
		}
	}
	fs.armed.Store(false)
	m.Close()
	for _, l := range logs {
		l.Abandon()
	}
	if err := crash.CrashWith(vfs.CrashOptions{KeepUnsynced: vfs.KeepNone}); err != nil {
		t.Fatal(err)
	}
	for i := range logs {
		l := open(i, false)
		got := map[string]bool{}
		for _, k := range keysOf(t, l) {
			got[k] = true
		}
		for _, k := range []string{"warm-0", "warm-1", "a-0", "a-1"} {
			if !got[k] {
				t.Fatalf("partition %d lost acknowledged %s after the power loss; have %v", i, k, got)
			}
		}
		l.Close()
	}
}

// TestAckCompletionMayWaitForAnotherCommit: an acks=all completion that
// appends to another partition and waits for that append's own commit
// (as the transaction coordinator records a commit once its markers are
// acknowledged) completes: completions do not run on the goroutine that
// performs the commits.
func TestAckCompletionMayWaitForAnotherCommit(t *testing.T) {
	root := t.TempDir()
	cfg := engine.DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	m := NewManager(ManagerConfig{ID: 1, SyncAlone: true, Logger: silent})
	defer m.Close()
	var ps []*Partition
	for i := 0; i < 2; i++ {
		tp := engine.TopicPartition{Topic: "c", Partition: int32(i)}
		l, err := engine.OpenLog(filepath.Join(root, engine.PartitionDirName(tp)), tp, cfg, engine.LogOptions{Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		p, err := m.LeadAlone(l, 0)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	await := func(p *Partition, last Offset) error {
		done := make(chan struct{})
		waits := []AckWait{{P: p, Last: last, MinISR: 1}}
		m.AwaitAcks(waits, time.Minute, func() { close(done) })
		<-done
		return waits[0].Err
	}
	res, err := m.Append(ps[0], batch(t, "marker", 1), true, 1)
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan error, 1)
	waits := []AckWait{{P: ps[0], Last: res.LastOffset, MinISR: 1}}
	m.AwaitAcks(waits, time.Minute, func() {
		// Inside the completion: record the outcome in the other
		// partition and wait until it is durable.
		res, err := m.Append(ps[1], batch(t, "state", 1), true, 1)
		if err == nil {
			err = await(ps[1], res.LastOffset)
		}
		finished <- err
	})
	select {
	case err := <-finished:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a completion waiting for another partition's commit never finished")
	}
}
