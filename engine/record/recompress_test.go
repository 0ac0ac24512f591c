package record

import (
	"bytes"
	"errors"
	"testing"
)

// TestRecompress rewrites batches between every pair of codecs and checks
// that the records and the header fields a producer owns survive, that
// the codec bits and CRC are the new batch's, and that flags other than
// the codec are kept.
func TestRecompress(t *testing.T) {
	codecs := []Codec{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}
	rs := sampleRecords(11, 200)
	var d Decoder
	var bl Builder
	for _, from := range codecs {
		for _, to := range codecs {
			for _, flags := range []int16{0, AttrTransactional, AttrLogAppendTime} {
				src := buildBatch(t, int16(from)|flags, 0, rs)
				out, err := Recompress(nil, src, to, &d, &bl)
				if err != nil {
					t.Fatalf("%v→%v flags %#x: %v", from, to, flags, err)
				}
				b := Batch(out)
				if err := d.ValidateStored(b); err != nil {
					t.Fatalf("%v→%v: rewritten batch invalid: %v", from, to, err)
				}
				if b.Codec() != to || b.Attributes()&^AttrCodecMask != flags {
					t.Fatalf("%v→%v: attributes %#x, want codec %v flags %#x", from, to, b.Attributes(), to, flags)
				}
				if b.BaseOffset() != src.BaseOffset() || b.LastOffsetDelta() != src.LastOffsetDelta() ||
					b.PartitionLeaderEpoch() != src.PartitionLeaderEpoch() || b.BaseTimestamp() != src.BaseTimestamp() ||
					b.MaxTimestamp() != src.MaxTimestamp() || b.ProducerID() != src.ProducerID() ||
					b.ProducerEpoch() != src.ProducerEpoch() || b.BaseSequence() != src.BaseSequence() ||
					b.NumRecords() != src.NumRecords() {
					t.Fatalf("%v→%v: header changed:\n src %x\n got %x", from, to, []byte(src[:HeaderSize]), []byte(b[:HeaderSize]))
				}
				if got, want := encodedRecords(t, b), encodedRecords(t, src); !bytes.Equal(got, want) {
					t.Fatalf("%v→%v: records differ", from, to)
				}
			}
		}
	}
	if _, err := Recompress(nil, buildBatch(t, 0, 0, rs[:1]), Codec(6), &d, &bl); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("codec 6: %v, want ErrUnsupportedCodec", err)
	}
	flipped := buildBatch(t, int16(CodecNone), 0, rs[:10])
	flipped[HeaderSize+3] ^= 0x01
	if _, err := Recompress(nil, flipped, CodecZstd, &d, &bl); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a batch failing its CRC: %v, want ErrCorrupt (a fresh CRC would hide the damage)", err)
	}
	bad := buildBatch(t, int16(CodecLZ4), 0, rs[:10])
	bad[len(bad)-1] ^= 0xff
	if _, err := Recompress(nil, bad, CodecNone, &d, &bl); err == nil {
		t.Fatal("a damaged lz4 section was recompressed without an error")
	}
}

// encodedRecords re-encodes b's records uncompressed, to compare record
// content independent of the codec.
func encodedRecords(t *testing.T, b Batch) []byte {
	t.Helper()
	var d Decoder
	var bl Builder
	bl.HeaderFrom(b)
	bl.Attributes &^= AttrCodecMask
	if err := d.Records(b, func(r *Record) error { bl.Add(*r); return nil }); err != nil {
		t.Fatal(err)
	}
	out, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out[HeaderSize:]
}
