package cleaner

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/prometheus/client_golang/prometheus"
)

var quietLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

var testTP = engine.TopicPartition{Topic: "table", Partition: 0}

// topicConfigs is a TopicConfigFunc backed by a map the test edits (live
// topic config changes).
type topicConfigs struct {
	mu  sync.Mutex
	def TopicConfig
	m   map[engine.TopicPartition]TopicConfig
}

func (t *topicConfigs) get(tp engine.TopicPartition, _ engine.Config) TopicConfig {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.m[tp]; ok {
		return c
	}
	return t.def
}

func (t *topicConfigs) set(tp engine.TopicPartition, c TopicConfig) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[engine.TopicPartition]TopicConfig{}
	}
	t.m[tp] = c
}

// env is an engine Manager plus a cleaner Manager over one log dir with a
// manual clock.
type env struct {
	t      testing.TB
	dir    string
	fs     vfs.FS
	clk    *clock.Manual
	ecfg   engine.Config
	ccfg   Config
	topics *topicConfigs
	reg    *prometheus.Registry
	sleep  func(ctx context.Context, d time.Duration) error
	newMap func(size int64, loadFactor float64) (*OffsetMap, error)
	// mapIdle is Options.MapIdle (0: the default).
	mapIdle time.Duration
	em      *engine.Manager
	cm      *Manager
}

func testEngineConfig() engine.Config {
	cfg := engine.DefaultConfig()
	cfg.Compact, cfg.Delete = true, false
	cfg.SegmentBytes = 4096
	cfg.IndexIntervalBytes = 256
	cfg.SegmentIndexBytes = 4096
	cfg.FileDeleteDelay = 0
	return cfg
}

func testCleanerConfig() Config {
	c := DefaultConfig()
	c.DedupeBufferSize = 1 << 20
	c.Backoff = 10 * time.Millisecond
	c.MinCleanableRatio = 0
	c.DeleteRetention = time.Hour
	return c
}

func newEnv(t testing.TB) *env {
	e := &env{
		t: t, dir: t.TempDir(), fs: vfs.Default,
		clk:  clock.NewManual(time.UnixMilli(1_700_000_000_000)),
		ecfg: testEngineConfig(), ccfg: testCleanerConfig(),
	}
	e.topics = &topicConfigs{def: e.ccfg.defaults()}
	e.open()
	t.Cleanup(func() { e.close() })
	return e
}

