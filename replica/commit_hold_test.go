package replica

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// holdWorld is a manager leading parts partitions of one log dir, whose
// group commits are one file-system sync each (counted, and held at
// groupFS's gate once armed), on a manual clock.
type holdWorld struct {
	t   *testing.T
	m   *Manager
	clk *clock.Manual
	fs  *groupFS
	ps  []*Partition
	rs  []*request // every request begun: released at cleanup
}

// commitTook is how long the gated commits take on the manual clock.
const commitTook = 10 * time.Millisecond

func newHoldWorld(t *testing.T, parts int) *holdWorld {
	t.Helper()
	root := t.TempDir()
	cfg := engine.DefaultConfig()
	cfg.SegmentIndexBytes = 1024
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	w := &holdWorld{t: t, clk: clk, fs: &groupFS{FS: vfs.Default, entered: make(chan struct{}), release: make(chan error)}}
	w.m = NewManager(ManagerConfig{ID: 1, SyncAlone: true, Logger: silent, Clock: clk, GroupSync: engine.SyncFileSystem})
	for i := range parts {
		tp := engine.TopicPartition{Topic: "h", Partition: int32(i)}
		l, err := engine.OpenLog(filepath.Join(root, engine.PartitionDirName(tp)), tp, cfg, engine.LogOptions{FS: w.fs, Clock: clk, Logger: quiet, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1})
		if err != nil {
			t.Fatal(err)
		}
		p, err := w.m.LeadAlone(l, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.ps = append(w.ps, p)
		t.Cleanup(func() { l.Close() })
	}
	t.Cleanup(func() {
		// Commits still held at the gate, or waiting for a hold, go
		// through, so Close returns (when the test failed midway).
		w.fs.armed.Store(false)
		w.clk.Advance(2 * time.Hour)
		for _, r := range w.rs {
			r.release()
		}
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-w.fs.entered:
					w.fs.release <- nil
				case <-stop:
					return
				}
			}
		}()
		w.m.Close()
		close(stop)
	})
	// A first request, unheld at the gate: its partitions' first epochs
	// are checkpointed then, not in the commits counted below.
	r := w.begin("warm")
	r.appendTo(w.ps...)
	r.release()
	w.waitAcks(r)
	// One commit held at the gate while the clock moves commitTook: the
	// manager's last commit took that long. (The committer is done with
	// the first request first: running, it would take part of this one.)
	w.idle()
	w.fs.armed.Store(true)
	r = w.begin("timed")
	r.appendTo(w.ps...)
	r.release()
	w.entered()
	w.pass()
	w.waitAcks(r)
	w.idle()
	w.fs.syncfs.Store(0)
	return w
}

// idle waits until the committer has stopped, nothing left to commit.
func (w *holdWorld) idle() {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		w.m.flushMu.Lock()
		running := w.m.committer || len(w.m.toFlush) > 0
		w.m.flushMu.Unlock()
		if !running {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatal("the committer never stopped")
		}
		time.Sleep(time.Millisecond) // a bounded poll
	}
}

// request is one produce request: a hold, its appends, its acks=all wait.
type request struct {
	w       *holdWorld
	prefix  string
	release func()
	waits   []AckWait
	done    chan struct{}
	commits int32 // file-system syncs counted before its first append
}

func (w *holdWorld) begin(prefix string) *request {
	r := &request{w: w, prefix: prefix, release: w.m.HoldCommits(), commits: w.fs.syncfs.Load()}
	w.rs = append(w.rs, r)
	return r
}

func (r *request) appendTo(ps ...*Partition) {
	r.w.t.Helper()
	for _, p := range ps {
		res, err := r.w.m.Append(p, batch(r.w.t, r.prefix, 1), true, 1)
		if err != nil {
			r.w.t.Fatal(err)
		}
		r.waits = append(r.waits, AckWait{P: p, Last: res.LastOffset, MinISR: 1})
	}
}

// await waits for acks as the produce path does: while still holding, then
// releases.
func (r *request) await() {
	r.done = make(chan struct{})
	r.w.m.AwaitAcks(r.waits, time.Hour, func() { close(r.done) })
	r.release()
}

// waitAcks awaits r (if not yet) and waits for its answer.
func (w *holdWorld) waitAcks(r *request) {
	w.t.Helper()
	if r.done == nil {
		r.await()
	}
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		w.t.Fatalf("request %s never answered", r.prefix)
	}
	for _, wt := range r.waits {
		if wt.Err != nil {
			w.t.Fatalf("request %s: %v", r.prefix, wt.Err)
		}
	}
}

func (r *request) answered() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// entered waits for a group commit to reach the gate.
func (w *holdWorld) entered() {
	w.t.Helper()
	select {
	case <-w.fs.entered:
	case <-time.After(20 * time.Second):
		w.t.Fatal("no group commit started")
	}
}

