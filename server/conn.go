package server

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/wire"
)

// A connection has two goroutines. The reader reads a frame, parses it,
// queues a pending slot and runs the handler, which completes the slot now
// or later (a parked fetch); the writer takes slots from the queue in
// order, waits for each to complete and writes its response. So responses
// leave strictly in request order while requests pipeline, and the queue's
// capacity (queued.max.requests) bounds the requests read ahead.
type conn struct {
	s        *Server
	l        *listener
	nc       net.Conn
	remote   string
	queue    chan *request
	stopping atomic.Bool
	stopOnce sync.Once
	stop     chan struct{} // closed by stopReading
	ip       string        // remote IP, for max.connections.per.ip

	// auth is the SASL state on SASL listeners, nil elsewhere
	// (sasl_conn.go); princ the principal once known (nil: ANONYMOUS).
	auth  *connAuth
	princ atomic.Pointer[string]
}

// requestHeader is a request's header as handlers see it (wire.Header).
type requestHeader struct {
	key      int16
	version  int16
	corr     int32
	clientID string // a null client id reads as ""
}

// result is how a request completes.
type result struct {
	resp  kmsg.Response    // encoded with kmsg
	fetch *wire.FetchReply // encoded as buffers + file ranges
	raw   []byte           // a bare size-prefixed SASL token (after SaslHandshake v0)
	skip  bool             // no response (acks=0 produce)
	err   error            // close the connection after earlier responses
	// closeAfter closes the connection once this response (if any) is
	// written: a failed authentication.
	closeAfter bool
}

// request is one parsed request and its response slot.
type request struct {
	s     *Server
	c     *conn
	hdr   requestHeader
	kreq  kmsg.Request
	start time.Time
	done  chan result // capacity 1; exactly one completion
	fired atomic.Bool
	mem   int64 // request memory held until completion (wire.Memory)
	// topicsAllowed are the topics a Fetch may read (authorized once, kept
	// for its completion after parking); nil: all.
	topicsAllowed authzSet
	// throttleMs is the client quota throttle (quotas.go): reported in
	// the response, the connection muted for it.
	throttleMs atomic.Int32
}

// finish completes the request (first completion wins).
func (r *request) finish(res result) {
	if !r.fired.CompareAndSwap(false, true) {
		if res.fetch != nil {
			res.fetch.Release()
		}
		return
	}
	r.s.reqMem.Release(r.mem)
	r.s.metrics.observe(r, res, time.Since(r.start))
	r.done <- res
}

// cancel completes the request with no response if it has not completed,
// and otherwise drops its completion, releasing any file ranges.
func (r *request) cancel() {
	if r.fired.CompareAndSwap(false, true) {
		r.s.reqMem.Release(r.mem)
		return
	}
	if res := <-r.done; res.fetch != nil {
		res.fetch.Release()
	}
}

func (r *request) reply(resp kmsg.Response) { r.finish(result{resp: resp}) }
func (r *request) noReply()                 { r.finish(result{skip: true}) }
func (r *request) fail(err error)           { r.finish(result{err: err}) }

func (r *request) log() *slog.Logger {
	return r.s.logger.With("remote", r.c.remote, "client_id", r.hdr.clientID, "api", apiName(r.hdr.key), "version", r.hdr.version)
}

func newConn(s *Server, l *listener, nc net.Conn) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		if n := s.cfg.SocketSendBufferBytes; n > 0 {
			tc.SetWriteBuffer(n)
		}
		if n := s.cfg.SocketReceiveBufferBytes; n > 0 {
			tc.SetReadBuffer(n)
		}
	}
	c := &conn{
		s:      s,
		l:      l,
		nc:     nc,
		remote: nc.RemoteAddr().String(),
		ip:     remoteIP(nc),
		queue:  make(chan *request, s.cfg.QueuedMaxRequests),
		stop:   make(chan struct{}),
	}
	if sec := l.sec; sec != nil {
		if sec.useTLS {
			c.nc = tls.Server(nc, sec.tlsConfig()) // the handshake runs in serve
		}
		if sec.useSASL {
			c.auth = &connAuth{settings: sec.settings()}
		}
	}
	return c
}

