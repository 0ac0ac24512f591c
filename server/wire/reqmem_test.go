package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
)

func sizePrefixed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestReadFrame: a frame's memory is held from the budget (reserved when
// large, counted when small), a size outside the limit is refused before
// its body is read, and a connection that ends between frames says so.
func TestReadFrame(t *testing.T) {
	mem := NewMemory(1<<20, nil)
	small := bytes.Repeat([]byte{1}, 100)
	large := bytes.Repeat([]byte{2}, SmallFrame+1)
	r := bytes.NewReader(append(sizePrefixed(small), sizePrefixed(large)...))
	for _, want := range [][]byte{small, large} {
		frame, held, err := ReadFrame(r, 1<<20, mem, nil, time.Second, nil)
		if err != nil || !bytes.Equal(frame, want) || held != int64(len(want)) {
			t.Fatalf("frame of %d: got %d bytes, held %d, err %v", len(want), len(frame), held, err)
		}
	}
	if got := mem.InUse(); got != int64(len(small)+len(large)) {
		t.Fatalf("memory in use %d", got)
	}
	if _, _, err := ReadFrame(r, 1<<20, mem, nil, time.Second, nil); !errors.Is(err, ErrNoFrame) || !errors.Is(err, io.EOF) {
		t.Fatalf("end between frames: %v", err)
	}
	var sizeErr *FrameSizeError
	if _, _, err := ReadFrame(bytes.NewReader(sizePrefixed(small)), 99, mem, nil, time.Second, nil); !errors.As(err, &sizeErr) || sizeErr.Size != 100 || sizeErr.Limit != 99 {
		t.Fatalf("oversized frame: %v", err)
	}
	before := mem.InUse()
	if _, held, err := ReadFrame(bytes.NewReader(sizePrefixed(make([]byte, 2*SmallFrame))[:4+SmallFrame+10]), 1<<20, mem, nil, time.Second, nil); err == nil || errors.Is(err, ErrNoFrame) || held != 0 {
		t.Fatalf("truncated frame: held %d, err %v", held, err)
	}
	if got := mem.InUse(); got != before {
		t.Fatalf("a truncated frame kept %d bytes of memory", got-before)
	}
}

// TestMemoryWaits: the budget's wait for memory is ordered by the events
// themselves (a release, a stop, the timeout on the budget's manual
// clock), never by sleeping; the timeout ends the wait exactly when the
// clock reaches it, and no timer outlives a wait.
func TestMemoryWaits(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	mem := NewMemory(100, clk)
	if !mem.Acquire(150, nil, time.Minute, nil) { // over the limit, but some was left
		t.Fatal("first reservation refused")
	}
	var waits atomic.Int32
	got := make(chan bool, 1)
	go func() { got <- mem.Acquire(10, nil, time.Minute, func() { waits.Add(1) }) }()
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("the second reservation set no timer")
	}
	select {
	case <-got:
		t.Fatal("a reservation went through with nothing left")
	default:
	}
	mem.Release(150)
	if !<-got || waits.Load() != 1 {
		t.Fatalf("after a release: waits %d", waits.Load())
	}
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("%d timers left after the reservation went through", n)
	}

	// Nothing released: the wait ends at its timeout, not before.
	mem.Force(200)
	due := clk.Now().Add(30 * time.Second)
	go func() { got <- mem.Acquire(10, nil, 30*time.Second, nil) }()
	if !clk.AwaitDeadline(due, 10*time.Second) {
		t.Fatal("the wait set no timer for its timeout")
	}
	clk.Advance(30*time.Second - time.Nanosecond)
	if n := clk.Waiters(); n != 1 {
		t.Fatalf("%d timers 1 ns before the timeout, want 1", n)
	}
	select {
	case <-got:
		t.Fatal("the wait ended before its timeout")
	default:
	}
	clk.Advance(time.Nanosecond)
	if <-got {
		t.Fatal("reserved with the budget used up")
	}

	// A stop ends the wait at once, and its timer.
	stop := make(chan struct{})
	go func() { got <- mem.Acquire(10, stop, time.Hour, nil) }()
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("the wait set no timer")
	}
	close(stop)
	if <-got {
		t.Fatal("reserved after stop")
	}
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("%d timers left after a stopped wait", n)
	}
}
