package fetchsession

import (
	"errors"
	"testing"
	"time"
)

func parts(topic string, n int, off int64) []Partition {
	var out []Partition
	for p := range n {
		out = append(out, Partition{Key: Key{topic, int32(p)}, FetchOffset: off, MaxBytes: 1 << 20})
	}
	return out
}

// TestSessionLifecycle: open, incremental fetches (epochs 1, 2, ...),
// positions updated and partitions forgotten, the answer listing only what
// is new, the errors for an unknown session and a wrong epoch, closing.
func TestSessionLifecycle(t *testing.T) {
	var c Cache
	f, err := c.Begin(0, InitialEpoch, false, parts("t", 3, 0), nil)
	if err != nil || f.SessionID() == 0 || !f.Full() || len(f.Partitions()) != 3 {
		t.Fatalf("open: %v %+v", err, f)
	}
	id := f.SessionID()
	for i := range 3 {
		if !f.Answer(i, 5, 5, 0, false, 0) {
			t.Fatalf("full answer dropped partition %d", i)
		}
	}
	// Epoch 1: nothing named, nothing new: an empty answer.
	f, err = c.Begin(id, 1, false, nil, nil)
	if err != nil || f.Full() || len(f.Partitions()) != 3 {
		t.Fatalf("incremental: %v %+v", err, f)
	}
	for i := range 3 {
		if f.Answer(i, 5, 5, 0, false, 0) {
			t.Fatalf("partition %d listed with nothing new", i)
		}
	}
	// Epoch 2: t-1 moved; t-2's high watermark moved; t-0 has an error.
	f, err = c.Begin(id, 2, false, []Partition{{Key: Key{"t", 1}, FetchOffset: 5, MaxBytes: 1 << 20}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Partitions()[1].FetchOffset; got != 5 {
		t.Fatalf("t-1 position %d, want 5", got)
	}
	if !f.Answer(0, 5, 5, 0, false, 6) || !f.Answer(1, 5, 5, 0, true, 0) || !f.Answer(2, 7, 7, 0, false, 0) {
		t.Fatal("a partition with an error, records or a new high watermark not listed")
	}
	// A wrong epoch, an unknown session.
	if _, err := c.Begin(id, 2, false, nil, nil); !errors.Is(err, ErrInvalidEpoch) {
		t.Fatalf("repeated epoch: %v", err)
	}
	if _, err := c.Begin(id+1, 1, false, nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	// Epoch 3: t-0 forgotten, u-0 added.
	f, err = c.Begin(id, 3, false, parts("u", 1, 9), []Key{{"t", 0}})
	if err != nil {
		t.Fatal(err)
	}
	ps := f.Partitions()
	if len(ps) != 3 || ps[0].Key != (Key{"t", 1}) || ps[2].Key != (Key{"u", 0}) || ps[2].FetchOffset != 9 {
		t.Fatalf("after forgetting t-0 and adding u-0: %+v", ps)
	}
	// t-0 had an error last time: the next answer lists it again, had it
	// stayed; u-0 is new: listed.
	if !f.Answer(2, 0, 0, 0, false, 0) {
		t.Fatal("a new partition not listed")
	}
	// Closing: epoch -1 removes it, the fetch goes on without a session.
	f, err = c.Begin(id, FinalEpoch, false, parts("t", 1, 0), nil)
	if err != nil || f.SessionID() != 0 || !f.Full() {
		t.Fatalf("close: %v %+v", err, f)
	}
	if c.Len() != 0 {
		t.Fatalf("%d sessions after closing", c.Len())
	}
	if _, err := c.Begin(id, 4, false, nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("closed session: %v", err)
	}
	// Without a session: epoch -1 and id 0.
	f, err = c.Begin(0, FinalEpoch, false, parts("t", 2, 0), nil)
	if err != nil || f.SessionID() != 0 || len(f.Partitions()) != 2 || c.Len() != 0 {
		t.Fatalf("sessionless: %v %+v", err, f)
	}
}

// TestSessionSlots: the cache holds at most Slots sessions; a new one
// replaces a session idle for EvictAfter, or a consumer's smaller session,
// and otherwise goes without.
func TestSessionSlots(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := Cache{Slots: 2, EvictAfter: time.Minute, Now: func() time.Time { return now }}
	open := func(follower bool, n int) int32 {
		t.Helper()
		f, err := c.Begin(0, InitialEpoch, follower, parts("t", n, 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		return f.SessionID()
	}
	a := open(true, 10)
	now = now.Add(time.Second)
	b := open(true, 10)
	if a == 0 || b == 0 || c.Len() != 2 {
		t.Fatalf("two sessions: %d %d (%d held)", a, b, c.Len())
	}
	if id := open(false, 100); id != 0 {
		t.Fatal("a consumer's session took a follower's busy slot")
	}
	now = now.Add(time.Minute)
	if _, err := c.Begin(b, 1, true, nil, nil); err != nil { // b used: a is the stale one
		t.Fatal(err)
	}
	d := open(false, 5)
	if d == 0 || c.Len() != 2 {
		t.Fatalf("no session in the stale one's slot: %d", d)
	}
	if _, err := c.Begin(a, 1, true, nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("the evicted session: %v", err)
	}
	// A follower's session takes the consumer's busy slot.
	if e := open(true, 1); e == 0 {
		t.Fatal("a follower's session found no slot over a consumer's")
	}
	if _, err := c.Begin(d, 1, false, nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("the consumer's session after a follower took its slot: %v", err)
	}
}
