package cleaner

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// TestDirtyRecArray cleans three logs holding the same appends, with an
// offset map holding far fewer keys than their dirty sections, so that
// passes map them one key range at a time: one with the per-record array
// forced on (every later range mapped from it), one with it off (every
// later range a scan of the log, the behaviour without it), one with a
// budget the dirty section overflows mid-pass (the array's records, then
// the log from where it stopped). Puts, tombstones, an idempotent producer,
// committed and aborted transactions, all codecs, rolls, clock moves and a
// clean section behind the dirty one: after every pass the three logs must
// hold the same batches byte for byte, the passes the same decisions, and
// the array-on pass agree with the model (checkPass).
func TestDirtyRecArray(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { testDirtyRecArray(t, seed) })
	}
}

func testDirtyRecArray(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 23))
	keys := 300 + rng.IntN(700)
	mapKeys := keys / (3 + rng.IntN(5))
	if seed == 1 {
		mapKeys = keys / 10 // passes end early too
	}
	// Room for the map's keys and a batch when the map fills, not for the
	// whole section.
	partBudget := int64(mapKeys + 40 + rng.IntN(2*mapKeys))
	budgets := []int64{math.MaxInt32, -1, partBudget} // on, off, over budget
	segBytes := int64(2048 + rng.IntN(8192))
	envs := make([]*env, len(budgets))
	logs := make([]*engine.Log, len(budgets))
	touch := seed%2 == 1 // the batch-at-a-time paths (walk, mapBatch) as with a large map
	for i, b := range budgets {
		e := newEnv(t)
		if touch {
			e.newMap = touchingMap
		}
		e.ecfg.SegmentBytes = segBytes
		e.ccfg.DedupeBufferSize = int64(math.Ceil(float64(mapKeys)/e.ccfg.LoadFactor)) * EntrySize
		e.restart()
		e.cm.syncW = newWorker(-1, e.cm.throttle, e.cm.elapsed)
		e.cm.syncW.dirtyBudget = b
		envs[i], logs[i] = e, e.log(testTP)
	}
	on := envs[0]
	m := &model{horizon: map[engine.Offset]int64{}, prodLast: -1, prod: &producer{id: 7}, txnProd: &producer{id: 9}}
	topic := on.ccfg.defaults()
	topic.DeleteRetention = 40 * time.Minute
	for _, e := range envs {
		e.topics.set(testTP, topic)
	}
	appendAll := func(b []byte) engine.AppendResult {
		var first engine.AppendResult
		for i, l := range logs {
			res, err := l.Append(b, 1)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = res
			} else if res.BaseOffset != first.BaseOffset {
				t.Fatalf("appended at %d and %d", first.BaseOffset, res.BaseOffset)
			}
			l.SetHighWatermark(l.LogEndOffset())
		}
		return first
	}
	var fromArray, partial, ranged int
	pass := func(op int) bool {
		t.Helper()
		before, beforeB := readLog(t, logs[0])
		res := make([]Result, len(envs))
		for i, e := range envs {
			r, ok := e.runOnce()
			if !ok {
				if i > 0 {
					t.Fatalf("op %d: pass %d did not run", op, i)
				}
				for _, e := range envs[1:] {
					if _, ok := e.runOnce(); ok {
						t.Fatalf("op %d: a pass ran without the array-on one", op)
					}
				}
				return false
			}
			res[i] = r
		}
		checkPass(t, op, logs[0], m, before, beforeB, res[0], topic)
		_, want := readLog(t, logs[0])
		s0 := res[0].Stats
		for i := 1; i < len(envs); i++ {
			s := res[i].Stats
			if s.EndOffset != s0.EndOffset || s.MapScans != s0.MapScans || s.MapFull != s0.MapFull ||
				s.RecordsRetained != s0.RecordsRetained || s.TombstonesDropped != s0.TombstonesDropped || s.HorizonsStamped != s0.HorizonsStamped {
				t.Fatalf("op %d: budget %d: pass %+v, array on %+v", op, budgets[i], s, s0)
			}
			_, got := readLog(t, logs[i])
			if len(got) != len(want) {
				t.Fatalf("op %d: budget %d: %d batches, array on %d", op, budgets[i], len(got), len(want))
			}
			for k := range got {
				if !bytes.Equal(got[k], want[k]) {
					t.Fatalf("op %d: budget %d: batch %d (offset %d) differs", op, budgets[i], k, got[k].BaseOffset())
				}
			}
		}
		if off := res[1].Stats.MapArrayRecords; off != 0 {
			t.Fatalf("op %d: array off kept %d records", op, off)
		}
		if s0.MapScans > 1 {
			ranged++
			if s0.MapArrayRecords == 0 {
				t.Fatalf("op %d: a pass in %d key ranges kept no array", op, s0.MapScans)
			}
			fromArray++
			if p := res[2].Stats.MapArrayRecords; p > partBudget {
				t.Fatalf("op %d: %d records kept over a budget of %d", op, p, partBudget)
			} else if p < s0.MapArrayRecords {
				partial++
			}
		}
		return true
	}
	for op := 0; op < 250; op++ {
		switch k := rng.IntN(100); {
		case k < 70:
			recs := make([]rec, 1+rng.IntN(40))
			for i := range recs {
				recs[i] = rec{key: []byte(fmt.Sprintf("key-%d", rng.IntN(keys))), ts: on.clk.Now().UnixMilli() + int64(i)}
				if rng.IntN(8) != 0 {
					recs[i].value = []byte(fmt.Sprintf("v%d-%d-%s", op, i, make([]byte, rng.IntN(30))))
				}
				if rng.IntN(6) == 0 {
					recs[i].headers = []record.Header{{Key: []byte("h"), Value: []byte(fmt.Sprint(op))}}
				}
			}
			codec := record.Codec(rng.IntN(5))
			var p *producer
			txn := false
			switch rng.IntN(8) {
			case 0:
				p = m.prod
			case 1:
				p, txn = m.txnProd, true
			}
			b := batch(t, codec, p, recs)
			if txn {
				rb := record.Batch(b)
				rb.SetAttributes(rb.Attributes() | record.AttrTransactional)
				rb.UpdateCRC()
			}
			res := appendAll(b)
			for i := range recs {
				recs[i].offset = res.BaseOffset + engine.Offset(i)
				if txn {
					recs[i].txn = txnOpen
					m.open = append(m.open, recs[i].offset)
				}
			}
			m.hist = append(m.hist, recs...)
			if p == m.prod {
				m.prodLast = recs[len(recs)-1].offset
			}
		case k < 75:
			if len(m.open) > 0 {
				commit := rng.IntN(2) == 0
				for _, l := range logs[1:] {
					if _, err := l.AppendMarker(engine.Marker{ProducerID: m.txnProd.id, ProducerEpoch: m.txnProd.epoch, Commit: commit}, 1); err != nil {
						t.Fatal(err)
					}
					l.SetHighWatermark(l.LogEndOffset())
				}
				m.endTxn(t, logs[0], commit)
			}
		case k < 84:
			for _, l := range logs {
				if err := l.Roll(); err != nil {
					t.Fatal(err)
				}
			}
		case k < 94:
			d := time.Duration(1+rng.IntN(30)) * time.Minute
			for _, e := range envs {
				e.clk.Advance(d)
			}
		default:
			pass(op)
		}
	}
	// Converge: every inactive segment clean.
	if len(m.open) > 0 {
		for _, l := range logs[1:] {
			if _, err := l.AppendMarker(engine.Marker{ProducerID: m.txnProd.id, ProducerEpoch: m.txnProd.epoch, Commit: false}, 1); err != nil {
				t.Fatal(err)
			}
		}
		m.endTxn(t, logs[0], false)
	}
	for _, l := range logs {
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
		l.SetHighWatermark(l.LogEndOffset())
	}
	for i := 0; pass(-1); i++ {
		if i > 200 {
			t.Fatal("no convergence after 200 passes")
		}
	}
	// (Seed 1's passes end a few batches after the map fills: their
	// arrays stay small.)
	if ranged == 0 || fromArray == 0 || partial == 0 && seed != 1 {
		t.Fatalf("passes in key ranges %d, from the array %d, over its budget %d: want each", ranged, fromArray, partial)
	}
	t.Logf("seed %d: %d keys, map of %d, %d records; %d passes in key ranges, %d of them over a budget of %d records", seed, keys, mapKeys, len(m.hist), ranged, partial, partBudget)
}

