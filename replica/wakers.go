package replica

import "sync"

// wakers runs the completions of parked fetches (parked.fire) off the
// waker's goroutine, on goroutines kept for that: a completion answers the
// fetch there (engine read, response encoding), and a fresh goroutine for
// each one grew its stack from the minimum through that path at every
// wake-up (stack growth was about 40% of a woken fetch's CPU in a profile
// of a tailing consumer). A goroutine that finished a completion waits for
// the next one; at most maxIdleWakers wait, the others end, so a burst of
// wake-ups (thousands of parked fetches moved at once) leaves no crowd.
type wakers struct {
	mu     sync.Mutex
	idle   []chan func() // the waiting goroutines' hand-off channels (capacity 1)
	closed bool
}

// maxIdleWakers is how many goroutines wait for completions.
const maxIdleWakers = 4

// run runs fn on a waiting goroutine, else on a new one.
func (ws *wakers) run(fn func()) {
	ws.mu.Lock()
	if n := len(ws.idle); n > 0 {
		c := ws.idle[n-1]
		ws.idle = ws.idle[:n-1]
		ws.mu.Unlock()
		c <- fn // (capacity 1, taken from idle: never blocks)
		return
	}
	ws.mu.Unlock()
	go ws.work(fn)
}

func (ws *wakers) work(fn func()) {
	var c chan func()
	for fn != nil {
		fn()
		ws.mu.Lock()
		if ws.closed || len(ws.idle) >= maxIdleWakers {
			ws.mu.Unlock()
			return
		}
		if c == nil {
			c = make(chan func(), 1)
		}
		ws.idle = append(ws.idle, c)
		ws.mu.Unlock()
		fn = <-c
	}
}

// close ends the waiting goroutines; later completions each run on a new
// goroutine that ends after it (the Manager is shut down: no goroutine of
// it outlives Shutdown's answers).
func (ws *wakers) close() {
	ws.mu.Lock()
	ws.closed = true
	for _, c := range ws.idle {
		c <- nil
	}
	ws.idle = nil
	ws.mu.Unlock()
}

// waiting is how many goroutines wait for completions.
func (ws *wakers) waiting() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.idle)
}
