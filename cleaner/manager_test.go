package cleaner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	dto "github.com/prometheus/client_model/go"
)

// eventually polls cond every few milliseconds until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func partStatus(m *Manager, tp engine.TopicPartition) PartitionStatus {
	for _, p := range m.Status().Partitions {
		if p.Topic == tp.Topic && p.Partition == tp.Partition {
			return p
		}
	}
	return PartitionStatus{}
}

// fillKeys appends n records over keys k0..k(keys-1), in batches of 10.
func fillKeys(t testing.TB, e *env, l *engine.Log, n, keys int, codec record.Codec) {
	t.Helper()
	for i := 0; i < n; i += 10 {
		recs := make([]rec, 0, 10)
		for j := i; j < i+10 && j < n; j++ {
			recs = append(recs, rec{key: []byte(fmt.Sprintf("k%d", j%keys)), value: []byte(fmt.Sprintf("value-%d-%s", j, strings.Repeat("x", 40))), ts: e.clk.Now().UnixMilli()})
		}
		appendRecs(t, l, codec, nil, recs)
	}
}

// TestLiveTuning changes broker and topic cleaner settings while threads run
// and checks each takes effect without a restart: thread count up and down,
// dedupe buffer size, I/O throttle, log.cleaner.enable, and a topic's
// min.cleanable.dirty.ratio. It runs in a synctest bubble: the threads'
// backoff timers run on the bubble's clock, and synctest.Wait tells when a
// woken thread has finished looking for work (so "nothing was cleaned" is
// checked after the thread decided, not after a guessed delay).
func TestLiveTuning(t *testing.T) {
	synctest.Test(t, testLiveTuning)
}

// settle wakes the cleaner threads and waits until every goroutine of the
// bubble is blocked again: each thread has planned at least once since the
// call and gone back to its backoff wait.
func settle(e *env) {
	e.cm.Wake()
	synctest.Wait()
}

func testLiveTuning(t *testing.T) {
	e := newEnv(t)
	var slept time.Duration
	e.close()
	e.sleep = func(ctx context.Context, d time.Duration) error { slept += d; return ctx.Err() }
	e.open()
	l := e.log(testTP)
	fillKeys(t, e, l, 600, 50, record.CodecLZ4)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.Start(t.Context())
	eventually(t, 5*time.Second, "first pass", func() bool { return partStatus(e.cm, testTP).Passes >= 1 })

	// Threads: 1 → 3 → 1.
	cfg := e.cm.Config()
	cfg.Threads = 3
	if err := e.cm.UpdateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "3 threads", func() bool { return e.cm.Status().Threads == 3 })
	cfg.Threads = 1
	if err := e.cm.UpdateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "1 thread", func() bool { return e.cm.Status().Threads == 1 })

	// Topic ratio: a little dirt under a high threshold stays; lowering the
	// threshold cleans it.
	e.topics.set(testTP, TopicConfig{MinCleanableRatio: 0.99, DeleteRetention: time.Hour})
	passes := partStatus(e.cm, testTP).Passes
	fillKeys(t, e, l, 100, 50, record.CodecLZ4)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	settle(e)
	if p := partStatus(e.cm, testTP); p.Passes != passes || p.CleanableBytes == 0 {
		t.Fatalf("cleaned under a 0.99 ratio threshold: %+v", p)
	}
	e.topics.set(testTP, TopicConfig{MinCleanableRatio: 0.01, DeleteRetention: time.Hour})
	e.cm.Wake()
	eventually(t, 5*time.Second, "pass after lowering the topic ratio", func() bool { return partStatus(e.cm, testTP).Passes > passes })

	// Dedupe buffer: a tiny map makes the next pass stop where it fills.
	cfg.DedupeBufferSize = EntrySize * 20
	if err := e.cm.UpdateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	passes = partStatus(e.cm, testTP).Passes
	fillKeys(t, e, l, 200, 100, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.Wake()
	eventually(t, 5*time.Second, "a pass with the small map", func() bool {
		p := partStatus(e.cm, testTP)
		return p.Passes > passes && p.LastPass != nil && p.LastPass.MapFull
	})

	// Throttle: a rate makes passes wait.
	cfg.DedupeBufferSize = 1 << 20
	cfg.IOMaxBytesPerSecond = 1000
	if err := e.cm.UpdateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if e.cm.throttle.Rate() != 1000 {
		t.Fatalf("throttle rate %v", e.cm.throttle.Rate())
	}
	passes = partStatus(e.cm, testTP).Passes
	fillKeys(t, e, l, 200, 50, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.Wake()
	eventually(t, 5*time.Second, "a throttled pass", func() bool { return partStatus(e.cm, testTP).Passes > passes })
	eventually(t, 5*time.Second, "throttled I/O", func() bool { return e.cm.throttle.Throttled() > 0 })

	// Disable: nothing is cleaned; enable: it is.
	cfg.IOMaxBytesPerSecond = 0
	cfg.Enable = false
	if err := e.cm.UpdateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the running pass to end", func() bool { return partStatus(e.cm, testTP).State != "in-progress" })
	passes = partStatus(e.cm, testTP).Passes
	fillKeys(t, e, l, 300, 50, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	settle(e)
	if p := partStatus(e.cm, testTP).Passes; p != passes {
		t.Fatalf("%d passes while disabled", p-passes)
	}
	cfg.Enable = true
	if err := e.cm.UpdateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "pass after enabling", func() bool { return partStatus(e.cm, testTP).Passes > passes })
	if err := e.cm.UpdateConfig(Config{Threads: 0}); err == nil {
		t.Fatal("invalid config accepted")
	}
}

// corrupt flips a byte in the records of the first segment of l.
func corrupt(t *testing.T, l *engine.Log) {
	t.Helper()
	p := l.Segments()[0].Path
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, 70); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, 70); err != nil {
		t.Fatal(err)
	}
}

