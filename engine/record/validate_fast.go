package record

import "math"

// validProduceRecords reports whether p, the (decompressed) records section
// of a batch declaring n records, passes the record checks of
// ValidateEach(b, ModeProduce, fn) with fn refusing null keys when
// requireKeys is set: exactly n records and nothing after them; each a
// length varint >= 1 whose body fits in p; in the body, an attributes byte
// (any value), a timestamp-delta varlong, an offset-delta varint equal to
// the record's index, a key (non-null when requireKeys) and a value (varint
// length >= -1, bytes within the body), a header-count varint in
// [0, bytes left/2] and that many headers (key length >= 0, value length
// >= -1, bytes within the body), ending exactly at the end of the body.
// Varints are as strict as readVarint and readVarlong (at most 5 bytes and
// 32 bits, 10 bytes and 64 bits).
//
// It is the produce path's fast equivalent of Decoder.walk: no Record is
// filled and no callback is made. The one- and two-byte varints that make
// up nearly every real record are decoded inline (uvarint12); a record with
// a longer varint anywhere is checked by produceRecordEnd, which reads
// every varint the general way. It only answers yes or no; on no,
// ValidateProduce walks again the slow way for the precise error.
// FuzzValidateProduce and TestValidateProduceMutations check that both
// walks accept the same sections.
//
// On the way it gathers the records' timestamp deltas into s (see
// deltaSpan), which the caller starts with newDeltaSpan(baseTimestamp).
func validProduceRecords(p []byte, n int32, requireKeys bool, s deltaSpan) (deltaSpan, bool) {
	i, k := 0, int32(0)
	for {
		var ok bool
		if i, k, s, ok = shortProduceRecords(p, i, k, n, requireKeys, s); !ok {
			return s, false
		}
		if k >= n {
			return s, i == len(p)
		}
		if i, s = produceRecordEnd(p, i, k, requireKeys, s); i < 0 {
			return s, false
		}
		k++
	}
}

// deltaSpan gathers the timestamps of a batch's records from their deltas
// to the base timestamp (added as Kafka does, wrapping on overflow): hi
// is the largest and at least NoTimestamp, lo the smallest of those that
// are not NoTimestamp, as Kafka's timestamp checks skip records without a
// timestamp.
// (lo stays math.MaxInt64 while there is none: a record at that time is
// never before a bound, so taking it for "none" loses no check).
type deltaSpan struct{ base, lo, hi int64 }

func newDeltaSpan(base int64) deltaSpan {
	return deltaSpan{base: base, lo: math.MaxInt64, hi: NoTimestamp}
}

// add records delta d. It is small enough to be inlined.
func (s deltaSpan) add(d int64) deltaSpan {
	ts := s.base + d
	s.hi = max(s.hi, ts)
	if ts != NoTimestamp {
		s.lo = min(s.lo, ts)
	}
	return s
}

// TimeSpan is the range of a batch's record timestamps.
type TimeSpan struct {
	// Max is the largest record timestamp, and NoTimestamp when it is
	// lower or there are no records: the MaxTimestamp a CreateTime batch
	// must carry, as Kafka's leader computes it.
	Max int64
	// Min is the smallest record timestamp other than NoTimestamp, and
	// NoTimestamp when no record has one. Kafka's
	// message.timestamp.before/after.max.ms bounds apply to Min and Max.
	Min int64
}

// span is what s gathered.
func (s deltaSpan) span() TimeSpan {
	t := TimeSpan{Max: s.hi, Min: NoTimestamp}
	if s.lo != math.MaxInt64 {
		t.Min = s.lo
	}
	return t
}

