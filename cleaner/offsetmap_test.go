package cleaner

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/kvlog/kvlog/engine/record"
)

// TestOffsetMapModel checks Put and Get against a Go map through fills,
// updates and clears, at load factors up to 1, including the full case.
func TestOffsetMapModel(t *testing.T) {
	for _, lf := range []float64{0.5, 0.9, 1} {
		for _, slots := range []int{1, 7, 100, 4096, 200_000} {
			if slots == 200_000 && lf != 0.9 {
				continue // grows in place (2730 → 21840 slots), then expands
			}
			t.Run(fmt.Sprintf("lf=%v/slots=%d", lf, slots), func(t *testing.T) {
				m, err := NewOffsetMap(int64(slots*EntrySize+5), lf)
				if err != nil {
					if float64(slots)*lf < 1 {
						return
					}
					t.Fatal(err)
				}
				if m.Slots() != slots || m.Bytes() != slots*EntrySize {
					t.Fatalf("slots %d bytes %d", m.Slots(), m.Bytes())
				}
				rng := rand.New(rand.NewPCG(uint64(slots), 1))
				rounds, ops := 3, slots*3
				if slots > 10_000 {
					rounds, ops = 1, 60_000 // enough to grow and expand
				}
				for round := 0; round < rounds; round++ {
					model := map[string]int64{}
					off := int64(0)
					for i := 0; i < ops; i++ {
						k := fmt.Sprintf("k%d", rng.IntN(slots*2))
						off += int64(1 + rng.IntN(3))
						_, had := model[k]
						ok := m.Put([]byte(k), off)
						if !ok && !had && m.Expand() {
							// The table became the whole buffer: map again.
							keys := slices.SortedFunc(maps.Keys(model), func(a, b string) int { return cmp.Compare(model[a], model[b]) })
							for _, mk := range keys {
								if !m.Put([]byte(mk), model[mk]) {
									t.Fatalf("re-put of %q refused after Expand", mk)
								}
							}
							ok = m.Put([]byte(k), off)
						}
						switch {
						case ok:
							model[k] = off
						case had:
							t.Fatalf("update of an existing key %q refused", k)
						case len(model) < m.MaxEntries():
							t.Fatalf("put refused with %d of %d entries", len(model), m.MaxEntries())
						}
						if m.Size() != len(model) {
							t.Fatalf("size %d, model %d", m.Size(), len(model))
						}
					}
					for i := 0; i < min(slots*2, 100_000); i++ {
						k := fmt.Sprintf("k%d", i)
						want, ok := model[k]
						if !ok {
							want = -1
						}
						if got := m.Get([]byte(k)); got != want {
							t.Fatalf("get %q = %d, want %d", k, got, want)
						}
					}
					for i := 0; i < 100; i++ {
						if got := m.Get([]byte(fmt.Sprintf("absent-%d", i))); got != -1 {
							t.Fatalf("absent key found at %d", got)
						}
					}
					m.Clear()
					if m.Size() != 0 || m.Latest() != -1 {
						t.Fatal("clear")
					}
				}
			})
		}
	}
}

// TestOffsetMapNoAllocs: Put and Get never allocate.
func TestOffsetMapNoAllocs(t *testing.T) {
	m, err := NewOffsetMap(1<<16, 0.9)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("a-13-byte-key")
	var off int64
	if n := testing.AllocsPerRun(1000, func() {
		off++
		key[0] = byte(off)
		m.Put(key, off)
		m.Get(key)
	}); n != 0 {
		t.Fatalf("%v allocations per Put+Get", n)
	}
}

