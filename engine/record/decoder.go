package record

import (
	"errors"
	"fmt"
)

// Record is one record of a batch. Absolute values: offset = BaseOffset +
// OffsetDelta, timestamp = BaseTimestamp + TimestampDelta (see
// Batch.RecordOffset and Batch.RecordTimestamp).
//
// Records handed out by Decoder alias the batch or the decoder's buffer and
// are valid only during the callback; Builder.Add copies.
type Record struct {
	// Attributes is the record attributes byte. Kafka defines no bits; it is
	// carried through unchanged.
	Attributes int8
	// TimestampDelta is relative to the batch's BaseTimestamp.
	TimestampDelta int64
	// OffsetDelta is relative to the batch's BaseOffset.
	OffsetDelta int32
	// Key is nil for a null key (length -1); an empty key is a non-nil,
	// zero-length slice.
	Key []byte
	// Value is nil for a null value (length -1): with a key, a tombstone.
	// An empty value is a non-nil, zero-length slice.
	Value []byte
	// Headers is nil when the record has none.
	Headers []Header
}

// Header is one record header. Kafka header keys are non-null strings; the
// key is kept as bytes so that decoding does not allocate (a nil Key is
// written as the empty string).
type Header struct {
	Key []byte
	// Value is nil for a null value (length -1).
	Value []byte
}

// IsTombstone reports a keyed record with a null value.
func (r *Record) IsTombstone() bool { return r.Key != nil && r.Value == nil }

// Mode selects the checks ValidateEach applies.
type Mode uint8

const (
	// ModeProduce is what a leader requires of a batch a client produces
	// (Kafka's LogValidator, as far as it can be checked without state):
	// everything ModeStored checks, plus NumRecords > 0,
	// LastOffsetDelta == NumRecords-1, record i has OffsetDelta == i (kvlog
	// appends batches as they are and cannot reassign offsets inside them,
	// so it rejects what Kafka would rewrite), no control flag (clients may
	// not write control records), no delete-horizon flag (only the cleaner
	// sets it), and BaseSequence >= 0 when ProducerID >= 0.
	ModeProduce Mode = iota
	// ModeStored is what every batch of a valid log satisfies, including
	// batches the cleaner has emptied or thinned and control batches: the
	// CRC matches, the codec is known, NumRecords >= 0, LastOffsetDelta >= 0,
	// the records section decodes to exactly NumRecords records with nothing
	// left over, within the decompression bound, and record OffsetDeltas
	// strictly increase within [0, LastOffsetDelta]. Use it where batches are
	// taken verbatim from a leader, a log or a test.
	ModeStored
	// modeRecords: Records iteration — framing and record decoding only.
	modeRecords
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case ModeProduce:
		return "produce"
	case ModeStored:
		return "stored"
	}
	return "records"
}

// Decoder iterates and validates batches, reusing its buffers (the
// decompressed records section and the headers slice) from one batch to the
// next. The zero value is ready to use. A Decoder is not safe for concurrent
// use, and its methods must not be called from within their own callback.
//
// A Decoder keeps the largest buffer it has needed (at most about
// MaxDecompressed); drop it to release the memory.
type Decoder struct {
	// MaxDecompressed bounds the decompressed size of one batch's records
	// section; 0 means DefaultMaxDecompressed (64 MiB). Larger batches fail
	// with ErrTooLarge. Uncompressed batches are not limited by it.
	MaxDecompressed int

	buf  []byte
	hdrs []Header
	rec  Record
}

func (d *Decoder) limit() int {
	if d.MaxDecompressed <= 0 {
		return DefaultMaxDecompressed
	}
	return d.MaxDecompressed
}

// Records calls fn for each record of b, in order. It checks the framing
// (b must be exactly one batch), the codec and that the records section
// holds exactly NumRecords well-formed records, but not the CRC (use
// VerifyCRC or a Validate method for that). Uncompressed batches are iterated
// without allocating: the record's slices alias b. Compressed batches are
// decompressed once into the decoder's buffer. r and everything it points to
// are valid only until fn returns. An error from fn stops the iteration and
// is returned as is; other errors wrap a package sentinel. Records already
// passed to fn stay passed when a later record turns out malformed.
func (d *Decoder) Records(b Batch, fn func(r *Record) error) error {
	if err := b.checkFraming(); err != nil {
		return err
	}
	return d.iterate(b, modeRecords, fn)
}

