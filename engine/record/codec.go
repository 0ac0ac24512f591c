package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codec is the compression codec in attribute bits 0-2.
type Codec int8

// The codecs Kafka defines. Values 5-7 are invalid.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLZ4    Codec = 3
	CodecZstd   Codec = 4
)

// String returns Kafka's name for the codec (compression.type values).
func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return "codec(" + strconv.Itoa(int(c)) + ")"
}

// Valid reports whether c is one of the five codecs.
func (c Codec) Valid() bool { return c >= CodecNone && c <= CodecZstd }

// DefaultMaxDecompressed bounds the decompressed size of one batch's records
// when no other bound is given (Decoder.MaxDecompressed == 0, Decompress
// with limit <= 0).
const DefaultMaxDecompressed = 64 << 20

// Compression parameters. They match what Kafka's own producer writes by
// default where that matters for interoperability:
//
//   - gzip: one gzip member, deflate level 6 (Kafka's default);
//   - snappy: one raw snappy block (as librdkafka and franz-go single-shot
//     write). Every Kafka consumer accepts raw blocks: snappy-java falls back
//     to raw when the xerial magic is absent;
//   - lz4: one LZ4 frame (not Kafka's pre-0.10 broken-checksum variant),
//     64 KiB independent blocks, content checksum;
//   - zstd: one zstd frame at the default level (3), with a content checksum
//     and the content size in the frame header.
const (
	gzipLevel = 6
)

// Compress appends the compressed form of src to dst and returns the
// extended slice. CodecNone appends src unchanged. An unknown codec returns
// an error wrapping ErrUnsupportedCodec.
func Compress(c Codec, dst, src []byte) ([]byte, error) {
	switch c {
	case CodecNone:
		return append(dst, src...), nil
	case CodecGzip:
		w := getGzipWriter(dst)
		defer putGzipWriter(w)
		if _, err := w.zw.Write(src); err != nil {
			return dst, fmt.Errorf("record: gzip compress: %w", err)
		}
		if err := w.zw.Close(); err != nil {
			return dst, fmt.Errorf("record: gzip compress: %w", err)
		}
		return w.out.b, nil
	case CodecSnappy:
		n := s2.MaxEncodedLen(len(src))
		if n < 0 {
			return dst, fmt.Errorf("%w: snappy: %d bytes too large to compress", ErrInvalid, len(src))
		}
		start := len(dst)
		dst = grow(dst, n)
		enc := s2.EncodeSnappy(dst[start:start+n], src)
		return dst[:start+len(enc)], nil
	case CodecLZ4:
		w := getLZ4Writer(dst)
		defer putLZ4Writer(w)
		if _, err := w.zw.Write(src); err != nil {
			return dst, fmt.Errorf("record: lz4 compress: %w", err)
		}
		if err := w.zw.Close(); err != nil {
			return dst, fmt.Errorf("record: lz4 compress: %w", err)
		}
		return w.out.b, nil
	case CodecZstd:
		enc := getZstdEncoder()
		defer zstdEncoders.Put(enc)
		return enc.EncodeAll(src, dst), nil
	}
	return dst, fmt.Errorf("%w: %v", ErrUnsupportedCodec, c)
}

// Decompress appends the decompressed form of src to dst and returns the
// extended slice. At most limit bytes are appended (limit <= 0 means
// DefaultMaxDecompressed); beyond that it returns an error wrapping
// ErrTooLarge. Memory use stays within about limit plus one compression
// block, except that zstd may decode up to 8 MiB (zstdWindowFloor) before
// noticing a smaller limit is exceeded; zstd frames whose window exceeds
// max(limit, 8 MiB) are refused with ErrTooLarge. Snappy input may be a raw
// block or xerial-framed (Java's snappy-java stream format), told apart by
// the xerial magic. Malformed
// input returns an error wrapping ErrInvalid and the decompressor's error;
// an unknown codec ErrUnsupportedCodec. CodecNone appends src unchanged
// (subject to limit). On error the returned slice is dst, possibly with
// garbage appended beyond its length.
func Decompress(c Codec, dst, src []byte, limit int) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultMaxDecompressed
	}
	switch c {
	case CodecNone:
		if len(src) > limit {
			return dst, tooLarge(c, len(src), limit)
		}
		return append(dst, src...), nil
	case CodecGzip:
		r := getGzipReader()
		defer putGzipReader(r)
		r.src.Reset(src)
		if err := r.reset(); err != nil {
			return dst, fmt.Errorf("%w: gzip: %w", ErrInvalid, err)
		}
		return readAllLimited(c, r.zr, dst, len(src), limit)
	case CodecSnappy:
		return decodeSnappy(dst, src, limit)
	case CodecLZ4:
		r := getLZ4Reader()
		defer putLZ4Reader(r)
		r.src.Reset(src)
		r.zr.Reset(&r.src)
		return readAllLimited(c, r.zr, dst, len(src), limit)
	case CodecZstd:
		d, err := getZstdDecoder(limit)
		if err != nil {
			return dst, fmt.Errorf("record: zstd decoder: %w", err)
		}
		defer zstdDecoders.Put(d)
		start := len(dst)
		out, err := d.dec.DecodeAll(src, dst)
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
				return dst, fmt.Errorf("%w: zstd: %w (limit %d bytes)", ErrTooLarge, err, limit)
			}
			return dst, fmt.Errorf("%w: zstd: %w", ErrInvalid, err)
		}
		if len(out)-start > limit { // the decoder's own bound is at least zstdWindowFloor
			return dst, tooLarge(c, len(out)-start, limit)
		}
		return out, nil
	}
	return dst, fmt.Errorf("%w: %v", ErrUnsupportedCodec, c)
}