// TestDirtyRecArrayReadsOnce: a pass over a dirty section holding several
// times more keys than the map reads each byte of the dirty section once,
// and each byte of the clean section at most once (the later key ranges are
// mapped and checked from the arrays, not from the log), and still keeps
// exactly each key's latest record. Without the arrays every range read the
// whole dirty section again, and every range after the first the whole
// clean section (MapBytesRead = MapScans × dirty + (MapScans-1) × clean).
func TestDirtyRecArrayReadsOnce(t *testing.T) {
	for _, codec := range []record.Codec{record.CodecNone, record.CodecLZ4} {
		for _, touch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/touch=%v", codec, touch), func(t *testing.T) { testDirtyRecArrayReadsOnce(t, codec, touch) })
		}
	}
}

func testDirtyRecArrayReadsOnce(t *testing.T, codec record.Codec, touch bool) {
	e := newEnv(t)
	if touch {
		e.newMap = touchingMap
	}
	e.ecfg.SegmentBytes = 16 << 10
	// 700 keys: a table under growthStart, whole from the start
	// (no restart of the first scan reading bytes twice).
	e.ccfg.DedupeBufferSize = int64(math.Ceil(700/e.ccfg.LoadFactor)) * EntrySize
	e.restart()
	l := e.log(testTP)
	const keys = 3000
	rng := rand.New(rand.NewPCG(uint64(codec), 3))
	var hist []rec
	write := func(records int) {
		for i := 0; i < records; i += 30 {
			recs := make([]rec, 30)
			for j := range recs {
				recs[j] = rec{key: []byte(fmt.Sprintf("k%05d", rng.IntN(keys))), value: []byte(fmt.Sprint(len(hist) + j)), ts: e.clk.Now().UnixMilli()}
			}
			hist = append(hist, appendRecs(t, l, codec, nil, recs)...)
		}
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	// The first pass has no clean section, the second the first's output.
	for _, records := range []int{9000, 6000} {
		write(records)
		readBytes := l.Size() // the clean section once, the dirty one once
		res, ok := e.runOnce()
		st := res.Stats
		if !ok || !st.MapFull || st.MapScans < 3 || st.EndOffset != st.FirstUncleanable || st.FirstUncleanable != engine.Offset(len(hist)) {
			t.Fatalf("pass %v: %+v", ok, st)
		}
		if st.MapBytesRead != readBytes {
			t.Fatalf("%d scans read %d bytes of a %d-byte log", st.MapScans, st.MapBytesRead, readBytes)
		}
		if st.MapArrayRecords == 0 || st.MapArrayRecords > int64(records) {
			t.Fatalf("array of %d records, of %d", st.MapArrayRecords, records)
		}
		got, _ := readLog(t, l)
		if d := diffState(state(got), state(hist)); d != "" {
			t.Fatal(d)
		}
		latest := map[string]engine.Offset{}
		for _, r := range hist {
			latest[string(r.key)] = r.offset
		}
		if len(got) != len(latest) {
			t.Fatalf("%d records left, %d keys", len(got), len(latest))
		}
		for _, r := range got {
			if latest[string(r.key)] != r.offset {
				t.Fatalf("record %v left, the key's latest is at %d", r, latest[string(r.key)])
			}
		}
	}
}

// touchingMap is NewOffsetMap for a map that takes the batch-at-a-time
// paths of a large one (OffsetMap.prefetch) whatever its size.
func touchingMap(size int64, loadFactor float64) (*OffsetMap, error) {
	m, err := NewOffsetMap(size, loadFactor)
	if m != nil {
		m.touchAlways = true
	}
	return m, err
}
