package txn

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
)

// Test helpers: a memory Store that can crash, a MarkerWriter whose
// requests wait until the test delivers them, and a harness around one
// Coordinator with a manual clock.

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("TXN_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

var errDisk = errors.New("test: disk failed")

// memStore keeps every partition's records; synced is the durable
// prefix. After crashAt appends it is crashed: the crashAt-th append
// still lands (unsynced) and everything after fails.
type memStore struct {
	mu        sync.Mutex
	parts     map[int32][]Record
	synced    map[int32]int
	appends   int
	crashAt   int // 0: never
	crashed   bool
	appendErr error
	syncErr   error
}

func newMemStore() *memStore { return &memStore{parts: map[int32][]Record{}, synced: map[int32]int{}} }

func (s *memStore) Append(p int32, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashed {
		return errDisk
	}
	if s.appendErr != nil {
		return s.appendErr
	}
	for _, r := range recs {
		s.parts[p] = append(s.parts[p], Record{Key: clone(r.Key), Value: clone(r.Value)})
	}
	s.appends++
	if s.crashAt > 0 && s.appends == s.crashAt {
		s.crashed = true
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func (s *memStore) Sync(p int32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crashed {
		return errDisk
	}
	if s.syncErr != nil {
		return s.syncErr
	}
	s.synced[p] = len(s.parts[p])
	return nil
}

func (s *memStore) Replay(p int32, fn func(Record)) error {
	s.mu.Lock()
	recs := append([]Record(nil), s.parts[p]...)
	s.mu.Unlock()
	for _, r := range recs {
		fn(r)
	}
	return nil
}

// afterCrash is the store a restarted broker finds: the durable records,
// plus the unsynced ones when keepUnsynced (they may or may not survive).
func (s *memStore) afterCrash(keepUnsynced bool) *memStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := newMemStore()
	for p, recs := range s.parts {
		k := s.synced[p]
		if keepUnsynced {
			k = len(recs)
		}
		n.parts[p] = append([]Record(nil), recs[:k]...)
		n.synced[p] = k
	}
	return n
}

func (s *memStore) records(p int32) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.parts[p]...)
}

// sentMarkers queues marker requests until the test delivers them.
type sentMarkers struct {
	mu    sync.Mutex
	queue []sentMarker
	all   []*MarkerRequest
}

type sentMarker struct {
	req  *MarkerRequest
	done func([]error)
}

func (m *sentMarkers) WriteMarkers(req *MarkerRequest, done func([]error)) {
	m.mu.Lock()
	m.queue = append(m.queue, sentMarker{req, done})
	m.all = append(m.all, req)
	m.mu.Unlock()
}

func (m *sentMarkers) take() []sentMarker {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.queue
	m.queue = nil
	return q
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Partitions = 4
	return cfg
}

type harness struct {
	t       *testing.T
	clock   *clock.Manual
	store   *memStore
	markers *sentMarkers
	co      *Coordinator
	nextPID int64
	// write, when set, answers each marker partition (nil: written).
	write func(req *MarkerRequest, tp TopicPartition) error
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, clock: clock.NewManual(t0), store: newMemStore(), markers: &sentMarkers{}, nextPID: 1000}
	h.start(cfg)
	return h
}

func (h *harness) start(cfg Config) {
	co, err := New(cfg, h.store, Options{
		Clock:  h.clock,
		Logger: testLogger(),
		NextProducerID: func() (int64, error) {
			h.nextPID++
			return h.nextPID, nil
		},
		OffsetsPartition: func(group string) TopicPartition {
			return TopicPartition{"__consumer_offsets", PartitionFor(group, 50)}
		},
		Markers: h.markers,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := co.LoadAll(); err != nil {
		h.t.Fatal(err)
	}
	h.co = co
	h.t.Cleanup(co.Close)
}

// advance moves the clock by d and waits for what the coordinator's timers
// it fired did (a marker request queued, an answer given).
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	if !h.clock.AwaitCallbacks(10 * time.Second) {
		h.t.Fatal("the coordinator's timer callbacks did not return")
	}
}

// deliver answers every queued marker request (through h.write) and
// returns them; repeated until none is queued (answers may send more).
func (h *harness) deliver() []*MarkerRequest {
	var out []*MarkerRequest
	for range 100 {
		q := h.markers.take()
		if len(q) == 0 {
			return out
		}
		for _, sm := range q {
			errs := make([]error, len(sm.req.Partitions))
			for i, tp := range sm.req.Partitions {
				if h.write != nil {
					errs[i] = h.write(sm.req, tp)
				}
			}
			out = append(out, sm.req)
			sm.done(errs)
		}
	}
	h.t.Fatal("markers keep coming")
	return nil
}

func (h *harness) init(id string, timeoutMs int32, expected *ProducerIDEpoch) InitResult {
	h.t.Helper()
	var (
		res    InitResult
		called int
	)
	h.co.InitProducerID(InitRequest{TransactionalID: id, TimeoutMs: timeoutMs, Expected: expected}, func(r InitResult) { res = r; called++ })
	if called != 1 {
		h.t.Fatalf("InitProducerID answered %d times", called)
	}
	return res
}

func (h *harness) add(id string, pe ProducerIDEpoch, tps ...TopicPartition) error {
	h.t.Helper()
	var (
		res    error
		called int
	)
	h.co.AddPartitions(id, pe.ProducerID, pe.Epoch, tps, func(err error) { res = err; called++ })
	if called != 1 {
		h.t.Fatalf("AddPartitions answered %d times", called)
	}
	return res
}

func (h *harness) end(id string, pe ProducerIDEpoch, commit bool) error {
	h.t.Helper()
	var (
		res    error
		called int
	)
	h.co.EndTxn(id, pe.ProducerID, pe.Epoch, commit, func(err error) { res = err; called++ })
	if called != 1 {
		h.t.Fatalf("EndTxn answered %d times", called)
	}
	return res
}

func (h *harness) state(id string) State {
	h.t.Helper()
	d, err := h.co.Describe(id)
	if err != nil {
		h.t.Fatalf("describe %s: %v", id, err)
	}
	return d.State
}

func mustPE(t *testing.T, r InitResult) ProducerIDEpoch {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("InitProducerID: %v", r.Err)
	}
	return ProducerIDEpoch{r.ProducerID, r.Epoch}
}

func tp(topic string, p int32) TopicPartition { return TopicPartition{topic, p} }
