package record

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Builder encodes one record batch at a time: set the header fields, Add
// records, Build, Reset, repeat. The cleaner uses it to re-encode filtered
// batches, tests to make batches. The zero value is ready to use; a Builder
// is not safe for concurrent use.
//
// How each header field of the built batch is obtained:
//
//   - BaseOffset, PartitionLeaderEpoch, BaseTimestamp, ProducerID,
//     ProducerEpoch, BaseSequence: written as set. Records carry deltas
//     relative to BaseOffset and BaseTimestamp, so set those before
//     computing deltas (AddAt does it for you). To stamp a KIP-534 delete
//     horizon, set AttrDeleteHorizon in Attributes and BaseTimestamp to the
//     horizon, and express every record's TimestampDelta relative to it.
//   - Attributes: written as set (codec bits select the compression; the
//     other bits are flags the builder does not interpret), except that a
//     batch with no records is written uncompressed with the codec bits
//     cleared, as Kafka writes empty batches: there are no record bytes to
//     compress and consumers then need no decompressor for them.
//   - LastOffsetDelta: max(LastOffsetDelta, largest OffsetDelta added). So -1
//     (or 0) derives it from the records, and the cleaner sets the original
//     batch's value to keep LastOffset (and so the producer's last sequence)
//     when it drops trailing records. With no records it is written as set.
//   - MaxTimestamp: with AttrLogAppendTime, or with no records, written as
//     set (the broker's append time survives compaction; see HeaderFrom for
//     emptied batches). Otherwise
//     max(MaxTimestamp, BaseTimestamp + largest TimestampDelta added): so
//     NoTimestamp (-1) or 0 derives it from the records, as Kafka recomputes
//     it for CreateTime batches it rewrites.
//   - Length, Magic (2), CRC, NumRecords: computed.
type Builder struct {
	BaseOffset           int64
	PartitionLeaderEpoch int32
	Attributes           int16
	LastOffsetDelta      int32
	BaseTimestamp        int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32

	records    []byte // encoded, uncompressed records
	n          int64  // records added
	maxOffset  int32  // largest OffsetDelta added
	maxTSDelta int64  // largest TimestampDelta added
	err        error  // sticky error from Add
	// srcMaxTS is the MaxTimestamp of the batch HeaderFrom copied, used when
	// the rebuilt batch ends up empty and MaxTimestamp is still NoTimestamp.
	srcMaxTS    int64
	hasSrcMaxTS bool
}

// HeaderFrom copies b's header into the builder's fields the way Kafka's
// cleaner keeps them when it rewrites a batch: BaseOffset, leader epoch,
// attributes, LastOffsetDelta (so LastOffset is kept), BaseTimestamp,
// producer id/epoch and base sequence. MaxTimestamp is kept for
// LogAppendTime batches and set to NoTimestamp for CreateTime batches, so
// that Build derives it from the retained records; if no record is added,
// Build writes b's MaxTimestamp (an emptied batch keeps it, as in Kafka)
// unless MaxTimestamp was changed from NoTimestamp. Records added afterwards
// use b's deltas unchanged. It does not touch records already added.
func (bl *Builder) HeaderFrom(b Batch) {
	bl.srcMaxTS, bl.hasSrcMaxTS = b.MaxTimestamp(), true
	bl.BaseOffset = b.BaseOffset()
	bl.PartitionLeaderEpoch = b.PartitionLeaderEpoch()
	bl.Attributes = b.Attributes()
	bl.LastOffsetDelta = b.LastOffsetDelta()
	bl.BaseTimestamp = b.BaseTimestamp()
	bl.MaxTimestamp = NoTimestamp
	if b.LogAppendTime() {
		bl.MaxTimestamp = b.MaxTimestamp()
	}
	bl.ProducerID = b.ProducerID()
	bl.ProducerEpoch = b.ProducerEpoch()
	bl.BaseSequence = b.BaseSequence()
}

// Add encodes r into the batch. r.OffsetDelta and r.TimestampDelta are
// taken as they are, relative to BaseOffset and BaseTimestamp. Add copies
// r's bytes: r may alias a Decoder's buffer or be reused right after. A nil
// Key or Value is written as null (-1), a non-nil empty one as length 0; a
// nil header Value as null, a header Key always as a string (nil = "").
// Records should be added in increasing OffsetDelta order (Build does not
// reorder or check).
func (bl *Builder) Add(r Record) {
	if bl.err != nil {
		return
	}
	size := 1 + sizeVarint(r.TimestampDelta) + sizeVarint(int64(r.OffsetDelta)) +
		sizeNullableBytes(r.Key) + sizeNullableBytes(r.Value) + sizeVarint(int64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		size += sizeVarint(int64(len(h.Key))) + len(h.Key) + sizeNullableBytes(h.Value)
	}
	if size > math.MaxInt32 {
		bl.err = fmt.Errorf("%w: record at offset delta %d is %d bytes", ErrInvalid, r.OffsetDelta, size)
		return
	}
	b := bl.records
	b = appendVarint(b, int64(size))
	b = append(b, byte(r.Attributes))
	b = appendVarint(b, r.TimestampDelta)
	b = appendVarint(b, int64(r.OffsetDelta))
	b = appendNullableBytes(b, r.Key)
	b = appendNullableBytes(b, r.Value)
	b = appendVarint(b, int64(len(r.Headers)))
	for i := range r.Headers {
		h := &r.Headers[i]
		b = appendVarint(b, int64(len(h.Key)))
		b = append(b, h.Key...)
		b = appendNullableBytes(b, h.Value)
	}
	bl.records = b
	if bl.n == 0 || r.OffsetDelta > bl.maxOffset {
		bl.maxOffset = r.OffsetDelta
	}
	if bl.n == 0 || r.TimestampDelta > bl.maxTSDelta {
		bl.maxTSDelta = r.TimestampDelta
	}
	bl.n++
}

