package replica

import (
	"bytes"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
)

// goroutineID is the id of the calling goroutine (from its stack header).
func goroutineID() int {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	return id
}

// TestWokenFetchesReuseGoroutines: a parked fetch woken by its partition's
// high watermark is answered on one of the Manager's waiting goroutines,
// not on a new goroutine per wake-up (whose stack grew from the minimum
// through the fetch's read and encoding every time: about 40% of a woken
// fetch's CPU). Consecutive wake-ups of a tailing consumer run on the same
// goroutine; after Shutdown none waits, and a fetch parked then is still
// answered.
func TestWokenFetchesReuseGoroutines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	clk := clock.NewManual(time.Unix(1_700_000_000, 0)) // the fetches' deadlines never pass
	l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{Clock: clk,
		Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerConfig{ID: 1, SyncAlone: false, Logger: silent, Clock: clk})
	p, err := m.LeadAlone(l, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	type answer struct {
		final bool
		g     int
	}
	park := func() chan answer {
		ch := make(chan answer, 1)
		m.Park([]Watched{{P: p, Seen: l.HighWatermark()}}, time.Hour, func(final bool) { ch <- answer{final, goroutineID()} })
		return ch
	}
	var gs []int
	for i := 0; i < 5; i++ {
		ch := park()
		if _, err := m.Append(p, batch(t, "r", 1), false, 1); err != nil {
			t.Fatal(err)
		}
		var a answer
		select {
		case a = <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("wake-up %d: the parked fetch was not answered after its HW moved", i)
		}
		if a.final {
			t.Fatalf("wake-up %d: answered as final (deadline or shutdown), want woken by the HW", i)
		}
		gs = append(gs, a.g)
		// The goroutine that answered waits for the next one.
		waitFor("a waiting waker", func() bool { return m.wakers.waiting() >= 1 })
	}
	for _, g := range gs[1:] {
		if g != gs[0] {
			t.Fatalf("consecutive wake-ups answered on goroutines %v, want one reused", gs)
		}
	}

	m.Shutdown()
	if n := m.wakers.waiting(); n != 0 {
		t.Fatalf("%d wakers still waiting after Shutdown", n)
	}
	select {
	case a := <-park():
		if !a.final {
			t.Fatal("a fetch parked after Shutdown was not answered as final")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a fetch parked after Shutdown was not answered")
	}
	m.Close()
	l.Close()
}