func tooLarge(c Codec, n, limit int) error {
	return fmt.Errorf("%w: %v: more than %d bytes (at least %d)", ErrTooLarge, c, limit, n)
}

// grow returns dst with room for n more bytes (len unchanged).
func grow(dst []byte, n int) []byte { return slices.Grow(dst, n) }

// readAllLimited appends everything r yields to dst, failing with
// ErrTooLarge once more than limit bytes were produced. srcLen sizes the
// first allocation.
func readAllLimited(c Codec, r io.Reader, dst []byte, srcLen, limit int) ([]byte, error) {
	start := len(dst)
	// Guess 4x the compressed size for the first read, at least 4 KiB, never
	// more than limit+1 (one byte past the limit proves the overflow).
	want := min(max(4*srcLen, 4096), limit+1)
	for stalls := 0; ; {
		if len(dst) == cap(dst) {
			have := len(dst) - start
			if have > limit {
				return dst[:start], tooLarge(c, have, limit)
			}
			more := min(max(have, want), limit+1-have)
			dst = grow(dst, more)
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if len(dst)-start > limit {
			return dst[:start], tooLarge(c, len(dst)-start, limit)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst[:start], fmt.Errorf("%w: %v: %w", ErrInvalid, c, err)
		}
		if n == 0 {
			if stalls++; stalls > 100 { // as bufio does: never spin on a reader that makes no progress
				return dst[:start], fmt.Errorf("%w: %v: %w", ErrInvalid, c, io.ErrNoProgress)
			}
		} else {
			stalls = 0
		}
	}
}

// xerialMagic starts snappy-java's stream format: magic (8 bytes), version
// (4), compatible version (4), then chunks of big-endian uint32 size +
// raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderLen = 16

// noRoom is a non-nil empty destination; nothing is ever written to it.
var noRoom = []byte{}

// decodeSnappy sizes the output first (raw snappy blocks carry their
// decoded length up front, xerial chunks are walked), so the limit is
// enforced before anything is allocated, then decodes with
// xerial.DecodeCapped into exactly that much room.
func decodeSnappy(dst, src []byte, limit int) ([]byte, error) {
	total := 0
	if len(src) >= len(xerialMagic) && bytes.Equal(src[:len(xerialMagic)], xerialMagic) {
		if len(src) > xerialHeaderLen && len(src) < xerialHeaderLen+4 {
			return dst, fmt.Errorf("%w: snappy: %w: truncated chunk header", ErrInvalid, xerial.ErrMalformed)
		}
		for pos := xerialHeaderLen; pos+4 <= len(src); {
			size := int(binary.BigEndian.Uint32(src[pos:]))
			pos += 4
			if size > len(src)-pos {
				return dst, fmt.Errorf("%w: snappy: %w: chunk of %d bytes at %d runs past %d",
					ErrInvalid, xerial.ErrMalformed, size, pos, len(src))
			}
			n, err := s2.DecodedLen(src[pos : pos+size])
			if err != nil {
				return dst, fmt.Errorf("%w: snappy: chunk at %d: %w", ErrInvalid, pos, err)
			}
			total += n
			if total > limit {
				return dst, tooLarge(CodecSnappy, total, limit)
			}
			pos += size
		}
	} else {
		n, err := s2.DecodedLen(src)
		if err != nil {
			return dst, fmt.Errorf("%w: snappy: %w", ErrInvalid, err)
		}
		if n > limit {
			return dst, tooLarge(CodecSnappy, n, limit)
		}
		total = n
	}
	start := len(dst)
	dst = grow(dst, total)
	room := dst[start : start+total : start+total]
	if total == 0 {
		room = noRoom // DecodeCapped refuses a nil destination
	}
	out, err := xerial.DecodeCapped(room, src)
	if err != nil {
		return dst[:start], fmt.Errorf("%w: snappy: %w", ErrInvalid, err)
	}
	if len(out) != total {
		return dst[:start], fmt.Errorf("%w: snappy: decoded %d bytes, headers said %d", ErrInvalid, len(out), total)
	}
	if total > 0 && &out[0] != &room[0] { // DecodeCapped decodes in place; be safe if that changes
		copy(room, out)
	}
	return dst[:start+total], nil
}

// appendWriter is an io.Writer appending to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// Pools. sync.Pool may drop entries at any GC; none of these hold goroutines
// or other resources that need closing (zstd encoders and decoders are
// created with concurrency 1 and used only through EncodeAll/DecodeAll).

type gzipWriter struct {
	zw  *gzip.Writer
	out appendWriter
}

var gzipWriters sync.Pool

func getGzipWriter(dst []byte) *gzipWriter {
	w, _ := gzipWriters.Get().(*gzipWriter)
	if w == nil {
		w = &gzipWriter{}
		zw, err := gzip.NewWriterLevel(&w.out, gzipLevel)
		if err != nil {
			panic(err) // gzipLevel is a valid constant
		}
		w.zw = zw
	}
	w.out.b = dst
	w.zw.Reset(&w.out)
	return w
}

func putGzipWriter(w *gzipWriter) {
	w.out.b = nil
	gzipWriters.Put(w)
}

type gzipReader struct {
	zr  *gzip.Reader
	src bytes.Reader
}

var gzipReaders sync.Pool

func getGzipReader() *gzipReader {
	r, _ := gzipReaders.Get().(*gzipReader)
	if r == nil {
		r = &gzipReader{}
	}
	return r
}

// reset points the gzip reader at r.src (reads the member header).
func (r *gzipReader) reset() error {
	if r.zr == nil {
		zr, err := gzip.NewReader(&r.src)
		if err != nil {
			return err
		}
		r.zr = zr
		return nil
	}
	return r.zr.Reset(&r.src)
}

func putGzipReader(r *gzipReader) {
	r.src.Reset(nil)
	gzipReaders.Put(r)
}

type lz4Writer struct {
	zw  *lz4.Writer
	out appendWriter
}

var lz4Writers sync.Pool

func getLZ4Writer(dst []byte) *lz4Writer {
	w, _ := lz4Writers.Get().(*lz4Writer)
	if w == nil {
		w = &lz4Writer{zw: lz4.NewWriter(nil)}
		if err := w.zw.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(true),
			lz4.ConcurrencyOption(1), lz4.CompressionLevelOption(lz4.Fast)); err != nil {
			panic(err) // constant, valid options
		}
	}
	w.out.b = dst
	w.zw.Reset(&w.out)
	return w
}

