package cleaner

import (
	"fmt"
	"testing"

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
