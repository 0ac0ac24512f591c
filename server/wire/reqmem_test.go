package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"
)

func sizePrefixed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestReadFrame: a frame's memory is held from the budget (reserved when
// large, counted when small), a size outside the limit is refused before
// its body is read, and a connection that ends between frames says so.
func TestReadFrame(t *testing.T) {
	mem := NewMemory(1 << 20)
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

// TestMemoryWaits runs in a synctest bubble: the budget's wait for memory
// is ordered by the events themselves (a release, a stop, the timeout on
// the bubble's fake clock), never by sleeping.
func TestMemoryWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := NewMemory(100)
		if !mem.Acquire(150, nil, time.Minute, nil) { // over the limit, but some was left
			t.Fatal("first reservation refused")
		}
		waits := 0
		got := make(chan bool, 1)
		go func() { got <- mem.Acquire(10, nil, time.Minute, func() { waits++ }) }()
		synctest.Wait() // the second reservation is waiting
		select {
		case <-got:
			t.Fatal("a reservation went through with nothing left")
		default:
		}
		mem.Release(150)
		if !<-got || waits != 1 {
			t.Fatalf("after a release: waits %d", waits)
		}

		// Nothing released: the wait ends at its timeout.
		mem.Force(200)
		start := time.Now()
		if mem.Acquire(10, nil, 30*time.Second, nil) {
			t.Fatal("reserved with the budget used up")
		}
		if waited := time.Since(start); waited != 30*time.Second {
			t.Fatalf("gave up after %v (fake time), want the timeout", waited)
		}

		// A stop ends the wait at once.
		stop := make(chan struct{})
		go func() { got <- mem.Acquire(10, stop, time.Hour, nil) }()
		synctest.Wait()
		close(stop)
		if <-got {
			t.Fatal("reserved after stop")
		}
	})
}
