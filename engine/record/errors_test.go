package record

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// craftBatch frames an arbitrary records section (already compressed if the
// codec says so) with a valid header, Length and CRC, so that tests and fuzz
// targets reach the record decoder past the CRC check.
func craftBatch(attrs int16, count, lastDelta int32, records []byte) Batch {
	b := make(Batch, HeaderSize, HeaderSize+len(records))
	be := binary.BigEndian
	be.PutUint64(b[OffBaseOffset:], 5000)
	be.PutUint32(b[OffLength:], uint32(MinLengthField+len(records)))
	be.PutUint32(b[OffPartitionLeaderEpoch:], 1)
	b[OffMagic] = Magic
	be.PutUint16(b[OffAttributes:], uint16(attrs))
	be.PutUint32(b[OffLastOffsetDelta:], uint32(lastDelta))
	be.PutUint64(b[OffBaseTimestamp:], 1_000)
	be.PutUint64(b[OffMaxTimestamp:], 1_000)
	be.PutUint64(b[OffProducerID:], ^uint64(0))    // -1
	be.PutUint16(b[OffProducerEpoch:], ^uint16(0)) // -1
	be.PutUint32(b[OffBaseSequence:], ^uint32(0))  // -1
	be.PutUint32(b[OffNumRecords:], uint32(count))
	b = append(b, records...)
	b.UpdateCRC()
	return b
}

// rawRec is one record from raw parts: every varint is written as given,
// and the length prefix is the true body length plus lengthDelta.
type rawRec struct {
	lengthDelta int   // added to the true body length
	keyLen      int64 // written key length varint
	key         string
	valLen      int64
	val         string
	hdrCount    int64
	hdrs        []byte // raw header bytes
	offsetDelta int64
}

func (r rawRec) encode() []byte {
	var body []byte
	body = append(body, 0)       // attributes
	body = appendVarint(body, 0) // timestamp delta
	body = appendVarint(body, r.offsetDelta)
	body = appendVarint(body, r.keyLen) // key
	body = append(body, r.key...)
	body = appendVarint(body, r.valLen) // value
	body = append(body, r.val...)
	body = appendVarint(body, r.hdrCount)
	body = append(body, r.hdrs...)
	out := appendVarint(nil, int64(len(body)+r.lengthDelta))
	return append(out, body...)
}

func goodRec(off int64) rawRec {
	return rawRec{keyLen: 1, key: "k", valLen: 1, val: "v", offsetDelta: off}
}

// corruptionCase is a named corrupted (or valid) batch and the sentinels
// ReadBatch and Decoder.Validate report for it (nil: accepted).
type corruptionCase struct {
	name  string
	batch Batch
	read  error // from ReadBatch (nil = splits fine)
	valid error // from Decoder.Validate
}

