package engine

import (
	"errors"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestOpenHandlesBounded reads at random offsets across many segments with a
// small handle cache: the number of open descriptors stays bounded by the
// cache (plus readers in flight), not by the number of segments.
func TestOpenHandlesBounded(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 1024
	hc := newHandleCache(budgetLimits{files: 1 << 20, maps: 1 << 20}, 8, e.clk)
	l, err := OpenLog(e.dir, TopicPartition{Topic: "topic"}, e.cfg, LogOptions{Clock: e.clk, Logger: quietLogger, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1, handles: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ts := e.clk.Now().UnixMilli()
	for i := 0; l.LogEndOffset() < 3000; i++ {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts), kv(i, ts), kv(i, ts)}), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.Segments()); n < 100 || l.SegmentCount() != n {
		t.Fatalf("want many segments, got %d (SegmentCount %d)", n, l.SegmentCount())
	}
	base := openFDs(t)
	rng := rand.New(rand.NewPCG(3, 4))
	peak := 0
	for i := 0; i < 3000; i++ {
		r, err := l.Read(Offset(rng.Int64N(int64(l.LogEndOffset()))), 512, l.LogEndOffset())
		if err != nil {
			t.Fatal(err)
		}
		r.Release()
		if i%100 == 0 {
			peak = max(peak, openFDs(t)-base)
		}
	}
	if n := openFDs(t) - base; n > 8+2 || peak > 8+64+2 {
		t.Fatalf("open descriptors grew by %d (peak %d) with a cache of 8 over %d segments", n, peak, len(l.Segments()))
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// budgetManager opens a Manager on a fresh dir with the given budget and n
// partitions of topic "p", one record appended to each.
func budgetManager(t *testing.T, files, maps, n int) (*Manager, []*Log) {
	t.Helper()
	e := newTestEnv(t)
	m, err := OpenManager(ManagerOptions{Dirs: []string{t.TempDir()}, Clock: e.clk, Logger: quietLogger,
		MaxOpenFiles: files, MaxMappings: maps, ConfigFor: func(TopicPartition) Config { return e.cfg }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ts := e.clk.Now().UnixMilli()
	logs := make([]*Log, n)
	for i := range logs {
		if logs[i], err = m.CreateLog(TopicPartition{Topic: "p", Partition: int32(i)}, e.cfg); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		if _, err := logs[i].Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts)}), 0); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	return m, logs
}

// TestBudgetClosesColdActiveSegments: 120 partitions under a budget of 60
// descriptors (an active segment holds 1 to 3) keep every partition writable and
// readable: cold active segments are closed and reopened on demand, and
// the process never holds more descriptors than the budget.
func TestBudgetClosesColdActiveSegments(t *testing.T) {
	const n, files = 120, 60
	base := openFDs(t)
	m, logs := budgetManager(t, files, 1<<20, n)
	ts := int64(1_700_000_000_000) // the test clock's time: no time-based roll
	for round := 0; round < 3; round++ {
		for i, l := range logs {
			if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts)}), 0); err != nil {
				t.Fatalf("round %d append %d: %v", round, i, err)
			}
			if got := len(readAll(t, l, 0)); got != round+2 {
				t.Fatalf("round %d partition %d: %d records", round, i, got)
			}
			if st := m.Budget(); st.OpenFiles > files {
				t.Fatalf("%d files open, budget %d", st.OpenFiles, files)
			}
		}
		if got := openFDs(t) - base; got > files+4 {
			t.Fatalf("round %d: %d descriptors open beyond the start, budget %d", round, got, files)
		}
	}
	st := m.Budget()
	if st.Evictions == 0 || st.Reopens == 0 || st.Refusals != 0 {
		t.Fatalf("budget stats %+v", st)
	}
	// Close seals every segment, reopened or not, and a restart reads all.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := OpenManager(ManagerOptions{Dirs: m.Dirs(), Logger: quietLogger, MaxOpenFiles: files, ConfigFor: func(TopicPartition) Config { return logs[0].Config() }})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	for i := range logs {
		l, ok := m2.Log(TopicPartition{Topic: "p", Partition: int32(i)})
		if !ok || l.LogEndOffset() != 4 || len(readAll(t, l, 0)) != 4 {
			t.Fatalf("partition %d after restart: %v", i, ok)
		}
	}
}

// TestBudgetBoundsMappings: the mapping budget evicts as the file budget
// does (each active segment maps its two indexes).
func TestBudgetBoundsMappings(t *testing.T) {
	const n, maps = 100, 40
	m, logs := budgetManager(t, 1<<20, maps, n)
	for i, l := range logs {
		if got := len(readAll(t, l, 0)); got != 1 {
			t.Fatalf("partition %d: %d records", i, got)
		}
		if st := m.Budget(); st.Mappings > maps {
			t.Fatalf("%d mappings, budget %d", st.Mappings, maps)
		}
	}
	if st := m.Budget(); st.Evictions == 0 {
		t.Fatalf("budget stats %+v", st)
	}
}

