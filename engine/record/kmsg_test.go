package record

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"io"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Cross-checks against franz-go's kmsg, an independent implementation of the
// same format: batches kmsg encodes must decode here to the same fields, and
// uncompressed batches built here must decode with kmsg to the same fields
// and be byte-identical to kmsg's encoding of those fields.

func toKmsg(r Record) kmsg.Record {
	k := kmsg.Record{
		Attributes:       r.Attributes,
		TimestampDelta64: r.TimestampDelta,
		OffsetDelta:      r.OffsetDelta,
		Key:              r.Key,
		Value:            r.Value,
	}
	for _, h := range r.Headers {
		k.Headers = append(k.Headers, kmsg.Header{Key: string(h.Key), Value: h.Value})
	}
	// kmsg writes Length as given: measure the body first.
	body := k.AppendTo(nil)
	_, n := binary.Varint(body)
	k.Length = int32(len(body) - n)
	return k
}

func fromKmsg(k kmsg.Record) Record {
	r := Record{
		Attributes:     k.Attributes,
		TimestampDelta: k.TimestampDelta64,
		OffsetDelta:    k.OffsetDelta,
		Key:            k.Key,
		Value:          k.Value,
	}
	for _, h := range k.Headers {
		r.Headers = append(r.Headers, Header{Key: []byte(h.Key), Value: h.Value})
	}
	return r
}

// compressIndependently compresses with the libraries directly (gzip from
// the standard library), not through this package.
func compressIndependently(t *testing.T, c Codec, src []byte, xerialFraming bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch c {
	case CodecNone:
		return src
	case CodecGzip:
		w := stdgzip.NewWriter(&buf)
		w.Write(src)
		w.Close()
	case CodecSnappy:
		if xerialFraming {
			return xerial.Encode(nil, src)
		}
		return s2.EncodeSnappy(nil, src)
	case CodecLZ4:
		w := lz4.NewWriter(&buf) // 4 MiB blocks, unlike ours
		if _, err := w.Write(src); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case CodecZstd:
		// Like Java's streaming compressor: an 8 MiB window and no content
		// size in the frame header (the flush forces a header before the
		// size is known).
		w, _ := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20))
		w.Write(src[:len(src)/2])
		w.Flush()
		w.Write(src[len(src)/2:])
		w.Close()
		if len(src) > 0 && (buf.Bytes()[4]&0xc0 != 0 || buf.Bytes()[5] != 0x68) {
			t.Fatalf("zstd frame header %x: want no content size, 8 MiB window", buf.Bytes()[4:6])
		}
	}
	return buf.Bytes()
}

func kmsgBatch(t *testing.T, attrs int16, rs []Record, xerialFraming bool) ([]byte, kmsg.RecordBatch) {
	var raw []byte
	for _, r := range rs {
		k := toKmsg(r)
		raw = k.AppendTo(raw)
	}
	kb := kmsg.RecordBatch{
		FirstOffset:          987654321,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(len(rs) - 1),
		FirstTimestamp:       1_650_000_000_123,
		MaxTimestamp:         1_650_000_009_999,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           int32(len(rs)),
		Records:              compressIndependently(t, Codec(attrs&7), raw, xerialFraming),
	}
	kb.Length = int32(len(kb.Records) + MinLengthField)
	enc := kb.AppendTo(nil)
	kb.CRC = int32(crc32.Checksum(enc[OffAttributes:], crc32.MakeTable(crc32.Castagnoli)))
	return kb.AppendTo(nil), kb
}

func TestKmsgBuildsWeParse(t *testing.T) {
	for _, c := range allCodecs {
		for _, xf := range []bool{false, true} {
			if xf && c != CodecSnappy {
				continue
			}
			for _, f := range []int16{0, AttrTransactional, AttrControl | AttrTransactional} {
				rs := sampleRecords(11, 300)
				enc, kb := kmsgBatch(t, int16(c)|f, rs, xf)
				b, rest, err := ReadBatch(enc)
				if err != nil || len(rest) != 0 {
					t.Fatalf("%v: ReadBatch: %v", c, err)
				}
				var d Decoder
				if err := d.ValidateStored(b); err != nil {
					t.Fatalf("%v xerial=%v: ValidateStored: %v", c, xf, err)
				}
				if b.BaseOffset() != kb.FirstOffset || b.PartitionLeaderEpoch() != kb.PartitionLeaderEpoch ||
					b.CRC() != uint32(kb.CRC) || b.Attributes() != kb.Attributes || b.LastOffsetDelta() != kb.LastOffsetDelta ||
					b.BaseTimestamp() != kb.FirstTimestamp || b.MaxTimestamp() != kb.MaxTimestamp || b.ProducerID() != kb.ProducerID ||
					b.ProducerEpoch() != kb.ProducerEpoch || b.BaseSequence() != kb.FirstSequence || b.NumRecords() != kb.NumRecords ||
					b.Length() != kb.Length || !bytes.Equal(b.Records(), kb.Records) {
					t.Fatalf("%v: header fields differ from kmsg's", c)
				}
				sameRecords(t, collect(t, b), rs)
			}
		}
	}
}

