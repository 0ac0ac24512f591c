package engine

import (
	"bytes"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// TestReadAcrossSegments: a read that serves a segment to its end goes on
// into the following segments while whole batches fit in maxBytes (one
// range per segment), never past maxOffset; the first batch is still
// served whole when larger than maxBytes, and later ones only if they fit.
func TestReadAcrossSegments(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 1024
	l := e.open(true, -1)
	defer l.Close()
	ts := e.clk.Now().UnixMilli()
	var batches [][]byte // as stored, base offsets assigned
	for i := range 60 {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(2*i, ts), kv(2*i+1, ts)}), 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.ReadBatches(0, l.LogEndOffset(), func(b record.Batch) error {
		batches = append(batches, append([]byte(nil), b...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(batches) != 60 {
		t.Fatalf("read back %d batches, want 60", len(batches))
	}
	segs := l.Segments()
	if len(segs) < 6 {
		t.Fatalf("%d segments: the test needs several", len(segs))
	}
	l.SetHighWatermark(l.LogEndOffset())
	bsize := len(batches[0])

	read := func(off Offset, maxBytes int, maxOffset Offset) ([]byte, int) {
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
		if int64(len(b)) != r.Size {
			t.Fatalf("Size %d, bytes %d", r.Size, len(b))
		}
		return b, len(r.Ranges)
	}
	concat := func(from, to int) []byte { return bytes.Join(batches[from:to], nil) }

	// Everything, from every segment.
	got, ranges := read(0, 1<<20, l.LogEndOffset())
	if !bytes.Equal(got, concat(0, 60)) {
		t.Fatalf("whole log: %d bytes, want %d", len(got), len(concat(0, 60)))
	}
	if ranges != len(segs) {
		t.Fatalf("whole log in %d ranges, want one per segment (%d)", ranges, len(segs))
	}
	// Cut by maxBytes in a later segment: whole batches only.
	budget := 17*bsize + bsize/2
	end, n := 3, 0
	for end < len(batches) && n+len(batches[end]) <= budget {
		n += len(batches[end])
		end++
	}
	got, _ = read(2*3, budget, l.LogEndOffset()) // offset 6 is batch 3
	if !bytes.Equal(got, concat(3, end)) || end < 15 {
		t.Fatalf("%d bytes of budget from batch 3: got %d bytes, want batches 3-%d (%d bytes)", budget, len(got), end-1, n)
	}
	// Cut by maxOffset (the high watermark) in a later segment.
	got, _ = read(0, 1<<20, 2*41)
	if !bytes.Equal(got, concat(0, 41)) {
		t.Fatalf("up to offset 82: got %d bytes, want batches 0-40", len(got))
	}
	// The first batch whole, even over the limit; nothing after it.
	got, _ = read(2*7, 1, l.LogEndOffset())
	if !bytes.Equal(got, batches[7]) {
		t.Fatalf("maxBytes 1: got %d bytes, want batch 7 alone", len(got))
	}
	// From the last batch of a segment: the next segment follows.
	last := int(segs[1].BaseOffset/2) - 1 // the last batch of segment 0
	got, ranges = read(Offset(2*last), len(concat(last, last+3)), l.LogEndOffset())
	if !bytes.Equal(got, concat(last, last+3)) || ranges != 2 {
		t.Fatalf("from segment 0's last batch: %d bytes in %d ranges, want batches %d-%d in 2", len(got), ranges, last, last+2)
	}
}