// corruptionCases is the malformed-batch table shared by TestCorruptionTable
// and TestValidateProduceCorruptionTable.
func corruptionCases(t testing.TB) []corruptionCase {
	valid := buildBatch(t, 0, 100, sampleRecords(21, 5))
	twoRecs := append(goodRec(0).encode(), goodRec(1).encode()...)
	mutate := func(f func(b Batch)) Batch {
		b := append(Batch(nil), valid...)
		f(b)
		return b
	}
	with := func(r rawRec) Batch { return craftBatch(0, 1, 0, r.encode()) }

	return []corruptionCase{
		{"ok", valid, nil, nil},
		{"bad_crc", mutate(func(b Batch) { b[len(b)-1] ^= 1 }), nil, ErrCorrupt},
		{"bad_crc_in_header", mutate(func(b Batch) { b[OffProducerEpoch] ^= 0x80 }), nil, ErrCorrupt},
		{"bad_stored_crc", mutate(func(b Batch) { b[OffCRC] ^= 1 }), nil, ErrCorrupt},
		{"bad_magic", mutate(func(b Batch) { b[OffMagic] = 1 }), ErrInvalid, ErrInvalid},
		{"zeroed_tail", make(Batch, 80), ErrInvalid, ErrInvalid},
		{"length_too_small", mutate(func(b Batch) { binary.BigEndian.PutUint32(b[OffLength:], MinLengthField-1) }), ErrInvalid, ErrInvalid},
		{"negative_length", mutate(func(b Batch) { binary.BigEndian.PutUint32(b[OffLength:], 0xffffff00) }), ErrInvalid, ErrInvalid},
		{"length_past_end", mutate(func(b Batch) { binary.BigEndian.PutUint32(b[OffLength:], uint32(b.Length()+1)) }), ErrTruncated, ErrTruncated},
		// The split-off batch is a byte short: its CRC no longer matches.
		{"length_short_of_end", mutate(func(b Batch) { binary.BigEndian.PutUint32(b[OffLength:], uint32(b.Length()-1)) }), nil, ErrCorrupt},
		{"count_too_high", craftBatch(0, 3, 2, twoRecs), nil, ErrInvalid},
		{"count_too_low", craftBatch(0, 1, 0, twoRecs), nil, ErrInvalid},
		{"negative_count", craftBatch(0, -1, 0, twoRecs), nil, ErrInvalid},
		{"count_without_records", craftBatch(0, 2, 1, nil), nil, ErrInvalid},
		{"last_offset_delta_mismatch", craftBatch(0, 2, 5, twoRecs), nil, ErrInvalid},
		{"offset_delta_not_index", craftBatch(0, 2, 1, append(goodRec(0).encode(), goodRec(0).encode()...)), nil, ErrInvalid},
		{"unsupported_codec", craftBatch(5, 2, 1, twoRecs), nil, ErrUnsupportedCodec},
		{"bad_compressed_data", craftBatch(int16(CodecGzip), 2, 1, twoRecs), nil, ErrInvalid},
		{"bad_lz4_data", craftBatch(int16(CodecLZ4), 2, 1, twoRecs), nil, ErrInvalid},
		{"bad_zstd_data", craftBatch(int16(CodecZstd), 2, 1, twoRecs), nil, ErrInvalid},
		{"record_length_past_end", with(rawRec{lengthDelta: 1, keyLen: 1, key: "k", valLen: -1}), nil, ErrInvalid},
		{"record_length_short", with(rawRec{lengthDelta: -1, keyLen: 1, key: "k", valLen: -1}), nil, ErrInvalid},
		{"record_negative_length", craftBatch(0, 1, 0, []byte{0x03, 0, 0, 0}), nil, ErrInvalid},
		{"record_bad_varint", craftBatch(0, 1, 0, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), nil, ErrInvalid},
		{"key_length_below_minus_one", with(rawRec{keyLen: -2, valLen: -1}), nil, ErrInvalid},
		{"key_length_past_end", with(rawRec{keyLen: 50, key: "k", valLen: -1}), nil, ErrInvalid},
		{"value_length_past_end", with(rawRec{keyLen: -1, valLen: 3, val: "v"}), nil, ErrInvalid},
		{"header_count_exceeds_bytes", with(rawRec{keyLen: -1, valLen: -1, hdrCount: 1 << 30}), nil, ErrInvalid},
		{"header_count_negative", with(rawRec{keyLen: -1, valLen: -1, hdrCount: -1}), nil, ErrInvalid},
		{"header_key_null", with(rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x01, 0x01}}), nil, ErrInvalid},
		{"header_value_past_end", with(rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x00, 0x08}}), nil, ErrInvalid},
		{"header_ok", with(rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x02, 'h', 0x01}}), nil, nil},
		{"trailing_garbage", craftBatch(0, 1, 0, append(goodRec(0).encode(), 0)), nil, ErrInvalid},
		{"producer_id_without_sequence", func() Batch {
			b := craftBatch(0, 1, 0, goodRec(0).encode())
			binary.BigEndian.PutUint64(b[OffProducerID:], 7)
			b.UpdateCRC()
			return b
		}(), nil, ErrInvalid},
	}
}

