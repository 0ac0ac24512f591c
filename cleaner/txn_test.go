package cleaner

import (
	"fmt"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// appendTxn appends recs as one transactional batch of p.
func appendTxn(t *testing.T, l *engine.Log, p *producer, recs []rec) {
	t.Helper()
	b := batch(t, record.CodecNone, p, recs)
	rb := record.Batch(b)
	rb.SetAttributes(rb.Attributes() | record.AttrTransactional)
	rb.UpdateCRC()
	if _, err := l.Append(b, 1); err != nil {
		t.Fatal(err)
	}
	l.SetHighWatermark(l.LogEndOffset())
}

func endTxn(t *testing.T, l *engine.Log, p *producer, commit bool) {
	t.Helper()
	if _, err := l.AppendMarker(engine.Marker{ProducerID: p.id, ProducerEpoch: p.epoch, Commit: commit}, 1); err != nil {
		t.Fatal(err)
	}
	l.SetHighWatermark(l.LogEndOffset())
}

// TestCleanAbortedTransactions: an aborted transaction's records never
// supersede a committed record of the same key (before, the cleaner kept
// the aborted value as the key's latest and dropped the committed one, so
// a read_committed reader lost the key), and the cleaner removes them;
// committed transactions compact like other records; every marker stays.
func TestCleanAbortedTransactions(t *testing.T) {
	e := newEnv(t)
	l := e.log(testTP)
	p := &producer{id: 7, epoch: 0}
	ts := e.clk.Now().UnixMilli()
	// Committed: k0..k9 = c1.
	var recs []rec
	for i := 0; i < 10; i++ {
		recs = append(recs, rec{key: []byte(fmt.Sprintf("k%d", i)), value: []byte("c1"), ts: ts})
	}
	appendTxn(t, l, p, recs)
	endTxn(t, l, p, true)
	// Aborted: k0..k9 = aborted (later in the log than c1).
	for i := range recs {
		recs[i].value = []byte("aborted")
	}
	appendTxn(t, l, p, recs)
	endTxn(t, l, p, false)
	// Plain, non-transactional: k0 = plain.
	appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte("k0"), value: []byte("plain"), ts: ts}})
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if lso := l.LastStableOffset(); lso != l.LogEndOffset() {
		t.Fatalf("LSO %d, LEO %d: a transaction is still open", lso, l.LogEndOffset())
	}
	res, ok := e.runOnce()
	if !ok {
		t.Fatal("no pass ran")
	}
	if res.Stats.AbortedRecords != 10 {
		t.Fatalf("pass removed %d aborted records, want 10: %+v", res.Stats.AbortedRecords, res.Stats)
	}
	got, batches := readLog(t, l)
	st := state(got)
	for i := 0; i < 10; i++ {
		k := fmt.Sprintf("k%d", i)
		want := "c1"
		if i == 0 {
			want = "plain"
		}
		if st[k] != want {
			t.Fatalf("%s = %q after cleaning, want %q (log %v)", k, st[k], want, got)
		}
	}
	for _, r := range got {
		if string(r.value) == "aborted" {
			t.Fatalf("an aborted record survived the pass: %v", r)
		}
	}
	markers := 0
	for _, b := range batches {
		if b.IsControl() {
			markers++
		}
	}
	if markers != 2 {
		t.Fatalf("%d markers after cleaning, want both", markers)
	}
	// The aborted transaction is still known to read_committed readers,
	// with its marker in the log.
	ab, err := l.AbortedTxns(l.LogStartOffset(), l.LogEndOffset())
	if err != nil || len(ab) != 1 || ab[0].ProducerID != 7 {
		t.Fatalf("aborted transactions after cleaning: %+v %v", ab, err)
	}
	// A restart (recovery of producer state and indexes from the cleaned
	// log) leaves no transaction open.
	e.restart()
	l = e.log(testTP)
	if lso := l.LastStableOffset(); lso != l.LogEndOffset() {
		t.Fatalf("after a restart LSO %d, LEO %d", lso, l.LogEndOffset())
	}
}

