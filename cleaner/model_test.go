package cleaner

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// model is the naive reference: every record ever appended (index = offset),
// the delete horizons observed on tombstones, and the producer's last offset.
type model struct {
	hist     []rec
	horizon  map[engine.Offset]int64
	prodLast engine.Offset
	prod     *producer
	// The transactional producer and the offsets of its open transaction.
	txnProd *producer
	open    []engine.Offset
	markers int
	// txnOf lists, for each marker's offset, the offsets of the records
	// of the transaction it ended; removed counts markers the passes
	// removed.
	txnOf   map[engine.Offset][]engine.Offset
	removed int
	// abortedRemoved counts the aborted records the passes removed.
	abortedRemoved int64
}

// latestBelow maps each key to the offset of its last record below end,
// records of aborted transactions (which the cleaner removes) and markers
// left out.
func (m *model) latestBelow(end engine.Offset) map[string]engine.Offset {
	out := map[string]engine.Offset{}
	for _, r := range m.hist[:min(int(end), len(m.hist))] {
		if r.marker || r.txn == txnAborted {
			continue
		}
		out[string(r.key)] = r.offset
	}
	return out
}

// endTxn ends the open transaction with a marker.
func (m *model) endTxn(t *testing.T, l *engine.Log, commit bool) {
	t.Helper()
	st := txnAborted
	if commit {
		st = txnCommitted
	}
	for _, o := range m.open {
		m.hist[o].txn = st
	}
	res, err := l.AppendMarker(engine.Marker{ProducerID: m.txnProd.id, ProducerEpoch: m.txnProd.epoch, Commit: commit}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.txnOf == nil {
		m.txnOf = map[engine.Offset][]engine.Offset{}
	}
	m.txnOf[res.BaseOffset] = m.open
	m.open = nil
	m.hist = append(m.hist, rec{offset: res.BaseOffset, marker: true})
	m.markers++
	l.SetHighWatermark(l.LogEndOffset())
}

// TestDifferential drives a compacted log with random puts and deletes over
// small and large key spaces, idempotent and plain producers, all codecs,
// random rolls, clock moves, lagging high watermarks, config changes (segment
// size, delete retention, compaction lag, dirty ratio, a dedupe buffer too
// small for the dirty section) and restarts, and checks every clean pass
// against a model of the full history:
//
//   - every record read is the one written at its offset, offsets increase;
//   - nothing at or above the pass's end offset changed, and the end is at
//     most the first uncleanable offset, itself at most the high watermark;
//   - below the end, each key appears at most once, as its latest record
//     below the end; every such latest value is present;
//   - a tombstone disappears only when redundant or after a pass at or past
//     its horizon, and a horizon, once stamped (pass time +
//     delete.retention.ms), never changes;
//   - the producer's last batch survives (emptied if need be);
//   - transactions (a transactional producer's batches, committed or
//     aborted by markers, left open across passes and restarts): records of
//     aborted transactions below the end are gone and never count as their
//     key's latest; a marker is removed only once no record of its
//     transaction is left and after its delete horizon, which the pass
//     that found its data gone stamped; a .txnindex entry never outlives
//     its marker;
//   - a consumer reading from the log start rebuilds exactly the model state
//     (read_committed: without open or aborted transactions' records), and
//     so does one that, as Kafka's clients do, skips aborted batches from
//     the log's .txnindex entries and markers alone.
func TestDifferential(t *testing.T) {
	seeds := 10
	if testing.Short() {
		seeds = 3
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runDifferential(t, uint64(seed)) })
	}
}