// TestFailureIsolation: a partition whose pass fails (a corrupt batch) is
// marked uncleanable — visible in Status and metrics — and skipped; the
// threads keep cleaning the other partitions.
func TestFailureIsolation(t *testing.T) {
	e := newEnv(t)
	bad, good := engine.TopicPartition{Topic: "bad", Partition: 0}, engine.TopicPartition{Topic: "good", Partition: 3}
	lb, lg := e.log(bad), e.log(good)
	for _, l := range []*engine.Log{lb, lg} {
		fillKeys(t, e, l, 300, 20, record.CodecNone)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	corrupt(t, lb)
	e.cm.Start(t.Context())
	eventually(t, 5*time.Second, "bad partition uncleanable, good one cleaned", func() bool {
		return partStatus(e.cm, bad).Uncleanable && partStatus(e.cm, good).Passes >= 1
	})
	st := partStatus(e.cm, bad)
	if st.State != "uncleanable" || !strings.Contains(st.Error, "corrupt") {
		t.Fatalf("bad partition status %+v", st)
	}
	// Later dirt on the good partition is still cleaned.
	n := partStatus(e.cm, good).Passes
	fillKeys(t, e, lg, 300, 20, record.CodecNone)
	if err := lg.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.Wake()
	eventually(t, 5*time.Second, "good partition cleaned again", func() bool { return partStatus(e.cm, good).Passes > n })
	if v := gauge(t, e, "kvlog_cleaner_uncleanable_partitions"); v != 1 {
		t.Fatalf("uncleanable_partitions %v", v)
	}
	if v := gauge(t, e, "kvlog_cleaner_failed_threads"); v != 0 {
		t.Fatalf("failed threads %v", v)
	}
	if e.cm.Status().Threads != 1 {
		t.Fatal("the thread died")
	}
}

// gauge reads an unlabelled metric from the env's registry.
func gauge(t *testing.T, e *env, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return value(mf.GetMetric()[0])
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}

// TestAbortAndPause: a pass is aborted between I/O chunks, the partition
// stays paused (not cleaned) until Resume, then cleans normally.
func TestAbortAndPause(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	blocked := make(chan struct{}, 1)
	e.close()
	e.ccfg.IOMaxBytesPerSecond = 1 // every chunk waits
	e.sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case blocked <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-block:
			return nil
		}
	}
	e.open()
	l := e.log(testTP)
	fillKeys(t, e, l, 300, 20, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	before, _ := readLog(t, l)
	done := make(chan Result)
	go func() {
		res, _ := e.cm.RunOnce(context.Background())
		done <- res
	}()
	<-blocked
	if s := partStatus(e.cm, testTP).State; s != "in-progress" {
		t.Fatalf("state %q", s)
	}
	e.cm.AbortAndPause(testTP)
	res := <-done
	if !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("aborted pass returned %v", res.Err)
	}
	if s := partStatus(e.cm, testTP); s.State != "paused" || s.Uncleanable {
		t.Fatalf("after abort: %+v", s)
	}
	if got, _ := readLog(t, l); len(got) != len(before) {
		t.Fatal("an aborted pass changed the log")
	}
	close(block)
	if _, ok := e.cm.RunOnce(context.Background()); ok {
		t.Fatal("a paused partition was cleaned")
	}
	e.cm.Resume(testTP)
	if res, ok := e.runOnce(); !ok || res.Err != nil {
		t.Fatalf("after resume: %v %+v", ok, res)
	}
	if got, _ := readLog(t, l); len(got) != 20 {
		t.Fatalf("%d records after the clean, want 20", len(got))
	}
}

