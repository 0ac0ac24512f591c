package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Frame buffers. A produce request's frame is dead once the request is
// answered, or once its handler appended its batches: the engine copies
// them into the page cache (pwrite) before Append returns and keeps no
// slice of them. An acks=all request, answered after its handler returned
// (while the connection reads its next requests), hands its frame back as
// its handler ends, what its completion counts of the batches (metrics)
// tallied first and the decoded request's batch slices cleared (package
// server, request.releaseFrame): handed back at the answer, a frame stayed
// taken for every request waiting for its fsync or replication. Frames from 64 KiB to 16 MiB are read into pooled
// buffers; other frames (whose decoded request may be parked, e.g. a
// fetch waiting for data) are left to the GC. This saves the zeroing and
// the collection of a fresh megabyte per produce request.
const (
	MinPooledFrame   = 64 << 10
	pooledFrameClass = 9 // 64 KiB << 0 … 64 KiB << 8 = 16 MiB
)

var framePools [pooledFrameClass]sync.Pool

// frameClass is the smallest pool class holding n bytes, or -1 when n is
// outside the pooled range.
func frameClass(n int) int {
	if n < MinPooledFrame {
		return -1
	}
	c := bits.Len(uint((n - 1) / MinPooledFrame))
	if c >= pooledFrameClass {
		return -1
	}
	return c
}

// GetFrame returns a buffer of length n, pooled when n is in range.
func GetFrame(n int) []byte {
	c := frameClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if p, ok := framePools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, MinPooledFrame<<c)
}

// PutFrame returns b to its pool when its capacity is exactly a class
// size. The caller must not use b afterwards.
func PutFrame(b []byte) {
	c := frameClass(cap(b))
	if c < 0 || cap(b) != MinPooledFrame<<c {
		return
	}
	b = b[:0]
	framePools[c].Put(&b)
}

// Reading a frame. The size prefix is the client's claim, not bytes that
// arrived: a connection that sends only a prefix must not make the broker
// allocate the size it names. The first min(n, SmallFrame) bytes are read
// into a buffer of that size; only then does a larger frame reserve its size
// from the request memory budget (queued.max.request.bytes) and grow its
// buffer as bytes arrive, so a buffer is never larger than max(64 KiB,
// frameGrowth × the bytes received) and an idle connection holds at most
// SmallFrame bytes. Bytes received are those read and, on a TCP connection,
// those waiting in the socket's receive queue (Queued): a client that sent
// its whole request gets a buffer of the frame's size at once, instead of
// one grown by frameGrowth at a time from MinPooledFrame, each growth
// copying what was read so far (a third of a megabyte per 1 MiB request).
const (
	SmallFrame  = 4 << 10
	frameGrowth = 4
)

// Queued reports how many bytes r can deliver without waiting: for a TCP
// connection, what its socket's receive queue holds (FIONREAD); 0 for
// other readers (a TLS connection's queue holds records, not request
// bytes).
type Queued func(r io.Reader) int

// SocketQueued is Queued for a *net.TCPConn (any syscall.Conn).
func SocketQueued(r io.Reader) int {
	sc, ok := r.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	if rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil && v > 0 {
			n = v
		}
	}) != nil {
		return 0
	}
	return n
}

// growTo is the capacity to grow a frame buffer holding have of n bytes
// to, when queued more bytes are waiting: frameGrowth × what was received
// (read and queued), and at least frameGrowth × the buffer's capacity now.
func growTo(capNow, have, queued, n int) int {
	return min(n, max(frameGrowth*capNow, frameGrowth*(have+queued)))
}

// ReadFrameBody reads an n-byte frame. For n > SmallFrame it calls reserve
// once the first SmallFrame bytes have arrived, and fails with reserve's
// error. queued, when not nil, tells how many more bytes r holds already
// (SocketQueued).
func ReadFrameBody(r io.Reader, n int, reserve func() error, queued Queued) ([]byte, error) {
	first := make([]byte, min(n, SmallFrame))
	if _, err := io.ReadFull(r, first); err != nil {
		return nil, err
	}
	if n <= SmallFrame {
		return first, nil
	}
	if reserve != nil {
		if err := reserve(); err != nil {
			return nil, err
		}
	}
	waiting := func() int {
		if queued == nil {
			return 0
		}
		return queued(r)
	}
	b := GetFrame(min(n, max(MinPooledFrame, frameGrowth*(len(first)+waiting()))))[:len(first)]
	copy(b, first)
	for len(b) < n {
		if len(b) == cap(b) {
			nb := GetFrame(growTo(cap(b), len(b), waiting(), n))[:len(b)]
			copy(nb, b)
			PutFrame(b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if err != nil {
			PutFrame(b)
			return nil, err
		}
	}
	return b, nil
}

// FrameSizeError is a size prefix outside [0, limit]: the connection is
// closed without reading the frame.
type FrameSizeError struct{ Size, Limit int32 }

func (e *FrameSizeError) Error() string {
	return fmt.Sprintf("request frame size %d out of range (limit %d)", e.Size, e.Limit)
}

// ErrNoFrame wraps an error reading a frame's size prefix: no frame had
// started (an idle connection closed or timed out).
var ErrNoFrame = errors.New("no request frame")

// ErrRequestMemory: a reader gave up waiting for request memory (stop was
// closed, or wait passed).
var ErrRequestMemory = errors.New("no request memory within connections.max.idle.ms (queued.max.request.bytes)")

// ReadFrame reads one size-prefixed request frame from r: the size prefix,
// checked against limit, then the body (ReadFrameBody), whose size is
// reserved from mem once its first SmallFrame bytes arrived (waiting at
// most wait, or until stop closes; onWait is called when it starts
// waiting) and counted without waiting for smaller frames. held is the
// memory the frame holds in mem, to Release when its request completes;
// on an error nothing is held.
func ReadFrame(r io.Reader, limit int32, mem *Memory, stop <-chan struct{}, wait time.Duration, onWait func()) (frame []byte, held int64, err error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrNoFrame, err)
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 0 || n > limit {
		return nil, 0, &FrameSizeError{Size: n, Limit: limit}
	}
	frame, err = ReadFrameBody(r, int(n), func() error {
		if !mem.Acquire(int64(n), stop, wait, onWait) {
			return ErrRequestMemory
		}
		held = int64(n)
		return nil
	}, SocketQueued)
	if err != nil {
		mem.Release(held)
		return nil, 0, err
	}
	if held == 0 {
		held = int64(n)
		mem.Force(held)
	}
	return frame, held, nil
}
