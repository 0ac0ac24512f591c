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