// TestBudgetRefusesWhenAllInUse: when every open handle is held (appends,
// fsyncs or readers in flight), an operation needing another descriptor
// waits for one chargeWait on the Manager's clock (not less), then is
// refused with ErrResourceLimit (a storage error) and counted, while the
// held partitions keep serving; once they are released the operation
// succeeds.
func TestBudgetRefusesWhenAllInUse(t *testing.T) {
	// 16 active segments (the smallest budget) of a record each: a .log
	// each, their indexes have no entry and so no file yet.
	const files = 16
	m, logs := budgetManager(t, files, 1<<20, files+1)
	clk := m.opts.Clock.(*clock.Manual)
	var held []*handle
	defer func() {
		for _, h := range held {
			h.release()
		}
	}()
	for _, l := range logs[:files] {
		h, err := l.active().acquire()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, h)
	}
	// refused runs op, which waits for a handle: it is refused when the
	// clock reaches chargeWait after the wait began, not before.
	refused := func(what string, op func() error) error {
		t.Helper()
		due := clk.Now().Add(chargeWait)
		done := make(chan error, 1)
		go func() { done <- op() }()
		if !clk.AwaitDeadline(due, 10*time.Second) {
			t.Fatalf("%s: no wait for a handle on the clock", what)
		}
		clk.Advance(chargeWait - time.Nanosecond)
		select {
		case err := <-done:
			t.Fatalf("%s: ended 1 ns before chargeWait: %v", what, err)
		default:
		}
		clk.Advance(time.Nanosecond)
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second): // hang guard
			t.Fatalf("%s: still waiting after chargeWait", what)
			return nil
		}
	}
	ts := int64(1_700_000_000_000) // the test clock's time: no time-based roll
	batch := makeBatch(t, record.CodecNone, []testRecord{kv(6, ts)})
	if err := refused("append", func() error {
		_, err := logs[files].Append(batch, 0)
		return err
	}); !errors.Is(err, ErrResourceLimit) || !errors.Is(err, ErrStorage) {
		t.Fatalf("append with every descriptor in use: %v", err)
	}
	if err := refused("read", func() error {
		_, err := logs[files].Read(0, 1<<20, logs[files].LogEndOffset())
		return err
	}); !errors.Is(err, ErrResourceLimit) {
		t.Fatalf("read with every descriptor in use: %v", err)
	}
	if err := refused("create", func() error {
		_, err := m.CreateLog(TopicPartition{Topic: "p", Partition: 99}, logs[0].Config())
		return err
	}); !errors.Is(err, ErrResourceLimit) {
		t.Fatalf("create with every descriptor in use: %v", err)
	}
	if st := m.Budget(); st.Refusals < 3 {
		t.Fatalf("refusals not counted: %+v", st)
	}
	for _, l := range logs[:files] {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(0, ts)}), 0); err != nil {
			t.Fatalf("append to a held partition: %v", err)
		}
		if got := len(readAll(t, l, 0)); got != 2 {
			t.Fatalf("held partition: %d records", got)
		}
	}
	for _, h := range held {
		h.release()
	}
	held = nil
	if _, err := logs[files].Append(makeBatch(t, record.CodecNone, []testRecord{kv(6, ts)}), 0); err != nil {
		t.Fatalf("append after the holders left: %v", err)
	}
	if len(readAll(t, logs[files], 0)) != 2 {
		t.Fatal("partition 6 lost a record")
	}
}

// TestReadsCopyWhenPinsHeavy: read results held open (a fetch response
// over many partitions being sent) stop pinning files once they hold half
// the budget: later reads come back as bytes, and every read is served.
func TestReadsCopyWhenPinsHeavy(t *testing.T) {
	const files = 60
	m, logs := budgetManager(t, files, 1<<20, 40)
	var held []*ReadResult
	defer func() {
		for _, r := range held {
			r.Release()
		}
	}()
	copied := 0
	for i, l := range logs {
		r, err := l.Read(0, 1<<20, l.LogEndOffset())
		if err != nil {
			t.Fatalf("read %d with %d held: %v", i, len(held), err)
		}
		held = append(held, r)
		b, err := r.Bytes()
		if err != nil || int64(len(b)) != r.Size || r.Size == 0 {
			t.Fatalf("read %d: %d bytes of %d, %v", i, len(b), r.Size, err)
		}
		if r.Data != nil {
			copied++
		}
	}
	if copied == 0 || copied == len(logs) || m.Budget().CopiedReads != int64(copied) {
		t.Fatalf("%d of %d reads copied, stats %+v", copied, len(logs), m.Budget())
	}
}
