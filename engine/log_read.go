package engine

import (
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/kvlog/kvlog/engine/record"
)

// FileRange is a byte range of a segment file, always whole batches. The
// server sends it with sendfile using Position explicitly (never the file's
// shared offset).
type FileRange struct {
	File     *os.File
	Position int64
	Length   int64
}

// ReadResult is what Read found. Its ranges stay valid until Release.
type ReadResult struct {
	Ranges []FileRange
	Size   int64
	hs     []*handle
}

// Release lets the engine close or delete the files behind the ranges. It is
// safe to call more than once.
func (r *ReadResult) Release() {
	if r == nil {
		return
	}
	for _, h := range r.hs {
		h.release()
	}
	r.hs = nil
}

// Bytes copies the ranges into memory (tools, tests, replication over a
// non-sendfile path). The hot fetch path uses the ranges directly.
func (r *ReadResult) Bytes() ([]byte, error) {
	out := make([]byte, 0, r.Size)
	for _, fr := range r.Ranges {
		n := len(out)
		out = out[:n+int(fr.Length)]
		if _, err := fr.File.ReadAt(out[n:], fr.Position); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Read returns the batches from the one containing offset onward, whole
// batches only, at most maxBytes (except that the first batch is returned
// whole even if larger) and never a batch holding offsets >= maxOffset (the
// caller passes the high watermark). Reads stop at a segment's end. An offset
// below the log start or above the log end is ErrOffsetOutOfRange.
func (l *Log) Read(offset Offset, maxBytes int, maxOffset Offset) (*ReadResult, error) {
	if l.closed.Load() {
		return nil, l.errorf("read", -1, offset, ErrClosed)
	}
	leo := l.LogEndOffset()
	ls := l.LogStartOffset()
	if offset < ls || offset > leo {
		return nil, l.errorf("read", -1, offset, fmt.Errorf("%w: log start %d, log end %d", ErrOffsetOutOfRange, ls, leo))
	}
	if maxOffset > leo {
		maxOffset = leo
	}
	res := &ReadResult{}
	if offset >= maxOffset {
		return res, nil
	}
	segs := l.segments()
	i, ok := floorSegment(segs, offset)
	if !ok {
		// Retention removed the segment after the log start was read.
		return nil, l.errorf("read", -1, offset, fmt.Errorf("%w: below the first segment %d", ErrOffsetOutOfRange, segs[0].base))
	}
	for ; i < len(segs); i++ {
		seg := segs[i]
		h, err := seg.acquire()
		if err != nil {
			// Deleted under us by retention: the offset is gone.
			return nil, l.errorf("read", seg.base, offset, fmt.Errorf("%w: %w", ErrOffsetOutOfRange, err))
		}
		end := seg.size.Load()
		sc := newBatchScanner(h.file, 0, end)
		pos, found, err := seg.translateWith(h, sc, offset)
		if err != nil {
			sc.close()
			h.release()
			return nil, l.errorf("read", seg.base, offset, fmt.Errorf("%w: %w", ErrStorage, err))
		}
		if !found {
			sc.close()
			h.release()
			continue
		}
		length, err := seg.span(h, sc, pos, maxBytes, maxOffset)
		sc.close()
		if err != nil {
			h.release()
			return nil, l.errorf("read", seg.base, offset, fmt.Errorf("%w: %w", ErrStorage, err))
		}
		if length == 0 {
			h.release()
			return res, nil
		}
		res.Ranges = append(res.Ranges, FileRange{File: h.file.OSFile(), Position: pos, Length: length})
		res.Size = length
		res.hs = append(res.hs, h)
		return res, nil
	}
	return res, nil
}

// span measures whole batches from start while they end below maxOffset and
// fit maxBytes (the first batch always counts). Both ends are found through
// the offset index (whose entries are batch starts) plus a short header scan,
// so a read costs a few small preads whatever the batch size, not one per
// batch. A misleading index entry falls back to a scan from start.
func (s *segment) span(h *handle, sc *batchScanner, start int64, maxBytes int, maxOffset Offset) (int64, error) {
	limit := sc.end
	if Offset(s.next.Load()) > maxOffset {
		// The segment holds offsets at or above maxOffset (the high
		// watermark): stop at the batch containing it.
		p, found, err := s.translateWith(h, sc, maxOffset)
		if err != nil {
			return 0, err
		}
		if found && p < limit {
			limit = p
		}
	}
	if limit <= start {
		return 0, nil
	}
	if limit-start <= int64(maxBytes) {
		return limit - start, nil
	}
	sc.end = limit
	target := start + int64(maxBytes)
	from := max(start, indexedBoundaryAtOrBelow(h, target))
	end, err := lastBoundaryWithin(sc, from, target)
	if err != nil && from > start {
		end, err = lastBoundaryWithin(sc, start, target)
	}
	if err != nil {
		return 0, err
	}
	if end == start { // the first batch alone exceeds maxBytes: send it whole
		sc.seek(start)
		if _, _, err := sc.next(); err != nil {
			return 0, err
		}
		end = sc.pos
	}
	return end - start, nil
}

// indexedBoundaryAtOrBelow returns the largest batch start recorded in the
// offset index at or below pos (0 when none).
func indexedBoundaryAtOrBelow(h *handle, pos int64) int64 {
	n := h.oidx.Entries()
	i := sort.Search(n, func(i int) bool { _, p := h.oidx.Entry(i); return int64(p) > pos })
	if i == 0 {
		return 0
	}
	_, p := h.oidx.Entry(i - 1)
	return int64(p)
}

// lastBoundaryWithin scans whole batches from the boundary from and returns
// the end of the last one that ends at or before target (from if none).
func lastBoundaryWithin(sc *batchScanner, from, target int64) (int64, error) {
	sc.seek(from)
	end := from
	for {
		_, _, err := sc.next()
		if err == io.EOF {
			return end, nil
		}
		if err != nil {
			return 0, err
		}
		if sc.pos > target {
			return end, nil
		}
		end = sc.pos
	}
}

// ReadBatches calls fn with each whole batch (copied into a reused buffer)
// from the one containing offset up to maxOffset. For tools and tests.
func (l *Log) ReadBatches(offset, maxOffset Offset, fn func(b record.Batch) error) error {
	for offset < maxOffset {
		r, err := l.Read(offset, 1<<20, maxOffset)
		if err != nil {
			return err
		}
		data, err := r.Bytes()
		r.Release()
		if err != nil {
			return err
		}
		if len(data) == 0 {
			return nil
		}
		for len(data) > 0 {
			b, rest, err := record.ReadBatch(data)
			if err != nil {
				return err
			}
			if err := fn(b); err != nil {
				return err
			}
			offset = Offset(b.LastOffset()) + 1
			data = rest
		}
	}
	return nil
}

// OffsetForTimestamp finds the first record with timestamp >= ts: the first
// segment whose largest timestamp reaches ts, its time index, then a scan of
// batch headers and of the matching batch's records.
func (l *Log) OffsetForTimestamp(ts int64) (Offset, int64, bool, error) {
	hw := l.HighWatermark()
	for _, seg := range l.segments() {
		maxTs, _, err := seg.largestTimestamp()
		if err != nil {
			return -1, -1, false, l.errorf("offset for timestamp", seg.base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
		if maxTs < ts {
			continue
		}
		h, err := seg.acquire()
		if err != nil {
			continue
		}
		off, rts, found, err := seg.offsetForTimestamp(h, ts, l.LogStartOffset(), hw)
		h.release()
		if err != nil {
			return -1, -1, false, l.errorf("offset for timestamp", seg.base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
		if found {
			return off, rts, true, nil
		}
	}
	return -1, -1, false, nil
}

func (s *segment) offsetForTimestamp(h *handle, ts int64, logStart, hw Offset) (Offset, int64, bool, error) {
	_, hint := h.tidx.Lookup(ts)
	if Offset(hint) < logStart {
		hint = int64(logStart)
	}
	_, pos := h.oidx.Lookup(hint)
	end := s.size.Load()
	sc := newBatchScanner(h.file, int64(pos), end)
	defer sc.close()
	for {
		p, hdr, err := sc.next()
		if err == io.EOF {
			return -1, -1, false, nil
		}
		if err != nil {
			return -1, -1, false, err
		}
		b := record.Batch(hdr)
		if Offset(b.LastOffset()) >= hw {
			return -1, -1, false, nil
		}
		if b.MaxTimestamp() < ts || Offset(b.LastOffset()) < logStart {
			continue
		}
		whole := make([]byte, sc.pos-p)
		if _, err := h.file.ReadAt(whole, p); err != nil {
			return -1, -1, false, err
		}
		wb := record.Batch(whole)
		if wb.LogAppendTime() {
			o := wb.BaseOffset()
			if Offset(o) < logStart {
				o = int64(logStart)
			}
			return Offset(o), wb.MaxTimestamp(), true, nil
		}
		var dec record.Decoder
		found, fo, fts := false, int64(-1), int64(-1)
		err = dec.Records(wb, func(r *record.Record) error {
			o := wb.BaseOffset() + int64(r.OffsetDelta)
			t := wb.BaseTimestamp() + r.TimestampDelta
			if !found && t >= ts && Offset(o) >= logStart {
				found, fo, fts = true, o, t
			}
			return nil
		})
		if err != nil {
			return -1, -1, false, err
		}
		if found {
			return Offset(fo), fts, true, nil
		}
	}
}

// MaxTimestamp returns the largest timestamp in the log and the offset of
// the batch carrying it (ListOffsets -3); (-1, -1) when the log is empty. A
// segment whose largest timestamp cannot be read is skipped (and logged).
func (l *Log) MaxTimestamp() (int64, Offset) {
	l.mu.Lock()
	defer l.mu.Unlock()
	best, at := int64(-1), Offset(-1)
	for _, s := range l.segments() {
		ts, off, err := s.largestTimestamp()
		if err != nil {
			l.logger.Warn("largest timestamp unreadable", "segment", s.String(), "err", err)
			continue
		}
		if ts > best {
			best, at = ts, off
		}
	}
	return best, at
}
