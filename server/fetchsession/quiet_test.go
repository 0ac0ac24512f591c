package fetchsession

import (
	"sync/atomic"
	"testing"
	"time"
)

// answerAll answers every partition of f as read from srcs (by partition
// number) at their end with nothing new.
func answerAll(t *testing.T, f *Fetch, srcs []*atomic.Uint64) {
	t.Helper()
	for i, p := range f.Partitions() {
		src := srcs[p.Partition]
		rd := f.Read(i)
		rd.Counter = src
		rd.Moves = src.Load()
		rd.CaughtUp = true
		f.Clock(i)
		f.Answer(i, 5, 5, 0, false, 0)
	}
}

func keysOf(f *Fetch) []int32 {
	var out []int32
	for _, p := range f.Partitions() {
		out = append(out, p.Partition)
	}
	return out
}

// TestIncrementalFetchPassesOverUnchanged: an incremental fetch reads only
// the session's partitions whose answer may have changed: not those at
// their end whose Source reports the same state as when last read; a
// partition whose state moves is read again, as is one the client names, one answered with an error or with
// records. A fetch that waits sees a passed-over partition move (Moved)
// and reads it once refreshed. Each fetch of a follower's session that
// passes over a partition writes its time to the partition's clock.
func TestIncrementalFetchPassesOverUnchanged(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var all atomic.Uint64 // every move of any partition (Cache.Moves)
	c := Cache{Now: func() time.Time { return now }, Moves: all.Load}
	srcs := make([]*atomic.Uint64, 4)
	for i := range srcs {
		srcs[i] = new(atomic.Uint64)
	}
	move := func(p int) { srcs[p].Add(1); all.Add(1) }
	f, err := c.Begin(0, InitialEpoch, true, parts("t", 4, 5), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := f.SessionID()
	answerAll(t, f, srcs)
	clock1 := f.Clock(1)

	now = now.Add(time.Second)
	f, err = c.Begin(id, 1, true, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(f); len(got) != 0 || f.Skipped() != 4 {
		t.Fatalf("idle fetch reads %v (passed over %d), want none (4)", got, f.Skipped())
	}
	if got := clock1.Load(); got != now.UnixNano() {
		t.Fatalf("clock of a passed-over follower partition: %d, want %d", got, now.UnixNano())
	}
	if f.Moved() {
		t.Fatal("Moved with nothing changed")
	}
	all.Add(1) // a partition outside the session moved
	if f.Moved() {
		t.Fatal("Moved with none of the session's partitions changed")
	}
	// Partition 1 moves while the fetch waits: Moved, and a refresh
	// reads it.
	move(1)
	if !f.Moved() || !f.Refresh() {
		t.Fatal("a passed-over partition that moved: not Moved or not refreshed")
	}
	if got := keysOf(f); len(got) != 1 || got[0] != 1 {
		t.Fatalf("refreshed fetch reads %v, want [1]", got)
	}
	if !f.Covers(Key{"t", 3}) || f.Covers(Key{"t", 9}) {
		t.Fatal("Covers wrong")
	}
	answerAll(t, f, srcs)

	// Partition 2's log start moves (its counter with it); partition 3 is
	// named by the client.
	move(2)
	f, err = c.Begin(id, 2, true, []Partition{{Key: Key{"t", 3}, FetchOffset: 5, MaxBytes: 1 << 20}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(f); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("reads %v, want [2 3]", got)
	}
	// Partition 2 answered with records, partition 3 with an error: both
	// read again next time although nothing moved.
	for i, p := range f.Partitions() {
		src := srcs[p.Partition]
		rd := f.Read(i)
		rd.Counter = src
		rd.Moves = src.Load()
		rd.CaughtUp = p.Partition == 3
		var errCode int16
		if p.Partition == 3 {
			errCode = 6
		}
		f.Answer(i, 5, 5, 0, p.Partition == 2, errCode)
	}
	f, err = c.Begin(id, 3, true, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(f); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("after records and an error: reads %v, want [2 3]", got)
	}
	answerAll(t, f, srcs)
	f, err = c.Begin(id, 4, true, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(f); len(got) != 0 {
		t.Fatalf("settled: reads %v, want none", got)
	}
}

// TestPartitionWithoutSourceIsAlwaysRead: a partition read without a
// change counter (the broker does not host it) is read at every fetch.
func TestPartitionWithoutSourceIsAlwaysRead(t *testing.T) {
	var c Cache
	f, err := c.Begin(0, InitialEpoch, false, parts("t", 2, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Partitions() {
		f.Read(i).CaughtUp = true
		f.Answer(i, 0, 0, 0, false, 0)
	}
	f, err = c.Begin(f.SessionID(), 1, false, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Partitions()) != 2 || f.Clock(0) != nil {
		t.Fatalf("reads %v, clock %v", keysOf(f), f.Clock(0))
	}
}

// TestForgetManyKeepsOrder: an incremental fetch forgetting many
// partitions at once (a follower after a leader change) keeps the others
// in their order, each still found by its key.
func TestForgetManyKeepsOrder(t *testing.T) {
	var c Cache
	f, err := c.Begin(0, InitialEpoch, true, parts("t", 1000, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	var forget []Key
	for p := int32(0); p < 1000; p += 2 {
		forget = append(forget, Key{"t", p})
	}
	forget = append(forget, Key{"u", 1}) // not in the session
	f, err = c.Begin(f.SessionID(), 1, true, []Partition{{Key: Key{"t", 7}, FetchOffset: 9}}, forget)
	if err != nil {
		t.Fatal(err)
	}
	ps := f.Partitions()
	if len(ps) != 500 {
		t.Fatalf("%d partitions left, want 500", len(ps))
	}
	for i, p := range ps {
		if p.Partition != int32(2*i+1) || f.sess.index[p.Key] != i {
			t.Fatalf("partition %d: %v (index %d)", i, p.Key, f.sess.index[p.Key])
		}
	}
	if ps[3].FetchOffset != 9 {
		t.Fatalf("t-7 position %d, want 9", ps[3].FetchOffset)
	}
}