func runDifferential(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 4))
	e := newEnv(t)
	e.ecfg.SegmentBytes = int64(1024 + rng.IntN(8192))
	e.ccfg.DedupeBufferSize = int64([]int{EntrySize * 40, EntrySize * 300, 1 << 16, 8 << 20}[rng.IntN(4)])
	if err := e.cm.UpdateConfig(e.ccfg); err != nil {
		t.Fatal(err)
	}
	keys := 5 + rng.IntN(20)
	if seed%2 == 0 {
		keys = 300 + rng.IntN(6000)
	}
	l := e.log(testTP)
	m := &model{horizon: map[engine.Offset]int64{}, prodLast: -1, prod: &producer{id: 7}, txnProd: &producer{id: 9}}
	topic := e.ccfg.defaults()
	passes, overflows := 0, 0
	var total PassStats
	sum := func(s PassStats) {
		total.TombstonesDropped += s.TombstonesDropped
		total.HorizonsStamped += s.HorizonsStamped
		total.BatchesEmptied += s.BatchesEmptied
		total.BatchesRewritten += s.BatchesRewritten
		total.BatchesCopied += s.BatchesCopied
		total.GroupsSkipped += s.GroupsSkipped
		total.MarkersStamped += s.MarkersStamped
		total.Groups += s.Groups
	}
	for op := 0; op < 250; op++ {
		switch k := rng.IntN(100); {
		case k < 54:
			n := 1 + rng.IntN(12)
			recs := make([]rec, n)
			for i := range recs {
				recs[i] = rec{key: []byte(fmt.Sprintf("key-%d", rng.IntN(keys))), ts: e.clk.Now().UnixMilli() + int64(i)}
				if rng.IntN(8) != 0 {
					recs[i].value = []byte(fmt.Sprintf("v%d-%d-%s", op, i, make([]byte, rng.IntN(40))))
				}
				if rng.IntN(5) == 0 {
					recs[i].headers = []record.Header{{Key: []byte("h"), Value: []byte(fmt.Sprint(op))}, {Key: []byte("n")}}
				}
			}
			var p *producer
			switch rng.IntN(8) {
			case 0, 1:
				p = m.prod
			case 2:
				// Transactional: the producer's open transaction.
				b := batch(t, record.Codec(rng.IntN(5)), m.txnProd, recs)
				rb := record.Batch(b)
				rb.SetAttributes(rb.Attributes() | record.AttrTransactional)
				rb.UpdateCRC()
				res, err := l.Append(b, 1)
				if err != nil {
					t.Fatal(err)
				}
				for i := range recs {
					recs[i].offset, recs[i].txn = res.BaseOffset+engine.Offset(i), txnOpen
					m.open = append(m.open, recs[i].offset)
				}
				l.SetHighWatermark(l.LogEndOffset())
				m.hist = append(m.hist, recs...)
				continue
			}
			recs = appendRecs(t, l, record.Codec(rng.IntN(5)), p, recs)
			m.hist = append(m.hist, recs...)
			if p != nil {
				m.prodLast = recs[len(recs)-1].offset
			}
		case k < 58:
			if len(m.open) > 0 {
				m.endTxn(t, l, rng.IntN(2) == 0)
			}
		case k < 63:
			if err := l.Roll(); err != nil {
				t.Fatal(err)
			}
		case k < 73:
			e.clk.Advance(time.Duration(1+rng.IntN(7200)) * time.Second)
		case k < 77:
			if leo := l.LogEndOffset(); leo > 0 {
				l.SetHighWatermark(leo - engine.Offset(rng.IntN(int(min(leo, 30)))))
			}
		case k < 92:
			hw := l.HighWatermark()
			before, beforeB := readLog(t, l)
			res, ok := e.runOnce()
			if !ok {
				continue
			}
			passes++
			sum(res.Stats)
			if res.Stats.MapFull {
				overflows++
			}
			if res.Stats.FirstUncleanable > hw {
				t.Fatalf("op %d: first uncleanable %d above the high watermark %d", op, res.Stats.FirstUncleanable, hw)
			}
			checkPass(t, op, l, m, before, beforeB, res, topic)
		case k < 95:
			e.restart()
			l = e.log(testTP)
			got, _ := readLog(t, l)
			if d := diffState(state(committedView(got, m.hist)), state(committedView(m.hist, m.hist))); d != "" {
				t.Fatalf("op %d: after restart: %s", op, d)
			}
		default:
			switch rng.IntN(4) {
			case 0:
				c := l.Config()
				c.SegmentBytes = int64(1024 + rng.IntN(16384))
				l.SetConfig(c)
			case 1:
				topic.DeleteRetention = time.Duration(1+rng.IntN(180)) * time.Minute
			case 2:
				topic.MinCompactionLag = time.Duration(rng.IntN(3)) * 10 * time.Minute
				topic.MinCleanableRatio = rng.Float64() * 0.6
			case 3:
				c := e.cm.Config()
				c.DedupeBufferSize = int64([]int{EntrySize * 40, EntrySize * 300, 1 << 16, 8 << 20}[rng.IntN(4)])
				if err := e.cm.UpdateConfig(c); err != nil {
					t.Fatal(err)
				}
			}
			e.topics.set(testTP, topic)
		}
	}
	// Converge: with no lag and a ratio of 0, cleaning ends with every
	// inactive segment clean.
	if len(m.open) > 0 {
		m.endTxn(t, l, rng.IntN(2) == 0)
	}
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	topic.MinCompactionLag, topic.MinCleanableRatio = 0, 0
	e.topics.set(testTP, topic)
	for i := 0; i < 100; i++ {
		before, beforeB := readLog(t, l)
		res, ok := e.runOnce()
		if !ok {
			break
		}
		checkPass(t, -1, l, m, before, beforeB, res, topic)
		sum(res.Stats)
		passes++
		if res.Stats.MapFull {
			overflows++
		}
	}
	t.Logf("seed %d: %d keys, %d records, %d passes (%d with a full map); batches copied %d rewritten %d emptied %d; groups %d (%d skipped); horizons stamped %d, tombstones dropped %d; %d markers, %d aborted records removed",
		seed, keys, len(m.hist), passes, overflows, total.BatchesCopied, total.BatchesRewritten, total.BatchesEmptied, total.Groups, total.GroupsSkipped, total.HorizonsStamped, total.TombstonesDropped, m.markers, m.abortedRemoved)
	t.Logf("seed %d: %d markers stamped, %d removed", seed, total.MarkersStamped, m.removed)
}

