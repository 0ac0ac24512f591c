package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/metrics"
	"github.com/kvlog/kvlog/server/security"
	"github.com/kvlog/kvlog/server/wire"
)

// conn is a client connection: package wire's frame loop (the reader
// reads a frame and hands it here; the writer answers the queued requests
// in order) with what the broker decides per connection: parsing against
// the served versions, SASL (sasl_conn.go), authorization and quotas
// before the handler, the handler itself with its panics contained.
type conn struct {
	s      *Server
	l      *listener
	w      *wire.Conn[*request]
	nc     net.Conn // after the TLS wrap on SSL and SASL_SSL listeners
	remote string
	stop   <-chan struct{} // closed once the connection stops reading
	ip     string          // remote IP, for max.connections.per.ip

	// auth is the SASL state on SASL listeners, nil elsewhere
	// (sasl_conn.go); princ the principal once known (nil: ANONYMOUS).
	auth  *security.Session
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

// request is one parsed request and its place in the response order.
type request struct {
	s       *Server
	c       *conn
	hdr     requestHeader
	kreq    kmsg.Request
	start   time.Time
	pending wire.Pending // completion and request memory
	// start is the request's arrival in real time (its latency, in the
	// metrics); arrived the same on the broker's clock: a Fetch's MaxWait
	// and a pre-KIP-219 client's throttle delay count from it.
	arrived time.Time
	// topicsAllowed are the topics a Fetch may read (authorized once, kept
	// for its completion after parking); nil: all.
	topicsAllowed authzSet
	// throttleMs is the client quota throttle (quotas.go): reported in
	// the response, the connection muted for it.
	throttleMs atomic.Int32
	// frame is a produce request's frame, which its decoded batches
	// alias: handed back to the frame pool once the request is answered,
	// or, for an acks=all request, once its batches are appended
	// (releaseFrame), tally then holding what the metrics count of them.
	frame []byte
	tally metrics.ProduceTally
}

// Pending is the request's place in its connection (wire.Request).
func (r *request) Pending() *wire.Pending { return &r.pending }

// finish completes the request (first completion wins).
func (r *request) finish(res result) {
	r.pending.Complete(wire.Result{Resp: res.resp, Fetch: res.fetch, Raw: res.raw, Skip: res.skip, Err: res.err, CloseAfter: res.closeAfter},
		func() {
			r.s.metrics.Observe(r.hdr.key, r.kreq, r.tally, res.resp, res.fetch, res.skip, time.Since(r.start))
			if f := r.frame; f != nil {
				r.frame = nil
				wire.PutFrame(f) // answered: nothing refers to the frame any more
			}
		})
}

// releaseFrame hands a produce request's frame back to the pool once every
// batch of it is appended (or refused): the engine copied them into the
// log and keeps no slice of them, so an acks=all request waits for its
// fsync or replication without holding its frame; with a slow disk and a
// pipelining producer, that was a frame (up to a megabyte) per request in
// flight. What the metrics count of the batches is tallied first, and the
// request's batch slices, which alias the frame, are cleared.
func (r *request) releaseFrame() {
	f := r.frame
	req, ok := r.kreq.(*kmsg.ProduceRequest)
	if f == nil || !ok {
		return
	}
	r.tally = metrics.TallyProduce(req)
	for ti := range req.Topics {
		for pi := range req.Topics[ti].Partitions {
			req.Topics[ti].Partitions[pi].Records = nil
		}
	}
	r.frame = nil
	wire.PutFrame(f)
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
	}
	if sec := l.sec; sec != nil {
		if sec.UseTLS {
			c.nc = tls.Server(nc, sec.TLSConfig()) // the handshake runs in serve
		}
		if sec.UseSASL {
			c.auth = security.NewSession(sessionSettings(sec.Settings()))
		}
	}
	c.w = wire.NewConn[*request](c.nc, s.cfg.QueuedMaxRequests, s.reqMem, s.cfg.ConnectionsMaxIdle, s.metrics.RequestMemoryWaits.Inc)
	c.stop = c.w.Stop()
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
func (c *conn) stopReading() { c.w.StopReading() }

func (c *conn) serve() {
	defer c.s.removeConn(c)
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.tlsHandshake(tc); err != nil {
			c.s.metrics.TLSHandshakeFailures.WithLabelValues(c.l.name).Inc()
			if !c.w.Stopping() {
				c.s.logger.Info("TLS handshake failed; closing connection", "listener", c.l.name, "remote", c.remote, "err", err)
			}
			c.nc.Close()
			return
		}
	}
	c.w.Serve(c)
	c.nc.Close()
}

// MaxFrame, Frame, ReadStopped, BeforeWrite, Closing and Wrote make conn
// the connection's wire.Handler.

// Frame counts and handles one frame (handleFrame).
func (c *conn) Frame(frame []byte, mem int64) bool {
	c.s.metrics.BytesIn.Add(float64(4 + len(frame)))
	return c.handleFrame(frame, mem)
}

