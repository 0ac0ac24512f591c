package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Sizes of the batch framing.
const (
	// HeaderSize is the size of a batch header: everything up to and
	// including the RecordsCount field. An empty batch is exactly this long.
	HeaderSize = 61
	// LogOverhead is the size of the BaseOffset and Length fields, the part
	// of a batch that its Length field does not count.
	LogOverhead = 12
	// MinLengthField is the smallest valid Length field (an empty batch). A
	// zeroed (preallocated or torn) tail reads as Length 0 and is below it.
	MinLengthField = HeaderSize - LogOverhead // 49
	// Magic is the only batch format version this package reads and writes.
	Magic = 2
)

// Byte offsets of the header fields within a batch. All integers are
// big-endian.
const (
	OffBaseOffset           = 0  // int64
	OffLength               = 8  // int32: bytes after this field
	OffPartitionLeaderEpoch = 12 // int32
	OffLeaderEpoch          = OffPartitionLeaderEpoch
	OffMagic                = 16 // int8, = 2
	OffCRC                  = 17 // uint32, CRC-32C of bytes [OffAttributes, end)
	OffAttributes           = 21 // int16
	OffLastOffsetDelta      = 23 // int32
	OffBaseTimestamp        = 27 // int64
	OffMaxTimestamp         = 35 // int64
	OffProducerID           = 43 // int64
	OffProducerEpoch        = 51 // int16
	OffBaseSequence         = 53 // int32
	OffNumRecords           = 57 // int32
	OffRecords              = 61 // records section (compressed as one stream when Codec != CodecNone)
)

// Attribute bits (the Attributes field is an int16; bits 7..15 are unused
// and must be written as zero).
const (
	AttrCodecMask     int16 = 0x07 // bits 0-2: Codec
	AttrLogAppendTime int16 = 0x08 // bit 3: timestamp type, 1 = LogAppendTime (MaxTimestamp is the broker's append time)
	AttrTransactional int16 = 0x10 // bit 4: batch belongs to a transaction
	AttrControl       int16 = 0x20 // bit 5: batch holds one control record (transaction marker)
	AttrDeleteHorizon int16 = 0x40 // bit 6: KIP-534, BaseTimestamp holds the tombstone delete horizon
)

// Sentinel values Kafka uses in header fields.
const (
	NoTimestamp     int64 = -1 // BaseTimestamp/MaxTimestamp unknown
	NoProducerID    int64 = -1 // ProducerID of a non-idempotent batch
	NoProducerEpoch int16 = -1
	NoSequence      int32 = -1 // BaseSequence of a non-idempotent batch
	NoLeaderEpoch   int32 = -1 // PartitionLeaderEpoch as sent by clients
)

