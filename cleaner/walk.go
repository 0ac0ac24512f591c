package cleaner

import (
	"errors"
	"fmt"
	"math"

	"github.com/kvlog/kvlog/engine/record"
)

// This file is the cleaner's record walk: a tight loop over a batch's
// (uncompressed) records section that reads of each record only what a pass
// needs — offset, timestamp, key, whether the value is null, and where the
// record's bytes lie — skipping values and headers by their lengths, without
// building record.Record values or calling back per record. Re-encoding a
// thinned batch copies the retained records' bytes (see rebuild in clean.go).

// errRecords marks a records section the walk cannot parse; callers wrap it
// with ErrCorrupt and where it was found.
var errRecords = errors.New("malformed records section")

// recInfo is what a pass needs of one record of the batch being looked at.
type recInfo struct {
	off    int64  // absolute offset
	ts     int64  // BaseTimestamp + timestamp delta, as stored
	h1, h2 uint64 // key digest, when computed (hashed)
	start  int32  // the record's first byte (its length varint) in the section
	attrAt int32  // its attributes byte, the first of its body
	tsEnd  int32  // the byte after its timestamp delta
	end    int32  // the byte after the record
	keyOff int32  // the key's first byte
	keyLen int32  // -1: null key
	tomb   bool   // keyed with a null value
	hashed bool
	keep   bool
}

func (r *recInfo) keyed() bool { return r.keyLen >= 0 }

// key returns the record's key within its records section p (nil: null).
func (r *recInfo) key(p []byte) []byte {
	if r.keyLen < 0 {
		return nil
	}
	return p[r.keyOff : r.keyOff+r.keyLen : r.keyOff+r.keyLen]
}

// Varints are read inline when they take one byte (most fields of usual
// records) or two (record and value lengths of records of 64 to 8191 bytes);
// varint reads any other, at most 10 bytes long (callers bound the values).
// It returns the value and the index after it, or -1 when the bytes run out
// or the varint is longer.
//
//go:noinline
func varint(p []byte, i int) (int64, int) {
	var x uint64
	for k, s := 0, uint(0); k < 10; k, s = k+1, s+7 {
		if i < 0 || i >= len(p) {
			return 0, -1
		}
		c := p[i]
		i++
		x |= uint64(c&0x7f) << s
		if c < 0x80 {
			return int64(x>>1) ^ -int64(x&1), i
		}
	}
	return 0, -1
}

// recFields is one record as parseRecord finds it in a records section:
// byte positions within the section and the decoded fields a pass needs.
type recFields struct {
	start, attrAt, tsEnd, end int // record's first byte, attributes, after the timestamp delta, after the record
	keyOff                    int
	tsDelta, od               int64
	kl, vl                    int64 // -1: null
}

// parseRecord parses record k at p[i:] (the previous record's offset delta
// was prevDelta): its length, timestamp and offset deltas (increasing,
// within [0, lastDelta]), key and value lengths, within the record's length.
// Varints of one byte (two for the record and value lengths) are read
// inline. Header bytes are not looked at. The error wraps errRecords.
func parseRecord(p []byte, i, k int, prevDelta, lastDelta int64) (r recFields, err error) {
	r.start = i
	var length int64
	j := i
	if j+1 < len(p) && p[j] < 0x80 {
		length = int64(p[j]>>1) ^ -int64(p[j]&1)
		j++
	} else if j+1 < len(p) && p[j+1] < 0x80 {
		x := uint64(p[j]&0x7f) | uint64(p[j+1])<<7
		length = int64(x>>1) ^ -int64(x&1)
		j += 2
	} else if length, j = varint(p, j); j < 0 {
		return r, fmt.Errorf("%w: record %d at byte %d: bad length", errRecords, k, i)
	}
	if length <= 0 || length > int64(len(p)-j) {
		return r, fmt.Errorf("%w: record %d at byte %d: bad length %d", errRecords, k, i, length)
	}
	r.end = j + int(length)
	q := p[:r.end]
	r.attrAt = j
	j++
	if j < len(q) && q[j] < 0x80 {
		r.tsDelta = int64(q[j]>>1) ^ -int64(q[j]&1)
		j++
	} else if r.tsDelta, j = varint(q, j); j < 0 {
		return r, fmt.Errorf("%w: record %d at byte %d: bad timestamp delta", errRecords, k, i)
	}
	r.tsEnd = j
	if j < len(q) && q[j] < 0x80 {
		r.od = int64(q[j]>>1) ^ -int64(q[j]&1)
		j++
	} else if r.od, j = varint(q, j); j < 0 {
		return r, fmt.Errorf("%w: record %d at byte %d: bad offset delta", errRecords, k, i)
	}
	if r.od <= prevDelta || r.od > lastDelta {
		return r, fmt.Errorf("%w: record %d at byte %d: offset delta %d after %d (last %d)", errRecords, k, i, r.od, prevDelta, lastDelta)
	}
	if j < len(q) && q[j] < 0x80 {
		r.kl = int64(q[j]>>1) ^ -int64(q[j]&1)
		j++
	} else if r.kl, j = varint(q, j); j < 0 {
		return r, fmt.Errorf("%w: record %d at byte %d: bad key length", errRecords, k, i)
	}
	if r.kl < -1 || r.kl > int64(r.end-j) {
		return r, fmt.Errorf("%w: record %d at byte %d: key length %d", errRecords, k, i, r.kl)
	}
	r.keyOff = j
	if r.kl > 0 {
		j += int(r.kl)
	}
	if j+1 < len(q) && q[j] < 0x80 {
		r.vl = int64(q[j]>>1) ^ -int64(q[j]&1)
		j++
	} else if j+1 < len(q) && q[j+1] < 0x80 {
		x := uint64(q[j]&0x7f) | uint64(q[j+1])<<7
		r.vl = int64(x>>1) ^ -int64(x&1)
		j += 2
	} else if r.vl, j = varint(q, j); j < 0 {
		return r, fmt.Errorf("%w: record %d at byte %d: bad value length", errRecords, k, i)
	}
	if r.vl < -1 || r.vl > int64(r.end-j) {
		return r, fmt.Errorf("%w: record %d at byte %d: value length %d", errRecords, k, i, r.vl)
	}
	return r, nil
}

