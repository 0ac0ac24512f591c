package engine

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// TestConcurrentAppendReadRetention runs one appender, several readers at
// random offsets, and a retention/flush loop at once. Readers must always see
// whole, CRC-valid batches holding the offsets they asked for, or
// ErrOffsetOutOfRange for offsets retention removed.
func TestConcurrentAppendReadRetention(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 4096
	e.cfg.RetentionBytes = 64 << 10
	e.cfg.FileDeleteDelay = 0
	l := e.open(true, -1)
	defer l.Close()
	const batches = 3000
	var done atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer done.Store(true)
		ts := e.clk.Now().UnixMilli()
		for i := 0; i < batches; i++ {
			b := makeBatch(t, record.Codec(i%5), []testRecord{kv(2*i, ts), kv(2*i+1, ts)})
			if _, err := l.Append(b, 0); err != nil {
				errc <- err
				return
			}
			l.SetHighWatermark(l.LogEndOffset())
		}
	}()
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(seed int) {
			defer wg.Done()
			var dec record.Decoder
			n := uint64(seed)
			for !done.Load() {
				n = n*6364136223846793005 + 1442695040888963407
				start, end := l.LogStartOffset(), l.HighWatermark()
				if end <= start {
					continue
				}
				off := start + Offset(n>>33)%(end-start)
				res, err := l.Read(off, 1+int(n>>50), end)
				if errors.Is(err, ErrOffsetOutOfRange) {
					continue
				}
				if err != nil {
					errc <- err
					return
				}
				data, err := res.Bytes()
				res.Release()
				if err != nil {
					errc <- err
					return
				}
				b, _, err := record.ReadBatch(data)
				if err == nil {
					err = b.VerifyCRC()
				}
				if err == nil && (Offset(b.BaseOffset()) > off || Offset(b.LastOffset()) < off) {
					err = errors.New("first batch does not hold the requested offset")
				}
				if err == nil {
					err = dec.Validate(b)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}(r + 1)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			l.EnforceRetention()
			l.ProcessDeletes()
			if err := l.Sync(); err != nil {
				errc <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if l.LogEndOffset() != 2*batches {
		t.Fatalf("log end %d", l.LogEndOffset())
	}
	// The retention goroutine stops with the appender; the appends after
	// its last round are bounded by one more round.
	l.EnforceRetention()
	if l.Size() > e.cfg.RetentionBytes+2*e.cfg.SegmentBytes {
		t.Fatalf("retention did not bound the log: %d bytes", l.Size())
	}
}

// TestDeleteWhileProcessingDeletes deletes a log while the maintenance pass
// unlinks its delayed deletes: Delete reads the pending deletes under the
// log's lock, as ProcessDeletes writes them (the race detector caught the
// unlocked read).
func TestDeleteWhileProcessingDeletes(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 1024
	e.cfg.RetentionBytes = 2048
	l := e.open(true, -1)
	ts := e.clk.Now().UnixMilli()
	for i := 0; i < 100; i++ {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts)}), 0); err != nil {
			t.Fatal(err)
		}
	}
	l.SetHighWatermark(l.LogEndOffset())
	l.EnforceRetention()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100_000 && !stop.Load(); i++ {
			l.ProcessDeletes()
		}
	}()
	err := l.Delete()
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
}