// MaxFrame is the largest frame the connection reads now (sasl_conn.go).
func (c *conn) MaxFrame() int32 { return c.maxFrame() }

// ReadStopped logs why the connection stopped reading.
func (c *conn) ReadStopped(err error) {
	var sizeErr *wire.FrameSizeError
	switch {
	case errors.As(err, &sizeErr):
		c.s.logger.Warn("request frame size out of range; closing connection",
			"remote", c.remote, "size", sizeErr.Size, "limit", sizeErr.Limit, "authenticated", c.authenticated())
		c.s.metrics.BadRequests.Inc()
	case errors.Is(err, wire.ErrNoFrame):
		c.logReadErr(err, "idle connection closed")
	default:
		c.logReadErr(err, "connection closed mid-frame")
	}
}

// BeforeWrite holds back the answer of a throttled client from before
// KIP-219 (it does not back off by itself) until the throttle time has
// passed since the request arrived, on the broker's clock, and reports
// the throttle.
func (c *conn) BeforeWrite(r *request, res *wire.Result) {
	if ms := r.throttleMs.Load(); ms > 0 && !clientThrottles(r) && res.Err == nil && !res.Skip {
		if wait := r.arrived.Add(time.Duration(ms) * time.Millisecond).Sub(c.s.clock.Now()); wait > 0 {
			t := clock.NewTimer(c.s.clock, wait)
			select {
			case <-t.C:
			case <-c.stop:
			}
			t.Stop()
		}
	}
	if res.Resp != nil {
		setThrottle(r, res.Resp)
	}
}

// Closing logs a request that closes the connection.
func (c *conn) Closing(r *request, err error) { r.log().Warn("closing connection", "err", err) }

// Wrote counts response bytes.
func (c *conn) Wrote(n int64) { c.s.metrics.BytesOut.Add(float64(n)) }

func (c *conn) logReadErr(err error, idleMsg string) {
	switch {
	case c.w.Stopping(), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
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
	if c.auth != nil && c.auth.RawTokens() {
		return c.handleRawToken(frame, mem)
	}
	wh, kreq, err := wire.ParseRequest(frame, c.s.served)
	hdr := requestHeader{key: wh.Key, version: wh.Version, corr: wh.Corr, clientID: wh.ClientID}
	if err != nil {
		if errors.Is(err, wire.ErrUnsupportedVersion) && hdr.key == kmsg.ApiVersions.Int16() && hdr.version > c.s.apiVersionsMax() {
			// Clients probe with their newest ApiVersions: the normal
			// start of a connection, not a bad request.
			c.s.metrics.APIVersionsDowngrades.Inc()
			r := c.newRequest(hdr, nil, mem)
			c.w.Queue(r)
			r.reply(unsupportedApiVersionsResponse(c.s.apiVersionsMax()))
			return true
		}
		c.s.metrics.BadRequests.Inc()
		c.s.logger.Warn("bad request; closing connection", "remote", c.remote, "client_id", hdr.clientID,
			"api_key", hdr.key, "version", hdr.version, "correlation_id", hdr.corr, "err", err)
		c.s.reqMem.Release(mem)
		return false
	}
	if why := c.admit(hdr.key); why != "" {
		c.s.metrics.Authentications.WithLabelValues(c.l.name, "", "refused").Inc()
		c.s.logger.Info("request refused on an unauthenticated connection; closing it", "listener", c.l.name,
			"remote", c.remote, "client_id", hdr.clientID, "reason", why)
		c.s.reqMem.Release(mem)
		return false
	}
	r := c.newRequest(hdr, kreq, mem)
	if hdr.key == kmsg.Produce.Int16() {
		r.frame = frame // pooled again once answered (finish)
	}
	c.w.Queue(r)
	c.dispatch(r)
	if ms := r.throttleMs.Load(); ms > 0 {
		c.mute(time.Duration(ms) * time.Millisecond) // KIP-219: read nothing more meanwhile
	}
	return true
}

// newRequest is a parsed request holding mem bytes of request memory.
func (c *conn) newRequest(hdr requestHeader, kreq kmsg.Request, mem int64) *request {
	now := time.Now()
	arrived := now
	if c.s.clock != clock.Real {
		arrived = c.s.clock.Now()
	}
	r := &request{s: c.s, c: c, hdr: hdr, kreq: kreq, start: now, arrived: arrived}
	r.pending.Init(hdr.corr, c.s.reqMem, mem)
	return r
}

// dispatch runs the request's handler, containing panics to this
// connection. It reports whether the handler ran and returned (a test hook
// may take the request instead).
func (c *conn) dispatch(r *request) (ran bool) {
	defer func() {
		if v := recover(); v != nil {
			r.log().Error("handler panicked; closing connection", "panic", v, "stack", string(debug.Stack()))
			c.s.metrics.Panics.Inc()
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