// TestStatusAndMetrics: the JSON status and the Prometheus metrics describe
// a cleaned partition.
func TestStatusAndMetrics(t *testing.T) {
	e := newEnv(t)
	l := e.log(testTP)
	fillKeys(t, e, l, 300, 20, record.CodecSnappy)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.runOnce()
	rw := httptest.NewRecorder()
	e.cm.Handler().ServeHTTP(rw, httptest.NewRequest("GET", "/cleaner", nil))
	var st Status
	if err := json.Unmarshal(rw.Body.Bytes(), &st); err != nil {
		t.Fatalf("%v: %s", err, rw.Body.String())
	}
	if len(st.Partitions) != 1 || st.Partitions[0].Passes != 1 || st.Partitions[0].LastPass == nil || st.Partitions[0].LastCleanTime == nil || st.Partitions[0].FirstDirtyOffset != 0 {
		t.Fatalf("status %s", rw.Body.String())
	}
	if off, ok := e.cm.Checkpoint(testTP); !ok || off != 300 {
		t.Fatalf("checkpoint %d %v", off, ok)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{
		"kvlog_cleaner_bytes_read_total", "kvlog_cleaner_bytes_written_total", "kvlog_cleaner_dirty_ratio",
		"kvlog_cleaner_max_dirty_ratio", "kvlog_cleaner_recopy_ratio", "kvlog_cleaner_last_clean_duration_seconds",
		"kvlog_cleaner_last_run_timestamp_seconds", "kvlog_cleaner_buffer_utilization_ratio",
		"kvlog_cleaner_uncleanable_partitions", "kvlog_cleaner_uncleanable_bytes", "kvlog_cleaner_passes_total",
	} {
		if !names[n] {
			t.Errorf("metric %s missing", n)
		}
	}
	if v := gauge(t, e, "kvlog_cleaner_recopy_ratio"); v <= 0 || v >= 1 {
		t.Fatalf("recopy ratio %v (a 0-1 ratio)", v)
	}
	if v := gauge(t, e, "kvlog_cleaner_max_dirty_ratio"); v < 0 || v > 1 {
		t.Fatalf("max dirty ratio %v (a 0-1 ratio)", v)
	}
	if v := gauge(t, e, "kvlog_cleaner_last_run_timestamp_seconds"); v < 1e9 {
		t.Fatalf("last run timestamp %v (Unix seconds)", v)
	}
	// The checkpoint survives a restart.
	e.restart()
	e.log(testTP)
	e.cm.plan()
	if off, ok := e.cm.Checkpoint(testTP); !ok || off != 300 {
		t.Fatalf("checkpoint after restart %d %v", off, ok)
	}
}

// TestMapAllocationIsolated: a thread whose offset map allocation fails or
// panics (e.g. makeslice: len out of range) stays alive, reports the error
// in Status, and cleans once an allocation succeeds.
func TestMapAllocationIsolated(t *testing.T) {
	e := newEnv(t)
	e.close()
	var fail atomic.Int32 // 0: allocate, 1: panic, 2: error
	fail.Store(1)
	e.newMap = func(size int64, lf float64) (*OffsetMap, error) {
		switch fail.Load() {
		case 1:
			panic("runtime error: makeslice: len out of range")
		case 2:
			return nil, errors.New("no memory")
		}
		return NewOffsetMap(size, lf)
	}
	e.open()
	l := e.log(testTP)
	fillKeys(t, e, l, 300, 20, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.Start(t.Context())
	eventually(t, 5*time.Second, "the allocation panic in Status", func() bool {
		st := e.cm.Status()
		return len(st.ThreadErrors) == 1 && strings.Contains(st.ThreadErrors[0].Error, "makeslice")
	})
	fail.Store(2)
	e.cm.Wake()
	eventually(t, 5*time.Second, "the allocation error in Status", func() bool {
		st := e.cm.Status()
		return len(st.ThreadErrors) == 1 && strings.Contains(st.ThreadErrors[0].Error, "no memory")
	})
	if st := e.cm.Status(); st.Threads != 1 || partStatus(e.cm, testTP).Passes != 0 {
		t.Fatalf("status %+v", st)
	}
	fail.Store(0)
	e.cm.Wake()
	eventually(t, 5*time.Second, "a pass once the map is allocated", func() bool {
		return partStatus(e.cm, testTP).Passes >= 1 && len(e.cm.Status().ThreadErrors) == 0
	})
}

// TestMapBytesBound: at most 2 GiB of offset map per thread (Kafka's
// buffer is one Java array), checked before any thread allocates.
func TestMapBytesBound(t *testing.T) {
	c := DefaultConfig()
	c.DedupeBufferSize = math.MaxInt64
	if err := c.Validate(); err == nil {
		t.Fatal("a 2^63-byte dedupe buffer validated")
	}
	c.Threads, c.DedupeBufferSize = 2, 2*math.MaxInt32
	if err := c.Validate(); err != nil {
		t.Fatalf("2 GiB per thread: %v", err)
	}
	c.DedupeBufferSize += 2
	if err := c.Validate(); err == nil {
		t.Fatal("more than 2 GiB per thread validated")
	}
}

// TestMapAllocatedLazilyAndReleasedWhenIdle: a cleaner thread holds no
// offset map until a pass is due (planning rounds that find nothing due
// allocate none), allocates it for the pass, lets it go once it has been
// idle for Options.MapIdle, and allocates it again for the next pass.
func TestMapAllocatedLazilyAndReleasedWhenIdle(t *testing.T) {
	e := newEnv(t)
	e.close()
	var allocs atomic.Int32
	e.newMap = func(size int64, lf float64) (*OffsetMap, error) {
		allocs.Add(1)
		return NewOffsetMap(size, lf)
	}
	e.mapIdle = 10 * time.Minute
	e.open()
	l := e.log(testTP)
	// Ratio 1: never due (a ratio must exceed it).
	e.topics.set(testTP, TopicConfig{MinCleanableRatio: 1, DeleteRetention: time.Hour})
	fillKeys(t, e, l, 300, 20, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.Start(t.Context())
	// A planning round saw the dirty bytes and found nothing due.
	eventually(t, 5*time.Second, "a planning round", func() bool { return partStatus(e.cm, testTP).CleanableBytes > 0 })
	if n, b := allocs.Load(), e.cm.Status().MapBytes; n != 0 || b != 0 {
		t.Fatalf("with nothing due: %d offset map allocations, %d bytes held; want none", n, b)
	}

	e.topics.set(testTP, TopicConfig{MinCleanableRatio: 0.01, DeleteRetention: time.Hour})
	e.cm.Wake()
	eventually(t, 5*time.Second, "the first pass", func() bool { return partStatus(e.cm, testTP).Passes >= 1 })
	want := e.ccfg.DedupeBufferSize / EntrySize * EntrySize
	if n, b := allocs.Load(), e.cm.Status().MapBytes; n != 1 || b != want {
		t.Fatalf("after the first pass: %d allocations, %d bytes held; want 1 and %d", n, b, want)
	}
	if v := gauge(t, e, "kvlog_cleaner_offset_map_bytes"); v != float64(want) {
		t.Fatalf("kvlog_cleaner_offset_map_bytes %v, want %d", v, want)
	}

	// Idle, but not for long enough: the map stays. The thread waits out
	// its backoff on the clock; moving the clock past it runs one more
	// round, which ends by setting the next backoff's timer (the fired
	// one left the clock inside Advance).
	round := func(d time.Duration) {
		t.Helper()
		if !e.clk.AwaitWaiters(1, 10*time.Second) {
			t.Fatal("the idle thread set no backoff timer on the clock")
		}
		e.clk.Advance(d)
		if !e.clk.AwaitWaiters(1, 10*time.Second) {
			t.Fatal("no round ended after the backoff")
		}
	}
	round(e.mapIdle / 2)
	if b := e.cm.Status().MapBytes; b != want {
		t.Fatalf("released after half the idle period: %d bytes held", b)
	}
	round(e.mapIdle)
	if b := e.cm.Status().MapBytes; b != 0 {
		t.Fatalf("not released after the idle period: %d bytes held", b)
	}
	if v := gauge(t, e, "kvlog_cleaner_offset_map_bytes"); v != 0 {
		t.Fatalf("kvlog_cleaner_offset_map_bytes %v after the release", v)
	}

	// The next pass allocates it again.
	passes := partStatus(e.cm, testTP).Passes
	fillKeys(t, e, l, 300, 20, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.Wake()
	eventually(t, 5*time.Second, "a pass after the release", func() bool { return partStatus(e.cm, testTP).Passes > passes })
	if n, b := allocs.Load(), e.cm.Status().MapBytes; n != 2 || b != want {
		t.Fatalf("after the pass following the release: %d allocations, %d bytes; want 2 and %d", n, b, want)
	}
	e.close()
}

// TestRunOnceAllocatesOnlyWhenDue: RunOnce with nothing due allocates no
// offset map; the first due pass does, within the configured bound.
func TestRunOnceAllocatesOnlyWhenDue(t *testing.T) {
	e := newEnv(t)
	e.close()
	var allocs atomic.Int32
	e.newMap = func(size int64, lf float64) (*OffsetMap, error) {
		allocs.Add(1)
		return NewOffsetMap(size, lf)
	}
	e.open()
	l := e.log(testTP)
	if _, ran := e.cm.RunOnce(t.Context()); ran || allocs.Load() != 0 || e.cm.Status().MapBytes != 0 {
		t.Fatalf("RunOnce on a clean log: ran %v, %d allocations, %d bytes", ran, allocs.Load(), e.cm.Status().MapBytes)
	}
	fillKeys(t, e, l, 300, 20, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if res, ran := e.cm.RunOnce(t.Context()); !ran || res.Err != nil {
		t.Fatalf("RunOnce on a dirty log: ran %v, %v", ran, res.Err)
	}
	if n, b := allocs.Load(), e.cm.Status().MapBytes; n != 1 || b <= 0 || b > e.ccfg.DedupeBufferSize {
		t.Fatalf("after a pass: %d allocations, %d bytes (bound %d)", n, b, e.ccfg.DedupeBufferSize)
	}
}

// TestIdleThreadBacksOffOnTheClock: a thread with nothing to do waits
// log.cleaner.backoff.ms on the Manager's clock before its next round, not
// less; Wake ends the wait early.
func TestIdleThreadBacksOffOnTheClock(t *testing.T) {
	e := newEnv(t)
	e.ccfg.Backoff = 15 * time.Second
	e.restart()
	e.cm.Start(t.Context())
	if !e.clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("the idle thread set no backoff timer on the clock")
	}
	// A timer fires (and leaves the clock) inside Advance: still there,
	// the backoff was not cut short.
	e.clk.Advance(e.ccfg.Backoff - time.Nanosecond)
	if n := e.clk.Waiters(); n != 1 {
		t.Fatalf("%d timers on the clock just before the backoff ends, want 1", n)
	}
	e.clk.Advance(time.Nanosecond)
	if !e.clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("no round ended after the backoff")
	}
	// Wake: the round runs at once and stops the backoff's timer.
	l := e.log(testTP)
	fillKeys(t, e, l, 300, 20, record.CodecNone)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.Wake()
	eventually(t, 10*time.Second, "a pass after Wake", func() bool { return partStatus(e.cm, testTP).Passes >= 1 })
}
