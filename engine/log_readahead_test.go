package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/engine/record"
)

// advice is one WILLNEED a read gave.
type advice struct{ off, n int64 }

// fakeReadahead replaces the read-ahead primitives for the files under
// dir: cached answers from *cold, advice is recorded, and the next
// range's advice runs at once (in production it runs on its own
// goroutine). Files elsewhere (another test's) get the real ones.
func fakeReadahead(t *testing.T, dir string, cold *bool) (got func() []advice, probes func() []int64) {
	var (
		mu      sync.Mutex
		advised []advice
		probed  []int64
	)
	real := defaultReadahead
	mine := func(f *os.File) bool { return strings.HasPrefix(f.Name(), dir) }
	readahead.Store(&readaheadOps{
		cached: func(f *os.File, off int64) bool {
			if !mine(f) {
				return real.cached(f, off)
			}
			mu.Lock()
			defer mu.Unlock()
			probed = append(probed, off)
			return !*cold
		},
		willNeed: func(f *os.File, off, n int64) {
			if !mine(f) {
				real.willNeed(f, off, n)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			advised = append(advised, advice{off, n})
		},
		later: func(fn func()) { fn() },
	})
	t.Cleanup(func() { readahead.Store(nil) })
	take := func() []advice {
		mu.Lock()
		defer mu.Unlock()
		a := advised
		advised = nil
		return a
	}
	takeProbes := func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		p := probed
		probed = nil
		return p
	}
	return take, takeProbes
}

