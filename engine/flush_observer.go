package engine

import (
	"sync/atomic"
	"time"
)

// flushObserver receives the wall-clock duration of every flush that
// synced something (segment files, indexes, the directory): the broker's
// fsync latency histogram. One per process: the broker's metrics.
var flushObserver atomic.Pointer[func(time.Duration)]

// SetFlushObserver installs fn (nil removes it). fn must be cheap and safe
// for concurrent use: it runs on the flushing goroutine.
func SetFlushObserver(fn func(time.Duration)) {
	if fn == nil {
		flushObserver.Store(nil)
		return
	}
	flushObserver.Store(&fn)
}

func observeFlush(start time.Time) {
	if fn := flushObserver.Load(); fn != nil {
		(*fn)(time.Since(start))
	}
}