// shortProduceRecords checks records k, k+1, ... n-1 of p from index i, as
// validProduceRecords does, while their varints are one or two bytes long
// (uvarint12). It returns the index and number of the first record it could
// not check that way (i, n when it reached the end of the batch), or
// ok == false when a record is refused. It makes no call, so that nothing
// spills from registers in its loop.
func shortProduceRecords(p []byte, i int, k, n int32, requireKeys bool, s deltaSpan) (int, int32, deltaSpan, bool) {
	// Varints are kept zigzag-encoded (x = 2v for v >= 0, 2|v|-1 for
	// v < 0): a length v >= 0 is x>>1 with x even, null (-1) is x == 1,
	// and any other odd x is a negative length below -1.
	for ; k < n; k++ {
		// A uvarint12 failure (next < 0) only means "not a short varint":
		// the record is then left to produceRecordEnd. Every other failure
		// is final.
		x, j := uvarint12(p, i)
		if j < 0 {
			return i, k, s, true
		}
		if x&1 != 0 || x == 0 || int(x>>1) > len(p)-j { // length >= 1, within p
			return i, k, s, false
		}
		end := j + int(x>>1)
		body := p[:end]
		j++ // attributes: every value is allowed
		// Timestamp delta (zigzag varlong), one or two bytes.
		var t uint64
		if uint(j) < uint(len(body)) && body[j] < 0x80 {
			t = uint64(body[j])
			j++
		} else if uint(j+1) < uint(len(body)) && body[j+1] < 0x80 {
			t = uint64(body[j]&0x7f) | uint64(body[j+1])<<7
			j += 2
		} else {
			return i, k, s, true
		}
		if x, j = uvarint12(body, j); j < 0 { // offset delta
			return i, k, s, true
		}
		if x != uint32(k)<<1 {
			return i, k, s, false
		}
		if x, j = uvarint12(body, j); j < 0 { // key length
			return i, k, s, true
		}
		if x&1 == 0 {
			if int(x>>1) > end-j {
				return i, k, s, false
			}
			j += int(x >> 1)
		} else if x != 1 || requireKeys {
			return i, k, s, false
		}
		if x, j = uvarint12(body, j); j < 0 { // value length
			return i, k, s, true
		}
		if x&1 == 0 {
			if int(x>>1) > end-j {
				return i, k, s, false
			}
			j += int(x >> 1)
		} else if x != 1 {
			return i, k, s, false
		}
		var count uint32
		if count, j = uvarint12(body, j); j < 0 {
			return i, k, s, true
		}
		if count&1 != 0 || int(count>>1) > (end-j)/2 {
			return i, k, s, false
		}
		for count >>= 1; count > 0; count-- {
			if x, j = uvarint12(body, j); j < 0 { // header key length
				return i, k, s, true
			}
			if x&1 != 0 || int(x>>1) > end-j {
				return i, k, s, false
			}
			j += int(x >> 1)
			if x, j = uvarint12(body, j); j < 0 { // header value length
				return i, k, s, true
			}
			if x&1 == 0 {
				if int(x>>1) > end-j {
					return i, k, s, false
				}
				j += int(x >> 1)
			} else if x != 1 {
				return i, k, s, false
			}
		}
		if j != end {
			return i, k, s, false
		}
		s = s.add(int64(t>>1) ^ -int64(t&1))
		i = end
	}
	return i, k, s, true
}

// produceRecordEnd checks the record at p[i:], the k-th of its batch, as
// validProduceRecords does, reading every varint with readVarint or
// readVarlong, and returns the index after it, or -1 if the record is
// refused.
func produceRecordEnd(p []byte, i int, k int32, requireKeys bool, s deltaSpan) (int, deltaSpan) {
	length, j := readVarint(p, i)
	if j < 0 || length <= 0 || int(length) > len(p)-j {
		return -1, s
	}
	end := j + int(length)
	body := p[:end]
	j++ // attributes
	var ts int64
	if ts, j = readVarlong(body, j); j < 0 {
		return -1, s
	}
	var v int32
	if v, j = readVarint(body, j); j < 0 || v != k { // offset delta
		return -1, s
	}
	if v, j = readVarint(body, j); j < 0 { // key length
		return -1, s
	}
	if v >= 0 {
		if int(v) > end-j {
			return -1, s
		}
		j += int(v)
	} else if v != -1 || requireKeys {
		return -1, s
	}
	if v, j = readVarint(body, j); j < 0 { // value length
		return -1, s
	}
	if v >= 0 {
		if int(v) > end-j {
			return -1, s
		}
		j += int(v)
	} else if v != -1 {
		return -1, s
	}
	count, j := readVarint(body, j)
	if j < 0 || count < 0 || int(count) > (end-j)/2 {
		return -1, s
	}
	for ; count > 0; count-- {
		if v, j = readVarint(body, j); j < 0 || v < 0 || int(v) > end-j { // header key length
			return -1, s
		}
		j += int(v)
		if v, j = readVarint(body, j); j < 0 || v < -1 || int(v) > end-j { // header value length
			return -1, s
		}
		if v > 0 {
			j += int(v)
		}
	}
	if j != end {
		return -1, s
	}
	return end, s.add(ts)
}

// uvarint12 decodes the 7-bit groups of a one- or two-byte varint at b[i:]
// without undoing the zigzag encoding (readVarint's value v is
// int32(x>>1) ^ -int32(x&1)) and returns them and the index after the
// varint, as readVarint would. For anything else (a longer varint, or b
// ending before the varint does) it returns next < 0 without saying
// whether the varint is valid: the caller must then use readVarint. It is
// small enough to be inlined.
func uvarint12(b []byte, i int) (x uint32, next int) {
	if uint(i) < uint(len(b)) {
		x = uint32(b[i])
		if x < 0x80 {
			return x, i + 1
		}
		if i+1 < len(b) {
			if c := uint32(b[i+1]); c < 0x80 {
				return x&0x7f | c<<7, i + 2
			}
		}
	}
	return 0, -1
}