// remoteIP is the connection's peer address without the port.
func remoteIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		return nc.RemoteAddr().String()
	}
	return host
}

// stopReading makes the reader stop after the frame it is reading (or
// while it waits for request memory); queued requests are still answered.
func (c *conn) stopReading() {
	c.stopping.Store(true)
	c.stopOnce.Do(func() { close(c.stop) })
	c.nc.SetReadDeadline(time.Now())
}

func (c *conn) serve() {
	defer c.s.removeConn(c)
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.tlsHandshake(tc); err != nil {
			c.s.metrics.tlsHandshakeFailures.WithLabelValues(c.l.name).Inc()
			if !c.stopping.Load() {
				c.s.logger.Info("TLS handshake failed; closing connection", "listener", c.l.name, "remote", c.remote, "err", err)
			}
			c.nc.Close()
			return
		}
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.readLoop()
	close(c.queue)
	<-writerDone
	c.nc.Close()
}

// readLoop reads and dispatches requests until EOF, an error, a request
// that closes the connection, or shutdown.
func (c *conn) readLoop() {
	for {
		if c.stopping.Load() {
			return
		}
		// A slow sender of a large frame gets the idle timeout per frame.
		c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.ConnectionsMaxIdle))
		if c.stopping.Load() {
			return
		}
		frame, mem, err := wire.ReadFrame(c.nc, c.maxFrame(), c.s.reqMem, c.stop, c.s.cfg.ConnectionsMaxIdle, c.s.metrics.requestMemoryWaits.Inc)
		var sizeErr *wire.FrameSizeError
		switch {
		case errors.As(err, &sizeErr):
			c.s.logger.Warn("request frame size out of range; closing connection",
				"remote", c.remote, "size", sizeErr.Size, "limit", sizeErr.Limit, "authenticated", c.authenticated())
			c.s.metrics.badRequests.Inc()
			return
		case errors.Is(err, wire.ErrNoFrame):
			c.logReadErr(err, "idle connection closed")
			return
		case err != nil:
			c.logReadErr(err, "connection closed mid-frame")
			return
		}
		c.s.metrics.bytesIn.Add(float64(4 + len(frame)))
		if !c.handleFrame(frame, mem) {
			return
		}
	}
}

func (c *conn) logReadErr(err error, idleMsg string) {
	switch {
	case c.stopping.Load(), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.s.logger.Debug(idleMsg, "remote", c.remote)
	case errors.Is(err, wire.ErrRequestMemory):
		c.s.logger.Warn("closing connection", "remote", c.remote, "err", err)
	default:
		c.s.logger.Debug("read failed", "remote", c.remote, "err", err)
	}
}

// handleFrame parses and dispatches one frame holding mem bytes of request
// memory (released when its request completes); false stops reading.
func (c *conn) handleFrame(frame []byte, mem int64) bool {
	if c.auth != nil && c.auth.raw && c.auth.state == authInProgress {
		return c.handleRawToken(frame, mem)
	}
	wh, kreq, err := wire.ParseRequest(frame, c.s.served)
	hdr := requestHeader{key: wh.Key, version: wh.Version, corr: wh.Corr, clientID: wh.ClientID}
	if err != nil {
		if errors.Is(err, wire.ErrUnsupportedVersion) && hdr.key == kmsg.ApiVersions.Int16() && hdr.version > c.s.apiVersionsMax() {
			// Clients probe with their newest ApiVersions: the normal
			// start of a connection, not a bad request.
			c.s.metrics.apiVersionsDowngrades.Inc()
			r := c.newRequest(hdr, nil)
			r.mem = mem
			c.queue <- r
			r.reply(unsupportedApiVersionsResponse(c.s.apiVersionsMax()))
			return true
		}
		c.s.metrics.badRequests.Inc()
		c.s.logger.Warn("bad request; closing connection", "remote", c.remote, "client_id", hdr.clientID,
			"api_key", hdr.key, "version", hdr.version, "correlation_id", hdr.corr, "err", err)
		c.s.reqMem.Release(mem)
		return false
	}
	if why := c.admit(hdr.key); why != "" {
		c.s.metrics.authentications.WithLabelValues(c.l.name, "", "refused").Inc()
		c.s.logger.Info("request refused on an unauthenticated connection; closing it", "listener", c.l.name,
			"remote", c.remote, "client_id", hdr.clientID, "reason", why)
		c.s.reqMem.Release(mem)
		return false
	}
	r := c.newRequest(hdr, kreq)
	r.mem = mem
	c.queue <- r
	if c.dispatch(r) && hdr.key == kmsg.Produce.Int16() {
		wire.PutFrame(frame) // appended: nothing refers to the frame any more
	}
	if ms := r.throttleMs.Load(); ms > 0 {
		c.mute(time.Duration(ms) * time.Millisecond) // KIP-219: read nothing more meanwhile
	}
	return true
}

