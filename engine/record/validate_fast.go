package record

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
func validProduceRecords(p []byte, n int32, requireKeys bool) bool {
	i, k := 0, int32(0)
	for {
		var ok bool
		if i, k, ok = shortProduceRecords(p, i, k, n, requireKeys); !ok {
			return false
		}
		if k >= n {
			return i == len(p)
		}
		if i = produceRecordEnd(p, i, k, requireKeys); i < 0 {
			return false
		}
		k++
	}
}

// shortProduceRecords checks records k, k+1, ... n-1 of p from index i, as
// validProduceRecords does, while their varints are one or two bytes long
// (uvarint12). It returns the index and number of the first record it could
// not check that way (i, n when it reached the end of the batch), or
// ok == false when a record is refused. It makes no call, so that nothing
// spills from registers in its loop.
func shortProduceRecords(p []byte, i int, k, n int32, requireKeys bool) (int, int32, bool) {
	// Varints are kept zigzag-encoded (x = 2v for v >= 0, 2|v|-1 for
	// v < 0): a length v >= 0 is x>>1 with x even, null (-1) is x == 1,
	// and any other odd x is a negative length below -1.
	for ; k < n; k++ {
		// A uvarint12 failure (next < 0) only means "not a short varint":
		// the record is then left to produceRecordEnd. Every other failure
		// is final.
		x, j := uvarint12(p, i)
		if j < 0 {
			return i, k, true
		}
		if x&1 != 0 || x == 0 || int(x>>1) > len(p)-j { // length >= 1, within p
			return i, k, false
		}
		end := j + int(x>>1)
		body := p[:end]
		j++ // attributes: every value is allowed
		// Timestamp delta: only its encoding matters.
		if uint(j) < uint(len(body)) && body[j] < 0x80 {
			j++
		} else if uint(j+1) < uint(len(body)) && body[j+1] < 0x80 {
			j += 2
		} else {
			return i, k, true
		}
		if x, j = uvarint12(body, j); j < 0 { // offset delta
			return i, k, true
		}
		if x != uint32(k)<<1 {
			return i, k, false
		}
		if x, j = uvarint12(body, j); j < 0 { // key length
			return i, k, true
		}
		if x&1 == 0 {
			if int(x>>1) > end-j {
				return i, k, false
			}
			j += int(x >> 1)
		} else if x != 1 || requireKeys {
			return i, k, false
		}
		if x, j = uvarint12(body, j); j < 0 { // value length
			return i, k, true
		}
		if x&1 == 0 {
			if int(x>>1) > end-j {
				return i, k, false
			}
			j += int(x >> 1)
		} else if x != 1 {
			return i, k, false
		}
		var count uint32
		if count, j = uvarint12(body, j); j < 0 {
			return i, k, true
		}
		if count&1 != 0 || int(count>>1) > (end-j)/2 {
			return i, k, false
		}
		for count >>= 1; count > 0; count-- {
			if x, j = uvarint12(body, j); j < 0 { // header key length
				return i, k, true
			}
			if x&1 != 0 || int(x>>1) > end-j {
				return i, k, false
			}
			j += int(x >> 1)
			if x, j = uvarint12(body, j); j < 0 { // header value length
				return i, k, true
			}
			if x&1 == 0 {
				if int(x>>1) > end-j {
					return i, k, false
				}
				j += int(x >> 1)
			} else if x != 1 {
				return i, k, false
			}
		}
		if j != end {
			return i, k, false
		}
		i = end
	}
	return i, k, true
}

// produceRecordEnd checks the record at p[i:], the k-th of its batch, as
// validProduceRecords does, reading every varint with readVarint or
// readVarlong, and returns the index after it, or -1 if the record is
// refused.
func produceRecordEnd(p []byte, i int, k int32, requireKeys bool) int {
	length, j := readVarint(p, i)
	if j < 0 || length <= 0 || int(length) > len(p)-j {
		return -1
	}
	end := j + int(length)
	body := p[:end]
	j++ // attributes
	// Timestamp delta: only its encoding matters.
	if _, j = readVarlong(body, j); j < 0 {
		return -1
	}
	var v int32
	if v, j = readVarint(body, j); j < 0 || v != k { // offset delta
		return -1
	}
	if v, j = readVarint(body, j); j < 0 { // key length
		return -1
	}
	if v >= 0 {
		if int(v) > end-j {
			return -1
		}
		j += int(v)
	} else if v != -1 || requireKeys {
		return -1
	}
	if v, j = readVarint(body, j); j < 0 { // value length
		return -1
	}
	if v >= 0 {
		if int(v) > end-j {
			return -1
		}
		j += int(v)
	} else if v != -1 {
		return -1
	}
	count, j := readVarint(body, j)
	if j < 0 || count < 0 || int(count) > (end-j)/2 {
		return -1
	}
	for ; count > 0; count-- {
		if v, j = readVarint(body, j); j < 0 || v < 0 || int(v) > end-j { // header key length
			return -1
		}
		j += int(v)
		if v, j = readVarint(body, j); j < 0 || v < -1 || int(v) > end-j { // header value length
			return -1
		}
		if v > 0 {
			j += int(v)
		}
	}
	if j != end {
		return -1
	}
	return end
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
