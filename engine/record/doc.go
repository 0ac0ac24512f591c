// Package record owns the byte format of Kafka record batches v2 (magic 2):
// the 61-byte batch header, the varint-encoded records that follow it, and
// the compression framing of the records section (gzip, snappy raw or xerial,
// LZ4 frame, zstd). Batches on disk are byte-identical to batches on the wire,
// so this package is the single place that reads or writes those bytes for
// the storage engine (validation on append, recovery scan), the log cleaner
// (filter and re-encode batches) and tests. FORMAT.md beside this file
// documents every byte.
//
// The package is split by verb:
//
//   - batch.go: constants, field offsets, the [Batch] view (accessors, in-place
//     setters, CRC), [ReadBatch] and [PeekSize];
//   - decoder.go: [Decoder] — record iteration and validation with reusable
//     buffers;
//   - validate_fast.go: the record walk of [Decoder.ValidateProduce], a
//     structure-only loop equivalent to the decoding walk;
//   - builder.go: [Builder] — encoding batches;
//   - codec.go: [Codec], [Compress] and [Decompress] with pooled
//     compressors and decompressors;
//   - varint.go: Kafka's zigzag varint/varlong.
//
// # Ownership and aliasing
//
// [Batch] is a view: it never copies. [Decoder.Records] hands the callback a
// *[Record] whose slices alias either the batch bytes (uncompressed batches)
// or the decoder's decompression buffer (compressed batches); they are valid
// only until the callback returns. [Builder.Add] copies what it is given, so
// a record received from Records may be passed straight to Add.
//
// # Errors
//
// Every error returned by ReadBatch, PeekSize, VerifyCRC, Decompress and the
// Decoder methods wraps exactly one of the sentinels [ErrTruncated],
// [ErrCorrupt], [ErrInvalid], [ErrTooLarge] or [ErrUnsupportedCodec] (test
// with errors.Is); its message starts with the sentinel's ("record: ...")
// and names the batch's base offset and the byte or record position. Errors
// returned by a caller's callback are passed through unwrapped. Compress and
// Builder.Build fail only on an unknown codec (ErrUnsupportedCodec), a
// batch too large for its int32 fields (ErrInvalid), or an internal
// compressor failure (no sentinel; not expected to happen).
//
// # Concurrency
//
// [Batch] methods that only read are safe for concurrent use; setters are
// not. A [Decoder] or [Builder] must not be used by two goroutines at once;
// keep one per goroutine (they are cheap and reuse their buffers).
// [Compress] and [Decompress] are safe for concurrent use.
package record
