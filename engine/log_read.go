package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

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

// ReadResult is what Read found: whole batches, Size bytes, either as file
// ranges (Ranges, valid until Release) or, when holding files open until
// the response is sent would take too much of the open-file budget, copied
// into memory (Data). Exactly one of them holds the bytes.
type ReadResult struct {
	Ranges []FileRange
	Data   []byte
	Size   int64
	hs     []*handle
	hc     *handleCache
}

// Release lets the engine close or delete the files behind the ranges. It is
// safe to call more than once.
func (r *ReadResult) Release() {
	if r == nil {
		return
	}
	for _, h := range r.hs {
		h.release()
		r.hc.readPins.Add(-1)
	}
	r.hs = nil
}

// Bytes copies the ranges into memory (tools, tests, replication over a
// non-sendfile path). The hot fetch path uses the ranges directly.
func (r *ReadResult) Bytes() ([]byte, error) {
	if r.Data != nil {
		return append([]byte(nil), r.Data...), nil
	}
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
// caller passes the high watermark). A read that serves a segment to its
// end goes on into the following segments while their batches fit (one
// range per segment); a problem there (a segment gone, a damaged batch)
// ends the read with what it has, for the next read to meet. An offset
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
	// more: a following segment is being read for what is left of
	// maxBytes; its batches must fit whole, and a problem with it ends
	// the read with what the earlier segments gave.
	more := false
	for ; i < len(segs); i++ {
		seg := segs[i]
		h, err := seg.acquire()
		if err != nil {
			if more {
				return res, nil
			}
			// Deleted under us by retention: the offset is gone. A
			// budget refusal or an I/O error is a storage error.
			return nil, l.errorf("read", seg.base, offset, acquireErr(err))
		}
		pos, length, toEnd, found, err := seg.readRange(h, offset, maxBytes-int(res.Size), maxOffset, !more)
		if err != nil {
			h.release()
			if more {
				return res, nil // the next fetch starts there and reports it
			}
			var cb *CorruptBatchError
			if errors.As(err, &cb) {
				l.logger.Error("corrupt batch not served", "partition", l.tp.String(), "offset", int64(offset), "err", err)
			}
			return nil, l.errorf("read", seg.base, offset, err)
		}
		if !found {
			h.release()
			if more && i+1 < len(segs) {
				offset = segs[i+1].base
			}
			continue
		}
		if length == 0 {
			h.release()
			return res, nil
		}
		if l.handles.pinsHeavy() {
			if more {
				h.release()
				return res, nil
			}
			// Readers already hold half the budget until their responses
			// are sent (a fetch over many partitions): copy instead of
			// holding this segment open too.
			data := make([]byte, length)
			_, err := h.file.ReadAt(data, pos)
			h.release()
			if err != nil {
				return nil, l.errorf("read", seg.base, offset, fmt.Errorf("%w: %w", ErrStorage, err))
			}
			res.Data, res.Size = data, length
			return res, nil
		}
		res.Ranges = append(res.Ranges, FileRange{File: h.file.OSFile(), Position: pos, Length: length})
		res.Size += length
		res.hs = append(res.hs, h)
		res.hc = l.handles
		l.handles.readPins.Add(1)
		// Served to the segment's end with room left: go on with the
		// next segment's batches (Kafka stops at the segment's end; a
		// log of small segments, e.g. compacted ones, then takes a round
		// trip per segment to replay).
		if !toEnd || res.Size >= int64(maxBytes) || i+1 >= len(segs) {
			return res, nil
		}
		more = true
		offset = segs[i+1].base
	}
	return res, nil
}