// TestMapOverflowConverges: with a dedupe buffer far too small for one
// segment, every pass ends where the map filled, and passes continue until
// the log is fully compacted — never an error.
func TestMapOverflowConverges(t *testing.T) {
	e := newEnv(t)
	e.ccfg.DedupeBufferSize = EntrySize * 50 // 45 keys per pass
	if err := e.cm.UpdateConfig(e.ccfg); err != nil {
		t.Fatal(err)
	}
	e.ecfg.SegmentBytes = 64 << 10
	l := e.log(testTP)
	var hist []rec
	for round := 0; round < 6; round++ {
		for i := 0; i < 400; i += 20 {
			recs := make([]rec, 20)
			for j := range recs {
				recs[j] = rec{key: []byte(fmt.Sprintf("key-%03d", i+j)), value: []byte(fmt.Sprintf("r%d", round)), ts: e.clk.Now().UnixMilli()}
			}
			hist = append(hist, appendRecs(t, l, record.Codec(round%5), nil, recs)...)
		}
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	results := e.cleanAll(200)
	full := 0
	for _, r := range results {
		if r.Stats.MapFull {
			full++
		}
	}
	if full < 5 {
		t.Fatalf("only %d of %d passes filled the map", full, len(results))
	}
	got, _ := readLog(t, l)
	if len(got) != 400 {
		t.Fatalf("%d records after convergence, want 400", len(got))
	}
	for _, r := range got {
		if string(r.value) != "r5" {
			t.Fatalf("stale record %v survived", r)
		}
	}
	if d := diffState(state(got), state(hist)); d != "" {
		t.Fatal(d)
	}
	t.Logf("%d passes, %d with a full map", len(results), full)
}

// TestMapGrowthInPass: a pass over more distinct keys than the starting
// table holds grows the table in place and then expands it to the whole
// buffer (mapping the dirty section again), with the same outcome as a map
// that was whole from the start.
func TestMapGrowthInPass(t *testing.T) {
	e := newEnv(t)
	e.ccfg.DedupeBufferSize = 8 << 20 // 349,525 slots: 2,730 → 21,840 → all
	if err := e.cm.UpdateConfig(e.ccfg); err != nil {
		t.Fatal(err)
	}
	e.ecfg.SegmentBytes = 1 << 20
	l := e.log(testTP)
	var hist []rec
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 40_000; i += 100 {
		recs := make([]rec, 100)
		for j := range recs {
			recs[j] = rec{key: []byte(fmt.Sprintf("key-%05d", rng.IntN(30_000))), value: []byte(fmt.Sprint(i + j)), ts: e.clk.Now().UnixMilli()}
		}
		hist = append(hist, appendRecs(t, l, record.CodecLZ4, nil, recs)...)
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	res, ok := e.runOnce()
	if !ok || res.Stats.MapFull || res.Stats.EndOffset != 40_000 {
		t.Fatalf("pass: %v %+v", ok, res.Stats)
	}
	if res.Stats.MapRecords <= 40_000 {
		t.Fatalf("the dirty section was not mapped again after the expansion: %d records mapped", res.Stats.MapRecords)
	}
	got, _ := readLog(t, l)
	seen := map[string]bool{}
	for _, r := range got {
		if seen[string(r.key)] {
			t.Fatalf("key %s twice", r.key)
		}
		seen[string(r.key)] = true
	}
	if d := diffState(state(got), state(hist)); d != "" {
		t.Fatal(d)
	}
}

// TestSum64Seed checks the one-shot seeded XXH64 against xxhash's Digest.
func TestSum64Seed(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	buf := make([]byte, 300)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for _, seed := range []uint64{0, 1, digestSeed, ^uint64(0)} {
		for n := 0; n <= len(buf); n++ {
			d := xxhash.NewWithSeed(seed)
			_, _ = d.Write(buf[:n])
			if got, want := sum64Seed(buf[:n], seed), d.Sum64(); got != want {
				t.Fatalf("seed %d len %d: %#x, want %#x", seed, n, got, want)
			}
		}
	}
	if sum64Seed(buf[:13], 0) != xxhash.Sum64(buf[:13]) {
		t.Fatal("seed 0 differs from Sum64")
	}
}

// BenchmarkOffsetMap: Get of 5M distinct 13-byte keys in a full 128 MiB
// map (Kafka's default dedupe buffer, one thread), one at a time and in
// batches of 100 whose probe lines are touched first, as a pass does.
func BenchmarkOffsetMap(b *testing.B) {
	const n = 5_000_000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%09d", i*7919%n)
	}
	m, err := NewOffsetMap(128<<20, 0.9)
	if err != nil {
		b.Fatal(err)
	}
	m.Expand()
	for i, k := range keys {
		m.Put(k, int64(i))
	}
	b.Run("get", func(b *testing.B) {
		i := 0
		for b.Loop() {
			_ = m.Get(keys[i%n])
			i += 104729
		}
	})
	b.Run("get-batched", func(b *testing.B) {
		var h1s, h2s [100]uint64
		var sink uint64
		i := 0
		for b.Loop() {
			for j := range h1s {
				h1s[j], h2s[j] = m.Digest(keys[(i+j*104729)%n])
			}
			for j := range h1s {
				sink += m.touch(h1s[j])
			}
			for j := range h1s {
				_ = m.getDigest(h1s[j], h2s[j])
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/key")
		_ = sink
	})
}

// TestDigest2 checks the fused two-seed XXH64 against xxhash.Sum64 and
// sum64Seed at every length up to 300 bytes.
func TestDigest2(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 300)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for n := 0; n <= len(buf); n++ {
		h1, h2 := digest2(buf[:n])
		if w1, w2 := xxhash.Sum64(buf[:n]), sum64Seed(buf[:n], digestSeed); h1 != w1 || h2 != w2 {
			t.Fatalf("len %d: %#x %#x, want %#x %#x", n, h1, h2, w1, w2)
		}
	}
}
