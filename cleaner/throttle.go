package cleaner

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
)

// Throttle is the cleaner's I/O throttle (log.cleaner.io.max.bytes.per.second),
// shared by every cleaner thread: a token bucket over bytes read and written.
// A thread that takes more than the bucket holds sleeps until the debt is
// repaid at the configured rate. The rate can change at any time.
type Throttle struct {
	clk   clock.Clock
	sleep func(ctx context.Context, d time.Duration) error

	mu    sync.Mutex
	rate  float64 // bytes per second; <= 0 or +Inf: unlimited
	avail float64 // bytes that may be used now (negative: debt)
	last  time.Time
	slept time.Duration // total time spent throttled
}

// throttleBurst is how many seconds of traffic the bucket holds.
const throttleBurst = 0.1

// NewThrottle returns a throttle at rate bytes per second measuring time
// with clk and waiting with sleep (nil: a timer on clk honouring ctx).
func NewThrottle(rate float64, clk clock.Clock, sleep func(ctx context.Context, d time.Duration) error) *Throttle {
	if clk == nil {
		clk = clock.Real
	}
	if sleep == nil {
		sleep = func(ctx context.Context, d time.Duration) error {
			if !clock.Sleep(ctx, clk, d) {
				return ctx.Err()
			}
			return nil
		}
	}
	t := &Throttle{clk: clk, sleep: sleep, last: clk.Now()}
	t.SetRate(rate)
	return t
}

func unlimited(rate float64) bool { return rate <= 0 || math.IsInf(rate, 1) || math.IsNaN(rate) }

// SetRate changes the rate; the current debt is kept (capped at one burst).
func (t *Throttle) SetRate(rate float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rate = rate
	t.last = t.clk.Now()
	if unlimited(rate) {
		t.avail = 0
		return
	}
	t.avail = max(min(t.avail, rate*throttleBurst), -rate*throttleBurst)
}

// Rate is the current rate (bytes per second).
func (t *Throttle) Rate() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rate
}

// Throttled is the total time threads spent waiting on the throttle.
func (t *Throttle) Throttled() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.slept
}

// Wait accounts n bytes of I/O and sleeps while the bucket is in debt. It
// returns early with ctx's error when ctx ends.
func (t *Throttle) Wait(ctx context.Context, n int64) error {
	if n <= 0 {
		return ctx.Err()
	}
	t.mu.Lock()
	if unlimited(t.rate) {
		t.mu.Unlock()
		return ctx.Err()
	}
	now := t.clk.Now()
	if el := now.Sub(t.last).Seconds(); el > 0 {
		t.avail = min(t.avail+el*t.rate, t.rate*throttleBurst)
	}
	t.last = now
	t.avail -= float64(n)
	var d time.Duration
	if t.avail < 0 {
		d = time.Duration(-t.avail / t.rate * float64(time.Second))
	}
	t.slept += d
	t.mu.Unlock()
	if d > 0 {
		return t.sleep(ctx, d)
	}
	return ctx.Err()
}