func (e *env) open() {
	e.t.Helper()
	em, err := engine.OpenManager(engine.ManagerOptions{
		Dirs: []string{e.dir}, FS: e.fs, Clock: e.clk, Logger: quietLogger,
		ConfigFor: func(engine.TopicPartition) engine.Config { return e.ecfg },
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.em = em
	e.reg = prometheus.NewRegistry()
	cfg := e.ccfg
	cm, err := New(Options{
		Engine: em, Config: &cfg, TopicConfig: e.topics.get, FS: e.fs, Clock: e.clk,
		Logger: quietLogger, Registry: e.reg, Sleep: e.sleep, NewMap: e.newMap,
		MapIdle: e.mapIdle,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.cm = cm
}

func (e *env) close() {
	if e.cm != nil {
		_ = e.cm.Close()
		e.cm = nil
	}
	if e.em != nil {
		_ = e.em.Close()
		e.em = nil
	}
}

func (e *env) restart() {
	e.t.Helper()
	e.close()
	e.open()
}

func (e *env) log(tp engine.TopicPartition) *engine.Log {
	e.t.Helper()
	l, err := e.em.CreateLog(tp, e.ecfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// runOnce runs one pass and fails the test on a pass error.
func (e *env) runOnce() (Result, bool) {
	e.t.Helper()
	res, ok := e.cm.RunOnce(context.Background())
	if ok && res.Err != nil {
		e.t.Fatalf("pass over %s failed: %v", res.TP, res.Err)
	}
	return res, ok
}

// cleanAll runs passes until none is due (at most max).
func (e *env) cleanAll(max int) []Result {
	e.t.Helper()
	var out []Result
	for i := 0; i < max; i++ {
		res, ok := e.runOnce()
		if !ok {
			return out
		}
		out = append(out, res)
	}
	e.t.Fatalf("still due after %d passes", max)
	return nil
}

// rec is a record as a test writes and reads it.
type rec struct {
	offset     engine.Offset
	key, value []byte // nil = null
	ts         int64
	headers    []record.Header
	// txn is the record's transaction status in a model's history
	// (model_test.go); marker marks the offset of a transaction marker.
	txn    txnStatus
	marker bool
}

type txnStatus int8

const (
	txnNone txnStatus = iota
	txnOpen
	txnCommitted
	txnAborted
)

// committedView keeps the records a read_committed consumer sees: not
// markers, not of an open or aborted transaction (statuses from hist, by
// offset).
func committedView(recs []rec, hist []rec) []rec {
	var out []rec
	for _, r := range recs {
		if int(r.offset) < len(hist) {
			if h := hist[r.offset]; h.marker || h.txn == txnOpen || h.txn == txnAborted {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func (r rec) tombstone() bool { return r.key != nil && r.value == nil }

func (r rec) String() string {
	v := "<tombstone>"
	if r.value != nil {
		v = string(r.value)
	}
	return fmt.Sprintf("%d:%s=%s", r.offset, r.key, v)
}

// producer is an idempotent producer's identity and next sequence.
type producer struct {
	id    int64
	epoch int16
	seq   int32
}

// batch encodes recs as a producer sends them (offsets from 0).
func batch(t testing.TB, codec record.Codec, p *producer, recs []rec) []byte {
	t.Helper()
	var bl record.Builder
	bl.Attributes = int16(codec)
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
	if p != nil {
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = p.id, p.epoch, p.seq
		p.seq += int32(len(recs))
	}
	bl.PartitionLeaderEpoch = -1
	bl.BaseTimestamp = recs[0].ts
	bl.LastOffsetDelta = -1
	bl.MaxTimestamp = -1
	for i, r := range recs {
		bl.Add(record.Record{OffsetDelta: int32(i), TimestampDelta: r.ts - recs[0].ts, Key: r.key, Value: r.value, Headers: r.headers})
	}
	b, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// appendRecs appends recs as one batch, sets their offsets (and, for
// LogAppendTime logs, timestamps) and moves the high watermark to the end.
func appendRecs(t testing.TB, l *engine.Log, codec record.Codec, p *producer, recs []rec) []rec {
	t.Helper()
	res, err := l.Append(batch(t, codec, p, recs), 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		recs[i].offset = res.BaseOffset + engine.Offset(i)
		if res.LogAppendTime >= 0 {
			recs[i].ts = res.LogAppendTime
		}
	}
	l.SetHighWatermark(l.LogEndOffset())
	return recs
}

// readLog returns every data record from the log start, as a consumer sees
// them, and the batches' headers (control batches included).
func readLog(t testing.TB, l *engine.Log) ([]rec, []record.Batch) {
	t.Helper()
	var out []rec
	var batches []record.Batch
	var dec record.Decoder
	err := l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(b record.Batch) error {
		if err := dec.ValidateStored(b); err != nil {
			return err
		}
		batches = append(batches, append(record.Batch(nil), b...))
		if b.IsControl() {
			return nil
		}
		return dec.Records(b, func(r *record.Record) error {
			x := rec{offset: engine.Offset(b.RecordOffset(r)), key: clone(r.Key), value: clone(r.Value), ts: b.RecordTimestamp(r)}
			for _, h := range r.Headers {
				x.headers = append(x.headers, record.Header{Key: clone(h.Key), Value: clone(h.Value)})
			}
			out = append(out, x)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, batches
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func sameRec(a, b rec) bool {
	if a.offset != b.offset || !bytes.Equal(a.key, b.key) || !bytes.Equal(a.value, b.value) || (a.value == nil) != (b.value == nil) || a.ts != b.ts || len(a.headers) != len(b.headers) {
		return false
	}
	for i := range a.headers {
		if !bytes.Equal(a.headers[i].Key, b.headers[i].Key) || !bytes.Equal(a.headers[i].Value, b.headers[i].Value) || (a.headers[i].Value == nil) != (b.headers[i].Value == nil) {
			return false
		}
	}
	return true
}

// state folds records into key → value, tombstones deleting.
func state(recs []rec) map[string]string {
	m := map[string]string{}
	for _, r := range recs {
		if r.value == nil {
			delete(m, string(r.key))
		} else {
			m[string(r.key)] = string(r.value)
		}
	}
	return m
}

func diffState(a, b map[string]string) string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		va, oka := a[k]
		vb, okb := b[k]
		if va != vb || oka != okb {
			return fmt.Sprintf("key %q: %q(%v) vs %q(%v)", k, va, oka, vb, okb)
		}
	}
	return ""
}

// horizons returns, for every tombstone offset in the log, its batch's
// delete horizon (math.MinInt64 when the batch has none).
func horizons(batches []record.Batch) map[engine.Offset]int64 {
	out := map[engine.Offset]int64{}
	var dec record.Decoder
	for _, b := range batches {
		h, ok := b.DeleteHorizon()
		if !ok {
			h = math.MinInt64
		}
		_ = dec.Records(b, func(r *record.Record) error {
			if r.Key != nil && r.Value == nil {
				out[engine.Offset(b.RecordOffset(r))] = h
			}
			return nil
		})
	}
	return out
}
