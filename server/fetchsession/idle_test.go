package fetchsession

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleSessionFetchLooksAtNoPartition: once a scan passed over every
// partition of a session, its incremental fetches look at none while no
// partition of the broker moves and nothing of the session changes; each
// such fetch still writes its time to every passed-over partition's clock.
// A move anywhere (the cache's Moves), a partition named or forgotten, or
// an answer makes the next fetch look again.
func TestIdleSessionFetchLooksAtNoPartition(t *testing.T) {
	const n = 1000
	now := time.Unix(1_700_000_000, 0)
	var all atomic.Uint64
	c := Cache{Now: func() time.Time { return now }, Moves: all.Load}
	srcs := make([]*atomic.Uint64, n)
	for i := range srcs {
		srcs[i] = new(atomic.Uint64)
	}
	f, err := c.Begin(0, InitialEpoch, true, parts("t", n, 5), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := f.SessionID()
	answerAll(t, f, srcs)
	clocks := make([]*Clock, n)
	for i := range n {
		clocks[i] = f.Clock(i)
	}
	epoch := int32(1)
	fetch := func(named []Partition, forgotten []Key) *Fetch {
		t.Helper()
		now = now.Add(500 * time.Millisecond)
		f, err := c.Begin(id, epoch, true, named, forgotten)
		if err != nil {
			t.Fatal(err)
		}
		epoch++
		return f
	}
	checkClocks := func(what string, want int64, except ...int) {
		t.Helper()
	next:
		for i, ck := range clocks {
			for _, e := range except {
				if e == i {
					continue next
				}
			}
			if got := ck.Load(); got != want {
				t.Fatalf("%s: clock of partition %d reads %d, want %d", what, i, got, want)
			}
		}
	}

	// The first incremental fetch scans (the full fetch's answers
	// changed the session), the next ones do not.
	f = fetch(nil, nil)
	if len(f.Partitions()) != 0 || f.Skipped() != n {
		t.Fatalf("idle fetch reads %d, passes over %d", len(f.Partitions()), f.Skipped())
	}
	looked := c.Looked()
	if looked != n {
		t.Fatalf("first incremental fetch looked at %d partitions, want %d", looked, n)
	}
	for range 10 {
		f = fetch(nil, nil)
		if len(f.Partitions()) != 0 || f.Skipped() != n || f.Moved() {
			t.Fatalf("idle fetch reads %d, passes over %d, moved %v", len(f.Partitions()), f.Skipped(), f.Moved())
		}
		checkClocks("idle fetch", now.UnixNano())
	}
	if got := c.Looked(); got != looked {
		t.Fatalf("10 idle fetches looked at %d partitions, want 0", got-looked)
	}

	// A partition outside the session moves: one scan, then idle again.
	all.Add(1)
	fetch(nil, nil)
	if got := c.Looked() - looked; got != n {
		t.Fatalf("after a move elsewhere: looked at %d, want %d", got, n)
	}
	looked = c.Looked()
	fetch(nil, nil)
	if got := c.Looked(); got != looked {
		t.Fatalf("idle again: looked at %d, want 0", got-looked)
	}

	// Partition 7 moves: the next fetch reads it, and its clock keeps the
	// time of the last fetch that passed over it while the others move
	// on.
	passed := now.UnixNano()
	srcs[7].Add(1)
	all.Add(1)
	f = fetch(nil, nil)
	if got := keysOf(f); len(got) != 1 || got[0] != 7 {
		t.Fatalf("after partition 7 moved: reads %v, want [7]", got)
	}
	checkClocks("partition 7 read", now.UnixNano(), 7)
	if got := clocks[7].Load(); got != passed {
		t.Fatalf("clock of the partition read: %d, want the last pass %d", got, passed)
	}
	// Read and answered (caught up again): the next fetch scans and
	// passes over all of them, partition 7 included.
	answerAll(t, f, srcs)
	fetch(nil, nil)
	checkClocks("all passed over again", now.UnixNano())
	looked = c.Looked()
	fetch(nil, nil)
	checkClocks("idle", now.UnixNano())
	if got := c.Looked(); got != looked {
		t.Fatalf("idle after a read: looked at %d, want 0", got-looked)
	}

	// Partition 3 forgotten: its clock stops at the last fetch that
	// passed over it; the others go on.
	passed = now.UnixNano()
	fetch(nil, []Key{{"t", 3}})
	fetch(nil, nil)
	if got := clocks[3].Load(); got != passed {
		t.Fatalf("clock of a forgotten partition: %d, want %d", got, passed)
	}
	checkClocks("after a forget", now.UnixNano(), 3)

	// Partition 9 named by the client: read, its clock left at the last
	// pass.
	passed = now.UnixNano()
	f = fetch([]Partition{{Key: Key{"t", 9}, FetchOffset: 5, MaxBytes: 1 << 20}}, nil)
	if got := keysOf(f); len(got) != 1 || got[0] != 9 {
		t.Fatalf("named partition: reads %v, want [9]", got)
	}
	if got := clocks[9].Load(); got != passed {
		t.Fatalf("clock of a named partition: %d, want %d", got, passed)
	}
	checkClocks("after a name", now.UnixNano(), 3, 9)
}

// TestRefreshLeavesClocksToTheNextFetch: a fetch woken while it waits
// (Refresh) reads a passed-over partition that moved without touching any
// clock; the next fetch scans again (it is not idle) and credits the
// partitions it passes over.
func TestRefreshLeavesClocksToTheNextFetch(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var all atomic.Uint64
	c := Cache{Now: func() time.Time { return now }, Moves: all.Load}
	srcs := []*atomic.Uint64{new(atomic.Uint64), new(atomic.Uint64)}
	f, err := c.Begin(0, InitialEpoch, true, parts("t", 2, 5), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := f.SessionID()
	answerAll(t, f, srcs)
	c0, c1 := f.Clock(0), f.Clock(1)
	now = now.Add(time.Second)
	f, err = c.Begin(id, 1, true, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	passed := now.UnixNano()
	srcs[1].Add(1)
	all.Add(1)
	if !f.Moved() || !f.Refresh() {
		t.Fatal("partition 1 moved: not Moved or not refreshed")
	}
	if c0.Load() != passed || c1.Load() != passed {
		t.Fatalf("refresh moved clocks: %d %d, want %d", c0.Load(), c1.Load(), passed)
	}
	answerAll(t, f, srcs)
	now = now.Add(time.Second)
	looked := c.Looked()
	f, err = c.Begin(id, 2, true, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Looked() == looked || len(f.Partitions()) != 0 {
		t.Fatalf("fetch after a refresh: looked at %d, reads %v; want a scan passing over both", c.Looked()-looked, keysOf(f))
	}
	if c0.Load() != now.UnixNano() || c1.Load() != now.UnixNano() {
		t.Fatalf("clocks %d %d, want %d", c0.Load(), c1.Load(), now.UnixNano())
	}
}
