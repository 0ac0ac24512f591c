package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// The simulation: every replica of one partition is a Partition over a real
// engine.Log in a temp dir; the test is the controller (it decides leaders,
// epochs and ISRs) and the network (it carries each follower request to the
// leader's Partition and the answer back, step by step). No goroutines, a
// manual clock: every run is the same.

var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

type simNode struct {
	id    int32
	dir   string
	fs    vfs.FS
	crash *vfs.CrashFS // nil: the OS
	log   *engine.Log
	p     *Partition
	down  bool
}

type sim struct {
	t        *testing.T
	clk      *clock.Manual
	cfg      engine.Config
	nodes    map[int32]*simNode
	ids      []int32
	state    State // the controller's view
	lagMax   time.Duration
	queries  int // OffsetsForLeaderEpoch round trips
	nextSeed int64
}

var simTP = engine.TopicPartition{Topic: "t", Partition: 0}

func newSim(t *testing.T, ids ...int32) *sim {
	s := &sim{t: t, clk: clock.NewManual(time.Unix(1_700_000_000, 0)), nodes: map[int32]*simNode{}, ids: ids,
		lagMax: 10 * time.Second, state: State{Leader: -1, LeaderEpoch: 0, Replicas: ids}}
	s.cfg = engine.DefaultConfig()
	s.cfg.SegmentBytes = 1 << 12 // several segments per scenario
	s.cfg.IndexIntervalBytes = 128
	root := t.TempDir()
	for _, id := range ids {
		n := &simNode{id: id, dir: filepath.Join(root, fmt.Sprint(id), "t-0"), fs: vfs.Default}
		s.nodes[id] = n
		s.open(n, true)
	}
	t.Cleanup(func() {
		for _, n := range s.nodes {
			if n.log != nil {
				n.log.Close()
			}
		}
	})
	return s
}

// useCrashFS puts node id on a crash-simulating file system (before any
// data is written).
func (s *sim) useCrashFS(id int32, seed int64) {
	n := s.nodes[id]
	n.log.Close()
	n.crash = vfs.NewCrashFS(seed)
	n.fs = n.crash
	s.open(n, true)
}

