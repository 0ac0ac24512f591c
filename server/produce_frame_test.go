package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/server/config"
)

// gateFS holds every segment fsync and file-system sync while armed, and
// reports the first one held.
type gateFS struct {
	vfs.FS
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	entered chan struct{}
}

type gateFile struct {
	vfs.File
	g *gateFS
}

func (g *gateFS) arm() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gateFS) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gateFS) pass() {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate == nil {
		return
	}
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-gate
}

func (g *gateFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, engine.LogSuffix) {
		return f, err
	}
	return &gateFile{File: f, g: g}, nil
}

func (f *gateFile) Sync() error {
	f.g.pass()
	return f.File.Sync()
}

func (g *gateFS) SyncFS(name string) error {
	g.pass()
	return g.FS.SyncFS(name)
}

// TestProduceFrameReleasedWhileWaiting: an acks=all produce request hands
// its frame back to the pool once its batches are appended, before its
// fsync: a request waiting for its fsync holds no frame (they held one
// each, up to a megabyte per request in flight with a pipelining
// producer). The connection reads its next request, possibly into that
// frame, while the first waits; the waiting request's completion must
// still count its own records: an earlier broker that handed the frame
// back without tallying them first counted another request's bytes as
// its records (kvlog_topic_records_in_total wrong, a data race, and under
// load "counter cannot decrease" panics that stopped the broker). Each
// round holds the first request's fsync, has the second one read and
// appended, checks the first holds no frame, then lets the fsync through.
func TestProduceFrameReleasedWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	gfs := &gateFS{FS: vfs.Default, entered: make(chan struct{}, 1)}
	pp, err := config.ParseProperties(strings.NewReader("listeners=PLAINTEXT://127.0.0.1:0\nlog.dirs=" + dir + "\nlog.cleaner.dedupe.buffer.size=4194304\n"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg, err := config.Parse(pp, logger)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Options{Logger: logger, FS: gfs, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := &testBroker{s: s, addr: s.ListenerAddrs()["PLAINTEXT"].String(), dir: dir}
	t.Cleanup(func() { gfs.open(); b.stop(t) })
	var waiting atomic.Pointer[request] // the last acks=all produce
	hook := func(r *request) bool {
		if req, ok := r.kreq.(*kmsg.ProduceRequest); ok && req.Acks == -1 {
			waiting.Store(r)
		}
		return false
	}
	s.requestHook.Store(&hook)
	// The second request's topic name shifts its batch against where the
	// first request's batch lies in the frame.
	const first, second = "a", "a-topic-with-a-much-longer-name"
	createTopic(t, b, first, 1, nil)
	createTopic(t, b, second, 1, nil)
	produce := func(topic string, acks int16, n int) *kmsg.ProduceRequest {
		req := kmsg.NewPtrProduceRequest()
		req.Version = 7
		req.Acks = acks
		req.TimeoutMillis = 30_000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Records = testBatch(t, n) // more than 64 KiB: read into a pooled frame
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}
	records := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "kvlog_topic_records_in_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "topic" && l.GetValue() == first {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	// sync.Pool does not always hand the same buffer back (it drops some
	// under the race detector): several rounds.
	const rounds, n, m = 6, 6000, 5000
	c := b.dial(t)
	for round := range rounds {
		gfs.arm()
		a := produce(first, -1, n)
		c.send(a, int32(2*round))
		select {
		case <-gfs.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the acks=all produce's fsync never started", round)
		}
		// The next request on the connection, read and appended while the
		// first waits.
		bReq := produce(second, 1, m)
		c.send(bReq, int32(2*round+1))
		l := s.partition(second, 0).log
		deadline := time.Now().Add(10 * time.Second)
		for l.LogEndOffset() < engine.Offset((round+1)*m) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the second produce was not appended", round)
			}
			time.Sleep(time.Millisecond)
		}
		// Its handler returned before the connection read the second.
		if r := waiting.Load(); r == nil || r.frame != nil {
			t.Fatalf("round %d: the acks=all produce waiting for its fsync still holds its frame", round)
		}
		gfs.open()
		for i, req := range []*kmsg.ProduceRequest{a, bReq} {
			resp := c.recv(req, int32(2*round+i)).(*kmsg.ProduceResponse)
			if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
				t.Fatalf("round %d: produce %d: error %d", round, i, code)
			}
		}
		if got, want := records(), float64((round+1)*n); got != want {
			t.Fatalf("round %d: kvlog_topic_records_in_total{topic=%q} = %v, want %v", round, first, got, want)
		}
	}
}
