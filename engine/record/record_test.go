package record

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"testing"
)

func TestConstants(t *testing.T) {
	if MinLengthField != 49 || HeaderSize != 61 || LogOverhead != 12 {
		t.Fatal("framing constants changed")
	}
	offs := []int{OffBaseOffset, OffLength, OffLeaderEpoch, OffMagic, OffCRC, OffAttributes, OffLastOffsetDelta,
		OffBaseTimestamp, OffMaxTimestamp, OffProducerID, OffProducerEpoch, OffBaseSequence, OffNumRecords, OffRecords}
	widths := []int{8, 4, 4, 1, 4, 2, 4, 8, 8, 8, 2, 4, 4}
	for i, w := range widths {
		if offs[i]+w != offs[i+1] {
			t.Fatalf("field %d at %d width %d, next at %d", i, offs[i], w, offs[i+1])
		}
	}
	for c, want := range map[Codec]string{CodecNone: "none", CodecGzip: "gzip", CodecSnappy: "snappy", CodecLZ4: "lz4", CodecZstd: "zstd", 5: "codec(5)"} {
		if c.String() != want {
			t.Errorf("%d.String() = %q", c, c.String())
		}
	}
}

// TestVarintKafkaVectors pins the zigzag encoding to Kafka's (vectors from
// Kafka's ByteUtilsTest) and checks that encoding/binary's Varint is zigzag.
func TestVarintKafkaVectors(t *testing.T) {
	vectors := []struct {
		v   int64
		enc []byte
	}{
		{0, []byte{0x00}},
		{-1, []byte{0x01}},
		{1, []byte{0x02}},
		{63, []byte{0x7e}},
		{-64, []byte{0x7f}},
		{64, []byte{0x80, 0x01}},
		{-65, []byte{0x81, 0x01}},
		{8191, []byte{0xfe, 0x7f}},
		{-8192, []byte{0xff, 0x7f}},
		{8192, []byte{0x80, 0x80, 0x01}},
		{-8193, []byte{0x81, 0x80, 0x01}},
		{math.MaxInt32, []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}},
		{math.MinInt32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
	}
	for _, v := range vectors {
		if got := appendVarint(nil, v.v); !bytes.Equal(got, v.enc) {
			t.Errorf("appendVarint(%d) = %x, want %x", v.v, got, v.enc)
		}
		if got := sizeVarint(v.v); got != len(v.enc) {
			t.Errorf("sizeVarint(%d) = %d, want %d", v.v, got, len(v.enc))
		}
		if x, n := binary.Varint(v.enc); x != v.v || n != len(v.enc) {
			t.Errorf("binary.Varint(%x) = %d, %d", v.enc, x, n)
		}
		if x, n := readVarint(v.enc, 0); int64(x) != v.v || n != len(v.enc) {
			t.Errorf("readVarint(%x) = %d, %d", v.enc, x, n)
		}
		if x, n := readVarlong(v.enc, 0); x != v.v || n != len(v.enc) {
			t.Errorf("readVarlong(%x) = %d, %d", v.enc, x, n)
		}
	}
	for _, v := range []int64{math.MaxInt64, math.MinInt64, 1 << 40, -(1 << 40)} {
		enc := appendVarint(nil, v)
		if x, n := readVarlong(enc, 0); x != v || n != len(enc) || sizeVarint(v) != len(enc) {
			t.Errorf("varlong %d: %x -> %d, %d", v, enc, x, n)
		}
	}
	bad := [][]byte{
		{},
		{0x80},
		{0xff, 0xff, 0xff, 0xff, 0x10}, // 33rd bit
		{0xff, 0xff, 0xff, 0xff, 0x8f}, // 6th byte
	}
	for _, b := range bad {
		if _, n := readVarint(b, 0); n >= 0 {
			t.Errorf("readVarint(%x) accepted", b)
		}
	}
	if _, n := readVarlong([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 0); n >= 0 {
		t.Error("readVarlong accepted a 65-bit value")
	}
}

func TestRoundTripEveryCodec(t *testing.T) {
	flags := []int16{0, AttrTransactional, AttrLogAppendTime, AttrTransactional | AttrControl, AttrDeleteHorizon}
	for _, c := range allCodecs {
		for _, f := range flags {
			for _, n := range []int{1, 5, 1000} {
				attrs := int16(c) | f
				rs := sampleRecords(uint64(n), n)
				b := buildBatch(t, attrs, 1234, rs)
				got, rest, err := ReadBatch(append(append([]byte(nil), b...), 0xAA))
				if err != nil || len(rest) != 1 || !bytes.Equal(got, b) {
					t.Fatalf("%v/%#x/%d: ReadBatch: %v rest %d", c, f, n, err, len(rest))
				}
				var d Decoder
				if err := d.ValidateStored(b); err != nil {
					t.Fatalf("%v/%#x/%d: ValidateStored: %v", c, f, n, err)
				}
				if f&(AttrControl|AttrDeleteHorizon) == 0 {
					if err := d.Validate(b); err != nil {
						t.Fatalf("%v/%#x/%d: Validate: %v", c, f, n, err)
					}
				} else if err := d.Validate(b); !errors.Is(err, ErrInvalid) {
					t.Fatalf("%v/%#x/%d: Validate accepted flags: %v", c, f, n, err)
				}
				sameRecords(t, collect(t, b), rs)

				if b.Codec() != c || b.Attributes() != attrs || b.Magic() != 2 || b.BaseOffset() != 1234 ||
					b.NumRecords() != int32(n) || b.LastOffsetDelta() != int32(n-1) || b.LastOffset() != 1234+int64(n)-1 ||
					b.PartitionLeaderEpoch() != 7 || b.ProducerID() != 4242 || b.ProducerEpoch() != 3 || b.BaseSequence() != 100 ||
					b.BaseTimestamp() != 1_700_000_000_000 || int(b.Length())+LogOverhead != len(b) ||
					b.IsTransactional() != (f&AttrTransactional != 0) || b.IsControl() != (f&AttrControl != 0) ||
					b.LogAppendTime() != (f&AttrLogAppendTime != 0) || b.HasDeleteHorizon() != (f&AttrDeleteHorizon != 0) {
					t.Fatalf("%v/%#x/%d: header fields wrong", c, f, n)
				}
				if f&AttrLogAppendTime == 0 {
					var maxTS int64 = math.MinInt64
					for _, r := range rs {
						maxTS = max(maxTS, b.BaseTimestamp()+r.TimestampDelta)
					}
					if b.MaxTimestamp() != maxTS {
						t.Fatalf("%v/%d: MaxTimestamp %d, want derived %d", c, n, b.MaxTimestamp(), maxTS)
					}
				} else if b.MaxTimestamp() != NoTimestamp {
					t.Fatalf("LogAppendTime MaxTimestamp %d, want as set (-1)", b.MaxTimestamp())
				}
				if h, ok := b.DeleteHorizon(); ok != b.HasDeleteHorizon() || (ok && h != b.BaseTimestamp()) {
					t.Fatal("DeleteHorizon")
				}
			}
		}
	}
}

func TestNullAndEmptyDistinct(t *testing.T) {
	rs := []Record{
		{OffsetDelta: 0, Key: nil, Value: nil},
		{OffsetDelta: 1, Key: []byte{}, Value: []byte{}},
		{OffsetDelta: 2, Key: []byte("k"), Value: nil, Headers: []Header{{Key: []byte("h"), Value: nil}, {Key: []byte("e"), Value: []byte{}}}},
	}
	for _, c := range allCodecs {
		b := buildBatch(t, int16(c), 0, rs)
		var d Decoder
		i := 0
		err := d.Records(b, func(r *Record) error {
			switch i {
			case 0:
				if r.Key != nil || r.Value != nil || r.IsTombstone() {
					t.Errorf("%v: record 0 not null/null", c)
				}
			case 1:
				if r.Key == nil || len(r.Key) != 0 || r.Value == nil || len(r.Value) != 0 {
					t.Errorf("%v: record 1 not empty/empty: %v %v", c, r.Key == nil, r.Value == nil)
				}
			case 2:
				if !r.IsTombstone() || r.Headers[0].Value != nil || r.Headers[1].Value == nil {
					t.Errorf("%v: record 2 wrong", c)
				}
			}
			i++
			return nil
		})
		if err != nil || i != 3 {
			t.Fatalf("%v: %v after %d", c, err, i)
		}
	}
}

func TestEmptyBatch(t *testing.T) {
	for _, c := range allCodecs {
		bl := Builder{BaseOffset: 500, Attributes: int16(c) | AttrTransactional, LastOffsetDelta: 9,
			BaseTimestamp: NoTimestamp, MaxTimestamp: 1234, ProducerID: 77, ProducerEpoch: 1, BaseSequence: 40}
		out, err := bl.Build([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if string(out[:6]) != "prefix" {
			t.Fatal("Build clobbered dst")
		}
		b := Batch(out[6:])
		if len(b) != HeaderSize || b.Length() != MinLengthField || b.NumRecords() != 0 || b.Codec() != CodecNone ||
			!b.IsTransactional() || b.LastOffset() != 509 || b.MaxTimestamp() != 1234 || b.BaseSequence() != 40 {
			t.Fatalf("%v: empty batch header wrong: len %d codec %v", c, len(b), b.Codec())
		}
		var d Decoder
		if err := d.ValidateStored(b); err != nil {
			t.Fatalf("ValidateStored(empty): %v", err)
		}
		if err := d.Validate(b); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Validate(empty) = %v, want ErrInvalid", err)
		}
		if rs := collect(t, b); len(rs) != 0 {
			t.Fatal("records in empty batch")
		}
	}
}

// TestCompactedBatch: a batch whose records have gaps and whose trailing
// records are gone keeps LastOffset and passes ValidateStored, not Validate.
func TestCompactedBatch(t *testing.T) {
	src := buildBatch(t, int16(CodecZstd), 1000, sampleRecords(1, 10))
	var bl Builder
	bl.HeaderFrom(src)
	var d Decoder
	var kept []Record
	err := d.Records(src, func(r *Record) error {
		if r.OffsetDelta%3 == 2 { // drops the 1<<50 timestamp deltas at 4 and 9
			bl.Add(*r)
			kept = append(kept, owned(r))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := Batch(out)
	if b.LastOffset() != src.LastOffset() || b.NumRecords() != 3 || b.Codec() != CodecZstd || b.BaseSequence() != src.BaseSequence() {
		t.Fatalf("compacted header: last %d count %d", b.LastOffset(), b.NumRecords())
	}
	if err := d.ValidateStored(b); err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate(compacted) = %v", err)
	}
	sameRecords(t, collect(t, b), kept)
	var keptMax int64 = math.MinInt64
	for _, r := range kept {
		keptMax = max(keptMax, b.BaseTimestamp()+r.TimestampDelta)
	}
	if b.MaxTimestamp() != keptMax || keptMax >= src.MaxTimestamp() {
		t.Fatalf("CreateTime MaxTimestamp %d, want %d derived from the retained records", b.MaxTimestamp(), keptMax)
	}

	// Emptied: a 61-byte header keeping LastOffset, sequence and MaxTimestamp.
	bl.Reset()
	bl.HeaderFrom(src)
	out, err = bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := Batch(out)
	if len(e) != HeaderSize || e.Codec() != CodecNone || e.LastOffset() != src.LastOffset() ||
		e.MaxTimestamp() != src.MaxTimestamp() || e.BaseSequence() != src.BaseSequence() || e.ProducerID() != src.ProducerID() {
		t.Fatal("emptied batch header")
	}
	if err := d.ValidateStored(e); err != nil {
		t.Fatal(err)
	}

	// Rebase onto a delete horizon: timestamps survive.
	bl.Reset()
	bl.HeaderFrom(src)
	bl.Attributes |= AttrDeleteHorizon
	bl.BaseTimestamp = src.BaseTimestamp() + 86_400_000
	_ = d.Records(src, func(r *Record) error {
		bl.AddAt(src.RecordOffset(r), src.RecordTimestamp(r), *r)
		return nil
	})
	out, err = bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	hb := Batch(out)
	if h, ok := hb.DeleteHorizon(); !ok || h != src.BaseTimestamp()+86_400_000 {
		t.Fatal("horizon not stamped")
	}
	var want, got []int64
	_ = d.Records(src, func(r *Record) error { want = append(want, src.RecordTimestamp(r)); return nil })
	_ = d.Records(hb, func(r *Record) error { got = append(got, hb.RecordTimestamp(r)); return nil })
	if len(got) != len(want) || hb.MaxTimestamp() != src.MaxTimestamp() {
		t.Fatal("rebased batch lost records or max timestamp")
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("timestamp %d: %d want %d", i, got[i], want[i])
		}
	}
}

func TestSettersAndCRC(t *testing.T) {
	b := buildBatch(t, int16(CodecLZ4), 0, sampleRecords(3, 20))
	crc := b.CRC()
	b.SetBaseOffset(1 << 40)
	b.SetPartitionLeaderEpoch(99)
	if b.VerifyCRC() != nil || b.CRC() != crc {
		t.Fatal("offset/epoch stamping must not touch the CRC")
	}
	b.SetMaxTimestamp(42)
	b.SetAttributes(b.Attributes() | AttrLogAppendTime)
	if err := b.VerifyCRC(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("stale CRC not detected: %v", err)
	}
	b.UpdateCRC()
	if err := b.VerifyCRC(); err != nil {
		t.Fatal(err)
	}
	if b.BaseOffset() != 1<<40 || b.PartitionLeaderEpoch() != 99 || b.MaxTimestamp() != 42 || !b.LogAppendTime() {
		t.Fatal("setters")
	}
	var d Decoder
	if err := d.Records(b, func(r *Record) error {
		if b.RecordTimestamp(r) != 42 {
			t.Fatal("LogAppendTime record timestamp must be MaxTimestamp")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestReadBatchSequence(t *testing.T) {
	var log []byte
	var want []int64
	for i, c := range allCodecs {
		b := buildBatch(t, int16(c), int64(i*100), sampleRecords(uint64(i), 10+i))
		log = append(log, b...)
		want = append(want, int64(i*100))
	}
	log = append(log, make([]byte, 100)...) // preallocated zero tail
	var got []int64
	rest := log
	for {
		b, r, err := ReadBatch(rest)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("zero tail: %v", err)
			}
			break
		}
		got = append(got, b.BaseOffset())
		if cap(b) != len(b) {
			t.Fatal("batch capacity not limited")
		}
		rest = r
	}
	if len(rest) != 100 || len(got) != len(want) {
		t.Fatalf("stopped with %d left, %d batches", len(rest), len(got))
	}
}

func TestFnErrorStopsIteration(t *testing.T) {
	stop := errors.New("stop")
	for _, c := range allCodecs {
		b := buildBatch(t, int16(c), 0, sampleRecords(1, 10))
		var d Decoder
		n := 0
		err := d.Records(b, func(*Record) error { n++; return stop })
		if err != stop || n != 1 {
			t.Fatalf("%v: err %v n %d", c, err, n)
		}
		n = 0
		err = d.ValidateEach(b, ModeProduce, func(r *Record) error {
			n++
			if r.Key == nil {
				return stop // e.g. keys required on compacted topics
			}
			return nil
		})
		if err != stop || n != 4 {
			t.Fatalf("%v: ValidateEach err %v n %d", c, err, n)
		}
	}
}

func TestBuilderReuse(t *testing.T) {
	var bl Builder
	rs := sampleRecords(9, 50)
	var first []byte
	for round := range 3 {
		bl.Reset()
		bl.BaseOffset = 10
		bl.Attributes = int16(CodecSnappy)
		bl.BaseTimestamp = 5
		for _, r := range rs {
			bl.Add(r)
		}
		if bl.Len() != 50 || bl.UncompressedSize() <= HeaderSize {
			t.Fatal("Len/UncompressedSize")
		}
		out, err := bl.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := bl.Build(nil)
		if !bytes.Equal(out, again) {
			t.Fatal("Build not repeatable")
		}
		if round == 0 {
			first = out
		} else if !bytes.Equal(first, out) {
			t.Fatal("Reset did not restore a clean builder")
		}
	}
	// Zero-value LastOffsetDelta/MaxTimestamp derive from the records.
	b := Batch(first)
	var maxDelta int64 = math.MinInt64
	for _, r := range rs {
		maxDelta = max(maxDelta, r.TimestampDelta)
	}
	if b.LastOffsetDelta() != 49 || b.MaxTimestamp() != 5+maxDelta {
		t.Fatalf("derived fields: last %d max %d", b.LastOffsetDelta(), b.MaxTimestamp())
	}
	bl.Reset()
	bl.Attributes = 6
	bl.Add(Record{})
	if _, err := bl.Build(nil); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("codec 6: %v", err)
	}
	bl.Reset()
	bl.BaseOffset = 100
	bl.AddAt(99, 0, Record{})
	if _, err := bl.Build(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddAt below base: %v", err)
	}
}

func TestRecordsAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("alloc counts")
	}
	for _, c := range allCodecs {
		b := buildBatch(t, int16(c), 0, sampleRecords(2, 200))
		var d Decoder
		fn := func(*Record) error { return nil }
		_ = d.Records(b, fn)
		allocs := testing.AllocsPerRun(50, func() {
			if err := d.Records(b, fn); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("%v: %.1f allocs per 200-record batch", c, allocs)
		if c == CodecNone && allocs != 0 {
			t.Errorf("uncompressed iteration allocates %.1f times", allocs)
		}
		if allocs > 20 {
			t.Errorf("%v: %.1f allocs per batch", c, allocs)
		}
	}
}

// TestGoldenBatch pins the bytes of the example in FORMAT.md.
func TestGoldenBatch(t *testing.T) {
	const golden = "0000000000000000" + "00000046" + "00000000" + "02" + "3a629334" + "0000" + "00000001" +
		"0000018bcfe56800" + "0000018bcfe56805" + "ffffffffffffffff" + "ffff" + "ffffffff" + "00000002" +
		"10" + "00" + "00" + "00" + "026b" + "0276" + "00" +
		"16" + "00" + "0a" + "02" + "026b" + "01" + "02" + "0268" + "0278"
	bl := Builder{LastOffsetDelta: -1, BaseTimestamp: 1_700_000_000_000, MaxTimestamp: NoTimestamp,
		ProducerID: NoProducerID, ProducerEpoch: NoProducerEpoch, BaseSequence: NoSequence}
	bl.Add(Record{Key: []byte("k"), Value: []byte("v")})
	bl.Add(Record{OffsetDelta: 1, TimestampDelta: 5, Key: []byte("k"), Headers: []Header{{Key: []byte("h"), Value: []byte("x")}}})
	out, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(out); got != golden {
		t.Fatalf("batch bytes changed:\n got %s\nwant %s", got, golden)
	}
}