// TestCorruptionTable: each named corruption pokes bytes and asserts the
// sentinel every entry point reports.
func TestCorruptionTable(t *testing.T) {
	for _, tc := range corruptionCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			b, rest, err := ReadBatch(tc.batch)
			if !errors.Is(err, tc.read) || (tc.read != nil) != (err != nil) {
				t.Fatalf("ReadBatch: %v, want %v", err, tc.read)
			}
			if err != nil {
				if len(rest) != len(tc.batch) {
					t.Fatal("ReadBatch consumed bytes on error")
				}
				b = tc.batch
			}
			var d Decoder
			err = d.Validate(b)
			if !errors.Is(err, tc.valid) || (tc.valid != nil) != (err != nil) {
				t.Fatalf("Validate: %v, want %v", err, tc.valid)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "record: ") {
				t.Fatalf("error not prefixed: %v", err)
			}
			// Records and ValidateStored never panic and agree on the
			// structural errors (they skip CRC and produce policy).
			_ = d.Records(b, func(*Record) error { return nil })
			_ = d.ValidateStored(b)
		})
	}
}

// TestTruncatedEveryByte: every prefix of a batch sequence is reported as
// ErrTruncated by ReadBatch (or split off cleanly at batch boundaries), and
// no prefix makes any entry point panic.
func TestTruncatedEveryByte(t *testing.T) {
	for _, c := range allCodecs {
		b1 := buildBatch(t, int16(c), 0, sampleRecords(31, 7))
		b2 := buildBatch(t, int16(c), 7, sampleRecords(32, 3))
		log := append(append([]byte(nil), b1...), b2...)
		var d Decoder
		for n := 0; n < len(log); n++ {
			prefix := log[:n]
			b, rest, err := ReadBatch(prefix)
			switch {
			case n >= len(b1):
				if err != nil || len(b) != len(b1) {
					t.Fatalf("%v: prefix %d: first batch not split: %v", c, n, err)
				}
				if _, _, err := ReadBatch(rest); !errors.Is(err, ErrTruncated) {
					t.Fatalf("%v: prefix %d: cut second batch: %v, want ErrTruncated", c, n, err)
				}
			default:
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("%v: prefix %d: %v, want ErrTruncated", c, n, err)
				}
			}
			// A batch cut short but with its Length patched to fit must
			// fail validation without panicking.
			if n >= HeaderSize && n < len(b1) {
				cut := append(Batch(nil), log[:n]...)
				binary.BigEndian.PutUint32(cut[OffLength:], uint32(n-LogOverhead))
				if err := d.ValidateStored(cut); err == nil {
					t.Fatalf("%v: cut at %d validated", c, n)
				}
				cut.UpdateCRC()
				if err := d.ValidateStored(cut); err == nil {
					t.Fatalf("%v: cut at %d with fixed CRC validated", c, n)
				}
				_ = d.Records(cut, func(*Record) error { return nil })
			}
			if err := d.Validate(Batch(prefix)); n != len(b1) && err == nil {
				t.Fatalf("%v: Validate accepted prefix %d", c, n)
			}
		}
	}
}

func TestShortSliceNoPanic(t *testing.T) {
	var d Decoder
	for n := 0; n < HeaderSize; n++ {
		b := make(Batch, n)
		if err := d.Validate(b); !errors.Is(err, ErrTruncated) {
			t.Fatalf("len %d: %v", n, err)
		}
		if err := d.Records(b, nil); !errors.Is(err, ErrTruncated) {
			t.Fatalf("len %d: %v", n, err)
		}
		if err := b.VerifyCRC(); !errors.Is(err, ErrTruncated) {
			t.Fatalf("len %d: %v", n, err)
		}
	}
}
