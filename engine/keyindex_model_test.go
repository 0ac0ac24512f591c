package engine

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// kiModel is the differential test's model of a compacted log: every
// record ever appended by offset (history), what survives truncations,
// the log start and the high watermark. A key's committed value is its
// newest record in [logStart, hw).
type kiModel struct {
	history   []testRecord
	batches   []Offset // base offsets of the batches in history
	logStart  Offset
	hw        Offset
	compacted Offset // compactions considered records below this
}

func (m *kiModel) latest(key string) (Offset, *testRecord) {
	for o := m.hw - 1; o >= m.logStart; o-- {
		if string(m.history[o].key) == key {
			return o, &m.history[o]
		}
	}
	return -1, nil
}

// TestKeyIndexMatchesModel runs random appends (values and tombstones,
// several codecs), high-watermark moves, test compactions (dropping
// superseded records and expired tombstones), truncations (of the
// uncommitted tail and below what the index applied), DeleteRecords with
// retention, checkpoints, and clean and unclean restarts; every key's
// lookup must equal the model's committed value. Odd seeds force digest
// collisions (three digests for twelve keys).
func TestKeyIndexMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			if seed%2 == 1 {
				forceCollisions(t, 3)
			}
			rng := rand.New(rand.NewPCG(seed, 18))
			e := compactEnv(t)
			e.cfg.SegmentBytes = 700
			e.cfg.FileDeleteDelay = 0
			l := e.open(true, -1)
			defer func() { l.Close() }()
			m := &kiModel{}
			var ops []string
			logf := func(format string, args ...any) {
				ops = append(ops, fmt.Sprintf(format, args...))
				if len(ops) > 12 {
					ops = ops[1:]
				}
			}
			check := func(step int) {
				t.Helper()
				for k := 0; k < 12; k++ {
					key := fmt.Sprintf("k%d", k)
					got, err := l.Lookup([]byte(key))
					if err != nil {
						t.Fatalf("step %d: lookup %s: %v\nlast ops:\n%s", step, key, err, strings.Join(ops, "\n"))
					}
					o, r := m.latest(key)
					want := r != nil && r.value != nil
					if got.Found != want || (want && (got.Offset != o || string(got.Value) != string(r.value))) {
						t.Fatalf("step %d: lookup %s = found %v offset %d value %q; model: found %v offset %d (log start %d, hw %d, leo %d)\nlast ops:\n%s",
							step, key, got.Found, got.Offset, got.Value, want, o, m.logStart, m.hw, l.LogEndOffset(), strings.Join(ops, "\n"))
					}
				}
			}
			for step := 0; step < 300; step++ {
				switch op := rng.IntN(100); {
				case op < 45:
					n := 1 + rng.IntN(4)
					if rng.IntN(6) == 0 {
						n = skipMinGap + 1 + rng.IntN(12) // lookups skip through it
					}
					recs := make([]testRecord, n)
					for i := range recs {
						recs[i] = testRecord{key: []byte(fmt.Sprintf("k%d", rng.IntN(12))), ts: 1000 + int64(step)}
						if rng.IntN(5) > 0 {
							recs[i].value = []byte(fmt.Sprintf("v%d.%d", step, i))
						}
					}
					res, err := l.Append(makeBatch(t, record.Codec(rng.IntN(3)), recs), 0)
					if err != nil {
						t.Fatal(err)
					}
					m.batches = append(m.batches, res.BaseOffset)
					m.history = append(m.history, recs...)
					logf("append %d records at %d", n, res.BaseOffset)
				case op < 65:
					leo := l.LogEndOffset()
					hw := m.hw + Offset(rng.IntN(int(leo-m.hw)+1))
					l.SetHighWatermark(hw)
					m.hw = hw
					logf("hw %d", hw)
				case op < 72:
					segs := l.CleanerSegments()
					n := 0
					for n < len(segs)-1 && segs[n+1].BaseOffset <= m.hw {
						n++
					}
					if n == 0 {
						continue
					}
					latest := map[string]Offset{}
					tomb := map[string]bool{}
					for o := m.logStart; o < m.hw; o++ {
						latest[string(m.history[o].key)] = o
						tomb[string(m.history[o].key)] = m.history[o].value == nil
					}
					dropTombs := rng.IntN(2) == 0
					end := segs[n].BaseOffset
					for k, o := range latest {
						if dropTombs && tomb[k] && o < end {
							latest[k] = -1
						}
					}
					if err := testCompact(t, l, segs[:n], segs[n], latest); err != nil {
						t.Fatal(err)
					}
					m.compacted = max(m.compacted, m.hw)
					logf("compact segments [%d, %d) dropping tombstones %v", segs[0].BaseOffset, end, dropTombs)
					if rng.IntN(2) == 0 {
						// The periodic checkpoint purges the entries of
						// the removed tombstones before any lookup.
						if err := l.CheckpointKeyIndex(0); err != nil {
							t.Fatal(err)
						}
						logf("checkpoint")
					}
				case op < 78:
					// Truncate at a batch boundary not below what was
					// compacted or the log start.
					var cands []Offset
					for _, b := range m.batches {
						if b >= m.compacted && b >= m.logStart && b < l.LogEndOffset() {
							cands = append(cands, b)
						}
					}
					if len(cands) == 0 {
						continue
					}
					to := cands[rng.IntN(len(cands))]
					if err := l.TruncateTo(to); err != nil {
						t.Fatal(err)
					}
					m.history = m.history[:to]
					for len(m.batches) > 0 && m.batches[len(m.batches)-1] >= to {
						m.batches = m.batches[:len(m.batches)-1]
					}
					m.hw = min(m.hw, to)
					logf("truncate to %d", to)
				case op < 82:
					if m.hw <= m.logStart {
						continue
					}
					to := m.logStart + Offset(rng.IntN(int(m.hw-m.logStart)+1))
					if err := l.DeleteRecordsBefore(to); err != nil {
						t.Fatal(err)
					}
					m.logStart = max(m.logStart, to)
					l.EnforceRetention()
					logf("delete records before %d", to)
				case op < 86:
					if err := l.CheckpointKeyIndex(0); err != nil {
						t.Fatal(err)
					}
					logf("checkpoint")
				case op < 93:
					ls := l.LogStartOffset()
					if err := l.Close(); err != nil {
						t.Fatal(err)
					}
					l = openAt(t, e, true, l.LogEndOffset(), ls)
					m.hw = l.LogEndOffset()
					logf("clean restart")
				default:
					ls := l.LogStartOffset()
					crashClose(l)
					l = openAt(t, e, false, 0, ls)
					m.hw = l.LogEndOffset()
					logf("unclean restart")
				}
				if step%3 == 0 {
					check(step)
				}
			}
			check(300)
		})
	}
}
