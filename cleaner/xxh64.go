package cleaner

import (
	"encoding/binary"
	"math/bits"
)

// sum64Seed is XXH64 of b with a seed, in one shot. github.com/cespare/xxhash/v2
// offers a one-shot function only for seed 0 (Sum64, used for the digest's
// first half); its seeded Digest streams through a buffer, which costs
// more than the whole map lookup for short keys. TestSum64Seed checks this
// function against that Digest.
func sum64Seed(b []byte, seed uint64) uint64 {
	const (
		p1 uint64 = 11400714785074694791
		p2 uint64 = 14029467366897019727
		p3 uint64 = 1609587929392839161
		p4 uint64 = 9650029242287828579
		p5 uint64 = 2870177450012600261
	)
	le := binary.LittleEndian
	round := func(acc, in uint64) uint64 { return bits.RotateLeft64(acc+in*p2, 31) * p1 }
	n := uint64(len(b))
	var h uint64
	if len(b) >= 32 {
		v1, v2, v3, v4 := seed+p1+p2, seed+p2, seed, seed-p1
		for ; len(b) >= 32; b = b[32:] {
			v1 = round(v1, le.Uint64(b[0:8]))
			v2 = round(v2, le.Uint64(b[8:16]))
			v3 = round(v3, le.Uint64(b[16:24]))
			v4 = round(v4, le.Uint64(b[24:32]))
		}
		h = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) + bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		for _, v := range [4]uint64{v1, v2, v3, v4} {
			h ^= round(0, v)
			h = h*p1 + p4
		}
	} else {
		h = seed + p5
	}
	h += n
	for ; len(b) >= 8; b = b[8:] {
		h ^= round(0, le.Uint64(b[:8]))
		h = bits.RotateLeft64(h, 27)*p1 + p4
	}
	if len(b) >= 4 {
		h ^= uint64(le.Uint32(b[:4])) * p1
		h = bits.RotateLeft64(h, 23)*p2 + p3
		b = b[4:]
	}
	for _, c := range b {
		h ^= uint64(c) * p5
		h = bits.RotateLeft64(h, 11) * p1
	}
	h ^= h >> 33
	h *= p2
	h ^= h >> 29
	h *= p3
	h ^= h >> 32
	return h
}

// digest2 returns XXH64 of b with seed 0 and with seed digestSeed, computed
// together: below 32 bytes the two differ only by their starting value, so
// each input word is mixed once and both accumulators advance side by side
// (about the cost of one hash for short keys). TestDigest2 checks it against
// xxhash.Sum64 and sum64Seed.
func digest2(b []byte) (uint64, uint64) {
	const (
		p1 uint64 = 11400714785074694791
		p2 uint64 = 14029467366897019727
		p3 uint64 = 1609587929392839161
		p4 uint64 = 9650029242287828579
		p5 uint64 = 2870177450012600261
	)
	le := binary.LittleEndian
	n := uint64(len(b))
	var h, g, z uint64
	s := uint64(digestSeed)
	if len(b) >= 32 {
		v1, v2, v3, v4 := z+p1+p2, z+p2, z, z-p1
		w1, w2, w3, w4 := s+p1+p2, s+p2, s, s-p1
		for ; len(b) >= 32; b = b[32:] {
			x1, x2, x3, x4 := le.Uint64(b[0:8])*p2, le.Uint64(b[8:16])*p2, le.Uint64(b[16:24])*p2, le.Uint64(b[24:32])*p2
			v1 = bits.RotateLeft64(v1+x1, 31) * p1
			v2 = bits.RotateLeft64(v2+x2, 31) * p1
			v3 = bits.RotateLeft64(v3+x3, 31) * p1
			v4 = bits.RotateLeft64(v4+x4, 31) * p1
			w1 = bits.RotateLeft64(w1+x1, 31) * p1
			w2 = bits.RotateLeft64(w2+x2, 31) * p1
			w3 = bits.RotateLeft64(w3+x3, 31) * p1
			w4 = bits.RotateLeft64(w4+x4, 31) * p1
		}
		h = bits.RotateLeft64(v1, 1) + bits.RotateLeft64(v2, 7) + bits.RotateLeft64(v3, 12) + bits.RotateLeft64(v4, 18)
		g = bits.RotateLeft64(w1, 1) + bits.RotateLeft64(w2, 7) + bits.RotateLeft64(w3, 12) + bits.RotateLeft64(w4, 18)
		merge := func(h, v uint64) uint64 {
			h ^= bits.RotateLeft64(v*p2, 31) * p1
			return h*p1 + p4
		}
		h = merge(merge(merge(merge(h, v1), v2), v3), v4)
		g = merge(merge(merge(merge(g, w1), w2), w3), w4)
	} else {
		h, g = p5, s+p5
	}
	h += n
	g += n
	for ; len(b) >= 8; b = b[8:] {
		k := bits.RotateLeft64(le.Uint64(b[:8])*p2, 31) * p1
		h = bits.RotateLeft64(h^k, 27)*p1 + p4
		g = bits.RotateLeft64(g^k, 27)*p1 + p4
	}
	if len(b) >= 4 {
		k := uint64(le.Uint32(b[:4])) * p1
		h = bits.RotateLeft64(h^k, 23)*p2 + p3
		g = bits.RotateLeft64(g^k, 23)*p2 + p3
		b = b[4:]
	}
	for _, c := range b {
		k := uint64(c) * p5
		h = bits.RotateLeft64(h^k, 11) * p1
		g = bits.RotateLeft64(g^k, 11) * p1
	}
	h ^= h >> 33
	g ^= g >> 33
	h *= p2
	g *= p2
	h ^= h >> 29
	g ^= g >> 29
	h *= p3
	g *= p3
	h ^= h >> 32
	g ^= g >> 32
	return h, g
}