func checkPass(t *testing.T, op int, l *engine.Log, m *model, before []rec, beforeB []record.Batch, res Result, topic TopicConfig) {
	t.Helper()
	st := res.Stats
	end := st.EndOffset
	after, batches := readLog(t, l)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("op %d (pass from %d, %s, end %d, uncleanable %d): %s", op, st.FirstDirty, st.Reason, end, st.FirstUncleanable, fmt.Sprintf(format, args...))
	}
	if end > st.FirstUncleanable && end > st.FirstDirty {
		fail("end beyond the first uncleanable offset")
	}
	prev := engine.Offset(-1)
	for _, r := range after {
		if r.offset <= prev {
			fail("offset %d after %d", r.offset, prev)
		}
		prev = r.offset
		if int(r.offset) >= len(m.hist) || m.hist[r.offset].marker || !sameRec(r, m.hist[r.offset]) {
			fail("record %v differs from what was written", r)
		}
		if r.offset < end && m.hist[r.offset].txn == txnAborted {
			fail("record %v of an aborted transaction below the end survived", r)
		}
	}
	checkMarkers(t, l, m, beforeB, batches, after, st, topic.DeleteRetention, fail)
	// At and above the end nothing changed.
	var b1, a1 []rec
	for _, r := range before {
		if r.offset >= end {
			b1 = append(b1, r)
		}
	}
	for _, r := range after {
		if r.offset >= end {
			a1 = append(a1, r)
		}
	}
	if len(a1) != len(b1) {
		fail("%d records at or above the end, %d before", len(a1), len(b1))
	}
	for i := range a1 {
		if !sameRec(a1[i], b1[i]) {
			fail("record %v above the end changed to %v", b1[i], a1[i])
		}
	}
	// Below the end: only latest records; every latest value kept.
	latest := m.latestBelow(end)
	inAfter := map[engine.Offset]bool{}
	for _, r := range after {
		inAfter[r.offset] = true
		if r.offset < end && latest[string(r.key)] != r.offset {
			fail("record %v below the end is not its key's latest (%d)", r, latest[string(r.key)])
		}
	}
	for _, o := range latest {
		if r := m.hist[o]; !r.tombstone() && !inAfter[o] {
			fail("latest value %v lost", r)
		}
	}
	if st.AbortedRecords > 0 {
		m.abortedRemoved += st.AbortedRecords
	}
	// Tombstones: horizons stamped once, removed only when redundant or expired.
	hs := horizons(batches)
	for o, h := range hs {
		old, seen := m.horizon[o]
		switch {
		case seen && h != old:
			fail("tombstone %d horizon changed from %d to %d", o, old, h)
		case !seen && h != -1<<63:
			if want := st.Start.UnixMilli() + topic.DeleteRetention.Milliseconds(); h != want {
				fail("tombstone %d stamped with horizon %d, want %d", o, h, want)
			}
			m.horizon[o] = h
		case o < end && h == -1<<63:
			fail("retained tombstone %d below the end has no horizon", o)
		}
	}
	for _, r := range before {
		if !r.tombstone() || inAfter[r.offset] || m.hist[r.offset].txn == txnAborted {
			continue
		}
		if latest[string(r.key)] != r.offset {
			continue // redundant
		}
		h, ok := m.horizon[r.offset]
		if !ok || st.Start.UnixMilli() < h {
			fail("tombstone %v removed before its horizon (%d, known %v)", r, h, ok)
		}
	}
	// The idempotent producer's last batch survives.
	if m.prodLast >= 0 && m.prodLast >= l.LogStartOffset() {
		found := false
		for _, b := range batches {
			if b.ProducerID() == m.prod.id && engine.Offset(b.LastOffset()) == m.prodLast {
				found = true
			}
		}
		if !found {
			fail("producer's last batch (ending at %d) was removed", m.prodLast)
		}
	}
	if d := diffState(state(committedView(after, m.hist)), state(committedView(m.hist, m.hist))); d != "" {
		fail("read_committed replay differs from the model: %s", d)
	}
}

