package record

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy/xerial"
)

func TestCompressDecompressAppend(t *testing.T) {
	src := bytes.Repeat([]byte("changelog value 0123456789 "), 5000)
	for _, c := range allCodecs {
		for _, in := range [][]byte{src, {}, []byte("x")} {
			comp, err := Compress(c, []byte("hdr"), in)
			if err != nil {
				t.Fatalf("%v: %v", c, err)
			}
			if string(comp[:3]) != "hdr" {
				t.Fatalf("%v: Compress clobbered dst prefix", c)
			}
			out, err := Decompress(c, []byte("pre"), comp[3:], 0)
			if err != nil {
				t.Fatalf("%v (%d bytes): %v", c, len(in), err)
			}
			if string(out[:3]) != "pre" || !bytes.Equal(out[3:], in) {
				t.Fatalf("%v: round trip of %d bytes gave %d", c, len(in), len(out)-3)
			}
		}
	}
	if _, err := Compress(5, nil, src); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatal(err)
	}
	if _, err := Decompress(7, nil, src, 0); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatal(err)
	}
}

// TestSnappyFramings: raw blocks (librdkafka, franz-go single-shot) and
// xerial framing (Java, sarama, kafka-python, franz-go streaming) both decode,
// including multi-chunk xerial streams and an empty xerial stream.
func TestSnappyFramings(t *testing.T) {
	payload := bytes.Repeat([]byte("snappy framing test "), 10000) // > 32 KiB: several xerial chunks
	raw := s2.EncodeSnappy(nil, payload)
	framed := xerial.Encode(nil, payload)
	if bytes.Equal(raw, framed) || !bytes.HasPrefix(framed, xerialMagic) {
		t.Fatal("test inputs not distinct framings")
	}
	for name, in := range map[string][]byte{"raw": raw, "xerial": framed} {
		out, err := Decompress(CodecSnappy, nil, in, 0)
		if err != nil || !bytes.Equal(out, payload) {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := Decompress(CodecSnappy, nil, in, len(payload)-1); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: limit not enforced: %v", name, err)
		}
	}
	if out, err := Decompress(CodecSnappy, nil, xerial.Encode(nil, nil), 0); err != nil || len(out) != 0 {
		t.Fatalf("empty xerial: %v %d", err, len(out))
	}
	// Malformed xerial: a chunk running past the end, a cut chunk header.
	bad := append([]byte(nil), framed[:40]...)
	if _, err := Decompress(CodecSnappy, nil, bad, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cut xerial chunk: %v", err)
	}
	if _, err := Decompress(CodecSnappy, nil, framed[:18], 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("cut xerial chunk header: %v", err)
	}
	if _, err := Decompress(CodecSnappy, nil, []byte{0xff, 0xff, 0xff}, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("garbage raw snappy: %v", err)
	}

	// Whole batches in both framings.
	rs := sampleRecords(5, 400)
	var records []byte
	for _, r := range rs {
		var bl Builder
		bl.Add(r)
		records = append(records, bl.records...)
	}
	for _, framing := range [][]byte{s2.EncodeSnappy(nil, records), xerial.Encode(nil, records)} {
		b := craftBatch(int16(CodecSnappy), int32(len(rs)), int32(len(rs)-1), framing)
		var d Decoder
		if err := d.Validate(b); err != nil {
			t.Fatal(err)
		}
		sameRecords(t, collect(t, b), rs)
	}
}

// TestDecompressionBombs: every codec stops at the limit with ErrTooLarge,
// both through Decompress and through a Decoder's MaxDecompressed.
func TestDecompressionBombs(t *testing.T) {
	const limit = 1 << 20
	zeros := make([]byte, 8<<20) // compresses to a few KiB
	for _, c := range allCodecs {
		comp, err := Compress(c, nil, zeros)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decompress(c, nil, comp, limit); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v: Decompress over limit: %v", c, err)
		}
		if out, err := Decompress(c, nil, comp, len(zeros)); err != nil || len(out) != len(zeros) {
			t.Fatalf("%v: exactly at limit: %v", c, err)
		}
		if _, err := Decompress(c, nil, comp, len(zeros)-1); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v: one byte over limit: %v", c, err)
		}
	}
	// Frames without a declared content size (streaming zstd, stdlib gzip,
	// multi-block lz4) are bounded too.
	for _, c := range []Codec{CodecGzip, CodecLZ4, CodecZstd} {
		comp := compressIndependently(t, c, zeros, false)
		if _, err := Decompress(c, nil, comp, limit); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v (streamed): %v", c, err)
		}
	}
	// A zstd frame may declare a window larger than its content (Java's
	// streaming compressor does): a small limit must not refuse it.
	small := bytes.Repeat([]byte("window "), 2000)
	comp := compressIndependently(t, CodecZstd, small, false)
	if out, err := Decompress(CodecZstd, nil, comp, 16<<10); err != nil || !bytes.Equal(out, small) {
		t.Fatalf("zstd small content, large window: %v", err)
	}
	if _, err := Decompress(CodecZstd, nil, comp, 1<<10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("zstd over small limit: %v", err)
	}

	// Through a batch: records whose values are large zero runs.
	rs := []Record{{Key: []byte("k"), Value: zeros}}
	for _, c := range allCodecs[1:] {
		b := buildBatch(t, int16(c), 0, rs)
		if len(b) > limit {
			t.Fatalf("%v: bomb batch not small: %d", c, len(b))
		}
		d := Decoder{MaxDecompressed: limit}
		if err := d.Validate(b); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v: Validate: %v", c, err)
		}
		if err := d.Records(b, func(*Record) error { return nil }); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%v: Records: %v", c, err)
		}
		d.MaxDecompressed = 0 // default 64 MiB: fits
		if err := d.Validate(b); err != nil {
			t.Fatalf("%v: default limit: %v", c, err)
		}
	}
}

// TestCodecConcurrent exercises the pools from several goroutines (run with
// -race).
func TestCodecConcurrent(t *testing.T) {
	var batches []Batch
	for i := range 20 {
		batches = append(batches, buildBatch(t, int16(allCodecs[i%len(allCodecs)]), int64(i), sampleRecords(uint64(i), 20)))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := bytes.Repeat([]byte{byte(g), 'x', 'y'}, 10000+g)
			var d Decoder
			for i := range 20 {
				c := allCodecs[(g+i)%len(allCodecs)]
				comp, err := Compress(c, nil, src)
				if err != nil {
					t.Error(err)
					return
				}
				out, err := Decompress(c, nil, comp, len(src)+i) // varying limits re-option pooled zstd decoders
				if err != nil || !bytes.Equal(out, src) {
					t.Errorf("%v: %v", c, err)
					return
				}
				if err := d.Validate(batches[(g+i)%len(batches)]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
