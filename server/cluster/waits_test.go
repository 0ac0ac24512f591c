package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/zkstore"
)

// The waits of the membership (a watcher's retry after a failed
// ZooKeeper read, the controlled-shutdown backoff) run on Config.Clock.
// Each test fails a read, sees the membership wait on the manual clock,
// moves the clock to just before the wait's end (no second read), then
// to its end (the second read): a wait skipped, shortened, lengthened or
// taken twice fails the test.

var errZK = errors.New("zk: connection closed")

// fakeStore answers the reads the watchers make, failing the first
// fail[method] calls of a method. A method the test does not expect
// panics (the embedded Store is nil).
type fakeStore struct {
	Store
	calls chan string
	never chan zk.Event // a watch that never fires

	mu   sync.Mutex
	fail map[string]int
}

func newFakeStore(fail map[string]int) *fakeStore {
	return &fakeStore{calls: make(chan string, 100), never: make(chan zk.Event), fail: fail}
}

func (f *fakeStore) call(name string) error {
	f.calls <- name
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[name] > 0 {
		f.fail[name]--
		return errZK
	}
	return nil
}

func (f *fakeStore) ControllerID() (int32, <-chan zk.Event, error) {
	if err := f.call("ControllerID"); err != nil {
		return -1, nil, err
	}
	return 1, f.never, nil
}

func (f *fakeStore) CurrentController() (zkstore.ControllerView, error) {
	if err := f.call("CurrentController"); err != nil {
		return zkstore.ControllerView{}, err
	}
	return zkstore.ControllerView{ID: 1, Epoch: 7}, nil
}

func (f *fakeStore) ConfigChangesW() ([]string, <-chan zk.Event, error) {
	if err := f.call("ConfigChangesW"); err != nil {
		return nil, nil, err
	}
	return nil, f.never, nil
}

func (f *fakeStore) AclChangesW(bool) ([]string, <-chan zk.Event, error) {
	if err := f.call("AclChangesW"); err != nil {
		return nil, nil, err
	}
	return nil, f.never, nil
}

func (f *fakeStore) Acls() (map[acl.Pattern][]acl.Entry, error) {
	if err := f.call("Acls"); err != nil {
		return nil, err
	}
	return map[acl.Pattern][]acl.Entry{}, nil
}

func newTestMember(t *testing.T, st Store) (*Member, *clock.Manual) {
	t.Helper()
	clk := clock.NewManual(time.Unix(1_000_000, 0))
	m := New(Config{
		Broker: &config.Broker{NodeID: 1, ControlledShutdownMaxRetries: 1, ControlledShutdownRetryBackoff: 300 * time.Millisecond},
		Store:  st,
		Clock:  clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(func() {
		m.cancel()
		m.wg.Wait()
	})
	return m, clk
}

// expectCall waits (bounded) for the next store call and checks it is name.
func expectCall(t *testing.T, f *fakeStore, name string) {
	t.Helper()
	select {
	case got := <-f.calls:
		if got != name {
			t.Fatalf("store call %s, want %s", got, name)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s call", name)
	}
}

// expectRetryAfter checks that, after a failed read, the membership waits
// exactly wait on the clock before it calls name again.
func expectRetryAfter(t *testing.T, f *fakeStore, clk *clock.Manual, wait time.Duration, name string) {
	t.Helper()
	if !clk.AwaitWaiters(1, 10*time.Second) {
		select {
		case got := <-f.calls:
			t.Fatalf("no wait on the clock after the failed read: %s called again without one", got)
		default:
			t.Fatal("no wait on the clock after the failed read")
		}
	}
	clk.Advance(wait - time.Nanosecond)
	if clk.Waiters() != 1 {
		t.Fatalf("the wait ended before %v", wait)
	}
	select {
	case got := <-f.calls:
		t.Fatalf("%s called before the %v wait ended", got, wait)
	default:
	}
	clk.Advance(time.Nanosecond)
	expectCall(t, f, name)
}

func TestControllerWatcherRetriesOnTheClock(t *testing.T) {
	f := newFakeStore(map[string]int{"ControllerID": 1, "CurrentController": 1})
	m, clk := newTestMember(t, f)
	m.goRun(m.controllerWatcher)

	expectCall(t, f, "ControllerID") // fails
	expectRetryAfter(t, f, clk, retryWait, "ControllerID")
	expectCall(t, f, "CurrentController") // fails
	expectRetryAfter(t, f, clk, retryWait, "ControllerID")
	expectCall(t, f, "CurrentController")
	deadline := time.Now().Add(10 * time.Second)
	for m.ControllerEpoch() != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("controller epoch %d, want 7", m.ControllerEpoch())
		}
		time.Sleep(time.Millisecond) // bounded poll for the store's answer to land
	}
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("%d waits pending after a successful read", n)
	}
}

func TestConfigWatcherRetriesOnTheClock(t *testing.T) {
	f := newFakeStore(map[string]int{"ConfigChangesW": 2})
	m, clk := newTestMember(t, f)
	m.goRun(m.configWatcher)

	expectCall(t, f, "ConfigChangesW")
	expectRetryAfter(t, f, clk, retryWait, "ConfigChangesW")
	expectRetryAfter(t, f, clk, retryWait, "ConfigChangesW") // succeeds: then waits on the watch
}

func TestACLWatcherRetriesOnTheClock(t *testing.T) {
	f := newFakeStore(map[string]int{"AclChangesW": 1, "Acls": 1})
	m, clk := newTestMember(t, f)
	m.authz = acl.New(acl.Config{})
	m.goRun(func() { m.aclWatcher(false) })

	expectCall(t, f, "AclChangesW") // fails
	expectRetryAfter(t, f, clk, retryWait, "AclChangesW")
	expectCall(t, f, "Acls") // the first full read fails
	expectRetryAfter(t, f, clk, retryWait, "AclChangesW")
	expectCall(t, f, "Acls")
}

func TestControlledShutdownBacksOffOnTheClock(t *testing.T) {
	f := newFakeStore(map[string]int{"ControllerID": 2})
	m, clk := newTestMember(t, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.controlledShutdown(context.Background())
	}()
	expectCall(t, f, "ControllerID")
	expectRetryAfter(t, f, clk, 300*time.Millisecond, "ControllerID")
	select {
	case <-done: // retries exhausted: no wait after the last attempt
	case <-time.After(10 * time.Second):
		t.Fatal("controlled shutdown did not give up after its retries")
	}
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("%d waits pending after the last attempt", n)
	}
}