// checkMarkers checks the markers a pass removed and the .txnindex after
// it: a marker goes only when no record of its transaction is left and it
// had a delete horizon the pass reached; a stamped horizon is the pass
// time + delete.retention.ms; every .txnindex entry has its marker; and a
// read_committed consumer working as Kafka's clients do (skipping a
// producer's transactional batches from an entry's first offset to its
// abort marker) reads exactly the committed records below the LSO.
func checkMarkers(t *testing.T, l *engine.Log, m *model, beforeB, afterB []record.Batch, after []rec, st PassStats, deleteRetention time.Duration, fail func(string, ...any)) {
	t.Helper()
	markersAfter := map[engine.Offset]record.Batch{}
	for _, b := range afterB {
		if b.IsControl() {
			markersAfter[engine.Offset(b.BaseOffset())] = b
		}
	}
	inAfter := map[engine.Offset]bool{}
	for _, r := range after {
		inAfter[r.offset] = true
	}
	for _, b := range beforeB {
		if !b.IsControl() {
			continue
		}
		o := engine.Offset(b.BaseOffset())
		h, had := b.DeleteHorizon()
		nb, kept := markersAfter[o]
		if !kept {
			m.removed++
			if !had || h > st.Start.UnixMilli() {
				fail("marker %d removed before a horizon passed (horizon %d, had %v)", o, h, had)
			}
			for _, r := range m.txnOf[o] {
				if inAfter[r] {
					fail("marker %d removed while record %d of its transaction is left", o, r)
				}
			}
			continue
		}
		switch nh, ok := nb.DeleteHorizon(); {
		case had && (!ok || nh != h):
			fail("marker %d horizon changed from %d to %d (%v)", o, h, nh, ok)
		case !had && ok && nh != st.Start.UnixMilli()+deleteRetention.Milliseconds():
			fail("marker %d stamped with horizon %d, want the pass time + delete.retention.ms", o, nh)
		}
	}
	ab, err := l.AbortedTxns(0, l.LogEndOffset())
	if err != nil {
		fail("aborted transactions: %v", err)
	}
	for _, a := range ab {
		if _, ok := markersAfter[a.LastOffset]; !ok {
			fail(".txnindex entry %+v without its marker", a)
		}
	}
	// A read_committed consumer from the log start.
	lso := l.LastStableOffset()
	got := readCommitted(t, l)
	var want []rec
	for _, r := range committedView(after, m.hist) {
		if r.offset < lso {
			want = append(want, r)
		}
	}
	if len(got) != len(want) {
		fail("a read_committed consumer using the .txnindex reads %d records below the LSO %d, want %d", len(got), lso, len(want))
	}
	for i := range got {
		if !sameRec(got[i], want[i]) {
			fail("a read_committed consumer using the .txnindex reads %v, want %v", got[i], want[i])
		}
	}
}
