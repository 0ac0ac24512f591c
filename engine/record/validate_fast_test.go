package record

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// errTestNullKey is slowProduce's verdict on a null key.
var errTestNullKey = errors.New("test: null key")

// slowProduce is the reference ValidateProduce must match: ValidateEach in
// ModeProduce with a callback refusing null keys when requireKeys is set
// (what the engine did before ValidateProduce existed).
func slowProduce(d *Decoder, b Batch, requireKeys bool) error {
	return d.ValidateEach(b, ModeProduce, keyCallback(requireKeys))
}

func keyCallback(requireKeys bool) func(r *Record) error {
	if !requireKeys {
		return nil
	}
	return func(r *Record) error {
		if r.Key == nil {
			return errTestNullKey
		}
		return nil
	}
}

// generalProduceRecords is validProduceRecords with every record checked by
// produceRecordEnd, the path it takes for records with long varints.
func generalProduceRecords(p []byte, n int32, requireKeys bool, s deltaSpan) (deltaSpan, bool) {
	i := 0
	for k := int32(0); k < n; k++ {
		if i, s = produceRecordEnd(p, i, k, requireKeys, s); i < 0 {
			return s, false
		}
	}
	return s, i == len(p)
}

// checkProduceAgrees asserts, for requireKeys false and true, that
//   - ValidateProduce(b) accepts exactly when slowProduce does, and fails
//     with the very same error otherwise (for a null key: ErrInvalid naming
//     the record slowProduce stopped at);
//   - on the records section (decompressed), the fast loop
//     validProduceRecords and its general per-record path each accept
//     exactly when the slow walk does, whatever the header says.
//
// It returns whether slowProduce accepted b with requireKeys false.
func checkProduceAgrees(t testing.TB, b Batch) bool {
	t.Helper()
	var fast, slow Decoder
	fast.MaxDecompressed, slow.MaxDecompressed = fuzzLimit, fuzzLimit
	accepted := false
	for _, rk := range []bool{false, true} {
		want := slowProduce(&slow, b, rk)
		got := fast.ValidateProduce(b, rk)
		switch {
		case want == errTestNullKey:
			msg := fmt.Sprintf("record %d has a null key", slow.rec.OffsetDelta)
			if !errors.Is(got, ErrInvalid) || !strings.Contains(got.Error(), msg) ||
				!strings.HasPrefix(got.Error(), "record: ") {
				t.Fatalf("requireKeys: ValidateProduce = %v, want ErrInvalid with %q", got, msg)
			}
		case want == nil:
			if got != nil {
				t.Fatalf("requireKeys=%v: ValidateProduce refused what ValidateEach accepts: %v", rk, got)
			}
			if !rk {
				accepted = true
			}
		case got == nil:
			t.Fatalf("requireKeys=%v: ValidateProduce accepted what ValidateEach refuses: %v", rk, want)
		case got.Error() != want.Error():
			t.Fatalf("requireKeys=%v: ValidateProduce error differs:\n got %v\nwant %v", rk, got, want)
		}
		if !rk {
			if err := fast.Validate(b); (err == nil) != (want == nil) || (err != nil && err.Error() != want.Error()) {
				t.Fatalf("Validate = %v, ValidateEach = %v", err, want)
			}
		}

		// Section level: the fast loop must agree with the slow walk on
		// its own, not merely through ValidateProduce's fallback.
		if b.checkFraming() != nil {
			continue
		}
		p, err := fast.section(b)
		if err != nil {
			continue
		}
		n := b.NumRecords()
		walkErr := slow.walk(b, p, ModeProduce, keyCallback(rk))
		fastSpan, ok := validProduceRecords(p, n, rk, newDeltaSpan(b.BaseTimestamp()))
		if ok != (walkErr == nil) {
			t.Fatalf("requireKeys=%v: validProduceRecords = %v, slow walk: %v\nsection % x", rk, ok, walkErr, head(p))
		}
		generalSpan, ok := generalProduceRecords(p, n, rk, newDeltaSpan(b.BaseTimestamp()))
		if ok != (walkErr == nil) {
			t.Fatalf("requireKeys=%v: general path = %v, slow walk: %v\nsection % x", rk, ok, walkErr, head(p))
		}
		if walkErr != nil {
			continue
		}
		// The timestamp span: both loops against the records as decoded.
		wantSpan := TimeSpan{Min: NoTimestamp, Max: NoTimestamp}
		if err := slow.walk(b, p, ModeProduce, func(r *Record) error {
			ts := b.BaseTimestamp() + r.TimestampDelta
			wantSpan.Max = max(wantSpan.Max, ts)
			// A record at math.MaxInt64 counts as no Min (deltaSpan's
			// sentinel): no lower bound can refuse it.
			if ts != NoTimestamp && ts != math.MaxInt64 && (wantSpan.Min == NoTimestamp || ts < wantSpan.Min) {
				wantSpan.Min = ts
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := fastSpan.span(); got != wantSpan {
			t.Fatalf("requireKeys=%v: fast loop timestamp span %+v, records say %+v\nsection % x", rk, got, wantSpan, head(p))
		}
		if got := generalSpan.span(); got != wantSpan {
			t.Fatalf("requireKeys=%v: general path timestamp span %+v, records say %+v", rk, got, wantSpan)
		}
		if got, err := fast.ValidateProduceSpan(b, rk); err == nil && got != wantSpan {
			t.Fatalf("requireKeys=%v: ValidateProduceSpan = %+v, records say %+v", rk, got, wantSpan)
		}
	}
	return accepted
}

// head is the start of p, for failure messages.
func head(p []byte) []byte {
	if len(p) > 256 {
		return p[:256]
	}
	return p
}

// section encodes records as an uncompressed records section.
func section(rs []Record) []byte {
	var bl Builder
	for _, r := range rs {
		bl.Add(r)
	}
	return bl.records
}

// padVarint appends the zigzag encoding of v in exactly size bytes (size at
// least the natural size), padding with zero groups: an over-long encoding
// that the strict decoders still accept when size <= 5 (varint) or 10
// (varlong) and the value fits.
func padVarint(dst []byte, v int64, size int) []byte {
	u := uint64(v<<1) ^ uint64(v>>63)
	for k := 0; k < size-1; k++ {
		dst = append(dst, byte(u&0x7f)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

// wideRecord encodes r with every varint padded to at least w bytes
// (at most 5, or 10 for the timestamp varlong): valid, over-long encodings.
func wideRecord(r Record, w int) []byte {
	vi := func(dst []byte, v int64) []byte { return padVarint(dst, v, max(sizeVarint(v), min(w, 5))) }
	nb := func(dst, b []byte) []byte {
		if b == nil {
			return vi(dst, -1)
		}
		return append(vi(dst, int64(len(b))), b...)
	}
	body := []byte{byte(r.Attributes)}
	body = padVarint(body, r.TimestampDelta, max(sizeVarint(r.TimestampDelta), min(w, 10)))
	body = vi(body, int64(r.OffsetDelta))
	body = nb(body, r.Key)
	body = nb(body, r.Value)
	body = vi(body, int64(len(r.Headers)))
	for _, h := range r.Headers {
		body = vi(body, int64(len(h.Key)))
		body = append(body, h.Key...)
		body = nb(body, h.Value)
	}
	return append(vi(nil, int64(len(body))), body...)
}

// keyed returns rs with every null key replaced by "x".
func keyed(rs []Record) []Record {
	out := append([]Record(nil), rs...)
	for i := range out {
		if out[i].Key == nil {
			out[i].Key = []byte("x")
		}
	}
	return out
}

// produceSeeds returns valid produce records sections (with their record
// counts) of several shapes: one to hundreds of records (offset deltas past
// one byte), null and empty keys and values, tombstones, headers with null
// and empty values, long timestamp deltas, values needing two- and
// three-byte lengths, and over-long varint encodings. Without large, the
// sections are kept to a few KiB (fuzz seeds: the fuzzer minimises what
// it finds, and that is slow on large inputs).
func produceSeeds(large bool) (sections [][]byte, counts []int32) {
	add := func(p []byte, n int) {
		sections = append(sections, p)
		counts = append(counts, int32(n))
	}
	sizes := []int{1, 2, 5, 70}
	if large {
		sizes = append(sizes, 200)
		add(section(benchRecords(300)), 300)
	}
	for _, n := range sizes {
		add(section(sampleRecords(uint64(n), n)), n)
		add(section(keyed(sampleRecords(uint64(n)+100, n))), n)
	}
	// Values and header values whose length takes two (and, when large,
	// three) bytes; timestamp deltas of every size.
	long := 100
	if large {
		long = 10_000
	}
	big := []Record{
		{OffsetDelta: 0, Key: []byte("a"), Value: bytes.Repeat([]byte{'v'}, 64)},
		{OffsetDelta: 1, Key: []byte("b"), Value: bytes.Repeat([]byte{'w'}, long), TimestampDelta: 8192},
		{OffsetDelta: 2, Key: nil, Value: nil, TimestampDelta: -8193, Headers: []Header{
			{Key: bytes.Repeat([]byte{'h'}, 100), Value: bytes.Repeat([]byte{'x'}, long-10)},
			{Key: nil, Value: nil},
		}},
		{OffsetDelta: 3, Key: []byte{}, Value: []byte{}, TimestampDelta: math.MaxInt64},
		{OffsetDelta: 4, Key: []byte("e"), Value: []byte("f"), TimestampDelta: math.MinInt64},
	}
	add(section(big), len(big))
	add(section(keyed(big)), len(big))
	// Over-long encodings of every field, and a mix of widths.
	rs := sampleRecords(9, 10)
	for _, w := range []int{2, 3, 5, 10} {
		var p []byte
		for _, r := range rs {
			p = append(p, wideRecord(r, w)...)
		}
		add(p, len(rs))
	}
	var mixed []byte
	for i, r := range keyed(rs) {
		mixed = append(mixed, wideRecord(r, 1+i%6)...)
	}
	add(mixed, len(rs))
	return sections, counts
}

// TestValidateProduceMatches runs the differential check over the seed
// sections, uncompressed and under every codec, and over batches built by
// buildBatch (which sets a producer id and sequence).
func TestValidateProduceMatches(t *testing.T) {
	sections, counts := produceSeeds(true)
	for i, p := range sections {
		n := counts[i]
		for _, c := range allCodecs {
			data := p
			if c != CodecNone {
				var err error
				if data, err = Compress(c, nil, p); err != nil {
					t.Fatal(err)
				}
			}
			b := craftBatch(int16(c), n, n-1, data)
			if !checkProduceAgrees(t, b) {
				t.Fatalf("seed %d (%v): valid section refused: %v", i, c, slowProduce(new(Decoder), b, false))
			}
		}
	}
	for _, c := range allCodecs {
		b := buildBatch(t, int16(c), 0, sampleRecords(3, 300))
		if !checkProduceAgrees(t, b) {
			t.Fatalf("%v: built batch refused", c)
		}
	}
	// Offset deltas needing three bytes: 8,200 minimal records.
	var bl Builder
	for k := 0; k < 8200; k++ {
		bl.Add(Record{OffsetDelta: int32(k), Value: []byte{}})
	}
	if b := craftBatch(0, 8200, 8199, bl.records); !checkProduceAgrees(t, b) {
		t.Fatal("8,200-record batch refused")
	}
}

// TestValidateProduceCorruptionTable runs the differential check over the
// malformed-batch table of TestCorruptionTable, and checks ValidateProduce
// reports the table's sentinels.
func TestValidateProduceCorruptionTable(t *testing.T) {
	for _, tc := range corruptionCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			checkProduceAgrees(t, tc.batch)
			// As TestCorruptionTable: validate what ReadBatch splits off.
			b, _, err := ReadBatch(tc.batch)
			if err != nil {
				b = tc.batch
			}
			checkProduceAgrees(t, b)
			var d Decoder
			err = d.ValidateProduce(b, false)
			if !errors.Is(err, tc.valid) || (tc.valid != nil) != (err != nil) {
				t.Fatalf("ValidateProduce: %v, want %v", err, tc.valid)
			}
		})
	}
}

// TestValidateProduceRecordTable runs single malformed and edge-case records
// (the rawRec shapes of TestCorruptionTable and more) through the
// differential check.
func TestValidateProduceRecordTable(t *testing.T) {
	recs := map[string][]byte{
		"good":                 goodRec(0).encode(),
		"length_past_end":      rawRec{lengthDelta: 1, keyLen: 1, key: "k", valLen: -1}.encode(),
		"length_short":         rawRec{lengthDelta: -1, keyLen: 1, key: "k", valLen: -1}.encode(),
		"length_zero":          {0x00},
		"length_zero_trailing": {0x00, 0x00},
		"negative_length":      {0x03, 0, 0, 0},
		"bad_length_varint":    {0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"length_33_bits":       {0xff, 0xff, 0xff, 0xff, 0x10},
		"only_attributes":      {0x02, 0x00},
		"ts_truncated":         {0x04, 0x00, 0x80},
		"ts_10_bytes":          append(append([]byte{0x1e, 0x00}, bytes.Repeat([]byte{0xff}, 9)...), 0x01, 0x00, 0x01, 0x01, 0x00),
		"ts_11_bytes":          append(append([]byte{0x20, 0x00}, bytes.Repeat([]byte{0x80}, 10)...), 0x00, 0x00, 0x01, 0x01, 0x00),
		"ts_65_bits":           append(append([]byte{0x1e, 0x00}, bytes.Repeat([]byte{0xff}, 9)...), 0x02, 0x00, 0x01, 0x01, 0x00),
		"offset_delta_one":     goodRec(1).encode(),
		"offset_delta_minus":   goodRec(-1).encode(),
		"key_below_minus_one":  rawRec{keyLen: -2, valLen: -1}.encode(),
		"key_past_end":         rawRec{keyLen: 50, key: "k", valLen: -1}.encode(),
		"null_key":             rawRec{keyLen: -1, valLen: 1, val: "v"}.encode(),
		"empty_key":            rawRec{keyLen: 0, valLen: -1}.encode(),
		"value_below_minus_1":  rawRec{keyLen: 1, key: "k", valLen: -2}.encode(),
		"value_past_end":       rawRec{keyLen: -1, valLen: 3, val: "v"}.encode(),
		"header_count_huge":    rawRec{keyLen: -1, valLen: -1, hdrCount: 1 << 30}.encode(),
		"header_count_neg":     rawRec{keyLen: -1, valLen: -1, hdrCount: -1}.encode(),
		"header_count_2_of_1":  rawRec{keyLen: -1, valLen: -1, hdrCount: 2, hdrs: []byte{0x00, 0x01}}.encode(),
		"header_key_null":      rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x01, 0x01}}.encode(),
		"header_key_past_end":  rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x08, 0x01}}.encode(),
		"header_value_past":    rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x00, 0x08}}.encode(),
		"header_value_minus2":  rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x00, 0x03}}.encode(),
		"header_ok":            rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x02, 'h', 0x01}}.encode(),
		"header_left_over":     rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x02, 'h', 0x01, 0x00}}.encode(),
		"left_over":            rawRec{keyLen: -1, valLen: -1, hdrs: []byte{0x00}}.encode(),
		"header_len_varint":    rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01}}.encode(),
		"header_len_5_bytes":   rawRec{keyLen: -1, valLen: -1, hdrCount: 1, hdrs: []byte{0x80, 0x80, 0x80, 0x80, 0x00, 0x01}}.encode(),
	}
	// Sign flips: the zigzag low bit of each field of a good record set,
	// so that a length reads as negative while its magnitude still fits.
	good := rawRec{keyLen: 1, key: "k", valLen: 1, val: "v", hdrCount: 1, hdrs: []byte{0x02, 'h', 0x02, 'w'}}.encode()
	for i := range good {
		if good[i]&1 == 0 {
			flipped := append([]byte(nil), good...)
			flipped[i] |= 1
			recs[fmt.Sprintf("sign_flip_byte_%d", i)] = flipped
		}
	}
	for name, rec := range recs {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int32{0, 1, 2} {
				checkProduceAgrees(t, craftBatch(0, n, n-1, rec))
				// After a valid first record, and followed by one.
				two := append(goodRec(0).encode(), rec...)
				checkProduceAgrees(t, craftBatch(0, n+1, n, two))
				checkProduceAgrees(t, craftBatch(0, n+1, n, append(append([]byte(nil), rec...), goodRec(1).encode()...)))
			}
		})
	}
}