// TestReadAdvisesColdRanges pins the read-ahead rule of Log.Read
// (log_readahead.go): a read of at least readaheadMin whose range end is
// not cached advises its whole range before walking it, and a read that
// continues a sequential reader (from the segment's start, or where the
// last read cut by its byte limit stopped) and is cut by its byte limit
// advises the next range of the same length from where it stopped; a
// cached range end, a short range, a read that stops at the high
// watermark or the log end, or a one-off read elsewhere gives no further
// advice; and the bytes served are the same whatever the advice.
func TestReadAdvisesColdRanges(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentIndexBytes = 1 << 20
	cold := false
	advised, probes := fakeReadahead(t, e.dir, &cold)
	l := e.open(true, -1)
	defer l.Close()
	ts := e.clk.Now().UnixMilli()
	val := bytes.Repeat([]byte("v"), 1000)
	for i := range 240 { // about 16 KiB per batch, 3.9 MB in all
		var recs []testRecord
		for j := range 16 {
			recs = append(recs, testRecord{key: []byte{byte(i), byte(j)}, value: val, ts: ts})
		}
		if _, err := l.Append(makeBatch(t, record.CodecNone, recs), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.Segments()); n != 1 {
		t.Fatalf("%d segments, the test wants one", n)
	}
	hw := l.LogEndOffset()
	l.SetHighWatermark(hw)
	segEnd := l.Size()
	// Where each batch starts, read before any advice is watched (the
	// reads of ReadBatches are reads too); then the segment has no
	// read position yet.
	type start struct {
		pos int64
		off Offset
	}
	var starts []start
	at := int64(0)
	if err := l.ReadBatches(0, hw, func(b record.Batch) error {
		starts = append(starts, start{at, Offset(b.BaseOffset())})
		at += int64(len(b))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	l.segments()[0].readStop.Store(0)
	// offsetAt is the base offset of the first batch at or after byte
	// position pos.
	offsetAt := func(pos int64) Offset {
		t.Helper()
		for _, s := range starts {
			if s.pos >= pos {
				return s.off
			}
		}
		t.Fatalf("no batch at or after position %d", pos)
		return -1
	}

	read := func(off Offset, maxBytes int, maxOffset Offset) (*ReadResult, []byte) {
		t.Helper()
		r, err := l.Read(off, maxBytes, maxOffset)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Release()
		b, err := r.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Ranges) != 1 {
			t.Fatalf("%d ranges, want 1", len(r.Ranges))
		}
		return r, b
	}
	advised()
	probes()

	// Cold from the segment's start, cut by the byte limit: the range,
	// then the next one.
	const limit = 1 << 20
	cold = true
	cr, coldBytes := read(0, limit, hw)
	stop := cr.Ranges[0].Position + cr.Ranges[0].Length
	want := []advice{{0, limit}, {stop, stop}}
	if a := advised(); !equalAdvice(a, want) {
		t.Fatalf("cold read of [0,%d) advised %v, want %v", stop, a, want)
	}

	// The next read starts there; its own range is advised again
	// (already read or in flight: the kernel skips cached pages).
	nr, _ := read(offsetAt(stop), limit, hw)
	if nr.Ranges[0].Position != stop {
		t.Fatalf("next read starts at %d, want %d", nr.Ranges[0].Position, stop)
	}
	stop2 := stop + nr.Size
	want = []advice{{stop, limit}, {stop2, nr.Size}}
	if a := advised(); !equalAdvice(a, want) {
		t.Fatalf("second cold read advised %v, want %v", a, want)
	}

	// Stopped by the high watermark: the range only.
	cut := offsetAt(stop2 + 400<<10)
	hr, _ := read(offsetAt(stop2), limit, cut)
	if hr.Size >= limit || hr.Size < readaheadMin {
		t.Fatalf("read to the high watermark served %d bytes, want fewer than %d", hr.Size, limit)
	}
	if a := advised(); len(a) != 1 || a[0].off != stop2 {
		t.Fatalf("read stopped by the high watermark advised %v, want only its range from %d", a, stop2)
	}

	// To the log's end: the range (clamped to the segment) only.
	tail := offsetAt(segEnd - 600<<10)
	tr, _ := read(tail, limit, hw)
	if a := advised(); len(a) != 1 || a[0].off != tr.Ranges[0].Position || a[0].off+a[0].n != segEnd {
		t.Fatalf("read to the log end advised %v, want [%d,%d)", a, tr.Ranges[0].Position, segEnd)
	}

	// A read elsewhere, cut by its byte limit: not a continuation, so
	// its own range only.
	mid := offsetAt(stop + 100<<10)
	mr, _ := read(mid, limit, hw)
	if a := advised(); len(a) != 1 || a[0] != (advice{mr.Ranges[0].Position, limit}) {
		t.Fatalf("a one-off read from %d advised %v, want only its range", mr.Ranges[0].Position, a)
	}

	// Short ranges are the kernel's.
	read(0, readaheadMin/2, hw)
	if a := advised(); len(a) != 0 {
		t.Fatalf("a read of %d bytes advised %v", readaheadMin/2, a)
	}

	// Warm: one probe of the range's end, no advice, the same bytes.
	cold = false
	probes()
	wr, warmBytes := read(0, limit, hw)
	if a := advised(); len(a) != 0 {
		t.Fatalf("warm read advised %v", a)
	}
	if p := probes(); len(p) == 0 || p[0] != limit-1 {
		t.Fatalf("warm read probed %v, want the range's last byte %d first", p, limit-1)
	}
	if !bytes.Equal(coldBytes, warmBytes) || cr.Size != wr.Size {
		t.Fatalf("cold read served %d bytes, warm %d: not the same", len(coldBytes), len(warmBytes))
	}
}

func equalAdvice(a, b []advice) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReadaheadPrimitives checks the two kernel calls on a real file: a
// page dropped from the cache is reported as not cached, and WILLNEED
// brings it back without a read by the caller. Skipped where the file
// system keeps the pages (tmpfs).
func TestReadaheadPrimitives(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	const size = 2 << 20
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !cachedNoWait(f, size-1) {
		t.Fatal("a page just written is not reported cached")
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if cachedNoWait(f, size-1) {
		t.Skip("the file system kept the pages after FADV_DONTNEED")
	}
	adviseWillNeed(f, 0, size)
	deadline := time.Now().Add(10 * time.Second)
	for !cachedNoWait(f, size-1) {
		if time.Now().After(deadline) {
			t.Fatal("the advised range's last page is not cached after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
