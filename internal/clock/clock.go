// Package clock is kvlog's injectable time source. Every time decision in the
// engine, cleaner, replica and server layers reads the time through a Clock so
// tests can drive it deterministically instead of sleeping.
//
// Waits go through the same seam: After, AfterFunc and Sleep wait on the
// clock they are given. On Real (or any Clock without timers of its own)
// they are the time package's timers; on a Manual clock they fire when
// Advance or Set moves the clock past their deadline, so a test decides
// exactly when a retry's backoff or a delayed answer ends, and can see
// that nothing waits (Manual.Waiters, Manual.AwaitWaiters, with their
// deadlines: Manual.Deadlines, Manual.AwaitDeadline) and that what a timer
// started is over (Manual.AwaitCallbacks).
package clock

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Timers is a Clock that also runs the timers set on it. The functions
// After, AfterFunc and Sleep use a Clock's own timers when it has them.
type Timers interface {
	Clock
	// After returns a channel that receives the clock's time once d has
	// passed on it.
	After(d time.Duration) <-chan time.Time
	// AfterFunc calls f on its own goroutine once d has passed; stop
	// cancels it and reports whether it did so before f was called.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// Real is the wall clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// After returns a channel that receives the time once d has passed on c.
func After(c Clock, d time.Duration) <-chan time.Time {
	if t, ok := c.(Timers); ok {
		return t.After(d)
	}
	return time.After(d)
}

// AfterFunc calls f on its own goroutine once d has passed on c; stop
// cancels it and reports whether it did so before f was called.
func AfterFunc(c Clock, d time.Duration, f func()) (stop func() bool) {
	if t, ok := c.(Timers); ok {
		return t.AfterFunc(d, f)
	}
	return time.AfterFunc(d, f).Stop
}

// Timer is a one-shot timer on a Clock: C receives the clock's time once
// its duration has passed, unless Stop came first.
type Timer struct {
	C    <-chan time.Time
	stop func() bool
}

// NewTimer starts a Timer for d on c (the time package's timer when c has
// no timers of its own).
func NewTimer(c Clock, d time.Duration) *Timer {
	if _, ok := c.(Timers); !ok || c == Real {
		t := time.NewTimer(d)
		return &Timer{C: t.C, stop: t.Stop}
	}
	ch := make(chan time.Time, 1)
	stop := AfterFunc(c, d, func() { ch <- c.Now() })
	return &Timer{C: ch, stop: stop}
}

// Stop cancels the timer and reports whether it did so before it fired.
func (t *Timer) Stop() bool { return t.stop() }

// Sleep waits until d has passed on c or ctx is done, and reports whether
// the whole wait passed (false: ctx ended it, and its timer is stopped).
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	done := make(chan struct{})
	stop := AfterFunc(c, d, func() { close(done) })
	select {
	case <-done:
		return true
	case <-ctx.Done():
		if !stop() {
			<-done // fired meanwhile: the whole wait passed
			return true
		}
		return false
	}
}

// Manual is a clock that moves only when told to. It is safe for
// concurrent use. Its timers fire when Advance or Set reaches their
// deadline.
type Manual struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter
	running int           // AfterFunc callbacks started and not returned
	changed chan struct{} // closed and replaced when waiters or running change
}

// waiter is a timer set on a Manual clock: ch receives the time, or f
// runs, at deadline.
type waiter struct {
	deadline time.Time
	ch       chan time.Time
	f        func()
}

// NewManual returns a Manual clock set to t.
func NewManual(t time.Time) *Manual { return &Manual{now: t} }

// Now returns the current manual time.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Advance moves the clock forward by d, firing the timers it reaches.
func (m *Manual) Advance(d time.Duration) {
	m.mu.Lock()
	m.now = m.now.Add(d)
	m.fireLocked()
	m.mu.Unlock()
}

// Set moves the clock to t, firing the timers it reaches.
func (m *Manual) Set(t time.Time) {
	m.mu.Lock()
	m.now = t
	m.fireLocked()
	m.mu.Unlock()
}

// After returns a channel that receives the time once the clock has
// moved d past now (at once when d <= 0).
func (m *Manual) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	m.add(&waiter{ch: ch}, d)
	return ch
}

// AfterFunc calls f on its own goroutine once the clock has moved d past
// now (AwaitCallbacks waits for it to return).
func (m *Manual) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	w := &waiter{f: f}
	m.add(w, d)
	return func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		for i, x := range m.waiters {
			if x == w {
				m.waiters = append(m.waiters[:i], m.waiters[i+1:]...)
				m.notifyLocked()
				return true
			}
		}
		return false
	}
}

func (m *Manual) add(w *waiter, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w.deadline = m.now.Add(d)
	m.waiters = append(m.waiters, w)
	m.fireLocked()
	m.notifyLocked()
}

// fireLocked fires the timers whose deadline has been reached, earliest
// first.
func (m *Manual) fireLocked() {
	sort.SliceStable(m.waiters, func(i, j int) bool { return m.waiters[i].deadline.Before(m.waiters[j].deadline) })
	n := 0
	for n < len(m.waiters) && !m.waiters[n].deadline.After(m.now) {
		w := m.waiters[n]
		if w.ch != nil {
			w.ch <- m.now
		} else {
			m.running++
			go m.call(w.f)
		}
		n++
	}
	if n > 0 {
		m.waiters = append(m.waiters[:0], m.waiters[n:]...)
		m.notifyLocked()
	}
}

// call runs an AfterFunc callback and counts it returned.
func (m *Manual) call(f func()) {
	defer func() {
		m.mu.Lock()
		m.running--
		m.notifyLocked()
		m.mu.Unlock()
	}()
	f()
}

func (m *Manual) notifyLocked() {
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
}

// Waiters is the number of timers set on the clock that have not fired
// (nor been stopped).
func (m *Manual) Waiters() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.waiters)
}

// AwaitWaiters waits until n timers are set on the clock, or timeout
// passes in real time; it reports whether n were reached. Tests use it to
// know that the code under test is waiting before they move the clock.
func (m *Manual) AwaitWaiters(n int, timeout time.Duration) bool {
	return m.await(func() bool { return len(m.waiters) >= n }, timeout)
}

// Deadlines lists when the timers set on the clock fire, earliest first
// (a test tells its timer from others set meanwhile by its deadline).
func (m *Manual) Deadlines() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]time.Time, 0, len(m.waiters))
	for _, w := range m.waiters {
		out = append(out, w.deadline)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// AwaitDeadline waits until a timer due at t is set on the clock, or
// timeout passes in real time; it reports whether one was.
func (m *Manual) AwaitDeadline(t time.Time, timeout time.Duration) bool {
	return m.await(func() bool {
		for _, w := range m.waiters {
			if w.deadline.Equal(t) {
				return true
			}
		}
		return false
	}, timeout)
}

// AwaitCallbacks waits until every AfterFunc callback that Advance or Set
// started has returned, or timeout passes in real time; it reports whether
// they had. Tests use it after moving the clock to know that what the
// timers it fired did is done (a callback that sets a new timer counts as
// returned once it has set it).
func (m *Manual) AwaitCallbacks(timeout time.Duration) bool {
	return m.await(func() bool { return m.running == 0 }, timeout)
}

// await waits until cond (called with mu held) holds or timeout passes.
func (m *Manual) await(cond func() bool, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		if cond() {
			m.mu.Unlock()
			return true
		}
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// Millis returns c's time as Unix milliseconds, Kafka's timestamp unit.
func Millis(c Clock) int64 { return c.Now().UnixMilli() }
