package cleaner

import (
	"sort"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// Aborted transactions, as Kafka's cleaner treats them: the records of an
// aborted transaction never enter the offset map (so they never supersede
// a committed record of the same key) and are removed when their batch is
// recopied (the batch emptied when it holds its producer's last sequence
// or ends the group, else dropped). A pass never reaches the last stable
// offset, so every transaction it meets has ended: aborted when the
// partition's .txnindex lists it, committed otherwise.
//
// Control batches (commit and abort markers) are always kept. Kafka
// removes a marker once no record of its transaction is left and its
// delete horizon passed; kvlog keeps them, so the .txnindex entries that
// read_committed fetches report always have their abort marker (a reader
// stops skipping a producer's batches at that marker).

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
