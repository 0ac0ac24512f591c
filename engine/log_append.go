package engine

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/kvlog/kvlog/engine/record"
)

// AppendResult reports where an append landed.
type AppendResult struct {
	BaseOffset     Offset
	LastOffset     Offset
	LogAppendTime  int64 // -1 unless the log uses LogAppendTime
	LogStartOffset Offset
	// Duplicate is set when an idempotent producer re-sent a batch already in
	// the log; the offsets are the original ones and nothing was appended.
	Duplicate bool
}

// Append validates one magic-2 batch as received from a producer, assigns it
// offsets from the log end, stamps leaderEpoch, and writes it to the active
// segment. batch is modified in place (BaseOffset, PartitionLeaderEpoch and,
// for LogAppendTime logs, attributes, MaxTimestamp and CRC).
//
// Validation (CRC, structure, every record) runs before the log's lock is
// taken, so producers appending to one partition from several goroutines
// validate in parallel and serialise only on the write. Append is Validate
// then AppendValidated.
func (l *Log) Append(batch []byte, leaderEpoch int32) (AppendResult, error) {
	v, err := l.Validate(batch)
	if err != nil {
		return AppendResult{}, err
	}
	return l.AppendValidated(v, leaderEpoch)
}

// ValidatedBatch is a producer's batch that passed Validate, with the
// configuration it was checked against.
type ValidatedBatch struct {
	b   record.Batch
	cfg Config
}

// Validate applies Append's checks to batch without taking any lock of
// the log (it may correct the batch's MaxTimestamp and CRC in place): a
// caller holding a lock of its own around the append (a partition leader
// checking its role) validates first, so that concurrent producers of one
// partition validate in parallel, then appends with AppendValidated.
func (l *Log) Validate(batch []byte) (ValidatedBatch, error) {
	cfg := l.Config()
	b, err := l.validate(batch, cfg)
	if err != nil {
		return ValidatedBatch{}, err
	}
	return ValidatedBatch{b: b, cfg: cfg}, nil
}

// AppendValidated appends a batch Validate accepted, as Append does (the
// batch is checked again when the log's configuration changed since).
func (l *Log) AppendValidated(v ValidatedBatch, leaderEpoch int32) (AppendResult, error) {
	b, cfg := v.b, v.cfg
	if b == nil {
		return AppendResult{}, l.errorf("append", -1, -1, fmt.Errorf("%w: batch not validated", ErrInvalidRecord))
	}
	var err error
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return AppendResult{}, l.errorf("append", -1, -1, ErrClosed)
	}
	if err := l.ensureLoaded(); err != nil {
		return AppendResult{}, err
	}
	if c := l.Config(); c.Compact != cfg.Compact || c.MaxMessageBytes != cfg.MaxMessageBytes || c.SegmentBytes != cfg.SegmentBytes {
		// The rules changed while validating (a config update): check again.
		cfg = c
		if b, err = l.validate(b, cfg); err != nil {
			return AppendResult{}, err
		}
	}
	res := AppendResult{LogAppendTime: -1}
	if dup, ok, err := l.producers.check(b); err != nil {
		return AppendResult{}, l.errorf("append", -1, l.LogEndOffset(), err)
	} else if ok {
		res.BaseOffset, res.LastOffset, res.Duplicate = dup.firstOffset, dup.lastOffset, true
		res.LogStartOffset = l.LogStartOffset()
		return res, nil
	}
	base := l.LogEndOffset()
	b.SetBaseOffset(int64(base))
	b.SetPartitionLeaderEpoch(leaderEpoch)
	if cfg.LogAppendTime {
		now := l.clk.Now().UnixMilli()
		b.SetAttributes(b.Attributes() | record.AttrLogAppendTime)
		b.SetMaxTimestamp(now)
		b.UpdateCRC()
		res.LogAppendTime = now
	}
	if err := l.appendBatches(b, cfg, base, Offset(b.LastOffset()), b.MaxTimestamp(), 1); err != nil {
		return AppendResult{}, err
	}
	if leaderEpoch >= 0 && l.epochs != nil {
		if latest, ok := l.epochs.LatestEpoch(); !ok || leaderEpoch > latest {
			_ = l.epochs.AssignDeferred(leaderEpoch, int64(base))
		}
	}
	l.producers.update(b, l.clk.Now().UnixMilli())
	l.snapAt = -1
	if b.IsTransactional() {
		l.publishOngoing()
	}
	res.BaseOffset, res.LastOffset = base, Offset(b.LastOffset())
	res.LogStartOffset = l.LogStartOffset()
	return res, nil
}

// decoders reuse record decoders (and their decompression buffers) across
// appends running on different goroutines.
var decoders = sync.Pool{New: func() any { return new(record.Decoder) }}