func (s *sim) open(n *simNode, clean bool) {
	s.t.Helper()
	l, err := engine.OpenLog(n.dir, simTP, s.cfg, engine.LogOptions{FS: n.fs, Clock: s.clk, Logger: quiet, CleanShutdown: clean, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		s.t.Fatalf("open log of %d: %v", n.id, err)
	}
	n.log = l
	n.p = New(l, Options{ID: n.id, LagMax: s.lagMax, SyncAlone: true, Logger: quiet})
	n.down = false
}

// restart stops node id and reopens its log. With a CrashFS, keep says
// what survives (KeepAll is kill -9, KeepNone a power loss).
func (s *sim) restart(id int32, keep vfs.KeepMode) {
	s.t.Helper()
	n := s.nodes[id]
	n.p.Stop()
	if n.crash != nil {
		n.log.Abandon()
		if err := n.crash.CrashWith(vfs.CrashOptions{KeepUnsynced: keep}); err != nil {
			s.t.Fatal(err)
		}
		s.open(n, false)
		return
	}
	n.log.Close()
	s.open(n, keep == vfs.KeepAll)
}

// elect is the controller: a new leader epoch with leader and isr, sent to
// every live replica (followers truncate on their next request).
func (s *sim) elect(leader int32, isr ...int32) {
	s.t.Helper()
	s.state.LeaderEpoch++
	s.state.Leader = leader
	s.state.ISR = slices.Clone(isr)
	s.state.ZkVersion++
	for _, id := range s.ids {
		if s.nodes[id].down {
			continue
		}
		s.tell(id)
	}
}

// tell sends the current state to one replica (a LeaderAndIsr).
func (s *sim) tell(id int32) {
	s.t.Helper()
	n := s.nodes[id]
	var err error
	if id == s.state.Leader {
		_, err = n.p.MakeLeader(s.state, s.clk.Now())
	} else {
		_, err = n.p.MakeFollower(s.state)
	}
	if err != nil {
		s.t.Fatalf("state to %d: %v", id, err)
	}
}

// batch makes a producer batch of n records with keys prefix-i.
func batch(t testing.TB, prefix string, n int) []byte {
	t.Helper()
	var bl record.Builder
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
	bl.BaseTimestamp = 1_700_000_000_000
	bl.LastOffsetDelta = -1
	bl.MaxTimestamp = -1
	for i := 0; i < n; i++ {
		bl.Add(record.Record{OffsetDelta: int32(i), Key: []byte(fmt.Sprintf("%s-%d", prefix, i)), Value: []byte(fmt.Sprintf("value of %s-%d", prefix, i))})
	}
	b, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// produce appends a batch to node id as leader (acks=1 unless acksAll).
func (s *sim) produce(id int32, prefix string, n int, acksAll bool, minISR int) (engine.AppendResult, error) {
	p := s.nodes[id].p
	res, flush, err := p.AppendAsLeader(batch(s.t, prefix, n), acksAll, minISR)
	for flush {
		flush = p.Flush() // the Manager runs this on its own goroutine
	}
	return res, err
}

func (s *sim) mustProduce(id int32, prefix string, n int) engine.AppendResult {
	s.t.Helper()
	res, err := s.produce(id, prefix, n, false, 1)
	if err != nil {
		s.t.Fatalf("produce %s to %d: %v", prefix, id, err)
	}
	return res
}

// stepOpts tune one follower step.
type stepOpts struct {
	dropResponse bool // the leader handles the request, the answer is lost
	maxBytes     int
}

// step carries follower f's next request to the node it believes leads, and
// the answer back. It reports whether anything was sent.
func (s *sim) step(f int32, o stepOpts) bool {
	s.t.Helper()
	fn := s.nodes[f]
	req := fn.p.NextRequest()
	if req.Kind == RequestNone {
		return false
	}
	ln := s.nodes[req.Leader]
	if ln.down {
		return false
	}
	now := s.clk.Now()
	switch req.Kind {
	case RequestEpochQuery:
		s.queries++
		ans, err := ln.p.LastOffsetForEpoch(req.CurrentLeaderEpoch, req.Epoch)
		if err != nil {
			s.handleErr(fn, req, err)
			return true
		}
		if !o.dropResponse {
			if err := fn.p.HandleEpochAnswer(req, ans); err != nil {
				s.t.Fatalf("epoch answer on %d: %v", f, err)
			}
		}
	case RequestFetch:
		v, err := ln.p.FollowerFetch(f, req.FetchOffset, req.CurrentLeaderEpoch, now)
		if err != nil {
			s.handleErr(fn, req, err)
			return true
		}
		if v.Expand != nil {
			s.persist(ln, v.Expand)
		}
		max := o.maxBytes
		if max == 0 {
			max = 1 << 20
		}
		var data []byte
		if req.FetchOffset < v.LEO {
			rr, err := ln.log.Read(req.FetchOffset, max, v.LEO)
			if err != nil {
				s.t.Fatalf("leader %d read at %d: %v", req.Leader, req.FetchOffset, err)
			}
			data, err = rr.Bytes()
			rr.Release()
			if err != nil {
				s.t.Fatal(err)
			}
		}
		if !o.dropResponse {
			if err := fn.p.HandleFetchAnswer(req, data, v.HW, v.LogStart); err != nil {
				s.t.Fatalf("fetch answer on %d: %v", f, err)
			}
		}
	}
	return true
}

func (s *sim) handleErr(fn *simNode, req FollowerRequest, err error) {
	s.t.Helper()
	switch {
	case errors.Is(err, ErrFencedLeaderEpoch):
		fn.p.HandleFenced(req)
	case errors.Is(err, engine.ErrOffsetOutOfRange):
		ln := s.nodes[req.Leader]
		if err := fn.p.HandleOutOfRange(req, ln.log.LogStartOffset(), ln.log.LogEndOffset()); err != nil {
			s.t.Fatal(err)
		}
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrUnknownLeaderEpoch):
		// retried on the next step
	default:
		s.t.Fatalf("follower %d request %+v: %v", fn.id, req, err)
	}
}

// persist is the controller-side write of an ISR change (always succeeds
// when the version matches).
func (s *sim) persist(ln *simNode, ch *ISRChange) {
	s.t.Helper()
	if ch.ZkVersion != s.state.ZkVersion || ch.LeaderEpoch != s.state.LeaderEpoch {
		ln.p.ISRChangeDone(ch, 0, errors.New("bad version"), &s.state)
		return
	}
	s.state.ISR = slices.Clone(ch.ISR)
	s.state.ZkVersion++
	ln.p.ISRChangeDone(ch, s.state.ZkVersion, nil, nil)
}

// tick runs the leader's ISR shrink check.
func (s *sim) tick() {
	ln := s.nodes[s.state.Leader]
	if ch := ln.p.Tick(s.clk.Now()); ch != nil {
		s.persist(ln, ch)
	}
}

// settle steps every live follower until nothing changes (at most n rounds).
func (s *sim) settle(followers ...int32) {
	s.t.Helper()
	for round := 0; round < 50; round++ {
		before := s.fingerprint()
		for _, f := range followers {
			s.step(f, stepOpts{})
		}
		if s.fingerprint() == before {
			return
		}
	}
	s.t.Fatalf("followers %v did not settle", followers)
}

func (s *sim) fingerprint() string {
	out := ""
	for _, id := range s.ids {
		n := s.nodes[id]
		out += fmt.Sprintf("%d:%d/%d/%v ", id, n.log.LogEndOffset(), n.log.HighWatermark(), n.p.NextRequest().Kind)
	}
	return out
}

// batchInfo is one batch as stored: where it starts, its leader epoch and CRC.
type batchInfo struct {
	Base  int64
	Epoch int32
	CRC   uint32
}

func (s *sim) batches(id int32) []batchInfo {
	s.t.Helper()
	l := s.nodes[id].log
	var out []batchInfo
	err := l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(b record.Batch) error {
		if err := b.VerifyCRC(); err != nil {
			return err
		}
		out = append(out, batchInfo{b.BaseOffset(), b.PartitionLeaderEpoch(), b.CRC()})
		return nil
	})
	if err != nil {
		s.t.Fatalf("reading %d: %v", id, err)
	}
	return out
}

