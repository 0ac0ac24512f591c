package main

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// The record shapes every load generator uses, Kafka-protocol and NATS
// alike: 13-byte keys "user-%08d", values of a fixed length holding JSON-like
// text (a fixed prefix, words from a small dictionary and random hex: about
// 2-3x compressible, like changelog documents), drawn round-robin from a pool
// of 1,024 values. Record i has key keyIndex(i).

const keyLen = 13

// shape is one cell of the produce matrix.
type shape struct {
	partitions int32
	valueLen   int
	keys       int
	acks       string // "1" or "all"
	comp       string // "none", "lz4", "zstd"
}

func (s shape) String() string {
	return fmt.Sprintf("p=%d v=%s keys=%s acks=%s %s", s.partitions, sizeName(s.valueLen), countName(s.keys), s.acks, s.comp)
}

func (s shape) recordBytes() int { return keyLen + s.valueLen }

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

func countName(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func keyOf(i int) []byte { return fmt.Appendf(make([]byte, 0, keyLen), "user-%08d", i) }

var (
	keysMu    sync.Mutex
	keysCache = map[int][][]byte{}
)

// keySet returns the n keys, built once.
func keySet(n int) [][]byte {
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keysCache[n]; ok {
		return k
	}
	k := make([][]byte, n)
	buf := make([]byte, 0, n*keyLen)
	for i := range k {
		start := len(buf)
		buf = fmt.Appendf(buf, "user-%08d", i)
		k[i] = buf[start:len(buf):len(buf)]
	}
	keysCache[n] = k
	return k
}

// keyIndex spreads record i over keys: a stride coprime with keys walks every
// key once per cycle in a scrambled order, so with keys >= records every key
// is written at most once, and otherwise evenly.
func keyIndex(i, keys int) int {
	stride := 7919
	if keys%stride == 0 {
		stride = 1
	}
	return int((uint64(i)*uint64(stride) + 17) % uint64(keys))
}

var (
	valsMu    sync.Mutex
	valsCache = map[int][][]byte{}
)

var words = []string{"active", "user", "profile", "updated", "email", "example", "com", "country", "city", "plan", "premium", "basic", "locale", "en", "fr", "true", "false", "null"}

// valuePool returns 1,024 values of length n (deterministic).
func valuePool(n int) [][]byte {
	valsMu.Lock()
	defer valsMu.Unlock()
	if v, ok := valsCache[n]; ok {
		return v
	}
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	const hex = "0123456789abcdef"
	pool := make([][]byte, 1024)
	for i := range pool {
		v := fmt.Appendf(make([]byte, 0, n+32), `{"id":%d,"version":%d,"state":"`, i, rng.IntN(1000))
		for len(v) < n {
			if rng.IntN(2) == 0 {
				v = append(v, words[rng.IntN(len(words))]...)
				v = append(v, ' ')
			} else {
				for j := 0; j < 6; j++ {
					v = append(v, hex[rng.IntN(16)])
				}
			}
		}
		pool[i] = v[:n:n]
	}
	valsCache[n] = pool
	return pool
}

// zstdRatio is the compression ratio of 100 consecutive values of the pool
// (one typical batch) with zstd's default level.
func zstdRatio(n int) float64 {
	pool := valuePool(n)
	var raw []byte
	for i := 0; i < 100; i++ {
		raw = append(raw, keyOf(i)...)
		raw = append(raw, pool[i]...)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		return 0
	}
	defer enc.Close()
	out := enc.EncodeAll(raw, nil)
	return float64(len(raw)) / float64(len(out))
}