// AddAt adds r at the absolute offset and timestamp given, computing its
// OffsetDelta and TimestampDelta from the builder's current BaseOffset and
// BaseTimestamp (r's own deltas are ignored). Useful when re-basing records,
// e.g. when the cleaner stamps a delete horizon into BaseTimestamp.
func (bl *Builder) AddAt(offset, timestamp int64, r Record) {
	d := offset - bl.BaseOffset
	if d < 0 || d > math.MaxInt32 {
		if bl.err == nil {
			bl.err = fmt.Errorf("%w: offset %d outside int32 deltas from base offset %d", ErrInvalid, offset, bl.BaseOffset)
		}
		return
	}
	r.OffsetDelta = int32(d)
	r.TimestampDelta = timestamp - bl.BaseTimestamp
	bl.Add(r)
}

// Len is the number of records added since the last Reset.
func (bl *Builder) Len() int { return int(bl.n) }

// UncompressedSize is the size the batch would have without compression:
// HeaderSize plus the encoded records.
func (bl *Builder) UncompressedSize() int { return HeaderSize + len(bl.records) }

// Build appends the finished batch to dst and returns the extended slice:
// the header (fields as documented on Builder), then the records,
// compressed as one stream when the codec bits ask for it, Length and CRC
// set. It supports zero records (a 61-byte empty batch). Build does not
// reset the builder; calling it twice yields the same batch. Errors: the
// codec is unknown (ErrUnsupportedCodec), the batch would exceed the int32
// Length field or NumRecords (ErrInvalid), or Add failed earlier.
func (bl *Builder) Build(dst []byte) ([]byte, error) {
	if bl.err != nil {
		return dst, bl.err
	}
	if bl.n > math.MaxInt32 {
		return dst, fmt.Errorf("%w: %d records in one batch", ErrInvalid, bl.n)
	}
	attrs := bl.Attributes
	codec := Codec(attrs & AttrCodecMask)
	if bl.n == 0 {
		attrs &^= AttrCodecMask
		codec = CodecNone
	}
	if !codec.Valid() {
		return dst, fmt.Errorf("%w: attributes %#04x", ErrUnsupportedCodec, uint16(attrs))
	}
	lastDelta := bl.LastOffsetDelta
	maxTS := bl.MaxTimestamp
	if bl.n == 0 && bl.hasSrcMaxTS && maxTS == NoTimestamp {
		maxTS = bl.srcMaxTS
	}
	if bl.n > 0 {
		lastDelta = max(lastDelta, bl.maxOffset)
		if attrs&AttrLogAppendTime == 0 {
			maxTS = max(maxTS, bl.BaseTimestamp+bl.maxTSDelta)
		}
	}

	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	var err error
	if dst, err = Compress(codec, dst, bl.records); err != nil {
		return dst[:start], err
	}
	length := len(dst) - start - LogOverhead
	if length > math.MaxInt32 {
		return dst[:start], fmt.Errorf("%w: batch of %d bytes exceeds the int32 length field", ErrInvalid, length+LogOverhead)
	}
	h := dst[start:]
	be := binary.BigEndian
	be.PutUint64(h[OffBaseOffset:], uint64(bl.BaseOffset))
	be.PutUint32(h[OffLength:], uint32(length))
	be.PutUint32(h[OffPartitionLeaderEpoch:], uint32(bl.PartitionLeaderEpoch))
	h[OffMagic] = Magic
	be.PutUint16(h[OffAttributes:], uint16(attrs))
	be.PutUint32(h[OffLastOffsetDelta:], uint32(lastDelta))
	be.PutUint64(h[OffBaseTimestamp:], uint64(bl.BaseTimestamp))
	be.PutUint64(h[OffMaxTimestamp:], uint64(maxTS))
	be.PutUint64(h[OffProducerID:], uint64(bl.ProducerID))
	be.PutUint16(h[OffProducerEpoch:], uint16(bl.ProducerEpoch))
	be.PutUint32(h[OffBaseSequence:], uint32(bl.BaseSequence))
	be.PutUint32(h[OffNumRecords:], uint32(bl.n))
	Batch(h).UpdateCRC()
	return dst, nil
}

// Reset clears the records and every header field (to their zero values),
// keeping the record buffer's memory.
func (bl *Builder) Reset() {
	*bl = Builder{records: bl.records[:0]}
}

func sizeNullableBytes(b []byte) int {
	if b == nil {
		return 1 // varint -1
	}
	return sizeVarint(int64(len(b))) + len(b)
}

func appendNullableBytes(dst, b []byte) []byte {
	if b == nil {
		return appendVarint(dst, -1)
	}
	dst = appendVarint(dst, int64(len(b)))
	return append(dst, b...)
}