func (c *conn) newRequest(hdr requestHeader, kreq kmsg.Request) *request {
	return &request{s: c.s, c: c, hdr: hdr, kreq: kreq, start: time.Now(), done: make(chan result, 1)}
}

// dispatch runs the request's handler, containing panics to this
// connection. It reports whether the handler ran and returned (a test hook
// may take the request instead).
func (c *conn) dispatch(r *request) (ran bool) {
	defer func() {
		if v := recover(); v != nil {
			r.log().Error("handler panicked; closing connection", "panic", v, "stack", string(debug.Stack()))
			c.s.metrics.panics.Inc()
			r.fail(fmt.Errorf("handler panic: %v", v))
			ran = false
		}
	}()
	if hook := c.s.requestHook.Load(); hook != nil && (*hook)(r) {
		return false
	}
	if !c.s.authorizeAPI(r) {
		return true // refused and answered (authz_apis.go)
	}
	exempt := quotaExempt(r)
	if !exempt {
		r.throttle(c.s.quotas.beforeHandle(r))
	}
	h := c.s.handler(r.hdr.key)
	start := time.Now()
	h.fn(c.s, r)
	if !exempt {
		r.throttle(c.s.quotas.afterHandle(r, time.Since(start)))
	}
	return true
}

// writeLoop writes responses in request order until the queue closes. After
// a write error or a failed request it only drains.
func (c *conn) writeLoop() {
	var (
		buf      []byte
		draining bool
	)
	for r := range c.queue {
		if draining {
			r.cancel()
			continue
		}
		res := <-r.done
		if ms := r.throttleMs.Load(); ms > 0 && !clientThrottles(r) && res.err == nil && !res.skip {
			// A client from before KIP-219 does not back off by itself:
			// its response waits out the throttle.
			if wait := time.Until(r.start.Add(time.Duration(ms) * time.Millisecond)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-c.stop:
				}
			}
		}
		if res.resp != nil {
			setThrottle(r, res.resp)
		}
		var err error
		switch {
		case res.err != nil:
			r.log().Warn("closing connection", "err", res.err)
			err = res.err
		case res.skip:
		case res.raw != nil:
			buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(res.raw)))
			buf = append(buf, res.raw...)
			_, err = c.nc.Write(buf)
		case res.fetch != nil:
			if err = wire.WriteFetch(c.nc, res.fetch); err == nil {
				c.s.metrics.bytesOut.Add(float64(res.fetch.Size()))
			}
			res.fetch.Release()
		default:
			buf, err = c.writeResponse(buf[:0], r.hdr, res.resp)
			if cap(buf) > 1<<20 {
				buf = nil
			}
		}
		if err != nil || res.closeAfter {
			draining = true
			c.stopReading()
			c.nc.Close()
		}
	}
}

func (c *conn) writeResponse(buf []byte, hdr requestHeader, resp kmsg.Response) ([]byte, error) {
	buf = wire.AppendResponse(buf, hdr.corr, resp)
	_, err := c.nc.Write(buf)
	c.s.metrics.bytesOut.Add(float64(len(buf)))
	return buf, err
}