// validate applies Kafka's LogValidator checks to a producer's batch. It
// needs no lock: it reads only the batch and cfg.
func (l *Log) validate(batch []byte, cfg Config) (record.Batch, error) {
	leo := l.LogEndOffset()
	b, rest, err := record.ReadBatch(batch)
	if err != nil {
		if errors.Is(err, record.ErrTruncated) {
			return nil, l.errorf("append", -1, leo, fmt.Errorf("%w: %w", ErrCorruptRecord, err))
		}
		return nil, l.errorf("append", -1, leo, fmt.Errorf("%w: %w", ErrInvalidRecord, err))
	}
	if len(rest) != 0 {
		return nil, l.errorf("append", -1, leo, fmt.Errorf("%w: %d bytes after the batch (one batch per partition)", ErrInvalidRecord, len(rest)))
	}
	if len(b) > cfg.MaxMessageBytes {
		return nil, l.errorf("append", -1, leo, fmt.Errorf("%w: %d > %d", ErrMessageTooLarge, len(b), cfg.MaxMessageBytes))
	}
	if int64(len(b)) > cfg.SegmentBytes {
		return nil, l.errorf("append", -1, leo, fmt.Errorf("%w: %d > segment.bytes %d", ErrRecordListTooLarge, len(b), cfg.SegmentBytes))
	}
	if int64(leo)+int64(b.LastOffsetDelta()) >= math.MaxInt64 {
		return nil, l.errorf("append", -1, leo, fmt.Errorf("%w: offset overflow", ErrInvalidRecord))
	}
	// One pass: CRC, header rules (count > 0, lastOffsetDelta+1 == count,
	// no control batch, sequence with producer id), every record's
	// structure, and keys required on compacted topics. ValidateProduce
	// walks the records with a tight loop (no per-record decoding or
	// callback) and re-walks the slow way only to explain a refusal; a null
	// key on a compacted topic is an ErrInvalid naming the record. The same
	// walk gathers the records' timestamp range.
	dec := decoders.Get().(*record.Decoder)
	span, err := dec.ValidateProduceSpan(b, cfg.Compact)
	decoders.Put(dec)
	if err != nil {
		switch {
		case errors.Is(err, record.ErrUnsupportedCodec):
			err = fmt.Errorf("%w: %w", ErrUnsupportedCompression, err)
		case errors.Is(err, record.ErrCorrupt), errors.Is(err, record.ErrTruncated):
			err = fmt.Errorf("%w: %w", ErrCorruptRecord, err)
		default:
			err = fmt.Errorf("%w: %w", ErrInvalidRecord, err)
		}
		return nil, l.errorf("append", -1, leo, err)
	}
	if !cfg.LogAppendTime {
		if err := checkTimestamps(span, cfg, l.clk.Now().UnixMilli()); err != nil {
			return nil, l.errorf("append", -1, leo, err)
		}
		if b.MaxTimestamp() != span.Max {
			// Kafka's leader stores the MaxTimestamp the records give,
			// whatever the producer wrote: the time index, time-based
			// retention and ListOffsets by time rely on it.
			b.SetMaxTimestamp(span.Max)
			b.UpdateCRC()
		}
	}
	return b, nil
}

// checkTimestamps applies message.timestamp.before.max.ms and
// message.timestamp.after.max.ms to every record of a CreateTime batch
// (through the batch's smallest and largest record timestamps; records
// without a timestamp are not checked), as Kafka's leader does.
func checkTimestamps(span record.TimeSpan, cfg Config, now int64) error {
	before, after := cfg.TimestampBeforeMaxMs, cfg.TimestampAfterMaxMs
	if before >= 0 && before != math.MaxInt64 && span.Min != record.NoTimestamp && span.Min < now-before {
		return fmt.Errorf("%w: record timestamp %d is more than message.timestamp.before.max.ms=%d before the broker's time %d", ErrInvalidTimestamp, span.Min, before, now)
	}
	if after >= 0 && after != math.MaxInt64 && span.Max != record.NoTimestamp && span.Max > now+after {
		return fmt.Errorf("%w: record timestamp %d is more than message.timestamp.after.max.ms=%d after the broker's time %d", ErrInvalidTimestamp, span.Max, after, now)
	}
	return nil
}

