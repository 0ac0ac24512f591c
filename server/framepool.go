package server

import (
	"io"
	"math/bits"
	"sync"
)

// Frame buffers. A produce request's frame is dead once its handler has
// run: the engine copies the batches into the page cache (pwrite) before
// Append returns and keeps no slice of them. Frames from 64 KiB to 16 MiB
// are therefore read into pooled buffers, and the reader hands a produce
// frame back once the handler returns; other frames (whose decoded request
// may be parked, e.g. a fetch waiting for data) are left to the GC. This
// saves the zeroing and the collection of a fresh megabyte per produce
// request.
const (
	minPooledFrame   = 64 << 10
	pooledFrameClass = 9 // 64 KiB << 0 … 64 KiB << 8 = 16 MiB
)

var framePools [pooledFrameClass]sync.Pool

// frameClass is the smallest pool class holding n bytes, or -1 when n is
// outside the pooled range.
func frameClass(n int) int {
	if n < minPooledFrame {
		return -1
	}
	c := bits.Len(uint((n - 1) / minPooledFrame))
	if c >= pooledFrameClass {
		return -1
	}
	return c
}

// getFrame returns a buffer of length n, pooled when n is in range.
func getFrame(n int) []byte {
	c := frameClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if p, ok := framePools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, minPooledFrame<<c)
}

// putFrame returns b to its pool when its capacity is exactly a class
// size. The caller must not use b afterwards.
func putFrame(b []byte) {
	c := frameClass(cap(b))
	if c < 0 || cap(b) != minPooledFrame<<c {
		return
	}
	b = b[:0]
	framePools[c].Put(&b)
}

// frameChunk is how much of a frame is allocated before its bytes arrive:
// a size prefix alone never makes the broker allocate more than this.
const frameChunk = 1 << 20

// readFrameBody reads an n-byte frame, growing the buffer as bytes arrive
// rather than trusting the size prefix up front.
func readFrameBody(r io.Reader, n int) ([]byte, error) {
	if n <= frameChunk {
		b := getFrame(n)
		if _, err := io.ReadFull(r, b); err != nil {
			putFrame(b)
			return nil, err
		}
		return b, nil
	}
	b := getFrame(frameChunk)[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			nb := getFrame(min(2*cap(b), n))[:len(b)]
			copy(nb, b)
			putFrame(b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):min(cap(b), n)])
		b = b[:len(b)+m]
		if err != nil {
			putFrame(b)
			return nil, err
		}
	}
	return b, nil
}