// readCommitted reads the log from its start to its last stable offset as
// a read_committed Kafka consumer does: the aborted transactions overlapping
// the range (the .txnindex entries) start skipping their producer's
// transactional batches from their first offset, its abort marker ends
// that; control batches are not returned.
func readCommitted(t testing.TB, l *engine.Log) []rec {
	t.Helper()
	lso := l.LastStableOffset()
	ab, err := l.AbortedTxns(l.LogStartOffset(), lso)
	if err != nil {
		t.Fatal(err)
	}
	_, batches := readLog(t, l)
	var dec record.Decoder
	abortedPids := map[int64]bool{}
	next := 0
	var got []rec
	for _, b := range batches {
		if engine.Offset(b.BaseOffset()) >= lso {
			break
		}
		for next < len(ab) && int64(ab[next].FirstOffset) <= b.LastOffset() {
			abortedPids[ab[next].ProducerID] = true
			next++
		}
		if b.IsControl() {
			if typ, err := engine.ControlType(b); err == nil && typ == engine.ControlAbort {
				delete(abortedPids, b.ProducerID())
			}
			continue
		}
		if b.IsTransactional() && abortedPids[b.ProducerID()] {
			continue
		}
		err := dec.Records(b, func(r *record.Record) error {
			if engine.Offset(b.RecordOffset(r)) >= lso {
				return nil
			}
			x := rec{offset: engine.Offset(b.RecordOffset(r)), key: clone(r.Key), value: clone(r.Value), ts: b.RecordTimestamp(r)}
			for _, h := range r.Headers {
				x.headers = append(x.headers, record.Header{Key: clone(h.Key), Value: clone(h.Value)})
			}
			got = append(got, x)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// markersOf returns the log's control batches by base offset.
func markersOf(t *testing.T, l *engine.Log) map[int64]record.Batch {
	t.Helper()
	_, batches := readLog(t, l)
	out := map[int64]record.Batch{}
	for _, b := range batches {
		if b.IsControl() {
			out[b.BaseOffset()] = b
		}
	}
	return out
}

// TestCleanRemovesTxnMarkers: the cleaner removes a transaction marker as
// Kafka's does, in two steps once no batch of its transaction is left: a
// pass that finds its data gone stamps it with a delete horizon (and drops
// an abort's .txnindex entry), and a pass after the horizon removes it.
// Markers whose data is still in the log stay. (Before, every marker was
// kept forever.)
func TestCleanRemovesTxnMarkers(t *testing.T) {
	e := newEnv(t)
	l := e.log(testTP)
	p := &producer{id: 7}
	q := &producer{id: 8}
	ts := e.clk.Now().UnixMilli()
	keys := func(prefix, value string, n int) []rec {
		var out []rec
		for i := 0; i < n; i++ {
			out = append(out, rec{key: []byte(fmt.Sprintf("%s%d", prefix, i)), value: []byte(value), ts: ts})
		}
		return out
	}
	appendTxn(t, l, p, keys("k", "a", 5)) // A: committed, superseded below
	endTxn(t, l, p, true)
	markerA := l.LogEndOffset() - 1
	appendTxn(t, l, p, keys("k", "aborted", 5)) // B: aborted
	endTxn(t, l, p, false)
	markerB := l.LogEndOffset() - 1
	endTxn(t, l, p, false) // C: an aborted transaction without data
	markerC := l.LogEndOffset() - 1
	appendRecs(t, l, record.CodecNone, nil, keys("k", "plain", 5))
	appendTxn(t, l, q, keys("z", "d", 1)) // D: committed, stays
	endTxn(t, l, q, true)
	markerD := l.LogEndOffset() - 1
	appendTxn(t, l, p, keys("e", "e", 1)) // E: committed, stays; p's last data batch
	endTxn(t, l, p, true)
	markerE := l.LogEndOffset() - 1
	want := map[string]string{"k0": "plain", "k1": "plain", "k2": "plain", "k3": "plain", "k4": "plain", "z0": "d", "e0": "e"}
	dirty := func(i int) {
		t.Helper()
		appendRecs(t, l, record.CodecNone, nil, []rec{{key: []byte(fmt.Sprintf("x%d", i)), value: []byte("x"), ts: ts}})
		want[fmt.Sprintf("x%d", i)] = "x"
		if err := l.Roll(); err != nil {
			t.Fatal(err)
		}
	}
	check := func(pass string, markers []engine.Offset, aborted int) map[int64]record.Batch {
		t.Helper()
		ms := markersOf(t, l)
		if len(ms) != len(markers) {
			t.Fatalf("%s: %d markers in the log, want %v", pass, len(ms), markers)
		}
		for _, o := range markers {
			if _, ok := ms[int64(o)]; !ok {
				t.Fatalf("%s: marker %d missing", pass, o)
			}
		}
		ab, err := l.AbortedTxns(0, l.LogEndOffset())
		if err != nil || len(ab) != aborted {
			t.Fatalf("%s: aborted transactions %+v (%v), want %d", pass, ab, err, aborted)
		}
		if d := diffState(state(readCommitted(t, l)), want); d != "" {
			t.Fatalf("%s: read_committed state: %s", pass, d)
		}
		return ms
	}
	dirty(0)
	// Pass 1: A's and B's data are in its input: their markers and B's
	// entry stay; C has no data: its entry goes, its marker is stamped.
	res, ok := e.runOnce()
	if !ok {
		t.Fatal("no pass ran")
	}
	ms := check("pass 1", []engine.Offset{markerA, markerB, markerC, markerD, markerE}, 1)
	horizon := res.Stats.Start.UnixMilli() + time.Hour.Milliseconds()
	if h, ok := ms[int64(markerC)].DeleteHorizon(); !ok || h != horizon {
		t.Fatalf("pass 1: marker C horizon %d (%v), want %d", h, ok, horizon)
	}
	for _, o := range []engine.Offset{markerA, markerB, markerD, markerE} {
		if _, ok := ms[int64(o)].DeleteHorizon(); ok {
			t.Fatalf("pass 1: marker %d stamped while its data is in the log", o)
		}
	}
	if res.Stats.MarkersStamped != 1 {
		t.Fatalf("pass 1 stamped %d markers, want 1", res.Stats.MarkersStamped)
	}
	// Pass 2: A's and B's data are gone: stamped, B's entry dropped.
	e.clk.Advance(30 * time.Minute)
	dirty(1)
	if _, ok := e.runOnce(); !ok {
		t.Fatal("no pass ran")
	}
	ms = check("pass 2", []engine.Offset{markerA, markerB, markerC, markerD, markerE}, 0)
	for _, o := range []engine.Offset{markerA, markerB} {
		if _, ok := ms[int64(o)].DeleteHorizon(); !ok {
			t.Fatalf("pass 2: marker %d not stamped", o)
		}
	}
	// Before C's horizon nothing is removed; after it, C goes, then A and
	// B once theirs passed.
	e.clk.Advance(29 * time.Minute)
	dirty(2)
	e.runOnce()
	check("before the horizon", []engine.Offset{markerA, markerB, markerC, markerD, markerE}, 0)
	e.clk.Advance(2 * time.Minute)
	dirty(3)
	res, _ = e.runOnce()
	check("after C's horizon", []engine.Offset{markerA, markerB, markerD, markerE}, 0)
	if res.Stats.MarkersRemoved != 1 {
		t.Fatalf("pass removed %d markers, want 1", res.Stats.MarkersRemoved)
	}
	e.clk.Advance(time.Hour)
	dirty(4)
	e.runOnce()
	check("after every horizon", []engine.Offset{markerD, markerE}, 0)
	// A restart finds no transaction open and the same committed data.
	e.restart()
	l = e.log(testTP)
	if lso := l.LastStableOffset(); lso != l.LogEndOffset() {
		t.Fatalf("after a restart LSO %d, LEO %d", lso, l.LogEndOffset())
	}
	check("after a restart", []engine.Offset{markerD, markerE}, 0)
}
