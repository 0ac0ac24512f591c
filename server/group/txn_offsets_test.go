package group

import (
	"errors"
	"testing"
	"time"
)

// stableFetch is OffsetFetch with require_stable on the harness's core.
func (h *harness) stableFetch(group string, tp TopicPartition) CommittedOffset {
	h.t.Helper()
	out := h.c.fetchOffsets(group, []TopicPartition{tp})
	if g := h.c.groups[group]; g != nil && h.c.hasPendingOffset(g, tp) {
		return CommittedOffset{TopicPartition: tp, Offset: -1, Err: ErrUnstableOffsetCommit}
	}
	return out[0]
}

func (h *harness) txnCommit(req TxnCommitRequest) []error {
	var errs []error
	h.do(func(now time.Time) { errs = h.c.txnCommit(now, req) })
	return errs
}

// Transactional offset commits stay pending (invisible to OffsetFetch,
// UNSTABLE_OFFSET_COMMIT under require_stable) until the producer's
// marker: a commit applies them, an abort drops them, and a replay of the
// log (batches and markers) rebuilds the same state, pending ones
// included.
func TestTxnOffsetCommitPendingUntilMarker(t *testing.T) {
	h := newHarness(t, testConfig())
	tp := TopicPartition{"in", 0}
	h.commit(CommitRequest{Group: "g", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: tp, Offset: 5, LeaderEpoch: -1}}})
	commit := func(pid int64, off int64) {
		t.Helper()
		if errs := h.txnCommit(TxnCommitRequest{Group: "g", ProducerID: pid, Generation: -1, Offsets: []OffsetCommit{{TopicPartition: tp, Offset: off, LeaderEpoch: -1}}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	complete := func(pid int64, ok bool) {
		h.store.marker(0, pid, ok)
		h.do(func(time.Time) { h.c.completeTxn(pid, ok) })
	}
	want := func(off int64, unstable bool) {
		t.Helper()
		if o := h.c.fetchOffsets("g", []TopicPartition{tp}); o[0].Offset != off {
			t.Fatalf("committed offset %d, want %d", o[0].Offset, off)
		}
		if o := h.stableFetch("g", tp); errors.Is(o.Err, ErrUnstableOffsetCommit) != unstable {
			t.Fatalf("require_stable: %+v, want unstable %v", o, unstable)
		}
	}

	commit(7, 10)
	want(5, true)
	complete(7, false) // abort: dropped
	want(5, false)
	commit(7, 11)
	want(5, true)
	complete(7, true)
	want(11, false)

	// A pending commit survives a restart (replay), then commits.
	commit(8, 20)
	h.restart()
	want(11, true)
	complete(8, true)
	want(20, false)
	h.restart()
	want(20, false)

	// An aborted transaction replays as aborted.
	commit(9, 30)
	complete(9, false)
	h.restart()
	want(20, false)

	// A later plain commit is not replaced by an earlier pending one.
	commit(10, 40)
	h.commit(CommitRequest{Group: "g", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: tp, Offset: 41, LeaderEpoch: -1}}})
	want(41, true)
	complete(10, true)
	want(41, false)
	h.restart()
	want(41, false)
}

// TestTxnOffsetsOfDeletedTopicNotReapplied: a transactional offset commit
// pending when its topic is deleted is dropped, and stays dropped when the
// producer's commit marker arrives after a coordinator restart (a replay
// of the log): for a partition with no earlier committed offset (before,
// nothing recorded the deletion, so the replayed marker applied the
// pending offset) and for one with an earlier committed offset (before,
// the replayed tombstone removed only the committed offset, and the
// marker then applied the pending one).
func TestTxnOffsetsOfDeletedTopicNotReapplied(t *testing.T) {
	for _, committedBefore := range []bool{false, true} {
		t.Run(map[bool]string{false: "pending-only", true: "committed-before"}[committedBefore], func(t *testing.T) {
			h := newHarness(t, testConfig())
			gone := TopicPartition{"gone", 0}
			kept := TopicPartition{"kept", 0}
			if committedBefore {
				h.commit(CommitRequest{Group: "g", Generation: -1, Offsets: []OffsetCommit{{TopicPartition: gone, Offset: 3, LeaderEpoch: -1}}})
			}
			if errs := h.txnCommit(TxnCommitRequest{Group: "g", ProducerID: 7, Generation: -1, Offsets: []OffsetCommit{
				{TopicPartition: gone, Offset: 10, LeaderEpoch: -1}, {TopicPartition: kept, Offset: 20, LeaderEpoch: -1},
			}}); errs[0] != nil || errs[1] != nil {
				t.Fatal(errs)
			}
			var n int
			var err error
			h.do(func(now time.Time) { n, err = h.c.topicsDeleted(now, map[string]bool{"gone": true}) })
			if err != nil {
				t.Fatal(err)
			}
			if o := h.stableFetch("g", gone); o.Offset != -1 || o.Err != nil {
				t.Fatalf("deleted topic's offset after the deletion: %+v", o)
			}
			// The coordinator restarts before the marker, then commits.
			h.restart()
			h.store.marker(0, 7, true)
			h.do(func(time.Time) { h.c.completeTxn(7, true) })
			check := func(when string) {
				t.Helper()
				if o := h.stableFetch("g", gone); o.Offset != -1 || o.Err != nil {
					t.Fatalf("%s: the deleted topic's pending offset came back: %+v", when, o)
				}
				if o := h.stableFetch("g", kept); o.Offset != 20 || o.Err != nil {
					t.Fatalf("%s: the other topic's offset: %+v, want 20", when, o)
				}
			}
			check("after the marker")
			h.restart()
			check("after another restart")
			_ = n
		})
	}
}
