package cleaner

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
)

// TestThrottle: over many waits, the time spent is bytes / rate;
// unlimited rates never sleep; a rate change applies at once; an
// ended context cuts a sleep short.
func TestThrottle(t *testing.T) {
	clk := clock.NewManual(time.Unix(0, 0))
	var slept time.Duration
	sleep := func(ctx context.Context, d time.Duration) error {
		slept += d
		clk.Advance(d)
		return ctx.Err()
	}
	th := NewThrottle(math.Inf(1), clk, sleep)
	ctx := context.Background()
	for range 100 {
		_ = th.Wait(ctx, 1<<20)
	}
	if slept != 0 {
		t.Fatalf("unlimited throttle slept %v", slept)
	}
	th.SetRate(1 << 20) // 1 MiB/s
	for range 10 {
		_ = th.Wait(ctx, 1<<20)
	}
	if want := 10 * time.Second; slept < want-time.Millisecond || slept > want+time.Millisecond {
		t.Fatalf("10 MiB at 1 MiB/s slept %v, want %v", slept, want)
	}
	th.SetRate(4 << 20)
	slept = 0
	for range 8 {
		_ = th.Wait(ctx, 1<<20)
	}
	if slept < 1900*time.Millisecond || slept > 2100*time.Millisecond {
		t.Fatalf("8 MiB at 4 MiB/s slept %v", slept)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := th.Wait(cctx, 1<<20); err == nil {
		t.Fatal("wait on an ended context succeeded")
	}
}

// TestThrottleSleepsOnItsClock: without a sleep function of its own, a
// throttle in debt waits on its clock for exactly the debt.
func TestThrottleSleepsOnItsClock(t *testing.T) {
	clk := clock.NewManual(time.Unix(0, 0))
	th := NewThrottle(1<<20, clk, nil) // 1 MiB/s, starting with no credit
	done := make(chan error, 1)
	go func() { done <- th.Wait(context.Background(), 1<<20) }() // 1 s of debt
	if !clk.AwaitWaiters(1, 10*time.Second) {
		t.Fatal("the throttle set no timer on its clock")
	}
	// A timer fires (and leaves the clock) inside Advance: still there,
	// the sleep was not cut short.
	clk.Advance(time.Second - time.Nanosecond)
	if n := clk.Waiters(); n != 1 {
		t.Fatalf("%d timers on the clock just before the debt is paid, want 1", n)
	}
	clk.Advance(time.Nanosecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the throttled wait did not end once the debt was paid")
	}
}