// readRange finds the batch holding target (the first whose last offset is
// >= target) and measures the whole batches from it that end below
// maxOffset and fit maxBytes (the first counts even if larger when
// firstWhole). found is false when no batch of the segment reaches target;
// toEnd says the batches served run to the segment's end.
//
// Every batch header it passes is checked (batchHeaderProblem): the one
// found, those served, and the one after the last served, so a base offset
// damaged forwards is caught by its successor. The walk to target starts
// one offset-index entry before the entry for target (or at the segment's
// start), so the batch before the first one served is always seen too and
// a base offset damaged backwards is caught. A damaged batch is reported as
// a *CorruptBatchError and nothing is served. An index entry that leads
// the walk into the middle of a batch costs a rescan from the segment's
// start, never a wrong answer. Inactive segments are walked through their
// read-only mapping, the active one with pread.
func (s *segment) readRange(h *handle, target Offset, maxBytes int, maxOffset Offset, firstWhole bool) (pos, length int64, toEnd, found bool, err error) {
	end := s.size.Load()
	limit := Offset(s.next.Load()) // every offset of the bytes up to end is below it (the writer stores next first)
	var sc *batchScanner
	if !s.isActive() {
		if data, merr := h.mapped(end); merr == nil && int64(len(data)) >= end {
			sc = newMappedScanner(data, end)
		}
	}
	if sc == nil {
		sc = newBatchScanner(h.file, 0, end)
	}
	defer sc.close()

	from := int64(0)
	if eo, p := h.oidx.Lookup(int64(target)); p > 0 {
		if _, pp := h.oidx.Lookup(eo - 1); pp < p {
			from = int64(pp)
		}
	}
	var prevLast Offset
	pos, prevLast, found, err = s.walkTo(sc, from, target, limit)
	if err != nil && from > 0 {
		s.log.logger.Warn("offset index leads into a batch; scanning the segment from its start", "segment", s.String(), "target", target, "err", err)
		pos, prevLast, found, err = s.walkTo(sc, 0, target, limit)
	}
	if err != nil || !found {
		return 0, 0, false, found, err
	}

	sc.seek(pos)
	stop, before := pos, pos // ends of the last and of the second-to-last batch taken
	for {
		_, hdr, err := s.checkedNext(sc, prevLast, limit)
		if err == io.EOF {
			break
		}
		if err != nil {
			// The damage may be in the batch before this one (a base offset
			// moved forwards, a length that led here): serve neither.
			var cb *CorruptBatchError
			if errors.As(err, &cb) && before > pos {
				return pos, before - pos, false, true, nil
			}
			return 0, 0, false, false, err
		}
		b := record.Batch(hdr)
		if Offset(b.LastOffset()) >= maxOffset || ((stop > pos || !firstWhole) && sc.pos-pos > int64(maxBytes)) {
			break // not served; checked as the successor of the last served batch
		}
		prevLast = Offset(b.LastOffset())
		before, stop = stop, sc.pos
	}
	return pos, stop - pos, stop == end, true, nil
}

// walkTo checks batch headers from the batch boundary from up to the first
// batch whose last offset is >= target, returning its position and the last
// offset of the batch before it.
func (s *segment) walkTo(sc *batchScanner, from int64, target, limit Offset) (int64, Offset, bool, error) {
	sc.seek(from)
	prevLast := s.base - 1
	for {
		p, hdr, err := s.checkedNext(sc, prevLast, limit)
		if err == io.EOF {
			return sc.end, prevLast, false, nil
		}
		if err != nil {
			return 0, 0, false, err
		}
		last := Offset(record.Batch(hdr).LastOffset())
		if last >= target {
			return p, prevLast, true, nil
		}
		prevLast = last
	}
}

// checkedNext is sc.next with batchHeaderProblem applied. Framing problems
// and offsets that cannot be right are *CorruptBatchError; a failed read is
// ErrStorage.
func (s *segment) checkedNext(sc *batchScanner, prevLast, limit Offset) (int64, []byte, error) {
	pos := sc.pos
	if pos >= sc.end {
		return pos, nil, io.EOF
	}
	hdr, err := sc.window(pos, record.HeaderSize)
	if err != nil && !errors.Is(err, record.ErrTruncated) {
		return pos, nil, fmt.Errorf("%w: %s at position %d: %w", ErrStorage, s, pos, err)
	}
	if problem := batchHeaderProblem(hdr, pos, sc.end, s.base, prevLast, limit); problem != "" {
		return pos, nil, &CorruptBatchError{Segment: s.String(), Position: pos, Reason: problem}
	}
	sc.pos = pos + record.LogOverhead + int64(int32(binary.BigEndian.Uint32(hdr[8:12])))
	return pos, hdr, nil
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
		if errors.Is(err, errSegmentGone) {
			continue
		}
		if err != nil {
			return -1, -1, false, l.errorf("offset for timestamp", seg.base, -1, storageErr(err))
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
// the first record carrying it (ListOffsets -3), as Apache Kafka answers
// since 3.8: the record's own offset, found by decoding the batch the
// segment's time bookkeeping points at, not that batch's last offset.
// (-1, -1) when the log is empty; (ts, -1) when that record is below the
// log start offset or not below the high watermark. A segment whose
// largest timestamp cannot be read is skipped (and logged).
func (l *Log) MaxTimestamp() (int64, Offset, error) {
	l.mu.Lock()
	var seg *segment
	best := int64(-1)
	for _, s := range l.segments() {
		ts, _, err := s.largestTimestamp()
		if err != nil {
			l.logger.Warn("largest timestamp unreadable", "segment", s.String(), "err", err)
			continue
		}
		if ts > best {
			best, seg = ts, s
		}
	}
	l.mu.Unlock()
	if seg == nil {
		return -1, -1, nil
	}
	h, err := seg.acquire()
	if errors.Is(err, errSegmentGone) {
		return best, -1, nil // deleted meanwhile (retention, a clean swapped in)
	}
	if err != nil {
		return -1, -1, l.errorf("max timestamp", seg.base, -1, storageErr(err))
	}
	defer h.release()
	off, _, found, err := seg.offsetForTimestamp(h, best, l.LogStartOffset(), l.HighWatermark())
	if err != nil {
		return -1, -1, l.errorf("max timestamp", seg.base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	if !found {
		return best, -1, nil
	}
	return best, off, nil
}