// pass lets the commit held at the gate go through, after commitTook on
// the manual clock: every commit takes that long.
func (w *holdWorld) pass() {
	w.clk.Advance(commitTook)
	w.fs.release <- nil
}

// committerWaits waits until the committer waits for holds: its bounded
// wait's timer (due bound from now) is set on the clock. A commit reaching
// the gate instead fails the test: it took a group while a request was
// still being appended.
func (w *holdWorld) committerWaits(why string, bound time.Duration) {
	w.t.Helper()
	due := w.clk.Now().Add(bound)
	deadline := time.Now().Add(20 * time.Second)
	for !w.clk.AwaitDeadline(due, 10*time.Millisecond) {
		select {
		case <-w.fs.entered:
			w.fs.release <- nil
			w.t.Fatalf("%s: a group commit started while a request was still appending", why)
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: the committer neither waited nor committed", why)
		}
	}
}

// TestCommitTakesWholeRequests: a request whose partitions are appended
// while a group commit runs is covered by exactly one further commit: the
// committer, done with its sync, waits for the request's hold to be
// released before it takes its next group, instead of taking the part
// appended so far and leaving the rest (and the request's answer) to a
// second commit.
func TestCommitTakesWholeRequests(t *testing.T) {
	const parts = 8
	w := newHoldWorld(t, parts)

	a := w.begin("a")
	a.appendTo(w.ps...)
	a.await()
	w.entered() // a's commit, held at the gate

	b := w.begin("b")
	b.appendTo(w.ps[:parts/2]...) // half of b, during a's commit
	w.pass()                      // a's commit ends
	w.waitAcks(a)
	w.committerWaits("b appended halfway", commitTook)
	b.appendTo(w.ps[parts/2:]...)
	b.await() // b's release: the committer goes on
	w.entered()
	if b.answered() {
		t.Fatal("b answered before its commit")
	}
	w.pass()
	w.waitAcks(b)
	if n := w.fs.syncfs.Load() - b.commits; n != 1 {
		t.Fatalf("b: %d commits began after its first append; want 1", n)
	}
}

// TestCommitHoldsDoNotStarve: the committer's wait for holds is bounded.
// A hold begun during the wait is not waited for (a steady stream of
// overlapping requests never postpones a commit), and a hold that is not
// released (a caller holding commits while it waits for acks) is waited
// for at most as long as the last commit or the last hold took, whichever
// is longer (here the commit).
func TestCommitHoldsDoNotStarve(t *testing.T) {
	const parts = 6
	w := newHoldWorld(t, parts)

	a := w.begin("a")
	a.appendTo(w.ps...)
	a.await()
	w.entered()

	// b appends halfway during a's commit: the committer waits for b.
	b := w.begin("b")
	b.appendTo(w.ps[:parts/2]...)
	w.pass()
	w.waitAcks(a)
	w.committerWaits("b appended halfway", commitTook)
	// c begins while the committer waits: b's release ends the wait
	// though c still holds.
	c := w.begin("c")
	c.appendTo(w.ps[0])
	b.appendTo(w.ps[parts/2:]...)
	b.await()
	w.entered() // b's commit (with c's first partition)
	w.pass()
	w.waitAcks(b)

	// c never releases (it waits for acks while holding): d's appends
	// wait for c at most one commit's time.
	c.appendTo(w.ps[1:]...)
	d := w.begin("d")
	d.appendTo(w.ps...)
	d.await()
	c.done = make(chan struct{})
	w.m.AwaitAcks(c.waits, time.Hour, func() { close(c.done) }) // c still holds
	w.committerWaits("c holding while it waits for acks", commitTook)
	w.clk.Advance(commitTook)
	w.entered()
	w.pass()
	w.waitAcks(d)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Fatal("c, waiting for acks while holding, never answered")
	}
	c.release()
}

// TestCommitWaitsAsLongAsAHold: when requests append for longer than a
// commit takes (a request to many partitions on a busy broker), the
// committer waits for a request in progress as long as the last one held,
// not just one commit's time: the request still goes in one commit.
func TestCommitWaitsAsLongAsAHold(t *testing.T) {
	const parts = 6
	const appending = 3 * commitTook
	w := newHoldWorld(t, parts)

	a := w.begin("a")
	w.clk.Advance(appending) // a appends for that long
	a.appendTo(w.ps...)
	a.await()
	w.entered()
	b := w.begin("b")
	b.appendTo(w.ps[:parts/2]...)
	w.pass()
	w.waitAcks(a)
	w.committerWaits("b appended halfway after a held for longer than a commit", appending)
	w.clk.Advance(commitTook) // one commit's time: the committer still waits
	b.appendTo(w.ps[parts/2:]...)
	b.await()
	w.entered()
	w.pass()
	w.waitAcks(b)
	if n := w.fs.syncfs.Load() - b.commits; n != 1 {
		t.Fatalf("b: %d commits began after its first append; want 1", n)
	}
}