// mutate applies one random mutation to p: a byte set to a random or an
// interesting value, a flipped bit, an inserted, deleted or duplicated
// run, or a truncation.
func mutate(rng *rand.Rand, p []byte) []byte {
	p = append([]byte(nil), p...)
	if len(p) == 0 {
		return append(p, byte(rng.UintN(256)))
	}
	at := rng.IntN(len(p))
	switch rng.IntN(8) {
	case 0:
		p[at] = byte(rng.UintN(256))
	case 1:
		p[at] ^= 1 << rng.UintN(8)
	case 2:
		p[at] = []byte{0x00, 0x01, 0x02, 0x03, 0x0f, 0x10, 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff}[rng.IntN(12)]
	case 3:
		p = append(p[:at], append([]byte{byte(rng.UintN(256))}, p[at:]...)...)
	case 4:
		p = append(p[:at], p[at+1:]...)
	case 5:
		p = p[:at]
	case 6:
		end := min(len(p), at+1+rng.IntN(16))
		p = append(p[:end], append(append([]byte(nil), p[at:end]...), p[end:]...)...)
	case 7:
		p[at] |= 0x80 // lengthen a varint
	}
	return p
}

// TestValidateProduceMutations: mutated valid sections (one to three
// mutations each, record count kept or moved by one) get the same verdict
// from the fast and the slow walks.
func TestValidateProduceMutations(t *testing.T) {
	sections, counts := produceSeeds(true)
	rng := rand.New(rand.NewPCG(11, 13))
	rounds := 400
	if testing.Short() {
		rounds = 50
	}
	for i, p := range sections {
		for r := 0; r < rounds; r++ {
			m := p
			for k := 0; k <= rng.IntN(3); k++ {
				m = mutate(rng, m)
			}
			n := counts[i] + int32(rng.IntN(3)) - 1
			checkProduceAgrees(t, craftBatch(0, n, n-1, m))
			if r%50 == 0 {
				// The decompressed-buffer path.
				c := allCodecs[1+rng.IntN(len(allCodecs)-1)]
				data, err := Compress(c, nil, m)
				if err != nil {
					t.Fatal(err)
				}
				checkProduceAgrees(t, craftBatch(int16(c), n, n-1, data))
			}
		}
	}
}

