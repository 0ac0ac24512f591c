package cleaner

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// TestKeyRanges forces passes over dirty sections holding several times more
// keys than the offset map, so that they map the section one key range at a
// time (several scans, clean-section scans, ranges split when a scan fills
// the map, passes ending early when the section holds more than maxScans
// ranges' worth), and checks every pass against the model (checkPass: only
// latest records below the end, nothing changed above it, tombstone
// horizons, the producer's last batch, replay equals the model). Beside it a
// twin log with the same appends is cleaned with a map large enough for
// every key; once both have converged they must hold the same values.
func TestKeyRanges(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { testKeyRanges(t, seed) })
	}
}

func testKeyRanges(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	small, large := newEnv(t), newEnv(t)
	keys := 400 + rng.IntN(1600)
	mapKeys := keys / (2 + rng.IntN(9)) // 2× to 10× more keys than the map holds
	if seed == 1 {
		mapKeys = keys / 40 // far more: passes end early
	}
	small.ccfg.DedupeBufferSize = int64(math.Ceil(float64(mapKeys)/small.ccfg.LoadFactor)) * EntrySize
	for _, e := range []*env{small, large} {
		e.ecfg.SegmentBytes = int64(2048 + rng.IntN(16384))
		e.restart()
	}
	ls, ll := small.log(testTP), large.log(testTP)
	m := &model{horizon: map[engine.Offset]int64{}, prodLast: -1, prod: &producer{id: 9}}
	prodL := &producer{id: 9}
	topic := small.ccfg.defaults()
	topic.DeleteRetention = 30 * time.Minute
	for _, e := range []*env{small, large} {
		e.topics.set(testTP, topic)
	}
	var scans, ranged, early int
	for op := 0; op < 160; op++ {
		switch k := rng.IntN(100); {
		case k < 75:
			n := 1 + rng.IntN(30)
			recs := make([]rec, n)
			for i := range recs {
				recs[i] = rec{key: []byte(fmt.Sprintf("key-%d", rng.IntN(keys))), ts: small.clk.Now().UnixMilli() + int64(i)}
				if rng.IntN(10) != 0 {
					recs[i].value = []byte(fmt.Sprintf("v%d-%d-%s", op, i, make([]byte, rng.IntN(30))))
				}
				if rng.IntN(6) == 0 {
					recs[i].headers = []record.Header{{Key: []byte("h"), Value: []byte(fmt.Sprint(op))}}
				}
			}
			codec := record.Codec(rng.IntN(5))
			var p, pl *producer
			if rng.IntN(4) == 0 {
				p, pl = m.prod, prodL
			}
			twin := append([]rec(nil), recs...)
			recs = appendRecs(t, ls, codec, p, recs)
			appendRecs(t, ll, codec, pl, twin)
			m.hist = append(m.hist, recs...)
			if p != nil {
				m.prodLast = recs[len(recs)-1].offset
			}
		case k < 83:
			for _, l := range []*engine.Log{ls, ll} {
				if err := l.Roll(); err != nil {
					t.Fatal(err)
				}
			}
		case k < 88:
			d := time.Duration(1+rng.IntN(40)) * time.Minute
			small.clk.Advance(d)
			large.clk.Advance(d)
		default:
			before, beforeB := readLog(t, ls)
			res, ok := small.runOnce()
			if ok {
				st := res.Stats
				scans += st.MapScans
				if st.MapScans > 1 {
					ranged++
				}
				if st.MapFull && st.EndOffset < st.FirstUncleanable {
					early++
				}
				checkPass(t, op, ls, m, before, beforeB, res, topic)
			}
			large.runOnce()
		}
	}
	// Converge both: every inactive segment clean.
	for _, e := range []*env{small, large} {
		l := e.log(testTP)
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
		l.SetHighWatermark(l.LogEndOffset())
	}
	for i := 0; ; i++ {
		if i > 200 {
			t.Fatal("no convergence after 200 passes")
		}
		before, beforeB := readLog(t, ls)
		res, ok := small.runOnce()
		if !ok {
			break
		}
		scans += res.Stats.MapScans
		if res.Stats.MapScans > 1 {
			ranged++
		}
		if res.Stats.MapFull && res.Stats.EndOffset < res.Stats.FirstUncleanable {
			early++
		}
		checkPass(t, -1, ls, m, before, beforeB, res, topic)
	}
	large.cleanAll(100)
	// Tombstones may differ (their horizons are stamped by whichever pass
	// first retains them, and passes end at different offsets); the values
	// kept may not.
	got, _ := readLog(t, ls)
	want, _ := readLog(t, ll)
	values := func(rs []rec) []rec {
		var out []rec
		for _, r := range rs {
			if !r.tombstone() {
				out = append(out, r)
			}
		}
		return out
	}
	if !sameRecs(values(got), values(want)) {
		t.Fatalf("key-range cleaning kept %d values, a large map %d", len(values(got)), len(values(want)))
	}
	if ranged == 0 {
		t.Fatal("no pass mapped its dirty section in key ranges")
	}
	if seed == 1 && early == 0 {
		t.Fatal("no pass ended early")
	}
	t.Logf("seed %d: %d keys, map of %d, %d records: %d passes in key ranges (%d ended early), %d scans; %d records left", seed, keys, mapKeys, len(m.hist), ranged, early, scans, len(got))
}