// Validate is ValidateProduce(b, false): the check a leader applies to a
// produced batch before appending it. It accepts and refuses exactly what
// ValidateEach(b, ModeProduce, nil) does, with the same errors.
func (d *Decoder) Validate(b Batch) error { return d.ValidateProduce(b, false) }

// ValidateStored is ValidateEach(b, ModeStored, nil): the deep check of a
// batch read from a log or replicated from a leader.
func (d *Decoder) ValidateStored(b Batch) error { return d.ValidateEach(b, ModeStored, nil) }

// ValidateProduce is the produce-path check: ValidateEach(b, ModeProduce,
// fn) where fn, when requireKeys is set, refuses a record with a null key
// (Kafka's rule for compacted topics). It accepts and refuses exactly the
// same batches, but walks the records with a tight loop that only checks
// their structure (see validProduceRecords) instead of decoding each into a
// Record and calling back. When that loop refuses, the batch is walked
// again the slow way, so that the error is the one ValidateEach returns
// (for a null key: an ErrInvalid naming the record). It does not allocate
// for uncompressed batches.
func (d *Decoder) ValidateProduce(b Batch, requireKeys bool) error {
	_, err := d.ValidateProduceSpan(b, requireKeys)
	return err
}

// ValidateProduceSpan is ValidateProduce that also returns the range of
// the batch's record timestamps, read on the same walk: what a leader
// needs to check Kafka's timestamp bounds on every record and to correct
// a MaxTimestamp that does not match the records.
func (d *Decoder) ValidateProduceSpan(b Batch, requireKeys bool) (TimeSpan, error) {
	none := TimeSpan{Min: NoTimestamp, Max: NoTimestamp}
	if err := b.checkHeader(ModeProduce); err != nil {
		return none, err
	}
	p, err := d.section(b)
	if err != nil {
		return none, err
	}
	base := b.BaseTimestamp()
	if s, ok := validProduceRecords(p, b.NumRecords(), requireKeys, newDeltaSpan(base)); ok {
		return s.span(), nil
	}
	s := newDeltaSpan(base)
	fn := func(r *Record) error {
		if requireKeys && r.Key == nil {
			return errNullKey
		}
		s = s.add(r.TimestampDelta)
		return nil
	}
	err = d.walk(b, p, ModeProduce, fn)
	if err == errNullKey {
		return none, fmt.Errorf("%w: batch at base offset %d: record %d has a null key where keys are required",
			ErrInvalid, b.BaseOffset(), d.rec.OffsetDelta)
	}
	if err != nil {
		return none, err
	}
	// Reaching here means the fast loop refused a batch the slow walk
	// accepts; the slow walk is the reference, so the batch is accepted.
	// FuzzValidateProduce and TestValidateProduceMatches check that this
	// does not happen.
	return s.span(), nil
}

// errNullKey is the slow walk's verdict on a null key; ValidateProduceSpan
// replaces it with a wrapped ErrInvalid, so it never reaches a caller.
var errNullKey = errors.New("record: null key")

// ValidateEach checks b as m says (framing, CRC, header policy, every
// record) and, when fn is not nil, calls it for each record once that record
// has passed its checks, so that a caller can add its own per-record policy
// (e.g. keys required on compacted topics) without decoding twice. fn has
// the same contract as in Records. The error wraps ErrTruncated, ErrCorrupt,
// ErrInvalid, ErrTooLarge or ErrUnsupportedCodec, or is fn's.
//
// ValidateProduce is the faster equivalent for ModeProduce when the only
// per-record policy is requiring keys.
func (d *Decoder) ValidateEach(b Batch, m Mode, fn func(r *Record) error) error {
	if err := b.checkHeader(m); err != nil {
		return err
	}
	return d.iterate(b, m, fn)
}