// AppendReplicated appends batches that already carry their offsets (a
// follower copying its leader, or tests). They must start at the log end and
// be contiguous; CRCs are verified, nothing is rewritten.
func (l *Log) AppendReplicated(batches []byte) (AppendResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return AppendResult{}, l.errorf("append replicated", -1, -1, ErrClosed)
	}
	if err := l.ensureLoaded(); err != nil {
		return AppendResult{}, err
	}
	cfg := l.Config()
	res := AppendResult{LogAppendTime: -1, BaseOffset: -1, LastOffset: -1}
	buf := batches
	for len(buf) > 0 {
		b, rest, err := record.ReadBatch(buf)
		if err != nil {
			return res, l.errorf("append replicated", -1, l.LogEndOffset(), fmt.Errorf("%w: %w", ErrCorruptRecord, err))
		}
		if err := b.VerifyCRC(); err != nil {
			return res, l.errorf("append replicated", -1, l.LogEndOffset(), fmt.Errorf("%w: %w", ErrCorruptRecord, err))
		}
		leo := l.LogEndOffset()
		if Offset(b.BaseOffset()) < leo {
			return res, l.errorf("append replicated", -1, leo, fmt.Errorf("%w: batch base offset %d below the log end", ErrInvalidRecord, b.BaseOffset()))
		}
		if int64(len(b)) > cfg.SegmentBytes {
			return res, l.errorf("append replicated", -1, leo, fmt.Errorf("%w: %d bytes", ErrRecordListTooLarge, len(b)))
		}
		if err := l.appendBatches(b, cfg, Offset(b.BaseOffset()), Offset(b.LastOffset()), b.MaxTimestamp(), int64(b.NumRecords())); err != nil {
			return res, err
		}
		if e := b.PartitionLeaderEpoch(); e >= 0 && l.epochs != nil {
			if latest, ok := l.epochs.LatestEpoch(); !ok || e > latest {
				_ = l.epochs.AssignDeferred(e, b.BaseOffset())
			}
		}
		switch {
		case b.IsControl() && b.NumRecords() == 0:
			// An emptied control batch (Kafka's cleaner keeps one after its
			// transaction is gone): it ends nothing.
		case b.IsControl() && b.ProducerID() >= 0:
			typ, err := ControlType(b)
			if err != nil {
				return res, l.errorf("append replicated", -1, Offset(b.BaseOffset()), err)
			}
			if err := l.applyMarker(b, typ == ControlAbort, true, l.clk.Now().UnixMilli()); err != nil {
				return res, err
			}
		case b.IsControl():
		default:
			l.producers.update(b, l.clk.Now().UnixMilli())
			if b.IsTransactional() {
				l.publishOngoing()
			}
		}
		l.snapAt = -1
		if res.BaseOffset < 0 {
			res.BaseOffset = Offset(b.BaseOffset())
		}
		res.LastOffset = Offset(b.LastOffset())
		buf = rest
	}
	res.LogStartOffset = l.LogStartOffset()
	return res, nil
}

// appendBatches writes already-validated bytes holding offsets [first, last]
// to the active segment, rolling first when needed, then publishes the new end.
// Caller holds l.mu.
func (l *Log) appendBatches(b record.Batch, cfg Config, first, last Offset, maxTs int64, count int64) error {
	seg := l.active()
	h, err := seg.acquire()
	if err != nil {
		return l.errorf("append", seg.base, first, storageErr(err))
	}
	if l.shouldRoll(seg, h, cfg, int64(len(b)), maxTs, last) {
		h.release()
		if seg, err = l.roll(first); err != nil {
			return err
		}
		if h, err = seg.acquire(); err != nil {
			return l.errorf("append", seg.base, first, storageErr(err))
		}
	}
	defer h.release()
	pos := seg.size.Load()
	if n, err := h.file.WriteAt(b, pos); err != nil {
		// A full file system may have taken part of the batch: cut it off
		// (shrinking needs no space) so the file ends at the last whole
		// batch again. Nothing was published; the producer sees
		// KAFKA_STORAGE_ERROR and may retry.
		if n > 0 {
			if terr := h.file.Truncate(pos); terr != nil {
				err = errors.Join(err, terr)
			}
		}
		return l.errorf("append", seg.base, first, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	if seg.bytesSinceIndex > cfg.IndexIntervalBytes {
		_ = h.oidx.Append(int64(last), uint32(pos))
		_ = h.tidx.MaybeAppend(seg.maxTs.Load(), seg.offsetOfMaxTs.Load(), false)
		seg.bytesSinceIndex = 0
	}
	seg.bytesSinceIndex += len(b)
	if seg.firstBatchTs < 0 {
		seg.firstBatchTs = maxTs
	}
	if maxTs > seg.maxTs.Load() {
		seg.setMaxTs(maxTs, last)
	}
	// next before size: a reader that sees the new bytes (size) must see an
	// end offset covering them, or it would take the new batch for one
	// running past the segment's end (readRange's header checks).
	seg.next.Store(int64(last) + 1)
	seg.size.Store(pos + int64(len(b)))
	l.captureForJournal(b, l.leo.Load(), int64(last)+1)
	l.leo.Store(int64(last) + 1)
	l.appendedBytes.Add(int64(len(b)))
	l.lastAppend.Store(l.clk.Now().UnixNano())
	l.unflushed += count
	if invariants {
		l.checkAppendInvariants(h)
	}
	l.scheduleMaintenance(l.appendDeadline(cfg))
	if l.unflushed >= cfg.flushEvery() {
		return l.flushLocked()
	}
	return nil
}