// Sentinel errors. Every error this package returns wraps exactly one of
// them; the server maps ErrCorrupt and ErrTruncated to CORRUPT_MESSAGE,
// ErrInvalid to INVALID_RECORD (or CORRUPT_MESSAGE for framing errors),
// ErrTooLarge to INVALID_RECORD and ErrUnsupportedCodec to
// UNSUPPORTED_COMPRESSION_TYPE.
var (
	// ErrTruncated: fewer bytes than the framing says (torn write, cut read).
	ErrTruncated = errors.New("record: truncated batch")
	// ErrCorrupt: the stored CRC-32C does not match the batch bytes.
	ErrCorrupt = errors.New("record: corrupt batch (CRC mismatch)")
	// ErrInvalid: structurally invalid (bad magic, bad length, record count
	// mismatch, bad varint or field length, undecodable compressed data, a
	// produce-policy violation in Validate).
	ErrInvalid = errors.New("record: invalid batch")
	// ErrTooLarge: decompressed records exceed the configured bound.
	ErrTooLarge = errors.New("record: decompressed batch too large")
	// ErrUnsupportedCodec: codec bits 5, 6 or 7.
	ErrUnsupportedCodec = errors.New("record: unsupported compression codec")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Batch is a view over the bytes of one record batch. A whole batch (as
// returned by ReadBatch) has len == LogOverhead + Length. The header
// accessors and setters need only the first HeaderSize bytes, so a Batch may
// also wrap just a header read from a file; they panic on a slice shorter
// than HeaderSize. CRC, record and validation methods need the whole batch.
// Batch never copies.
type Batch []byte

func (b Batch) u16(off int) uint16 { return binary.BigEndian.Uint16(b[off : off+2]) }
func (b Batch) u32(off int) uint32 { return binary.BigEndian.Uint32(b[off : off+4]) }
func (b Batch) u64(off int) uint64 { return binary.BigEndian.Uint64(b[off : off+8]) }

// BaseOffset is the offset of the batch's first offset slot.
func (b Batch) BaseOffset() int64 { return int64(b.u64(OffBaseOffset)) }

// Length is the Length field: the number of bytes after it.
func (b Batch) Length() int32 { return int32(b.u32(OffLength)) }

// Size is LogOverhead + Length: the batch's total size according to its
// header (may be negative for garbage).
func (b Batch) Size() int64 { return LogOverhead + int64(b.Length()) }

// PartitionLeaderEpoch is the leader epoch stamped by the broker on append.
func (b Batch) PartitionLeaderEpoch() int32 { return int32(b.u32(OffPartitionLeaderEpoch)) }

// Magic is the format version byte (2 for every batch this package accepts).
func (b Batch) Magic() int8 { return int8(b[OffMagic]) }

// CRC is the stored CRC-32C.
func (b Batch) CRC() uint32 { return b.u32(OffCRC) }

// Attributes is the raw attributes field.
func (b Batch) Attributes() int16 { return int16(b.u16(OffAttributes)) }

// Codec is the compression codec of the records section.
func (b Batch) Codec() Codec { return Codec(b.Attributes() & AttrCodecMask) }

// LastOffsetDelta is LastOffset - BaseOffset. It is kept when compaction
// removes the batch's last records.
func (b Batch) LastOffsetDelta() int32 { return int32(b.u32(OffLastOffsetDelta)) }

// LastOffset is BaseOffset + LastOffsetDelta.
func (b Batch) LastOffset() int64 { return b.BaseOffset() + int64(b.LastOffsetDelta()) }

// NextOffset is LastOffset + 1, the offset following the batch.
func (b Batch) NextOffset() int64 { return b.LastOffset() + 1 }

// BaseTimestamp is the timestamp records' TimestampDelta is relative to
// (Kafka's "first timestamp"). When HasDeleteHorizon, it is the delete
// horizon (KIP-534) and record deltas are relative to it all the same.
func (b Batch) BaseTimestamp() int64 { return int64(b.u64(OffBaseTimestamp)) }

// MaxTimestamp is the largest record timestamp (CreateTime) or the broker's
// append time (LogAppendTime).
func (b Batch) MaxTimestamp() int64 { return int64(b.u64(OffMaxTimestamp)) }

// ProducerID is the idempotent/transactional producer id, -1 if none.
func (b Batch) ProducerID() int64 { return int64(b.u64(OffProducerID)) }

// ProducerEpoch is the producer epoch, -1 if none.
func (b Batch) ProducerEpoch() int16 { return int16(b.u16(OffProducerEpoch)) }

// BaseSequence is the sequence number of the first record, -1 if none.
func (b Batch) BaseSequence() int32 { return int32(b.u32(OffBaseSequence)) }

// NumRecords is the RecordsCount field.
func (b Batch) NumRecords() int32 { return int32(b.u32(OffNumRecords)) }

// IsTransactional reports attribute bit 4.
func (b Batch) IsTransactional() bool { return b.Attributes()&AttrTransactional != 0 }

// IsControl reports attribute bit 5 (transaction markers).
func (b Batch) IsControl() bool { return b.Attributes()&AttrControl != 0 }

// LogAppendTime reports attribute bit 3: the timestamp type is LogAppendTime
// and every record's timestamp is MaxTimestamp.
func (b Batch) LogAppendTime() bool { return b.Attributes()&AttrLogAppendTime != 0 }

// HasDeleteHorizon reports attribute bit 6 (KIP-534).
func (b Batch) HasDeleteHorizon() bool { return b.Attributes()&AttrDeleteHorizon != 0 }

// DeleteHorizon returns the tombstone delete horizon (BaseTimestamp) when
// attribute bit 6 is set.
func (b Batch) DeleteHorizon() (int64, bool) {
	if !b.HasDeleteHorizon() {
		return NoTimestamp, false
	}
	return b.BaseTimestamp(), true
}

// RecordOffset is the absolute offset of r, a record of this batch.
func (b Batch) RecordOffset(r *Record) int64 { return b.BaseOffset() + int64(r.OffsetDelta) }

// RecordTimestamp is the timestamp of r, a record of this batch, as Kafka
// reports it: MaxTimestamp for LogAppendTime batches, otherwise
// BaseTimestamp + r.TimestampDelta.
func (b Batch) RecordTimestamp(r *Record) int64 {
	if b.LogAppendTime() {
		return b.MaxTimestamp()
	}
	return b.BaseTimestamp() + r.TimestampDelta
}

// Records returns the records section (compressed when Codec != CodecNone).
func (b Batch) Records() []byte { return b[OffRecords:] }

// SetBaseOffset stamps the base offset. The field is outside the CRC.
func (b Batch) SetBaseOffset(off int64) { binary.BigEndian.PutUint64(b[OffBaseOffset:], uint64(off)) }

// SetPartitionLeaderEpoch stamps the leader epoch. The field is outside the CRC.
func (b Batch) SetPartitionLeaderEpoch(epoch int32) {
	binary.BigEndian.PutUint32(b[OffPartitionLeaderEpoch:], uint32(epoch))
}

// SetMaxTimestamp overwrites MaxTimestamp. The field is covered by the CRC:
// call UpdateCRC afterwards.
func (b Batch) SetMaxTimestamp(ts int64) { binary.BigEndian.PutUint64(b[OffMaxTimestamp:], uint64(ts)) }

// SetAttributes overwrites the attributes. The field is covered by the CRC:
// call UpdateCRC afterwards. Changing the codec bits does not recompress.
func (b Batch) SetAttributes(attrs int16) {
	binary.BigEndian.PutUint16(b[OffAttributes:], uint16(attrs))
}

// SetBaseTimestamp overwrites BaseTimestamp. Covered by the CRC (call
// UpdateCRC); records' timestamps move with it.
func (b Batch) SetBaseTimestamp(ts int64) {
	binary.BigEndian.PutUint64(b[OffBaseTimestamp:], uint64(ts))
}

// ComputeCRC computes the CRC-32C (Castagnoli) of bytes [OffAttributes, len(b)).
func (b Batch) ComputeCRC() uint32 { return crc32.Checksum(b[OffAttributes:], castagnoli) }

// UpdateCRC recomputes the CRC over bytes [OffAttributes, len(b)) and stores it.
func (b Batch) UpdateCRC() { binary.BigEndian.PutUint32(b[OffCRC:], b.ComputeCRC()) }

// VerifyCRC checks the stored CRC against the bytes. It returns an error
// wrapping ErrCorrupt, or ErrTruncated if b is shorter than a header.
func (b Batch) VerifyCRC() error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w: %d bytes, a batch header is %d", ErrTruncated, len(b), HeaderSize)
	}
	if got, want := b.ComputeCRC(), b.CRC(); got != want {
		return fmt.Errorf("%w: batch at base offset %d: stored %#08x, computed %#08x",
			ErrCorrupt, b.BaseOffset(), want, got)
	}
	return nil
}

