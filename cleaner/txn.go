package cleaner

import (
	"sort"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// Transactions, as Kafka's cleaner treats them.
//
// Aborted data: the records of an aborted transaction never enter the
// offset map (so they never supersede a committed record of the same key)
// and are removed when their batch is recopied (the batch emptied when it
// holds its producer's last sequence or ends the group, else dropped). A
// pass never reaches the last stable offset, so every transaction it meets
// has ended: aborted when the partition's .txnindex lists it, committed
// otherwise.
//
// Markers (Kafka's CleanedTransactionMetadata): the recopy walks every
// batch from the log start in offset order and tracks, per producer, the
// transaction its batches belong to (txnTracker). A marker is kept as long
// as a batch of its transaction was still in the log the pass read:
//
//   - an ABORT marker whose transaction had a batch in the pass's input
//     keeps it and its .txnindex entry (the cleaned segment's index lists
//     exactly those); once a pass finds none, the entry is dropped;
//   - a COMMIT marker is kept while a batch of its transaction was read.
//
// A marker with no data left is not removed at once: like a tombstone, the
// first pass to find it so stamps its batch with a delete horizon (pass
// time + delete.retention.ms, KIP-534) so that a consumer part-way through
// the log still sees it, and a pass after the horizon removes it. An ABORT
// marker whose entry is still indexed in the pass's input is never removed
// (the pass drops the entry; a later pass the marker), so a .txnindex entry
// never outlives its marker: a read_committed consumer told of an aborted
// transaction skips its producer's batches until it meets the abort marker.
// A marker that must stay for its producer (the producer's newest batch is
// that marker: its epoch fences zombies) or that ends its group is kept
// whole; Kafka empties it, but an empty control batch carries no type.

// abortedTxns maps producer ids to their aborted transactions' offset
// ranges [first, marker], sorted by first offset.
type abortedTxns map[int64][][2]int64

func newAbortedTxns(list []engine.AbortedTxn) abortedTxns {
	if len(list) == 0 {
		return nil
	}
	m := abortedTxns{}
	for _, a := range list {
		m[a.ProducerID] = append(m[a.ProducerID], [2]int64{int64(a.FirstOffset), int64(a.LastOffset)})
	}
	for _, rs := range m {
		sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	}
	return m
}

// aborted reports whether b is a data batch of an aborted transaction.
func (a abortedTxns) aborted(b record.Batch) bool {
	if len(a) == 0 || !b.IsTransactional() || b.IsControl() {
		return false
	}
	rs := a[b.ProducerID()]
	base := b.BaseOffset()
	i := sort.Search(len(rs), func(i int) bool { return rs[i][0] > base }) - 1
	return i >= 0 && base <= rs[i][1]
}

// txnTracker follows the transactions of one pass's recopy, batch by batch
// in offset order (Kafka's CleanedTransactionMetadata).
type txnTracker struct {
	pending []engine.AbortedTxn // the input's aborted transactions by first offset, from next on not yet begun
	next    int
	// aborted holds the producers whose aborted transaction has begun and
	// whose abort marker was not reached yet; committed those with a
	// transactional batch read since their last marker.
	aborted   map[int64]*abortedRun
	committed map[int64]bool
	// kept collects the aborted transactions whose marker keeps its entry,
	// for the group being recopied.
	kept []engine.AbortedTxn
}

type abortedRun struct {
	a        engine.AbortedTxn
	observed bool // a batch of it was read
}

func newTxnTracker(list []engine.AbortedTxn) *txnTracker {
	p := append([]engine.AbortedTxn(nil), list...)
	sort.Slice(p, func(i, j int) bool { return p[i].FirstOffset < p[j].FirstOffset })
	return &txnTracker{pending: p, aborted: map[int64]*abortedRun{}, committed: map[int64]bool{}}
}

// begin starts the aborted transactions whose first offset is at most off.
func (t *txnTracker) begin(off int64) {
	if t == nil {
		return
	}
	for t.next < len(t.pending) && int64(t.pending[t.next].FirstOffset) <= off {
		a := t.pending[t.next]
		t.next++
		if _, ok := t.aborted[a.ProducerID]; !ok {
			t.aborted[a.ProducerID] = &abortedRun{a: a}
		}
	}
}

// onData tracks data batch b (empty ones too).
func (t *txnTracker) onData(b record.Batch) {
	t.begin(b.LastOffset())
	if t == nil || !b.IsTransactional() {
		return
	}
	pid := b.ProducerID()
	if r, ok := t.aborted[pid]; ok {
		r.observed = true
		return
	}
	t.committed[pid] = true
}

// onMarker tracks control batch b and says whether its transaction has no
// batch left in the pass's input (the marker may go once its horizon
// passed), and whether its .txnindex entry was in the input (the marker
// must then stay this pass). An ABORT marker that stays with its data
// has its entry added to t.kept.
func (t *txnTracker) onMarker(b record.Batch) (noData, indexed bool, err error) {
	if t == nil {
		return false, false, nil
	}
	t.begin(b.LastOffset())
	if b.NumRecords() == 0 {
		return true, false, nil // an emptied marker (Kafka's cleaner writes them)
	}
	typ, err := engine.ControlType(b)
	if err != nil {
		return false, false, err
	}
	pid := b.ProducerID()
	switch typ {
	case engine.ControlAbort:
		r, ok := t.aborted[pid]
		if !ok {
			return true, false, nil
		}
		delete(t.aborted, pid)
		if r.observed {
			t.kept = append(t.kept, r.a)
			return false, true, nil
		}
		return true, true, nil
	case engine.ControlCommit:
		had := t.committed[pid]
		delete(t.committed, pid)
		return !had, false, nil
	}
	return false, false, nil // an unknown control type stays
}
