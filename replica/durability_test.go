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