func putLZ4Writer(w *lz4Writer) {
	w.out.b = nil
	w.zw.Reset(nil)
	lz4Writers.Put(w)
}

type lz4Reader struct {
	zr  *lz4.Reader
	src bytes.Reader
}

var lz4Readers sync.Pool

func getLZ4Reader() *lz4Reader {
	r, _ := lz4Readers.Get().(*lz4Reader)
	if r == nil {
		r = &lz4Reader{zr: lz4.NewReader(nil)}
	}
	return r
}

func putLZ4Reader(r *lz4Reader) {
	r.src.Reset(nil)
	r.zr.Reset(nil)
	lz4Readers.Put(r)
}

var zstdEncoders sync.Pool

func getZstdEncoder() *zstd.Encoder {
	if e, _ := zstdEncoders.Get().(*zstd.Encoder); e != nil {
		return e
	}
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithZeroFrames(true),
		zstd.WithEncoderCRC(true))
	if err != nil {
		panic(err) // constant, valid options
	}
	return e
}

// zstdDecoder remembers the memory bound its options carry, so a decoder
// taken from the pool is re-optioned only when the caller's limit differs.
type zstdDecoder struct {
	dec   *zstd.Decoder
	limit int
}

var zstdDecoders sync.Pool

// zstdWindowFloor is the smallest memory bound given to a zstd decoder.
// klauspost/compress caps the accepted window size at the memory bound, and
// a frame's window may exceed its content: Java's streaming compressor
// declares 2 MiB windows at the default level and up to 8 MiB at level 19
// whatever the batch size. So a small limit would reject ordinary batches;
// the decoder is bounded at max(limit, zstdWindowFloor) and the caller's
// limit is checked on the result. (DecodeAll uses the output as history, so
// the window itself allocates nothing.)
const zstdWindowFloor = 8 << 20

// getZstdDecoder returns a pooled decoder bounded to max(limit,
// zstdWindowFloor) decoded bytes (WithDecoderMaxMemory). The decoder checks
// a frame's declared content size against the bound before allocating, and
// frames without one after every block (<= 128 KiB).
func getZstdDecoder(limit int) (*zstdDecoder, error) {
	limit = max(limit, zstdWindowFloor)
	d, _ := zstdDecoders.Get().(*zstdDecoder)
	if d == nil {
		dec, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(uint64(limit)))
		if err != nil {
			return nil, err
		}
		return &zstdDecoder{dec: dec, limit: limit}, nil
	}
	if d.limit != limit {
		if err := d.dec.ResetWithOptions(nil, zstd.WithDecoderMaxMemory(uint64(limit))); err != nil {
			return nil, err
		}
		d.limit = limit
	}
	return d, nil
}
