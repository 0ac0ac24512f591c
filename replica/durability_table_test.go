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

// holdFS holds every fsync of a segment (.log) file and every file-system
// sync until hold is closed, counting them, so a test sees what the high
// watermark does while no data can become durable.
type holdFS struct {
	vfs.FS
	hold chan struct{}
	held atomic.Int32
}

type holdFile struct {
	vfs.File
	fs *holdFS
}

func (h *holdFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := h.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, engine.LogSuffix) {
		return f, err
	}
	return &holdFile{File: f, fs: h}, nil
}

func (f *holdFile) Sync() error {
	f.fs.held.Add(1)
	<-f.fs.hold
	return f.File.Sync()
}

func (h *holdFS) SyncFS(name string) error {
	h.held.Add(1)
	<-h.hold
	return h.FS.SyncFS(name)
}

// TestDurabilityRuleTable: one table of expectations, checked for every
// way a partition can be led alone — a single node's partition
// (Manager.LeadAlone, what the broker does for every partition without
// zookeeper.connect) and a cluster partition whose ISR is its leader alone
// (replication factor 1, or a follower out of the ISR), both set up as
// LeaderAndIsr does — and for both values of kvlog.fsync.acks.all
// (ManagerConfig.SyncAlone, which the broker sets from it in both modes).
// With the key on, the high watermark stays below data not yet fsynced
// (acks=1 and acks=all alike) and acks=all is answered only after the
// fsync; with it off, the high watermark passes an append at once and
// acks=all is answered without any fsync. The crash-FS counterpart, for
// the key on, is TestDurabilityRuleSameForSingleNodeAndCluster.
func TestDurabilityRuleTable(t *testing.T) {
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
	// The one table: what the configuration promises, whatever the mode.
	rules := []struct {
		fsyncAcksAll bool
		// hwPassesUnsynced: the HW passes an append while its fsync is
		// held; ackBeforeSync: acks=all is answered meanwhile.
		hwPassesUnsynced, ackBeforeSync bool
	}{
		{fsyncAcksAll: true, hwPassesUnsynced: false, ackBeforeSync: false},
		{fsyncAcksAll: false, hwPassesUnsynced: true, ackBeforeSync: true},
	}
	for _, rule := range rules {
		for _, mode := range modes {
			name := mode.name + ", kvlog.fsync.acks.all=" + map[bool]string{true: "true", false: "false"}[rule.fsyncAcksAll]
			t.Run(name, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
				fs := &holdFS{FS: vfs.Default, hold: make(chan struct{})}
				released := false
				release := func() {
					if !released {
						released = true
						close(fs.hold)
					}
				}
				cfg := engine.DefaultConfig()
				cfg.SegmentBytes = 1 << 20
				clk := clock.NewManual(time.Unix(1_700_000_000, 0))
				l, err := engine.OpenLog(dir, simTP, cfg, engine.LogOptions{FS: fs, Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
				if err != nil {
					t.Fatal(err)
				}
				m := NewManager(ManagerConfig{ID: 1, SyncAlone: rule.fsyncAcksAll, Logger: silent})
				defer func() {
					release() // a held fsync must end before Close waits for it
					m.Close()
					l.Close()
				}()
				p := mode.lead(t, m, l)
				hw0 := l.HighWatermark()

				for _, acksAll := range []bool{false, true} {
					before := l.HighWatermark()
					res, err := m.Append(p, batch(t, "k", 2), acksAll, 1)
					if err != nil {
						t.Fatal(err)
					}
					end := res.LastOffset + 1
					hw := l.HighWatermark()
					if rule.hwPassesUnsynced {
						if hw != end {
							t.Fatalf("acks=all %v: high watermark %d after the append, want %d (no fsync awaited)", acksAll, hw, end)
						}
						continue
					}
					if hw != before {
						t.Fatalf("acks=all %v: high watermark moved from %d to %d before any fsync", acksAll, before, hw)
					}
				}

				last := l.LogEndOffset() - 1
				done := make(chan error, 1)
				waits := []AckWait{{P: p, Last: last, MinISR: 1}}
				m.AwaitAcks(waits, time.Hour, func() { done <- waits[0].Err })
				if rule.ackBeforeSync {
					select {
					case err := <-done:
						if err != nil {
							t.Fatalf("acks=all answered %v", err)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("acks=all not answered while its fsync is held, with kvlog.fsync.acks.all=false")
					}
				} else {
					deadline := time.Now().Add(10 * time.Second)
					for fs.held.Load() == 0 && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond) // a bounded poll for the event: the sync started
					}
					if fs.held.Load() == 0 {
						t.Fatal("no fsync started for data the high watermark waits on")
					}
					select {
					case err := <-done:
						t.Fatalf("acks=all answered (%v) while its fsync is held", err)
					default:
					}
					if hw := l.HighWatermark(); hw != hw0 {
						t.Fatalf("high watermark %d while every fsync is held, want %d", hw, hw0)
					}
					release()
					select {
					case err := <-done:
						if err != nil {
							t.Fatalf("acks=all answered %v after the fsync", err)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("acks=all not answered after the fsync")
					}
				}
				if hw := l.HighWatermark(); hw != last+1 {
					t.Fatalf("high watermark %d once answered, want %d", hw, last+1)
				}
			})
		}
	}
}
