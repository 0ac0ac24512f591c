package replica

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
)

// TestFetcherReusesRequestsUntilTheyChange: a fetcher reuses its last
// round's requests while no partition's request may have changed (an idle
// follower of thousands of partitions then looks at none of them per
// round) and reports them the same as the last; any change is seen at the
// next round: records appended (a new fetch offset), the log start moved,
// a new leader epoch, another partition added.
func TestFetcherReusesRequestsUntilTheyChange(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	open := func(i int32) *Partition {
		tp := engine.TopicPartition{Topic: "t", Partition: i}
		l, err := engine.OpenLog(filepath.Join(t.TempDir(), engine.PartitionDirName(tp)), tp, engine.DefaultConfig(),
			engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		p := New(l, Options{ID: 2})
		if _, err := p.MakeFollower(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1, 2}, Replicas: []int32{1, 2}}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fs := NewFetchers(FetcherConfig{ReplicaID: 2})
	f := newFetcher(fs, 1)
	p := open(0)
	f.add(p)
	round := func(wantSame bool, what string) FollowerRequest {
		t.Helper()
		scans := f.scans
		_, fetches, _, same := f.collect()
		if same != wantSame {
			t.Fatalf("%s: same %v, want %v", what, same, wantSame)
		}
		if same && f.scans != scans {
			t.Fatalf("%s: an unchanged round looked at every partition", what)
		}
		for _, q := range fetches {
			if q.p == p {
				if got := p.NextRequest(); got != q.req {
					t.Fatalf("%s: request %+v, the partition's is %+v", what, q.req, got)
				}
				return q.req
			}
		}
		t.Fatalf("%s: no fetch for the partition in %+v", what, fetches)
		return FollowerRequest{}
	}
	round(false, "first round")
	// (The first request ended the truncation it started with: the next
	// round asks again.)
	round(false, "second round")
	r := round(true, "idle round")
	if r.FetchOffset != 0 {
		t.Fatalf("fetch offset %d, want 0", r.FetchOffset)
	}
	if err := p.HandleFetchAnswer(r, batch(t, "a", 3), 3, 0); err != nil {
		t.Fatal(err)
	}
	if r = round(false, "after records"); r.FetchOffset != 3 {
		t.Fatalf("after records: fetch offset %d, want 3", r.FetchOffset)
	}
	round(true, "idle again")
	// The log start moves (the leader's, followed by a fetch answer that
	// lists no records, or local retention): seen without RequestState.
	if err := p.Log().DeleteRecordsBefore(2); err != nil {
		t.Fatal(err)
	}
	if r = round(false, "after the log start moved"); r.LogStart != 2 {
		t.Fatalf("log start %d, want 2", r.LogStart)
	}
	if _, err := p.MakeFollower(State{Leader: 1, LeaderEpoch: 2, ISR: []int32{1, 2}, Replicas: []int32{1, 2}}); err != nil {
		t.Fatal(err)
	}
	queries, _, _, same := f.collect()
	if same || len(queries) != 1 || queries[0].req.CurrentLeaderEpoch != 2 {
		t.Fatalf("after a new leader epoch: same %v, queries %+v", same, queries)
	}
	if err := p.HandleEpochAnswer(queries[0].req, EpochEndOffset{Epoch: queries[0].req.Epoch, EndOffset: 3}); err != nil {
		t.Fatal(err)
	}
	if r = round(false, "truncation done"); r.FetchOffset != 3 || r.CurrentLeaderEpoch != 2 {
		t.Fatalf("at the new epoch: %+v", r)
	}
	round(true, "idle at the new epoch")
	f.add(open(1))
	round(false, "a partition added")
	round(false, "its truncation done")
	round(true, "idle with two")
}

// TestFetchStateMoves: a leader's FetchState moves with an append, a new
// high watermark and a log start move (an incremental fetch session
// passes over the partition only while it stays).
func TestFetchStateMoves(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	tp := engine.TopicPartition{Topic: "t", Partition: 0}
	l, err := engine.OpenLog(filepath.Join(t.TempDir(), engine.PartitionDirName(tp)), tp, engine.DefaultConfig(),
		engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := New(l, Options{ID: 1})
	if _, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1}, Replicas: []int32{1}}, clk.Now()); err != nil {
		t.Fatal(err)
	}
	s0 := p.FetchState()
	if _, _, err := p.AppendAsLeader(batch(t, "a", 3), false, 1); err != nil {
		t.Fatal(err)
	}
	s1 := p.FetchState()
	if s1 == s0 {
		t.Fatal("FetchState did not move with an append")
	}
	if p.FetchState() != s1 {
		t.Fatal("FetchState moved by itself")
	}
	if err := l.DeleteRecordsBefore(1); err != nil {
		t.Fatal(err)
	}
	if p.FetchState() == s1 {
		t.Fatal("FetchState did not move with the log start")
	}
}