// keys returns every record key in node id's log, in offset order.
func (s *sim) keys(id int32) []string {
	s.t.Helper()
	return keysOf(s.t, s.nodes[id].log)
}

// keysOf lists the record keys of l in offset order.
func keysOf(t *testing.T, l *engine.Log) []string {
	t.Helper()
	var out []string
	var dec record.Decoder
	err := l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(b record.Batch) error {
		return dec.Records(b, func(r *record.Record) error {
			out = append(out, string(r.Key))
			return nil
		})
	})
	if err != nil {
		t.Fatalf("reading %s: %v", l.TopicPartition(), err)
	}
	return out
}

// assertIdentical checks that every listed replica holds byte-identical
// batch sequences (same base offsets, epochs and CRCs).
func (s *sim) assertIdentical(ids ...int32) {
	s.t.Helper()
	want := s.batches(ids[0])
	for _, id := range ids[1:] {
		if got := s.batches(id); !slices.Equal(got, want) {
			s.t.Fatalf("replica %d batches %v\n differ from replica %d: %v", id, got, ids[0], want)
		}
	}
}

func (s *sim) assertHasKeys(id int32, keys ...string) {
	s.t.Helper()
	have := s.keys(id)
	for _, k := range keys {
		if !slices.Contains(have, k) {
			s.t.Fatalf("replica %d lost %q; has %v", id, k, have)
		}
	}
}

func (s *sim) assertLacksKeys(id int32, keys ...string) {
	s.t.Helper()
	have := s.keys(id)
	for _, k := range keys {
		if slices.Contains(have, k) {
			s.t.Fatalf("replica %d still has %q: %v", id, k, have)
		}
	}
}
