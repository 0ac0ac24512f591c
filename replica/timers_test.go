package replica

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
)

// timedLeader is a leader of simTP with follower 2 in its ISR (it never
// fetches, so the HW stays put), on a Manager whose timers run on clk.
func timedLeader(t *testing.T) (*clock.Manual, *Manager, *Partition, engine.AppendResult) {
	t.Helper()
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerConfig{ID: 1, Clock: clk, Logger: silent})
	t.Cleanup(func() {
		m.Close()
		l.Close()
	})
	p := m.Add(l)
	if _, err := p.MakeLeader(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1, 2}, Replicas: []int32{1, 2}, ZkVersion: 1}, clk.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := m.Append(p, batch(t, "a", 3), true, 1)
	if err != nil {
		t.Fatal(err)
	}
	return clk, m, p, res
}

// TestAwaitAcksTimeoutOnTheClock: an acks=all wait the ISR does not
// complete ends with ErrTimedOut exactly when the Manager's clock reaches
// its timeout, not before.
func TestAwaitAcksTimeoutOnTheClock(t *testing.T) {
	clk, m, p, res := timedLeader(t)
	const timeout = 30 * time.Second
	before := clk.Waiters()
	done := make(chan error, 1)
	waits := []AckWait{{P: p, Last: res.LastOffset, MinISR: 1}}
	m.AwaitAcks(waits, timeout, func() { done <- waits[0].Err })
	if n := clk.Waiters(); n != before+1 {
		t.Fatalf("%d timers on the clock after AwaitAcks, want %d", n, before+1)
	}
	clk.Advance(timeout - time.Nanosecond)
	if !clk.AwaitCallbacks(10 * time.Second) {
		t.Fatal("timer callbacks did not return")
	}
	select {
	case err := <-done:
		t.Fatalf("acks=all answered before its timeout: %v", err)
	default:
	}
	clk.Advance(time.Nanosecond)
	select {
	case err := <-done:
		if !errors.Is(err, ErrTimedOut) {
			t.Fatalf("acks=all at its timeout: %v, want ErrTimedOut", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acks=all not answered at its timeout")
	}
	if n := clk.Waiters(); n != before {
		t.Fatalf("%d timers on the clock after the timeout, want %d", n, before)
	}
}

// TestParkDeadlineOnTheClock: a parked fetch nothing wakes ends (final)
// exactly when the Manager's clock reaches its deadline, not before.
func TestParkDeadlineOnTheClock(t *testing.T) {
	clk, m, p, _ := timedLeader(t)
	const wait = 500 * time.Millisecond
	before := clk.Waiters()
	done := make(chan bool, 1)
	m.Park([]Watched{{P: p, Seen: p.log.HighWatermark()}}, wait, func(final bool) { done <- final })
	if n := clk.Waiters(); n != before+1 {
		t.Fatalf("%d timers on the clock after Park, want %d", n, before+1)
	}
	clk.Advance(wait - time.Nanosecond)
	if !clk.AwaitCallbacks(10 * time.Second) {
		t.Fatal("timer callbacks did not return")
	}
	// Its timer still pending: the wait was not cut short.
	if n := clk.Waiters(); n != before+1 {
		t.Fatalf("%d timers on the clock just before the deadline, want %d", n, before+1)
	}
	select {
	case final := <-done:
		t.Fatalf("parked fetch ended before its deadline (final %v)", final)
	default:
	}
	clk.Advance(time.Nanosecond)
	select {
	case final := <-done:
		if !final {
			t.Fatal("the deadline ended the wait as not final")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("parked fetch not ended at its deadline")
	}
}

// TestFetcherBackoffOnTheClock: a fetcher that cannot reach its leader
// tries again replica.fetch.backoff.ms later on its clock, not sooner.
func TestFetcherBackoffOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerConfig{ID: 2, Clock: clk, Logger: silent})
	p := m.Add(l)
	if _, err := p.MakeFollower(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1, 2}, Replicas: []int32{1, 2}, ZkVersion: 1}); err != nil {
		t.Fatal(err)
	}
	// Each attempt to reach the leader waits here until the test takes it.
	attempts := make(chan struct{})
	stop := make(chan struct{})
	const backoff = 5 * time.Second
	fs := NewFetchers(FetcherConfig{
		ReplicaID: 2, Backoff: backoff, Clock: clk, Logger: silent,
		Resolve: func(int32) (string, bool) {
			select {
			case attempts <- struct{}{}:
			case <-stop:
			}
			return "", false
		},
	})
	t.Cleanup(func() {
		close(stop)
		fs.Close()
		m.Close()
		l.Close()
	})
	attempt := func(what string) {
		t.Helper()
		select {
		case <-attempts:
		case <-time.After(10 * time.Second):
			t.Fatalf("no attempt to reach the leader %s", what)
		}
	}
	fs.Follow(p, 1)
	attempt("at first")
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("the failed attempt set no back-off timer on the clock")
	}
	// A timer fires (and leaves the clock) inside Advance: still there,
	// the back-off was not cut short.
	clk.Advance(backoff - time.Nanosecond)
	if n := clk.Waiters(); n != 1 {
		t.Fatalf("%d timers on the clock just before the back-off ends, want 1", n)
	}
	clk.Advance(time.Nanosecond)
	attempt("once the back-off passed")
}

