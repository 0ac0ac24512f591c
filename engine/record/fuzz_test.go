package record

import (
	"bytes"
	"errors"
	"testing"

	"github.com/klauspost/compress/snappy/xerial"
)

// fuzzLimit keeps decompression bombs cheap under the fuzzer.
const fuzzLimit = 4 << 20

func isSentinel(err error) bool {
	return errors.Is(err, ErrTruncated) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalid) ||
		errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnsupportedCodec)
}

// seedBatches returns real batches of every codec and shape.
func seedBatches(t testing.TB) []Batch {
	var out []Batch
	for i, c := range allCodecs {
		for _, f := range []int16{0, AttrTransactional | AttrControl, AttrLogAppendTime} {
			out = append(out, buildBatch(t, int16(c)|f, int64(i), sampleRecords(uint64(i), 1+i*3)))
		}
	}
	var bl Builder
	bl.LastOffsetDelta = 4
	empty, _ := bl.Build(nil)
	out = append(out, Batch(empty))
	// A snappy batch in xerial framing.
	rs := sampleRecords(40, 6)
	var raw Builder
	for _, r := range rs {
		raw.Add(r)
	}
	out = append(out, craftBatch(int16(CodecSnappy), int32(len(rs)), int32(len(rs)-1), xerial.Encode(nil, raw.records)))
	return out
}

// checkBatch asserts the invariants of a batch that ReadBatch accepted:
// no entry point panics; every error wraps a sentinel; ValidateProduce and
// its fast loop agree with ValidateEach (checkProduceAgrees); if Records succeeds,
// decoding again gives the same records (stable re-decode), and a batch
// rebuilt from those records with the same header re-parses to the same
// records and is at least as valid (ValidateStored) as the original.
func checkBatch(t *testing.T, b Batch) {
	checkProduceAgrees(t, b)
	var d Decoder
	d.MaxDecompressed = fuzzLimit
	verr := d.ValidateStored(b)
	if verr != nil && !isSentinel(verr) {
		t.Fatalf("ValidateStored: unwrapped error %v", verr)
	}
	if err := d.Validate(b); err != nil && !isSentinel(err) {
		t.Fatalf("Validate: unwrapped error %v", err)
	} else if err == nil && verr != nil {
		t.Fatalf("Validate accepted what ValidateStored refused: %v", verr)
	}
	var first []Record
	rerr := d.Records(b, func(r *Record) error { first = append(first, owned(r)); return nil })
	if rerr != nil {
		if !isSentinel(rerr) {
			t.Fatalf("Records: unwrapped error %v", rerr)
		}
		if verr == nil {
			t.Fatalf("ValidateStored accepted a batch Records refuses: %v", rerr)
		}
		return
	}
	if int32(len(first)) != b.NumRecords() {
		t.Fatalf("Records yielded %d of %d records", len(first), b.NumRecords())
	}
	var second []Record
	if err := d.Records(b, func(r *Record) error { second = append(second, owned(r)); return nil }); err != nil {
		t.Fatalf("re-decode failed: %v", err)
	}
	sameRecords(t, second, first)

	var bl Builder
	bl.HeaderFrom(b)
	for _, r := range first {
		bl.Add(r)
	}
	out, err := bl.Build(nil)
	if err != nil {
		if errors.Is(err, ErrUnsupportedCodec) {
			t.Fatalf("Build refused a codec Records accepted: %v", err)
		}
		return
	}
	rb, rest, err := ReadBatch(out)
	if err != nil || len(rest) != 0 {
		t.Fatalf("rebuilt batch does not split: %v", err)
	}
	var rebuilt []Record
	if err := d.Records(rb, func(r *Record) error { rebuilt = append(rebuilt, owned(r)); return nil }); err != nil {
		t.Fatalf("rebuilt batch does not decode: %v", err)
	}
	sameRecords(t, rebuilt, first)
	if verr == nil {
		if err := d.ValidateStored(rb); err != nil {
			t.Fatalf("rebuilt batch of a valid one is invalid: %v", err)
		}
		if rb.LastOffset() != b.LastOffset() || rb.BaseOffset() != b.BaseOffset() || rb.NumRecords() != b.NumRecords() {
			t.Fatal("rebuilt batch changed offsets")
		}
	}
}

// FuzzReadBatch feeds arbitrary bytes to ReadBatch as a log segment would
// hold them and checks every batch it splits off. Invariants:
//   - no input makes ReadBatch, Validate, ValidateStored or Records panic;
//   - every error wraps one of the package sentinels; on error ReadBatch
//     consumes nothing;
//   - a split batch is whole and consistent: LogOverhead+Length == len(b) >=
//     HeaderSize, magic 2, len(b)+len(rest) == len(input) (consumed <= len),
//     b is a prefix of the input;
//   - re-decoding a batch is stable, and a batch rebuilt from its records
//     re-parses to the same records (see checkBatch).
func FuzzReadBatch(f *testing.F) {
	var all []byte
	for _, b := range seedBatches(f) {
		f.Add([]byte(b))
		all = append(all, b...)
	}
	f.Add(all)
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		rest := data
		for len(rest) > 0 {
			b, next, err := ReadBatch(rest)
			if err != nil {
				if !isSentinel(err) {
					t.Fatalf("ReadBatch: unwrapped error %v", err)
				}
				if len(next) != len(rest) {
					t.Fatal("ReadBatch consumed bytes on error")
				}
				return
			}
			if int64(len(b)) != b.Size() || len(b) < HeaderSize || b.Magic() != Magic ||
				len(b)+len(next) != len(rest) || !bytes.Equal(b, rest[:len(b)]) {
				t.Fatalf("inconsistent split: len %d size %d rest %d of %d", len(b), b.Size(), len(next), len(rest))
			}
			checkBatch(t, b)
			rest = next
		}
	})
}

// FuzzRecords fuzzes the record decoder and decompressors past the CRC: the
// fuzzer's bytes become the records section of a batch with the given
// attributes and counts, framed with a correct Length and CRC. Invariants:
// those of checkBatch (no panic, sentinel errors, stable re-decode, rebuilt
// batch re-parses to the same records), and ValidateStored never accepts a
// batch that Records refuses.
func FuzzRecords(f *testing.F) {
	for _, b := range seedBatches(f) {
		f.Add(uint16(b.Attributes()), b.NumRecords(), b.LastOffsetDelta(), []byte(b.Records()))
	}
	f.Fuzz(func(t *testing.T, attrs uint16, count, lastDelta int32, records []byte) {
		checkBatch(t, craftBatch(int16(attrs), count, lastDelta, records))
	})
}