// TestValidateProduceBitFlips flips every bit of the smaller seed sections,
// one at a time, and sets every byte of a two-record section to every
// value: each result gets the same verdict from the fast and slow walks.
func TestValidateProduceBitFlips(t *testing.T) {
	sections, counts := produceSeeds(false)
	limit := 2048
	if testing.Short() {
		limit = 256
	}
	for s, p := range sections {
		if len(p) > limit {
			continue
		}
		n := counts[s]
		for i := range p {
			for bit := 0; bit < 8; bit++ {
				m := append([]byte(nil), p...)
				m[i] ^= 1 << bit
				checkProduceAgrees(t, craftBatch(0, n, n-1, m))
			}
		}
	}
	two := append(keyedRec(0), keyedRec(1)...)
	for i := range two {
		for v := 0; v < 256; v++ {
			m := append([]byte(nil), two...)
			m[i] = byte(v)
			checkProduceAgrees(t, craftBatch(0, 2, 1, m))
		}
	}
}

// keyedRec is a small record with a key, a value and a header.
func keyedRec(off int64) []byte {
	return rawRec{keyLen: 1, key: "k", valLen: 1, val: "v", hdrCount: 1, hdrs: []byte{0x02, 'h', 0x01}, offsetDelta: off}.encode()
}

// TestUvarint12 checks uvarint12 against readVarint on every one- and
// two-byte input and on the Kafka vectors, at the end of a slice and not.
func TestUvarint12(t *testing.T) {
	check := func(b []byte) {
		for _, tail := range [][]byte{nil, {0x00}} {
			in := append(append([]byte(nil), b...), tail...)
			x, n := uvarint12(in, 0)
			rv, rn := readVarint(in, 0)
			if n >= 0 && (int32(x>>1)^-int32(x&1) != rv || n != rn) {
				t.Fatalf("uvarint12(% x) = %d, %d; readVarint = %d, %d", in, x, n, rv, rn)
			}
			if n < 0 && rn >= 0 && rn <= 2 {
				t.Fatalf("uvarint12(% x) gave up on a %d-byte varint", in, rn)
			}
		}
	}
	for x := 0; x < 1<<16; x++ {
		check([]byte{byte(x), byte(x >> 8)})
		check([]byte{byte(x)})
	}
	for _, v := range []int64{0, -1, 1, 63, -64, 64, -65, 8191, -8192, 8192, math.MaxInt32, math.MinInt32} {
		check(appendVarint(nil, v))
	}
	for _, i := range []int{-1, 0, 1} {
		if _, n := uvarint12(nil, i); n >= 0 {
			t.Fatalf("uvarint12 of nothing at %d", i)
		}
	}
}