// walk parses the records section p of batch b (p is b's own section, or its
// decompressed copy) into w.recs. It checks that p holds exactly the
// NumRecords records the header declares, each within its length, with
// offset deltas increasing within [0, LastOffsetDelta]; it does not look
// inside values and headers. It digests the keys of the records h selects
// (while they are in cache) and, when the map is too large for the cache,
// then touches their probe lines, so that the cache misses of the batch's
// lookups overlap.
func (w *worker) walk(b record.Batch, p []byte, h hashing) error {
	n := int(b.NumRecords())
	base, baseTs := b.BaseOffset(), b.BaseTimestamp()
	lastDelta := int64(b.LastOffsetDelta())
	if n < 0 || n > len(p) { // a record takes at least 7 bytes
		return fmt.Errorf("%w: %d records declared in %d bytes", errRecords, n, len(p))
	}
	if len(p) > math.MaxInt32 {
		return fmt.Errorf("%w: %d bytes", errRecords, len(p))
	}
	if cap(w.recs) < n {
		w.recs = make([]recInfo, n, n+n/4)
	}
	recs := w.recs[:n]
	i, prev := 0, int64(-1)
	for k := range recs {
		r := &recs[k]
		f, err := parseRecord(p, i, k, prev, lastDelta)
		if err != nil {
			return err
		}
		prev = f.od
		kl := f.kl
		*r = recInfo{
			off: base + f.od, ts: baseTs + f.tsDelta,
			start: int32(f.start), attrAt: int32(f.attrAt), tsEnd: int32(f.tsEnd), end: int32(f.end),
			keyOff: int32(f.keyOff), keyLen: int32(kl),
			tomb: kl >= 0 && f.vl == -1,
		}
		if kl >= 0 && r.off >= h.from && r.off < h.to {
			h1, h2 := keyDigest(p[f.keyOff : f.keyOff+int(kl)])
			if h.all || h.rng.has(h1) {
				r.h1, r.h2, r.hashed = h1, h2, true
			}
		}
		i = f.end
	}
	if h.touch {
		// A tight loop, so that the misses overlap (in the loop above, each
		// would hold back the work of the records after it).
		var sink uint64
		for k := range recs {
			if recs[k].hashed && h.rng.has(recs[k].h1) {
				sink += w.m.touch(recs[k].h1)
			}
		}
		w.sink += sink
	}
	if i != len(p) {
		return fmt.Errorf("%w: %d bytes after the %d declared records", errRecords, len(p)-i, n)
	}
	w.recs = recs
	return nil
}

// hashing says which records walk digests: keyed ones with an offset in
// [from, to) and a key in rng, or any key when all.
type hashing struct {
	from, to int64
	rng      keyRange
	all      bool
	touch    bool // touch the probe lines of the digests in rng (OffsetMap.prefetch)
}

// noHashing digests no record.
var noHashing = hashing{from: math.MaxInt64, to: math.MaxInt64}

// section returns the plain records section of b: b's own bytes, or b's
// records decompressed into w.plain.
func (w *worker) section(b record.Batch) ([]byte, error) {
	if b.Codec() == record.CodecNone {
		return b.Records(), nil
	}
	var err error
	w.plain, err = record.Decompress(b.Codec(), w.plain[:0], b.Records(), record.DefaultMaxDecompressed)
	return w.plain, err
}
