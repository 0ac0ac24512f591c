package wire

import (
	"sync"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
)

// Memory bounds the memory of requests read and not yet answered:
// Apache Kafka's queued.max.request.bytes. Each request holds its frame's
// size from the moment its body starts arriving (frames larger than
// SmallFrame: after their first SmallFrame bytes) until it completes
// (request.finish or request.cancel).
//
// Like Kafka's memory pool, a reservation goes through whenever some memory
// is left, even if it is larger than what is left (so one request larger
// than the whole budget still makes progress, and the total overshoots the
// limit by at most one frame); otherwise the reader waits, which stops it
// reading its connection, until requests complete. Frames of at most
// SmallFrame bytes never wait: they are counted but let through, so
// metadata, heartbeats and other small requests keep flowing while large
// produce requests are held back.
type Memory struct {
	limit int64       // <= 0: unbounded
	clk   clock.Clock // runs Acquire's timeout

	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed and replaced when memory is released
}

// NewMemory is a budget of limit bytes (<= 0: unbounded) whose waits time
// out on clk (nil: clock.Real).
func NewMemory(limit int64, clk clock.Clock) *Memory {
	if clk == nil {
		clk = clock.Real
	}
	return &Memory{limit: limit, clk: clk, freed: make(chan struct{})}
}

// InUse is the memory held now.
func (m *Memory) InUse() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used
}

// Force counts n bytes without waiting.
func (m *Memory) Force(n int64) {
	m.mu.Lock()
	m.used += n
	m.mu.Unlock()
}

// Acquire reserves n bytes, waiting while none are left (calling onWait
// once when it starts waiting). It gives up (false) when stop is closed or
// timeout passes on the budget's clock.
func (m *Memory) Acquire(n int64, stop <-chan struct{}, timeout time.Duration, onWait func()) bool {
	var timer *clock.Timer
	for {
		m.mu.Lock()
		if m.limit <= 0 || m.used < m.limit {
			m.used += n
			m.mu.Unlock()
			return true
		}
		freed := m.freed
		m.mu.Unlock()
		if timer == nil {
			timer = clock.NewTimer(m.clk, timeout)
			defer timer.Stop()
			if onWait != nil {
				onWait()
			}
		}
		select {
		case <-freed:
		case <-stop:
			return false
		case <-timer.C:
			return false
		}
	}
}

// Release returns n bytes and wakes the waiters.
func (m *Memory) Release(n int64) {
	if n == 0 {
		return
	}
	m.mu.Lock()
	m.used -= n
	close(m.freed)
	m.freed = make(chan struct{})
	m.mu.Unlock()
}
