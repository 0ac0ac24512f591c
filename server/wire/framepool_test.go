package wire

import (
	"bytes"
	"testing"
)

func TestReadFrameBody(t *testing.T) {
	for _, n := range []int{0, 10, SmallFrame, SmallFrame + 1, MinPooledFrame, 1 << 20, 3<<20 + 17} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i * 7)
		}
		reserved := false
		got, err := ReadFrameBody(bytes.NewReader(src), n, func() error { reserved = true; return nil })
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("n=%d: err %v, equal %v", n, err, bytes.Equal(got, src))
		}
		if reserved != (n > SmallFrame) {
			t.Fatalf("n=%d: reserved %v", n, reserved)
		}
	}
	// A size prefix larger than what arrives fails without allocating it all.
	if _, err := ReadFrameBody(bytes.NewReader(make([]byte, 100)), 50<<20, nil); err == nil {
		t.Fatal("short frame accepted")
	}
	// The buffer follows what arrived: a 16 MiB frame of which 100 KiB
	// arrived has a buffer of at most 4 × 100 KiB (rounded to a pool
	// class), not 16 MiB.
	r := &capReader{r: bytes.NewReader(make([]byte, 100<<10))}
	if _, err := ReadFrameBody(r, 16<<20, nil); err == nil {
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