// TestKeyRangesCleanSection: a clean section holding every key, then a dirty
// section rewriting most of them, cleaned with a map a fifth of the keys:
// the clean-section scans must drop each superseded clean record, keep the
// others, and the pass must end at the first uncleanable offset.
func TestKeyRangesCleanSection(t *testing.T) {
	for _, codec := range []record.Codec{record.CodecNone, record.CodecZstd} {
		t.Run(codec.String(), func(t *testing.T) {
			e := newEnv(t)
			e.ecfg.SegmentBytes = 8 << 10
			e.restart()
			l := e.log(testTP)
			const keys = 3000
			var hist []rec
			put := func(lo, hi int, tag string) {
				for i := lo; i < hi; i += 50 {
					recs := make([]rec, 0, 50)
					for k := i; k < min(i+50, hi); k++ {
						recs = append(recs, rec{key: []byte(fmt.Sprintf("k%05d", k)), value: []byte(tag), ts: e.clk.Now().UnixMilli()})
					}
					hist = append(hist, appendRecs(t, l, codec, nil, recs)...)
				}
				if err := l.Roll(); err != nil {
					t.Fatal(err)
				}
			}
			put(0, keys, "a")
			e.cleanAll(5) // a large map: one pass, the clean section
			e.ccfg.DedupeBufferSize = EntrySize * keys / 5
			if err := e.cm.UpdateConfig(e.ccfg); err != nil {
				t.Fatal(err)
			}
			put(keys/10, keys, "b")
			res, ok := e.runOnce()
			if !ok || res.Stats.MapScans < 5 || !res.Stats.MapFull || res.Stats.EndOffset != res.Stats.FirstUncleanable {
				t.Fatalf("pass %v: %+v", ok, res.Stats)
			}
			got, _ := readLog(t, l)
			if len(got) != keys {
				t.Fatalf("%d records, want %d", len(got), keys)
			}
			for i, r := range got {
				want := "b"
				if i < keys/10 {
					want = "a"
				}
				if string(r.key) != fmt.Sprintf("k%05d", i) || string(r.value) != want {
					t.Fatalf("record %d: %v, want k%05d=%s", i, r, i, want)
				}
			}
			if d := diffState(state(got), state(hist)); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestMaxSpan: a pass covers at most maxSpan offsets of the dirty section
// (the size of its bitsets); the next pass goes on from where it ended.
func TestMaxSpan(t *testing.T) {
	e := newEnv(t)
	e.ecfg.SegmentBytes = 4 << 10
	e.restart()
	l := e.log(testTP)
	var hist []rec
	for i := 0; i < 2000; i += 20 {
		recs := make([]rec, 20)
		for j := range recs {
			recs[j] = rec{key: []byte(fmt.Sprintf("k%d", (i+j)%300)), value: []byte(fmt.Sprint(i + j)), ts: e.clk.Now().UnixMilli()}
		}
		hist = append(hist, appendRecs(t, l, record.Codec(i/20%5), nil, recs)...)
	}
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	e.cm.syncW = newWorker(-1, e.cm.throttle, e.cm.elapsed)
	e.cm.syncW.maxSpan = 700
	m := &model{hist: hist, horizon: map[engine.Offset]int64{}, prodLast: -1, prod: &producer{}}
	passes := 0
	for {
		before, beforeB := readLog(t, l)
		res, ok := e.runOnce()
		if !ok {
			break
		}
		passes++
		if span := res.Stats.EndOffset - res.Stats.FirstDirty; span > 700 {
			t.Fatalf("pass covered %d offsets", span)
		}
		checkPass(t, -1, l, m, before, beforeB, res, e.topics.def)
	}
	if passes < 3 {
		t.Fatalf("%d passes", passes)
	}
	got, _ := readLog(t, l)
	if len(got) != 300 {
		t.Fatalf("%d records, want 300", len(got))
	}
}

// TestOffsetMapRetain checks retain against a Go map: after random puts
// into a full table, evicting the keys outside a range keeps exactly the
// others, each still found, at every load factor, including a table with no
// empty slot.
func TestOffsetMapRetain(t *testing.T) {
	for _, lf := range []float64{0.5, 0.9, 1} {
		for _, slots := range []int{3, 50, 1000, 30_000} {
			t.Run(fmt.Sprintf("lf=%v/slots=%d", lf, slots), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(slots), 5))
				m, err := NewOffsetMap(int64(slots*EntrySize), lf)
				if err != nil {
					t.Skip(err)
				}
				m.ClearWhole()
				model := map[string]int64{}
				r := allKeys
				for round := 0; round < 6; round++ {
					for i := 0; m.Size() < m.MaxEntries() && i < 10*slots; i++ {
						k := fmt.Sprintf("k%d-%d", round, rng.IntN(slots*3))
						h1, h2 := m.Digest([]byte(k))
						if !r.has(h1) {
							continue
						}
						if _, ok := m.putPrev(h1, h2, int64(i)); !ok {
							t.Fatalf("put refused at %d of %d", m.Size(), m.MaxEntries())
						}
						model[k] = int64(i)
					}
					lower, _, ok := r.halves()
					if !ok {
						break
					}
					evicted := map[string]bool{}
					removed := m.retain(lower, func(h1, h2 uint64, off int64) {
						evicted[fmt.Sprint(h1, h2, off)] = true
					})
					n := 0
					for k, off := range model {
						if h1, h2 := m.Digest([]byte(k)); !lower.has(h1) {
							if !evicted[fmt.Sprint(h1, h2, off)] {
								t.Fatalf("round %d: %q (at %d) evicted unreported", round, k, off)
							}
							delete(model, k)
							n++
						}
					}
					r = lower
					if len(evicted) != n {
						t.Fatalf("round %d: %d evictions reported, want %d", round, len(evicted), n)
					}
					if removed != n || m.Size() != len(model) {
						t.Fatalf("round %d: removed %d (want %d), size %d (want %d)", round, removed, n, m.Size(), len(model))
					}
					for k, off := range model {
						if got := m.Get([]byte(k)); got != off {
							t.Fatalf("round %d: %q at %d, want %d", round, k, got, off)
						}
					}
					for i := 0; i < 200; i++ {
						if got := m.Get([]byte(fmt.Sprintf("absent-%d", i))); got != -1 {
							t.Fatal("absent key found")
						}
					}
				}
			})
		}
	}
}

func TestKeyRangeDivide(t *testing.T) {
	for _, r := range []keyRange{allKeys, {5, 5}, {0, 9}, {1 << 31, math.MaxUint32}} {
		for _, k := range []int{1, 2, 3, 7, 100} {
			parts := r.divide(nil, k)
			if parts[0].lo != r.lo || parts[len(parts)-1].hi != r.hi {
				t.Fatalf("%v/%d: %v", r, k, parts)
			}
			for i := 1; i < len(parts); i++ {
				if parts[i].lo != parts[i-1].hi+1 || parts[i].hi < parts[i].lo {
					t.Fatalf("%v/%d: %v", r, k, parts)
				}
			}
		}
	}
	lo, hi, ok := allKeys.halves()
	if !ok || lo.hi+1 != hi.lo || lo.lo != 0 || hi.hi != math.MaxUint32 || lo.width() != 0.5 {
		t.Fatal(lo, hi)
	}
	if !allKeys.has(0) || !allKeys.has(math.MaxUint64) || lo.has(1<<31) || !hi.has(1<<31) {
		t.Fatal("has")
	}
}

func TestBitsetCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b bitset
	a, b = a.resize(1000), b.resize(1000)
	ref := make([][2]bool, 1000)
	for i := range ref {
		if rng.IntN(3) == 0 {
			a.set(int64(i))
			ref[i][0] = true
		}
		if rng.IntN(2) == 0 {
			b.set(int64(i))
			ref[i][1] = true
		}
	}
	for range 2000 {
		lo := rng.IntN(1000)
		hi := lo + rng.IntN(1000-lo)
		n, both := a.count(b, int64(lo), int64(hi))
		wn, wb := 0, 0
		for i := lo; i <= hi; i++ {
			if ref[i][0] {
				wn++
				if ref[i][1] {
					wb++
				}
			}
		}
		if n != wn || both != wb {
			t.Fatalf("[%d, %d]: %d %d, want %d %d", lo, hi, n, both, wn, wb)
		}
	}
}

