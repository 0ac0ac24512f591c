package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
)

// TestFetchMaxWaitCountsFromArrival: a Fetch's MaxWait counts from the
// request's arrival on the broker's clock: a fetch that parks 20 s (of
// the clock) after it arrived is answered 60 s after its arrival, not 60
// s after it parked.
func TestFetchMaxWaitCountsFromArrival(t *testing.T) {
	clk := clock.NewManual(time.Now())
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk})
	createTopic(t, b, "arrive", 1, nil)
	hook := func(r *request) bool {
		if r.hdr.key == kmsg.Fetch.Int16() {
			clk.Advance(20 * time.Second) // the time the request took to reach its handler
		}
		return false
	}
	b.s.requestHook.Store(&hook)
	c := b.dial(t)
	req := kmsg.NewPtrFetchRequest()
	req.Version, req.ReplicaID, req.MinBytes, req.MaxWaitMillis, req.MaxBytes = 11, -1, 1, 60_000, 1<<20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "arrive"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	due := clk.Now().Add(time.Minute) // the clock stands still until the request arrives
	c.send(req, 1)
	if !clk.AwaitDeadline(due, 10*time.Second) {
		t.Fatalf("no timer due at the fetch's arrival + MaxWait (%v) on the broker's clock", due)
	}
	clk.Set(due.Add(-time.Nanosecond))
	// Still waiting for its deadline (a fetch woken meanwhile, by the
	// broker's other timers, looks again and parks until the same one).
	if !clk.AwaitDeadline(due, 10*time.Second) {
		t.Fatal("the fetch stopped waiting before its MaxWait ended")
	}
	clk.Set(due)
	resp := c.recv(req, 1).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) != 0 {
		t.Fatalf("expired fetch: error %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
	}
}

// TestKeyMinOffsetWaitOnTheClock: a key lookup with ?min_offset= past the
// last stable offset waits on the broker's clock: it is answered 409
// REQUEST_TIMED_OUT exactly when the clock reaches timeout_ms (not 1 ns
// before), and at once (200, its timer gone) when a produce commits the
// offset; an offset already committed is answered without waiting.
func TestKeyMinOffsetWaitOnTheClock(t *testing.T) {
	clk := clock.NewManual(time.Now())
	// (No console: its sampling timer would be on the clock too.)
	b := startBrokerOpts(t, t.TempDir(), Options{Clock: clk}, "kvlog.console.enable=false")
	t.Cleanup(func() { clk.Advance(time.Hour) }) // a wait left by a failure ends before the broker stops
	createTopic(t, b, "kv", 1, map[string]*string{"cleanup.policy": kmsg.StringPtr("compact")})
	produceN(t, b, "kv", 3) // offsets 0-2, key 0x00 at offset 0
	h := b.s.HTTPHandler()
	get := func(minOffset string) chan *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/v1/topics/kv/keys?key_b64=AA%3D%3D&partition=0&timeout_ms=5000&min_offset="+minOffset, nil)
		out := make(chan *httptest.ResponseRecorder, 1)
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			out <- rec
		}()
		return out
	}
	answer := func(res chan *httptest.ResponseRecorder) *httptest.ResponseRecorder {
		t.Helper()
		select {
		case rec := <-res:
			return rec
		case <-time.After(10 * time.Second): // hang guard
			t.Fatal("no answer")
			return nil
		}
	}

	if rec := answer(get("2")); rec.Code != http.StatusOK {
		t.Fatalf("committed min_offset: HTTP %d %s", rec.Code, rec.Body)
	}

	due := clk.Now().Add(5 * time.Second)
	res := get("3")
	if !clk.AwaitDeadline(due, 10*time.Second) {
		t.Fatal("the min_offset wait set no timer due at timeout_ms on the broker's clock")
	}
	clk.Set(due.Add(-time.Nanosecond))
	select {
	case rec := <-res:
		t.Fatalf("answered 1 ns before timeout_ms: HTTP %d %s", rec.Code, rec.Body)
	default:
	}
	clk.Set(due)
	if rec := answer(res); rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "REQUEST_TIMED_OUT") {
		t.Fatalf("min_offset not committed at timeout_ms: HTTP %d %s, want 409 REQUEST_TIMED_OUT", rec.Code, rec.Body)
	}

	due = clk.Now().Add(5 * time.Second)
	res = get("3")
	if !clk.AwaitDeadline(due, 10*time.Second) {
		t.Fatal("the min_offset wait set no timer")
	}
	produceN(t, b, "kv", 1) // offset 3
	if rec := answer(res); rec.Code != http.StatusOK {
		t.Fatalf("min_offset committed by a produce: HTTP %d %s", rec.Code, rec.Body)
	}
	if n := timersDue(clk, due); n != 0 {
		t.Fatalf("%d min_offset timers left after the answer", n)
	}
}