// checkHeader is the part of ValidateEach that reads only the batch
// header: framing, CRC, record counts and, for ModeProduce, the header
// fields a client may not set.
func (b Batch) checkHeader(m Mode) error {
	if err := b.checkFraming(); err != nil {
		return err
	}
	if err := b.VerifyCRC(); err != nil {
		return err
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: batch at base offset %d: "+format,
			append([]any{ErrInvalid, b.BaseOffset()}, args...)...)
	}
	n, last := b.NumRecords(), b.LastOffsetDelta()
	if n < 0 {
		return invalid("negative record count %d", n)
	}
	if last < 0 {
		return invalid("negative last offset delta %d", last)
	}
	if m == ModeProduce {
		switch {
		case n == 0:
			return invalid("no records")
		case last != n-1:
			return invalid("last offset delta %d with %d records", last, n)
		case b.IsControl():
			return invalid("control batch from a client")
		case b.HasDeleteHorizon():
			return invalid("delete-horizon flag set by a client")
		case b.ProducerID() >= 0 && b.BaseSequence() < 0:
			return invalid("producer id %d with base sequence %d", b.ProducerID(), b.BaseSequence())
		}
	} else if n > 0 && int64(last) < int64(n)-1 {
		return invalid("last offset delta %d with %d records", last, n)
	}
	return nil
}

// iterate decodes the records section of b (framing already checked).
func (d *Decoder) iterate(b Batch, m Mode, fn func(r *Record) error) error {
	p, err := d.section(b)
	if err != nil {
		return err
	}
	return d.walk(b, p, m, fn)
}

// section checks b's codec and record count and returns its records
// section, decompressed into the decoder's buffer when b is compressed
// (framing already checked). An empty section is returned as is when b
// declares no records.
func (d *Decoder) section(b Batch) ([]byte, error) {
	codec := b.Codec()
	if !codec.Valid() {
		return nil, fmt.Errorf("%w: batch at base offset %d: attributes %#04x",
			ErrUnsupportedCodec, b.BaseOffset(), uint16(b.Attributes()))
	}
	n := b.NumRecords()
	if n < 0 {
		return nil, fmt.Errorf("%w: batch at base offset %d: negative record count %d",
			ErrInvalid, b.BaseOffset(), n)
	}
	p := b[OffRecords:]
	if len(p) == 0 {
		if n == 0 {
			return p, nil
		}
		return nil, fmt.Errorf("%w: batch at base offset %d: %d records declared, records section empty",
			ErrInvalid, b.BaseOffset(), n)
	}
	if codec != CodecNone {
		buf, err := Decompress(codec, d.buf[:0], p, d.limit())
		if cap(buf) > cap(d.buf) {
			d.buf = buf[:0]
		}
		if err != nil {
			return nil, fmt.Errorf("%w (batch at base offset %d, %d bytes compressed)", err, b.BaseOffset(), len(p))
		}
		p = buf
	}
	return p, nil
}