// PeekSize reads the framing of the batch at the start of buf and returns
// its total size (LogOverhead + Length) without needing the whole batch.
// buf must hold at least LogOverhead bytes (else ErrTruncated); the Length
// field must be at least MinLengthField (else ErrInvalid: this is how a
// zeroed tail is recognised); if buf reaches the magic byte (17 bytes) it
// must be 2 (else ErrInvalid). PeekSize does not check that buf holds the
// whole batch.
func PeekSize(buf []byte) (int, error) {
	if len(buf) < LogOverhead {
		return 0, fmt.Errorf("%w: %d bytes, batch framing is %d", ErrTruncated, len(buf), LogOverhead)
	}
	b := Batch(buf)
	length := b.Length()
	if length < MinLengthField {
		return 0, fmt.Errorf("%w: batch at base offset %d: length field %d < %d",
			ErrInvalid, b.BaseOffset(), length, MinLengthField)
	}
	if len(buf) > OffMagic && buf[OffMagic] != Magic {
		return 0, fmt.Errorf("%w: batch at base offset %d: magic %d, want %d",
			ErrInvalid, b.BaseOffset(), int8(buf[OffMagic]), Magic)
	}
	if int64(length) > int64(maxInt-LogOverhead) { // only reachable where int is 32 bits
		return 0, fmt.Errorf("%w: batch at base offset %d: length field %d too large",
			ErrInvalid, b.BaseOffset(), length)
	}
	return LogOverhead + int(length), nil
}

const maxInt = int(^uint(0) >> 1)

// ReadBatch splits the first batch off buf. It does not check the CRC. It
// returns ErrTruncated when buf has fewer than LogOverhead bytes, when it
// ends before the magic byte, or when it ends before the batch does;
// ErrInvalid when the Length field is below MinLengthField (a zeroed tail
// reads as Length 0) or the magic byte is not 2. The returned Batch has its
// capacity limited to its length; rest is buf after it.
func ReadBatch(buf []byte) (b Batch, rest []byte, err error) {
	size, err := PeekSize(buf)
	if err != nil {
		return nil, buf, err
	}
	if len(buf) <= OffMagic {
		return nil, buf, fmt.Errorf("%w: batch at base offset %d: %d bytes, magic byte at %d",
			ErrTruncated, Batch(buf).BaseOffset(), len(buf), OffMagic)
	}
	if size > len(buf) {
		return nil, buf, fmt.Errorf("%w: batch at base offset %d: %d bytes of %d",
			ErrTruncated, Batch(buf).BaseOffset(), len(buf), size)
	}
	return Batch(buf[:size:size]), buf[size:], nil
}

// checkFraming verifies that b is one whole batch: header present, magic 2,
// Length field matching len(b). Decoder methods call it so that a Batch
// built by hand cannot make them index out of range.
func (b Batch) checkFraming() error {
	if len(b) < HeaderSize {
		return fmt.Errorf("%w: %d bytes, a batch header is %d", ErrTruncated, len(b), HeaderSize)
	}
	if b[OffMagic] != Magic {
		return fmt.Errorf("%w: batch at base offset %d: magic %d, want %d",
			ErrInvalid, b.BaseOffset(), b.Magic(), Magic)
	}
	if size := b.Size(); size != int64(len(b)) {
		if size > int64(len(b)) {
			return fmt.Errorf("%w: batch at base offset %d: %d bytes of %d",
				ErrTruncated, b.BaseOffset(), len(b), size)
		}
		return fmt.Errorf("%w: batch at base offset %d: length field says %d bytes, slice has %d",
			ErrInvalid, b.BaseOffset(), size, len(b))
	}
	return nil
}
