package server

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/wire"
)

// TestConnectionWaitsOnTheClock: the waits of a connection and of the
// accept loop run on the broker's clock. Each ends exactly when a manual
// clock reaches its deadline (not 1 ns before), or at once when the
// connection (or the broker) stops, and leaves no timer behind; nothing
// sleeps in real time.
func TestConnectionWaitsOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Unix(1_700_000_000, 0))
	s := &Server{clock: clk, closingCh: make(chan struct{})}
	stop := make(chan struct{})
	c := &conn{s: s, stop: stop}

	// endsAt runs wait on its own goroutine and checks it ends when the
	// clock reaches due, not before.
	endsAt := func(what string, due time.Time, wait func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { wait(); close(done) }()
		if !clk.AwaitDeadline(due, 10*time.Second) {
			t.Fatalf("%s: no timer due at %v on the broker's clock", what, due)
		}
		clk.Set(due.Add(-time.Nanosecond))
		select {
		case <-done:
			t.Fatalf("%s: ended 1 ns before its time", what)
		default:
		}
		clk.Set(due)
		select {
		case <-done:
		case <-time.After(10 * time.Second): // hang guard
			t.Fatalf("%s: still waiting at its time", what)
		}
		if n := clk.Waiters(); n != 0 {
			t.Fatalf("%s: %d timers left", what, n)
		}
	}

	// KIP-219 muting: nothing is read for the throttle time.
	endsAt("mute", clk.Now().Add(3*time.Second), func() { c.mute(3 * time.Second) })

	// A throttled client from before KIP-219 gets its answer the throttle
	// time after its request arrived on the broker's clock; a KIP-219
	// client at once, with throttle_time_ms set.
	old := &request{c: c, hdr: requestHeader{key: kmsg.Produce.Int16(), version: 5}, arrived: clk.Now().Add(-500 * time.Millisecond)}
	old.throttleMs.Store(2000)
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = 5
	endsAt("pre-KIP-219 answer", old.arrived.Add(2*time.Second), func() { c.BeforeWrite(old, &wire.Result{Resp: resp}) })
	if resp.ThrottleMillis != 2000 {
		t.Fatalf("old client's throttle %d ms, want 2000", resp.ThrottleMillis)
	}
	recent := &request{c: c, hdr: requestHeader{key: kmsg.Produce.Int16(), version: 9}, arrived: clk.Now()}
	recent.throttleMs.Store(2000)
	resp = kmsg.NewPtrProduceResponse()
	c.BeforeWrite(recent, &wire.Result{Resp: resp}) // (a wait here would hang the test)
	if resp.ThrottleMillis != 2000 || clk.Waiters() != 0 {
		t.Fatalf("KIP-219 client: throttle %d ms, %d timers", resp.ThrottleMillis, clk.Waiters())
	}

	// Stopping the connection ends a mute, and its timer.
	done := make(chan struct{})
	go func() { c.mute(time.Hour); close(done) }()
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("mute set no timer")
	}
	close(stop)
	<-done
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("%d timers left by a stopped mute", n)
	}

	// The accept loop's pauses end at their time, or when the broker
	// starts closing.
	endsAt("accept pause", clk.Now().Add(time.Second), func() { s.pauseAccepting(time.Second) })
	done = make(chan struct{})
	go func() { s.pauseAccepting(time.Hour); close(done) }()
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("pauseAccepting set no timer")
	}
	s.setClosing()
	<-done
	if !s.closing.Load() || clk.Waiters() != 0 {
		t.Fatalf("after setClosing: closing %v, %d timers", s.closing.Load(), clk.Waiters())
	}
}

// failingListener fails its first fails Accepts (a process out of file
// descriptors), then accepts from the listener it wraps; accepts counts
// its Accept calls.
type failingListener struct {
	net.Listener
	fails   int32
	accepts atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.accepts.Add(1) <= l.fails {
		return nil, fmt.Errorf("accept: %w", syscall.EMFILE)
	}
	return l.Listener.Accept()
}

