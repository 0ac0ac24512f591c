package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/wire"
)

// TestConnectionWaitsInFakeTime drives the waits of a connection and of
// the accept loop in a synctest bubble: each ends at its own deadline on
// the bubble's clock, or at once when the connection (or the broker)
// stops; nothing sleeps in real time.
func TestConnectionWaitsInFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stop := make(chan struct{})
		c := &conn{stop: stop}

		// KIP-219 muting: nothing is read for the throttle time.
		start := time.Now()
		c.mute(3 * time.Second)
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("muted for %v", d)
		}

		// A throttled client from before KIP-219 gets its answer after
		// the throttle time from the request's start; a KIP-219 client
		// at once, with throttle_time_ms set.
		old := &request{c: c, hdr: requestHeader{key: kmsg.Produce.Int16(), version: 5}, start: time.Now()}
		old.throttleMs.Store(2000)
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = 5
		start = time.Now()
		c.BeforeWrite(old, &wire.Result{Resp: resp})
		if d := time.Since(start); d != 2*time.Second || resp.ThrottleMillis != 2000 {
			t.Fatalf("old client answered after %v, throttle %d", d, resp.ThrottleMillis)
		}
		recent := &request{c: c, hdr: requestHeader{key: kmsg.Produce.Int16(), version: 9}, start: time.Now()}
		recent.throttleMs.Store(2000)
		start = time.Now()
		c.BeforeWrite(recent, &wire.Result{Resp: kmsg.NewPtrProduceResponse()})
		if d := time.Since(start); d != 0 {
			t.Fatalf("KIP-219 client answered after %v", d)
		}

		// Stopping the connection ends a mute.
		done := make(chan struct{})
		go func() { c.mute(time.Hour); close(done) }()
		synctest.Wait()
		close(stop)
		<-done

		// The accept loop's pauses end at their time, or when the broker
		// starts closing.
		s := &Server{closingCh: make(chan struct{})}
		start = time.Now()
		s.pauseAccepting(time.Second)
		if d := time.Since(start); d != time.Second {
			t.Fatalf("paused for %v", d)
		}
		done = make(chan struct{})
		go func() { s.pauseAccepting(time.Hour); close(done) }()
		synctest.Wait()
		s.setClosing()
		<-done
		if !s.closing.Load() {
			t.Fatal("setClosing did not mark the broker closing")
		}
	})
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