// walk decodes the records section p of b (as returned by section), checks
// each record as m says and calls fn, if not nil, for each.
func (d *Decoder) walk(b Batch, p []byte, m Mode, fn func(r *Record) error) error {
	codec := b.Codec()
	n := b.NumRecords()
	last := b.LastOffsetDelta()
	prev := int32(-1)
	r := &d.rec
	i := 0
	for k := int32(0); k < n; k++ {
		if i >= len(p) {
			return fmt.Errorf("%w: batch at base offset %d: %d records declared, records section (%d bytes) holds %d",
				ErrInvalid, b.BaseOffset(), n, len(p), k)
		}
		next, why := d.readRecord(p, i, r)
		if why != "" {
			return fmt.Errorf("%w: batch at base offset %d: record %d at byte %d of the %s records section: %s",
				ErrInvalid, b.BaseOffset(), k, i, codec, why)
		}
		switch m {
		case ModeProduce:
			if r.OffsetDelta != k {
				return fmt.Errorf("%w: batch at base offset %d: record %d has offset delta %d",
					ErrInvalid, b.BaseOffset(), k, r.OffsetDelta)
			}
		case ModeStored:
			if r.OffsetDelta <= prev || r.OffsetDelta > last {
				return fmt.Errorf("%w: batch at base offset %d: record %d has offset delta %d after %d (last offset delta %d)",
					ErrInvalid, b.BaseOffset(), k, r.OffsetDelta, prev, last)
			}
		}
		prev = r.OffsetDelta
		i = next
		if fn != nil {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	if i != len(p) {
		return fmt.Errorf("%w: batch at base offset %d: %d bytes after the %d declared records (%s records section of %d bytes)",
			ErrInvalid, b.BaseOffset(), len(p)-i, n, codec, len(p))
	}
	return nil
}

// readRecord decodes the record at p[i:] into r. It returns the index after
// the record, or a non-empty reason when the record is malformed. It never
// reads outside p and never allocates except to grow the reused headers
// slice.
func (d *Decoder) readRecord(p []byte, i int, r *Record) (next int, why string) {
	length, j := readVarint(p, i)
	if j < 0 {
		return 0, "bad length varint"
	}
	if length < 0 {
		return 0, fmt.Sprintf("negative length %d", length)
	}
	if int(length) > len(p)-j {
		return 0, fmt.Sprintf("length %d runs %d bytes past the end", length, int(length)-(len(p)-j))
	}
	end := j + int(length)
	body := p[:end]
	if j >= end {
		return 0, "empty record body"
	}
	r.Attributes = int8(body[j])
	j++
	if r.TimestampDelta, j = readVarlong(body, j); j < 0 {
		return 0, "bad timestamp delta varlong"
	}
	if r.OffsetDelta, j = readVarint(body, j); j < 0 {
		return 0, "bad offset delta varint"
	}
	if r.Key, j = readNullableBytes(body, j); j < 0 {
		return 0, "bad key length"
	}
	if r.Value, j = readNullableBytes(body, j); j < 0 {
		return 0, "bad value length"
	}
	count, j := readVarint(body, j)
	if j < 0 {
		return 0, "bad header count varint"
	}
	// Each header takes at least two bytes (two one-byte lengths).
	if count < 0 || int(count) > (end-j)/2 {
		return 0, fmt.Sprintf("header count %d with %d bytes left", count, end-j)
	}
	r.Headers = nil
	if count > 0 {
		hs := d.hdrs[:0]
		for h := int32(0); h < count; h++ {
			var kl int32
			if kl, j = readVarint(body, j); j < 0 {
				return 0, fmt.Sprintf("header %d: bad key length varint", h)
			}
			if kl < 0 || int(kl) > end-j {
				return 0, fmt.Sprintf("header %d: key length %d with %d bytes left", h, kl, end-j)
			}
			key := body[j : j+int(kl) : j+int(kl)]
			j += int(kl)
			var val []byte
			if val, j = readNullableBytes(body, j); j < 0 {
				return 0, fmt.Sprintf("header %d: bad value length", h)
			}
			hs = append(hs, Header{Key: key, Value: val})
		}
		d.hdrs = hs
		r.Headers = hs
	}
	if j != end {
		return 0, fmt.Sprintf("%d bytes left over in a body of %d", end-j, length)
	}
	return end, ""
}

// readNullableBytes reads a varint length (-1 = null) and that many bytes.
// The result aliases b (capacity limited to its length); next < 0 on a bad
// varint, a length below -1 or one past the end of b.
func readNullableBytes(b []byte, i int) (v []byte, next int) {
	l, j := readVarint(b, i)
	if j < 0 {
		return nil, -1
	}
	if l == -1 {
		return nil, j
	}
	if l < -1 || int(l) > len(b)-j {
		return nil, -1
	}
	return b[j : j+int(l) : j+int(l)], j + int(l)
}

// Keys calls fn with the offset delta, key and tombstone flag (null value)
// of each record of b, in order, reading only what it needs of each record
// (not its headers): the key index's walk over a batch already validated
// (Records and the Validate methods check everything). It still never
// reads outside the records section: a malformed record is an ErrInvalid.
// key aliases b or the decoder's buffer and is valid only during fn.
func (d *Decoder) Keys(b Batch, fn func(offsetDelta int32, key []byte, tombstone bool)) error {
	if err := b.checkFraming(); err != nil {
		return err
	}
	p, err := d.section(b)
	if err != nil {
		return err
	}
	n := b.NumRecords()
	i := 0
	for k := int32(0); k < n; k++ {
		delta, key, tomb, end := recordKey(p, i)
		if end < 0 {
			return fmt.Errorf("%w: batch at base offset %d: record %d at byte %d of the records section is malformed", ErrInvalid, b.BaseOffset(), k, i)
		}
		if key != nil {
			fn(delta, key, tomb)
		}
		i = end
	}
	return nil
}

// varint decodes the zigzag varint at b[i:], one- and two-byte ones
// inline (uvarint12).
func varint(b []byte, i int) (int32, int) {
	if x, j := uvarint12(b, i); j >= 0 {
		return int32(x>>1) ^ -int32(x&1), j
	}
	return readVarint(b, i)
}

// recordKey reads the offset delta, key and null-value flag of the record
// at p[i:] and returns the index after it (end < 0: malformed).
func recordKey(p []byte, i int) (delta int32, key []byte, tomb bool, end int) {
	length, j := varint(p, i)
	if j < 0 || length <= 0 || int(length) > len(p)-j {
		return 0, nil, false, -1
	}
	end = j + int(length)
	body := p[:end]
	j++ // attributes
	if _, k := uvarint12(body, j); k >= 0 {
		j = k
	} else if _, j = readVarlong(body, j); j < 0 {
		return 0, nil, false, -1
	}
	if delta, j = varint(body, j); j < 0 {
		return 0, nil, false, -1
	}
	kl, j := varint(body, j)
	switch {
	case j < 0 || kl < -1 || int(kl) > len(body)-j:
		return 0, nil, false, -1
	case kl >= 0:
		key = body[j : j+int(kl) : j+int(kl)]
		j += int(kl)
	}
	vl, j := varint(body, j)
	if j < 0 {
		return 0, nil, false, -1
	}
	return delta, key, vl == -1, end
}

// Section returns b's records section, decompressed into the decoder's
// buffer when b is compressed (valid until the decoder's next use); the
// codec and record count are checked, as for Records.
func (d *Decoder) Section(b Batch) ([]byte, error) {
	if err := b.checkFraming(); err != nil {
		return nil, err
	}
	return d.section(b)
}

// RecordAt finds the record with offset delta delta in p, the records
// section of a batch of n records (from Section), skipping the others by
// their lengths without decoding them, and decodes it into r (aliasing p
// and the decoder's buffers). found is false when no record has it.
func (d *Decoder) RecordAt(p []byte, n int32, delta int32, r *Record) (found bool, err error) {
	i := 0
	for k := int32(0); k < n; k++ {
		length, j := varint(p, i)
		if j < 0 || length <= 0 || int(length) > len(p)-j {
			return false, fmt.Errorf("%w: record %d at byte %d: bad length", ErrInvalid, k, i)
		}
		end := j + int(length)
		body := p[:end]
		j++ // attributes
		if _, k := uvarint12(body, j); k >= 0 {
			j = k
		} else if _, j = readVarlong(body, j); j < 0 {
			return false, fmt.Errorf("%w: record %d: bad timestamp delta", ErrInvalid, k)
		}
		od, j := varint(body, j)
		if j < 0 {
			return false, fmt.Errorf("%w: record %d: bad offset delta", ErrInvalid, k)
		}
		switch {
		case od == delta:
			if _, why := d.readRecord(p, i, r); why != "" {
				return false, fmt.Errorf("%w: record %d: %s", ErrInvalid, k, why)
			}
			return true, nil
		case od > delta:
			return false, nil
		}
		i = end
	}
	return false, nil
}