func TestWeBuildKmsgParses(t *testing.T) {
	rs := sampleRecords(12, 300)
	for _, f := range []int16{0, AttrTransactional, AttrLogAppendTime, AttrControl | AttrTransactional, AttrDeleteHorizon} {
		b := buildBatch(t, f, 55, rs)

		var kb kmsg.RecordBatch
		if err := kb.ReadFrom(b); err != nil {
			t.Fatal(err)
		}
		if kb.FirstOffset != b.BaseOffset() || kb.Length != b.Length() || kb.PartitionLeaderEpoch != b.PartitionLeaderEpoch() ||
			kb.Magic != 2 || uint32(kb.CRC) != b.CRC() || kb.Attributes != b.Attributes() || kb.LastOffsetDelta != b.LastOffsetDelta() ||
			kb.FirstTimestamp != b.BaseTimestamp() || kb.MaxTimestamp != b.MaxTimestamp() || kb.ProducerID != b.ProducerID() ||
			kb.ProducerEpoch != b.ProducerEpoch() || kb.FirstSequence != b.BaseSequence() || kb.NumRecords != b.NumRecords() {
			t.Fatalf("kmsg header differs: %+v", kb)
		}
		if got := crc32.Checksum(b[OffAttributes:], crc32.MakeTable(crc32.Castagnoli)); got != uint32(kb.CRC) {
			t.Fatal("CRC is not CRC-32C of bytes 21..end")
		}
		// Split records with the standard library's varint, parse with kmsg.
		var got []Record
		p := kb.Records
		for len(p) > 0 {
			l, n := binary.Varint(p)
			if n <= 0 || int(l) > len(p)-n {
				t.Fatalf("bad record length at %d", len(kb.Records)-len(p))
			}
			var kr kmsg.Record
			if err := kr.ReadFrom(p[:n+int(l)]); err != nil {
				t.Fatal(err)
			}
			got = append(got, fromKmsg(kr))
			p = p[n+int(l):]
		}
		sameRecords(t, got, rs)

		// Byte for byte: kmsg's encoding of the same fields is our batch.
		var raw []byte
		for _, r := range rs {
			k := toKmsg(r)
			raw = k.AppendTo(raw)
		}
		kb.Records = raw
		if enc := kb.AppendTo(nil); !bytes.Equal(enc, b) {
			t.Fatalf("flags %#x: kmsg encoding differs from ours", f)
		}
	}
}

// TestCompressedKmsgParses: our compressed batches decode with kmsg for the
// header and with the libraries (standard gzip) for the records section.
func TestCompressedKmsgParses(t *testing.T) {
	rs := sampleRecords(13, 200)
	for _, c := range allCodecs[1:] {
		b := buildBatch(t, int16(c), 0, rs)
		var kb kmsg.RecordBatch
		if err := kb.ReadFrom(b); err != nil {
			t.Fatal(err)
		}
		var raw []byte
		switch c {
		case CodecGzip:
			zr, err := stdgzip.NewReader(bytes.NewReader(kb.Records))
			if err != nil {
				t.Fatal(err)
			}
			raw, err = io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
		case CodecSnappy:
			var err error
			if raw, err = s2.Decode(nil, kb.Records); err != nil { // raw block, not xerial
				t.Fatal(err)
			}
		case CodecLZ4:
			var err error
			if raw, err = io.ReadAll(lz4.NewReader(bytes.NewReader(kb.Records))); err != nil {
				t.Fatal(err)
			}
		case CodecZstd:
			zr, _ := zstd.NewReader(nil)
			var err error
			if raw, err = zr.DecodeAll(kb.Records, nil); err != nil {
				t.Fatal(err)
			}
			zr.Close()
		}
		var want []byte
		for _, r := range rs {
			k := toKmsg(r)
			want = k.AppendTo(want)
		}
		if !bytes.Equal(raw, want) {
			t.Fatalf("%v: decompressed records section differs from kmsg's encoding", c)
		}
	}
}
