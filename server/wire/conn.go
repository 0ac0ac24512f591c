package wire

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Result is how a request completes.
type Result struct {
	Resp  kmsg.Response // encoded with kmsg
	Fetch *FetchReply   // encoded as buffers + file ranges
	Raw   []byte        // a bare size-prefixed token (SASL after SaslHandshake v0)
	Skip  bool          // no response (acks=0 produce)
	Err   error         // close the connection after earlier responses
	// CloseAfter closes the connection once this response (if any) is
	// written.
	CloseAfter bool
}

// Pending is a request read from a connection and not yet answered: its
// place in the connection's response order and the request memory it
// holds. It completes exactly once.
type Pending struct {
	corr  int32
	mem   *Memory
	held  int64
	done  chan Result // capacity 1
	fired atomic.Bool
}

// Init prepares p for a request with correlation id corr holding held
// bytes of mem (released at completion or cancellation).
func (p *Pending) Init(corr int32, mem *Memory, held int64) {
	p.corr, p.mem, p.held = corr, mem, held
	p.done = make(chan Result, 1)
}

// Held is the request memory p holds.
func (p *Pending) Held() int64 { return p.held }

// Complete completes p with res unless it already completed (the first
// completion wins; a later one's Fetch is released). first, when not nil,
// runs once before res is handed to the writer.
func (p *Pending) Complete(res Result, first func()) {
	if !p.fired.CompareAndSwap(false, true) {
		if res.Fetch != nil {
			res.Fetch.Release()
		}
		return
	}
	p.mem.Release(p.held)
	if first != nil {
		first()
	}
	p.done <- res
}

// cancel completes p with no response if it has not completed, and
// otherwise drops its completion, releasing any file ranges.
func (p *Pending) cancel() {
	if p.fired.CompareAndSwap(false, true) {
		p.mem.Release(p.held)
		return
	}
	if res := <-p.done; res.Fetch != nil {
		res.Fetch.Release()
	}
}

// Request is what a connection queues: the handler's request with its
// Pending.
type Request interface{ Pending() *Pending }

// Handler is the broker side of a connection: it decides what a frame
// means, and is told what the connection does.
type Handler[R Request] interface {
	// MaxFrame is the largest frame the connection reads now.
	MaxFrame() int32
	// Frame handles one frame holding mem bytes of request memory. It
	// queues its request (Conn.Queue) before anything can complete it,
	// or releases mem; false stops reading.
	Frame(frame []byte, mem int64) bool
	// ReadStopped is why reading stopped: an error from ReadFrame
	// (ErrNoFrame, *FrameSizeError, ErrRequestMemory, I/O) when the
	// connection was not told to stop.
	ReadStopped(err error)
	// BeforeWrite sees each completed request before its response is
	// written (it may wait: a throttled client's delayed answer) and may
	// change the response.
	BeforeWrite(r R, res *Result)
	// Closing is told of a request that completed with Result.Err: the
	// connection closes after the earlier responses.
	Closing(r R, err error)
	// Wrote counts the bytes of a response written.
	Wrote(n int64)
}

// Conn is one client connection's frame loop: a reader reads frames and
// hands them to the Handler, which queues each request; a writer takes the
// requests in order, waits for each to complete and writes its response.
// So responses leave strictly in request order while requests pipeline,
// and the queue's capacity (queued.max.requests) bounds the requests read
// ahead.
type Conn[R Request] struct {
	nc       net.Conn
	queue    chan R
	mem      *Memory
	idle     time.Duration
	onWait   func()
	stopping atomic.Bool
	stopOnce sync.Once
	stop     chan struct{} // closed by StopReading
}

// NewConn is a connection over nc reading ahead at most queued requests,
// their frames held in mem; idle bounds the wait for a frame (and for
// memory), onWait counts the reads that wait for memory.
func NewConn[R Request](nc net.Conn, queued int, mem *Memory, idle time.Duration, onWait func()) *Conn[R] {
	return &Conn[R]{nc: nc, queue: make(chan R, queued), mem: mem, idle: idle, onWait: onWait, stop: make(chan struct{})}
}

// NetConn is the underlying connection.
func (c *Conn[R]) NetConn() net.Conn { return c.nc }

// Queue puts r in the response order.
func (c *Conn[R]) Queue(r R) { c.queue <- r }

// Stop is closed once the connection stops reading.
func (c *Conn[R]) Stop() <-chan struct{} { return c.stop }

// Stopping reports whether StopReading was called.
func (c *Conn[R]) Stopping() bool { return c.stopping.Load() }

// StopReading makes the reader stop after the frame it is reading (or
// while it waits for request memory); queued requests are still answered.
func (c *Conn[R]) StopReading() {
	c.stopping.Store(true)
	c.stopOnce.Do(func() { close(c.stop) })
	c.nc.SetReadDeadline(time.Now())
}

// Serve runs the reader on the calling goroutine and the writer on another
// until reading stops and every queued request is answered or cancelled.
// It does not close the connection.
func (c *Conn[R]) Serve(h Handler[R]) {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop(h)
	}()
	c.readLoop(h)
	close(c.queue)
	<-writerDone
}

func (c *Conn[R]) readLoop(h Handler[R]) {
	for {
		if c.stopping.Load() {
			return
		}
		// A slow sender of a large frame gets the idle timeout per frame.
		// Socket deadlines are the kernel's timers and stay on real time;
		// the waits the broker decides itself (request memory, muting,
		// delayed answers) run on its clock.
		c.nc.SetReadDeadline(time.Now().Add(c.idle))
		if c.stopping.Load() {
			return
		}
		frame, mem, err := ReadFrame(c.nc, h.MaxFrame(), c.mem, c.stop, c.idle, c.onWait)
		if err != nil {
			if !c.stopping.Load() {
				h.ReadStopped(err)
			}
			return
		}
		if !h.Frame(frame, mem) {
			return
		}
	}
}

// writeLoop writes responses in request order until the queue closes.
// After a write error or a failed request it only drains.
func (c *Conn[R]) writeLoop(h Handler[R]) {
	var (
		buf      []byte
		draining bool
	)
	for r := range c.queue {
		p := r.Pending()
		if draining {
			p.cancel()
			continue
		}
		res := <-p.done
		h.BeforeWrite(r, &res)
		var err error
		switch {
		case res.Err != nil:
			h.Closing(r, res.Err)
			err = res.Err
		case res.Skip:
		case res.Raw != nil:
			buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(res.Raw)))
			buf = append(buf, res.Raw...)
			_, err = c.nc.Write(buf)
		case res.Fetch != nil:
			if err = WriteFetch(c.nc, res.Fetch); err == nil {
				h.Wrote(res.Fetch.Size())
			}
			res.Fetch.Release()
		default:
			buf = AppendResponse(buf[:0], p.corr, res.Resp)
			_, err = c.nc.Write(buf)
			h.Wrote(int64(len(buf)))
			if cap(buf) > 1<<20 {
				buf = nil
			}
		}
		if err != nil || res.CloseAfter {
			draining = true
			c.StopReading()
			c.nc.Close()
		}
	}
}
