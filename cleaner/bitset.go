package cleaner

import "math/bits"

// bitset is a fixed-size set of small non-negative integers, one bit each. A
// pass keeps three: which offsets of the dirty section hold the latest record
// of their key (keep), which hold tombstones (tomb), and which records of the
// clean section a later record supersedes (cleanDrop, by record ordinal).
type bitset []uint64

// resize returns b able to hold n bits, all clear, reusing b's memory when it
// is large enough.
func (b bitset) resize(n int64) bitset {
	words := int((n + 63) / 64)
	if cap(b) < words {
		return make(bitset, words)
	}
	b = b[:words]
	clear(b)
	return b
}

func (b bitset) set(i int64)   { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) unset(i int64) { b[i>>6] &^= 1 << (uint(i) & 63) }

func (b bitset) has(i int64) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }

// hasAt is has for a set that may be shorter than i (bits beyond it are clear).
func (b bitset) hasAt(i int64) bool { return i>>6 < int64(len(b)) && b.has(i) }

// grow makes room for bit i, keeping the bits set so far.
func (b bitset) grow(i int64) bitset {
	for i>>6 >= int64(len(b)) {
		b = append(b, 0)
	}
	return b
}

// count returns the number of bits set in [lo, hi] and of those also set in
// and (the bits set in both). lo <= hi, both within the set.
func (b bitset) count(and bitset, lo, hi int64) (n, both int) {
	wl, wh := lo>>6, hi>>6
	ml := ^uint64(0) << (uint(lo) & 63)
	mh := ^uint64(0) >> (63 - uint(hi)&63)
	for w := wl; w <= wh; w++ {
		m := ^uint64(0)
		if w == wl {
			m &= ml
		}
		if w == wh {
			m &= mh
		}
		x := b[w] & m
		n += bits.OnesCount64(x)
		both += bits.OnesCount64(x & and[w])
	}
	return n, both
}