// TestValidateProduceAllocs: no allocation per uncompressed batch, with or
// without the key requirement.
func TestValidateProduceAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("alloc counts")
	}
	for _, c := range allCodecs {
		b := buildBatch(t, int16(c), 0, keyed(sampleRecords(2, 200)))
		var d Decoder
		for _, rk := range []bool{false, true} {
			_ = d.ValidateProduce(b, rk)
			allocs := testing.AllocsPerRun(50, func() {
				if err := d.ValidateProduce(b, rk); err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("%v requireKeys=%v: %.1f allocs per 200-record batch", c, rk, allocs)
			if c == CodecNone && allocs != 0 {
				t.Errorf("uncompressed ValidateProduce allocates %.1f times", allocs)
			}
			if allocs > 20 {
				t.Errorf("%v: %.1f allocs per batch", c, allocs)
			}
		}
	}
}

// FuzzValidateProduce is the differential fuzz target of the produce fast
// path: the fuzzer's bytes are the records section of a batch declaring
// count records, uncompressed and (when codec selects one) as the
// decompressed content of a compressed batch. Seeds are valid sections of
// several shapes (see produceSeeds), so the fuzzer also explores mutated
// valid batches. Invariant (checkProduceAgrees): ValidateProduce and the
// fast loop accept exactly what ValidateEach's slow walk accepts, with or
// without required keys, and fail with the same error.
func FuzzValidateProduce(f *testing.F) {
	sections, counts := produceSeeds(false)
	for i, p := range sections {
		f.Add(uint8(i%len(allCodecs)), counts[i], p)
	}
	f.Add(uint8(0), int32(1), []byte{0x00})
	f.Add(uint8(0), int32(2), []byte{})
	f.Fuzz(func(t *testing.T, codec uint8, count int32, records []byte) {
		checkProduceAgrees(t, craftBatch(0, count, count-1, records))
		if c := Codec(codec % uint8(len(allCodecs))); c != CodecNone && len(records) < 1<<16 {
			data, err := Compress(c, nil, records)
			if err != nil {
				t.Fatal(err)
			}
			checkProduceAgrees(t, craftBatch(int16(c), count, count-1, data))
		}
	})
}
