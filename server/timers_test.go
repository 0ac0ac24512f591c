package server

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

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