// TestAcceptBackoffOnTheClock: a listener whose Accept fails is retried
// after a back-off on the broker's clock that doubles from 5 ms (no retry
// before the clock reaches it), and once Accept works again the
// connection waiting in the backlog is served.
func TestAcceptBackoffOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Now())
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln, fails: 3}
	b.s.connWG.Add(1)
	go b.s.acceptLoop(&listener{name: "FLAKY", ln: fl})
	t.Cleanup(func() { ln.Close() }) // before the broker stops: the loop ends
	nc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second)) // hang guard
	c := &rawConn{t: t, nc: nc}
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "test", "1"
	c.send(req, 1) // in the socket's buffer until the broker accepts

	backoff := 5 * time.Millisecond
	for i := int32(1); i <= fl.fails; i++ {
		due := clk.Now().Add(backoff)
		if !clk.AwaitDeadline(due, 10*time.Second) {
			t.Fatalf("failure %d: no back-off of %v on the broker's clock", i, backoff)
		}
		if n := fl.accepts.Load(); n != i {
			t.Fatalf("failure %d: %d accepts", i, n)
		}
		clk.Set(due.Add(-time.Nanosecond))
		if n := timersDue(clk, due); n != 1 {
			t.Fatalf("failure %d: the back-off ended before its time", i)
		}
		clk.Set(due)
		backoff *= 2
	}
	if resp := c.recv(req, 1).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 || len(resp.ApiKeys) == 0 {
		t.Fatalf("ApiVersions after the accepts recovered: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if n := fl.accepts.Load(); n < fl.fails+1 {
		t.Fatalf("%d accepts", n)
	}
}

// recordingSampler is a console sampler that records its samples.
type recordingSampler struct {
	samples chan time.Time
	closed  chan struct{}
}

func (r *recordingSampler) Sample(now time.Time) { r.samples <- now }
func (r *recordingSampler) Close()               { close(r.closed) }

// TestConsoleSamplesOnTheClock: the console is sampled at once and then
// every kvlog.console.sample.interval.ms on the broker's clock, and the
// sampler stops (closing the console) when the broker starts closing.
func TestConsoleSamplesOnTheClock(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	clk := clock.NewManual(t0)
	s := &Server{clock: clk, closingCh: make(chan struct{})}
	rs := &recordingSampler{samples: make(chan time.Time, 10), closed: make(chan struct{})}
	const interval = 10 * time.Second
	go s.sampleConsole(rs, interval)
	if got := <-rs.samples; !got.Equal(t0) {
		t.Fatalf("first sample at %v, want %v", got, t0)
	}
	for i := 1; i <= 3; i++ {
		due := t0.Add(time.Duration(i) * interval)
		if !clk.AwaitDeadline(due, 10*time.Second) {
			t.Fatalf("no sample timer due at %v", due)
		}
		clk.Set(due.Add(-time.Nanosecond))
		select {
		case got := <-rs.samples:
			t.Fatalf("sampled at %v, before the interval ended", got)
		default:
		}
		clk.Set(due)
		if got := <-rs.samples; !got.Equal(due) {
			t.Fatalf("sample %d at %v, want %v", i, got, due)
		}
	}
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("no next sample timer")
	}
	s.setClosing()
	<-rs.closed
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("%d timers left once the sampler stopped", n)
	}
}

// TestFailedAuthenticationDelayOnTheClock: a failed SASL authentication
// is answered connection.failed.authentication.delay.ms after the
// failure on the broker's clock (one timer, not skipped, shortened or
// taken twice), then the connection closes.
func TestFailedAuthenticationDelayOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Now())
	const delay = 5 * time.Second
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk},
		"listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
		"sasl.enabled.mechanisms=PLAIN",
		`listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-pw";`,
		"connection.failed.authentication.delay.ms=5000")
	b.addr = b.s.ListenerAddrs()["SASL_PLAINTEXT"].String()
	// A delayed answer pending when the test fails would hold the
	// broker's shutdown: move the clock past any such timer first
	// (cleanups run last registered first).
	t.Cleanup(func() { clk.Advance(time.Hour) })
	// Other timers are on the clock too (the coordinators' deadlines, the
	// cleaner's back-off): the delay's is the one due delay after the
	// failure (the clock stands still until then).
	due := clk.Now().Add(delay)
	c := b.dial(t)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	c.send(hs, 1)
	if resp := c.recv(hs, 1).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != 0 {
		t.Fatalf("handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	auth := kmsg.NewPtrSASLAuthenticateRequest()
	auth.Version, auth.SASLAuthBytes = 2, []byte("\x00alice\x00wrong")
	c.send(auth, 2)

	if !clk.AwaitDeadline(due, 10*time.Second) {
		t.Fatal("the failed authentication set no timer on the broker's clock")
	}
	if n := timersDue(clk, due); n != 1 {
		t.Fatalf("%d timers for the delay, want 1", n)
	}
	clk.Advance(delay - time.Nanosecond)
	if n := timersDue(clk, due); n != 1 {
		t.Fatalf("%d timers for the delay just before it ends, want 1", n)
	}
	clk.Advance(time.Nanosecond)
	resp := c.recv(auth, 2).(*kmsg.SASLAuthenticateResponse)
	if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("authentication answered %v, want SASL_AUTHENTICATION_FAILED", kerr.ErrorForCode(resp.ErrorCode))
	}
	c.expectClosed()
	if n := timersDue(clk, due.Add(delay)); n != 0 {
		t.Fatalf("%d more delays after the answer", n)
	}
}

