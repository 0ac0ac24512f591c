package wire

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestReadFrameBody(t *testing.T) {
	for _, n := range []int{0, 10, SmallFrame, SmallFrame + 1, MinPooledFrame, 1 << 20, 3<<20 + 17} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i * 7)
		}
		reserved := false
		got, err := ReadFrameBody(bytes.NewReader(src), n, func() error { reserved = true; return nil }, nil)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("n=%d: err %v, equal %v", n, err, bytes.Equal(got, src))
		}
		if reserved != (n > SmallFrame) {
			t.Fatalf("n=%d: reserved %v", n, reserved)
		}
	}
	// A size prefix larger than what arrives fails without allocating it all.
	if _, err := ReadFrameBody(bytes.NewReader(make([]byte, 100)), 50<<20, nil, nil); err == nil {
		t.Fatal("short frame accepted")
	}
	// The buffer follows what arrived: a 16 MiB frame of which 100 KiB
	// arrived has a buffer of at most 4 × 100 KiB (rounded to a pool
	// class), not 16 MiB.
	r := &capReader{r: bytes.NewReader(make([]byte, 100<<10))}
	if _, err := ReadFrameBody(r, 16<<20, nil, nil); err == nil {
		t.Fatal("short frame accepted")
	}
	if r.maxBuf > 512<<10 {
		t.Fatalf("reading 100 KiB of a 16 MiB frame used a %d-byte buffer", r.maxBuf)
	}
}

func TestFramePoolClasses(t *testing.T) {
	for _, c := range []struct{ n, class int }{
		{0, -1}, {MinPooledFrame - 1, -1}, {MinPooledFrame, 0}, {MinPooledFrame + 1, 1},
		{2 * MinPooledFrame, 1}, {1 << 20, 4}, {1<<20 + 1, 5}, {16 << 20, 8}, {16<<20 + 1, -1},
	} {
		if got := frameClass(c.n); got != c.class {
			t.Fatalf("frameClass(%d) = %d, want %d", c.n, got, c.class)
		}
		b := GetFrame(c.n)
		if len(b) != c.n || (c.class >= 0 && cap(b) != MinPooledFrame<<c.class) {
			t.Fatalf("GetFrame(%d): len %d cap %d", c.n, len(b), cap(b))
		}
		PutFrame(b)
	}
	// A buffer whose capacity is not a class size is never pooled.
	PutFrame(make([]byte, 3*MinPooledFrame))
	if b := GetFrame(3 * MinPooledFrame); cap(b) != 4*MinPooledFrame {
		t.Fatalf("odd-sized buffer came back from the pool: cap %d", cap(b))
	}
}

// capReader records the largest buffer it was asked to fill.
type capReader struct {
	r      *bytes.Reader
	maxBuf int
}

func (c *capReader) Read(p []byte) (int, error) {
	c.maxBuf = max(c.maxBuf, cap(p))
	return c.r.Read(p)
}

// countReader counts the reads it serves and the largest buffer it was
// asked to fill, and reports what it holds as queued.
type countReader struct {
	r      *bytes.Reader
	reads  int
	maxBuf int
}

func (c *countReader) Read(p []byte) (int, error) {
	c.reads++
	c.maxBuf = max(c.maxBuf, cap(p))
	return c.r.Read(p)
}

func (c *countReader) queued(io.Reader) int { return c.r.Len() }

// A frame whose bytes are all waiting in the socket is read into one
// buffer of its size: its first SmallFrame bytes, then the rest in one
// read, with no buffer grown (and copied) on the way. The bound on a
// buffer still holds with what is queued counted as received.
func TestReadFrameBodyQueued(t *testing.T) {
	for _, n := range []int{SmallFrame + 1, MinPooledFrame, 1 << 20, 3<<20 + 17} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i * 11)
		}
		cr := &countReader{r: bytes.NewReader(src)}
		got, err := ReadFrameBody(cr, n, nil, cr.queued)
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("n=%d: err %v, equal %v", n, err, bytes.Equal(got, src))
		}
		if cr.reads != 2 {
			t.Fatalf("n=%d: %d reads, want 2 (the first %d bytes, then the rest into a buffer of the frame's size)", n, cr.reads, SmallFrame)
		}
	}
	// 100 KiB of a 16 MiB frame arrived: the buffer is at most 4 × that
	// (rounded to a pool class), not 16 MiB.
	cr := &countReader{r: bytes.NewReader(make([]byte, 100<<10))}
	if _, err := ReadFrameBody(cr, 16<<20, nil, cr.queued); err == nil {
		t.Fatal("short frame accepted")
	}
	if cr.maxBuf > 512<<10 {
		t.Fatalf("reading 100 KiB of a 16 MiB frame used a %d-byte buffer", cr.maxBuf)
	}
}

// SocketQueued reports the bytes a TCP connection received and the reader
// did not take yet.
func TestSocketQueued(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if got := SocketQueued(server); got != 0 {
		t.Fatalf("nothing sent: queued %d", got)
	}
	if _, err := client.Write(make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for SocketQueued(server) != 5000 {
		if time.Now().After(deadline) {
			t.Fatalf("queued %d, want 5000", SocketQueued(server))
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := io.ReadFull(server, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if got := SocketQueued(server); got != 4000 {
		t.Fatalf("after reading 1000: queued %d, want 4000", got)
	}
	if got := SocketQueued(bytes.NewReader(make([]byte, 10))); got != 0 {
		t.Fatalf("not a socket: queued %d", got)
	}
}