// TestKeylessDropped: records with a null key (which a broker refuses on
// compacted topics, but a log may hold from before the topic was compacted)
// are dropped by a pass, counted in KeylessDropped, whether their batch is
// decided from the keep bits alone (all keyless) or record by record, with
// a large map and in key ranges.
func TestKeylessDropped(t *testing.T) {
	for _, mapKeys := range []int{0, 30} {
		for _, codec := range []record.Codec{record.CodecNone, record.CodecLZ4} {
			t.Run(fmt.Sprintf("map=%d/%s", mapKeys, codec), func(t *testing.T) {
				e := newEnv(t)
				if mapKeys > 0 {
					e.ccfg.DedupeBufferSize = int64(mapKeys) * EntrySize * 10 / 9
					if err := e.cm.UpdateConfig(e.ccfg); err != nil {
						t.Fatal(err)
					}
				}
				l := e.log(testTP)
				rng := rand.New(rand.NewPCG(uint64(mapKeys), uint64(codec)))
				keyless := 0
				var hist []rec
				compact := func(on bool) {
					c := l.Config()
					c.Compact, c.Delete = on, !on
					l.SetConfig(c)
				}
				fill := func(n int) {
					compact(false) // a compacted log refuses null keys
					defer compact(true)
					for i := 0; i < n; i++ {
						recs := make([]rec, 1+rng.IntN(12))
						allKeyless := rng.IntN(4) == 0
						for j := range recs {
							recs[j] = rec{value: []byte(fmt.Sprint(i, j)), ts: e.clk.Now().UnixMilli()}
							if !allKeyless && rng.IntN(3) != 0 {
								recs[j].key = []byte(fmt.Sprintf("k%d", rng.IntN(200)))
							} else {
								keyless++
							}
						}
						hist = append(hist, appendRecs(t, l, codec, nil, recs)...)
					}
					if err := l.Roll(); err != nil {
						t.Fatal(err)
					}
				}
				fill(60)
				var dropped int64
				for _, r := range e.cleanAll(50) {
					dropped += r.Stats.KeylessDropped
				}
				// More behind a clean section.
				fill(60)
				for _, r := range e.cleanAll(50) {
					dropped += r.Stats.KeylessDropped
				}
				if dropped != int64(keyless) {
					t.Fatalf("%d keyless records dropped, %d written", dropped, keyless)
				}
				got, _ := readLog(t, l)
				latest := map[string]engine.Offset{}
				for _, r := range hist {
					if r.key != nil {
						latest[string(r.key)] = r.offset
					}
				}
				if len(got) != len(latest) {
					t.Fatalf("%d records left, %d keys", len(got), len(latest))
				}
				for _, r := range got {
					if r.key == nil || latest[string(r.key)] != r.offset || !sameRec(r, hist[r.offset]) {
						t.Fatalf("record %v left", r)
					}
				}
			})
		}
	}
}