// TestSASLSessionExpiresOnTheClock: a SASL session ends
// connections.max.reauth.ms after its authentication on the broker's
// clock (KIP-368): SaslAuthenticate reports that lifetime, a request at
// the expiry is still served, and one past it closes the connection.
func TestSASLSessionExpiresOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Now())
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk},
		"listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
		"sasl.enabled.mechanisms=PLAIN",
		`listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-pw";`,
		"connections.max.reauth.ms=60000")
	b.addr = b.s.ListenerAddrs()["SASL_PLAINTEXT"].String()
	c := b.dial(t)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	c.send(hs, 1)
	if resp := c.recv(hs, 1).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != 0 {
		t.Fatalf("handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	auth := kmsg.NewPtrSASLAuthenticateRequest()
	auth.Version, auth.SASLAuthBytes = 2, []byte("\x00alice\x00alice-pw")
	c.send(auth, 2)
	expiry := clk.Now().Add(time.Minute) // the clock stands still meanwhile
	if resp := c.recv(auth, 2).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != 0 || resp.SessionLifetimeMillis != 60_000 {
		t.Fatalf("authentication: %v, session lifetime %d ms, want 60000", kerr.ErrorForCode(resp.ErrorCode), resp.SessionLifetimeMillis)
	}
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 0
	clk.Set(expiry)
	c.send(av, 3)
	if resp := c.recv(av, 3).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("ApiVersions at the session's expiry: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	clk.Set(expiry.Add(time.Nanosecond))
	c.send(av, 4)
	c.expectClosed()
}

// timersDue is the number of timers on clk due at t.
func timersDue(clk *clock.Manual, t time.Time) int {
	n := 0
	for _, d := range clk.Deadlines() {
		if d.Equal(t) {
			n++
		}
	}
	return n
}

// TestHTTPAuthenticationDelayOnTheClock: a failed HTTP basic
// authentication is answered connection.failed.authentication.delay.ms
// later on the broker's clock, as a failed SASL authentication is.
func TestHTTPAuthenticationDelayOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Now())
	const delay = 5 * time.Second
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk},
		"listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
		"sasl.enabled.mechanisms=PLAIN",
		`listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-pw";`,
		"kvlog.http.listener=",
		"kvlog.http.auth=basic",
		"connection.failed.authentication.delay.ms=5000")
	t.Cleanup(func() { clk.Advance(time.Hour) }) // before the broker stops
	// The delay's timer (others are on the clock too).
	due := clk.Now().Add(delay)
	h := b.s.HTTPHandler() // /cleaner answers 200 once authenticated

	serve := func(password string) chan *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/cleaner", nil)
		req.SetBasicAuth("alice", password)
		out := make(chan *httptest.ResponseRecorder, 1)
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			out <- rec
		}()
		return out
	}
	if rec := <-serve("alice-pw"); rec.Code != http.StatusOK {
		t.Fatalf("right password: HTTP %d", rec.Code)
	}
	if n := timersDue(clk, due); n != 0 {
		t.Fatalf("a successful authentication set %d delay timers", n)
	}
	res := serve("wrong")
	if !clk.AwaitDeadline(due, 10*time.Second) {
		t.Fatal("the failed authentication set no timer on the broker's clock")
	}
	clk.Advance(delay - time.Nanosecond)
	if n := timersDue(clk, due); n != 1 {
		t.Fatalf("%d timers for the delay just before it ends, want 1", n)
	}
	clk.Advance(time.Nanosecond)
	select {
	case rec := <-res:
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong password: HTTP %d, want 401", rec.Code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer once the delay passed")
	}
}