// fakeLeader is a leader that answers every Fetch with errOnFetch for each
// partition asked (no fetch session), and reports each Fetch it reads.
type fakeLeader struct {
	ln      net.Listener
	fetches chan struct{}
	stop    chan struct{} // closed at cleanup: nobody reads fetches any more
}

func startFakeLeader(t *testing.T, errOnFetch int16) *fakeLeader {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &fakeLeader{ln: ln, fetches: make(chan struct{}), stop: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(l.stop)
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				l.serve(nc, errOnFetch)
			}()
		}
	}()
	return l
}

func (l *fakeLeader) serve(nc net.Conn, errOnFetch int16) {
	for {
		var size [4]byte
		if _, err := io.ReadFull(nc, size[:]); err != nil {
			return
		}
		b := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(nc, b); err != nil {
			return
		}
		key, version := int16(binary.BigEndian.Uint16(b)), int16(binary.BigEndian.Uint16(b[2:]))
		corr := binary.BigEndian.Uint32(b[4:])
		n := int(int16(binary.BigEndian.Uint16(b[8:])))
		rest := b[10+max(n, 0):]
		if key != kmsg.Fetch.Int16() {
			return
		}
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(version)
		if req.IsFlexible() {
			rest = rest[1:] // request header v2: empty tag section
		}
		if err := req.ReadFrom(rest); err != nil {
			return
		}
		select {
		case l.fetches <- struct{}{}:
		case <-l.stop:
			return
		}
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.SetVersion(version)
		for _, rt := range req.Topics {
			t := kmsg.NewFetchResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewFetchResponseTopicPartition()
				p.Partition, p.ErrorCode, p.HighWatermark, p.LastStableOffset, p.LogStartOffset = rp.Partition, errOnFetch, -1, -1, -1
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		out := binary.BigEndian.AppendUint32([]byte{0, 0, 0, 0}, corr)
		if resp.IsFlexible() {
			out = append(out, 0) // response header v1: empty tag section
		}
		out = resp.AppendTo(out)
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		if _, err := nc.Write(out); err != nil {
			return
		}
	}
}

// TestFetcherPartitionBackoffOnTheClock: a partition the leader answers
// with an error is fetched again replica.fetch.backoff.ms later on the
// fetchers' clock, not sooner.
func TestFetcherPartitionBackoffOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	dir := filepath.Join(t.TempDir(), engine.PartitionDirName(simTP))
	l, err := engine.OpenLog(dir, simTP, engine.DefaultConfig(), engine.LogOptions{Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ManagerConfig{ID: 2, Clock: clk, Logger: silent})
	p := m.Add(l)
	if _, err := p.MakeFollower(State{Leader: 1, LeaderEpoch: 1, ISR: []int32{1, 2}, Replicas: []int32{1, 2}, ZkVersion: 1}); err != nil {
		t.Fatal(err)
	}
	leader := startFakeLeader(t, kerr.UnknownServerError.Code)
	const backoff = 5 * time.Second
	fs := NewFetchers(FetcherConfig{
		ReplicaID: 2, Backoff: backoff, Clock: clk, Logger: silent,
		Resolve: func(int32) (string, bool) { return leader.ln.Addr().String(), true },
	})
	t.Cleanup(func() {
		fs.Close()
		m.Close()
		l.Close()
	})
	fs.Follow(p, 1)
	select {
	case <-leader.fetches:
	case <-time.After(10 * time.Second):
		t.Fatal("no fetch from the follower")
	}
	// Answered with an error: the partition backs off. The fetcher waits
	// on the clock (a timer set) and fetches nothing meanwhile; a timer
	// fired by Advance leaves the clock inside it, so the next one is set
	// once the fetcher looked again.
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("the fetcher set no timer on the clock")
	}
	clk.Advance(backoff - time.Nanosecond)
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("the fetcher set no timer on the clock")
	}
	select {
	case <-leader.fetches:
		t.Fatal("fetched again before the back-off ended")
	default:
	}
	clk.Advance(time.Millisecond)
	select {
	case <-leader.fetches:
	case <-time.After(10 * time.Second):
		t.Fatal("not fetched again once the back-off passed")
	}
}
