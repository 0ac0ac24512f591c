package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Lookup's own HTTP/1.1 transport. A point lookup is a small request and
// a small answer, so net/http's per-request work (a Request and a
// Response with their header maps, the transport's connection hand-off
// between goroutines, the body's reader) costs as much CPU as the
// broker's answer itself. When the caller gives no http.Client and the
// listener is plain HTTP without a proxy, Lookup writes the request bytes
// itself on a keep-alive connection of its own pool and reads the answer
// with a bufio.Reader: the status line, the headers it needs, the body.
// The broker side is the ordinary HTTP listener; a caller needing TLS or
// credentials passes LookupOptions.Client and gets net/http.

const (
	lookupMaxIdle     = 64        // idle connections kept per broker address
	lookupMaxBody     = 256 << 20 // the largest answer read
	lookupMaxRedirect = 5
	lookupReadBuf     = 8 << 10
)

// lookupEndpoint is one broker listener's connections.
type lookupEndpoint struct {
	host   string // host:port, dialed and sent as Host
	prefix string // path before /v1/… (a base URL's path), no trailing /
	direct bool   // plain http and no proxy: the own transport applies

	mu   sync.Mutex
	idle []*lookupConn
}

type lookupConn struct {
	nc       net.Conn
	br       *bufio.Reader
	req      []byte // the request being written, reused
	deadline bool   // a deadline is set on nc
}

// lookupEndpoints caches endpoints by the base URL Lookup was given.
var lookupEndpoints sync.Map // string → *lookupEndpoint

// lookupProxy is the proxy decision of net/http's default transport
// (replaced by tests).
var lookupProxy = http.ProxyFromEnvironment

func endpointFor(base string) (*lookupEndpoint, error) {
	if e, ok := lookupEndpoints.Load(base); ok {
		return e.(*lookupEndpoint), nil
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("%w: LookupOptions.HTTP %q: %w", ErrInvalidOption, base, err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w: LookupOptions.HTTP %q: no host", ErrInvalidOption, base)
	}
	e := &lookupEndpoint{host: u.Host, prefix: u.EscapedPath()}
	if u.Port() == "" {
		e.host = net.JoinHostPort(u.Hostname(), "80")
	}
	if u.Scheme == "http" && u.User == nil {
		p, err := lookupProxy(&http.Request{URL: u})
		e.direct = err == nil && p == nil
	}
	v, _ := lookupEndpoints.LoadOrStore(base, e)
	return v.(*lookupEndpoint), nil
}

func (e *lookupEndpoint) get() *lookupConn {
	e.mu.Lock()
	defer e.mu.Unlock()
	if n := len(e.idle); n > 0 {
		c := e.idle[n-1]
		e.idle[n-1] = nil
		e.idle = e.idle[:n-1]
		return c
	}
	return nil
}

func (e *lookupEndpoint) put(c *lookupConn) {
	e.mu.Lock()
	if len(e.idle) < lookupMaxIdle {
		e.idle = append(e.idle, c)
		c = nil
	}
	e.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

func (e *lookupEndpoint) dial(ctx context.Context) (*lookupConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", e.host)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return &lookupConn{nc: nc, br: bufio.NewReaderSize(nc, lookupReadBuf)}, nil
}

// lookupAnswer is an HTTP answer as Lookup needs it.
type lookupAnswer struct {
	status   int
	body     []byte
	location string
	json     bool // Content-Type application/json
	// The X-Kvlog-* headers (-1: absent).
	partition, stable, offset, timestamp, headerCount int64
}

// errStale is a reused connection the broker had closed: nothing of the
// answer was read, so the request is sent again on a new connection.
var errStale = errors.New("stale keep-alive connection")

// roundTrip sends GET target on a connection of e and reads the answer.
func (e *lookupEndpoint) roundTrip(ctx context.Context, target []byte) (lookupAnswer, error) {
	for attempt := 0; ; attempt++ {
		var c *lookupConn
		if attempt == 0 {
			// Sent again on a new connection: the other idle ones may be
			// as stale (the broker restarted, a proxy closed them).
			c = e.get()
		}
		reused := c != nil
		if c == nil {
			var err error
			if c, err = e.dial(ctx); err != nil {
				return lookupAnswer{}, err
			}
		}
		a, keep, err := c.do(ctx, e.host, target, reused)
		if err == nil {
			if keep {
				e.put(c)
			} else {
				c.nc.Close()
			}
			return a, nil
		}
		c.nc.Close()
		if ctxErr := lookupCtxErr(ctx); ctxErr != nil {
			return lookupAnswer{}, ctxErr
		}
		if !errors.Is(err, errStale) || attempt > 0 {
			return lookupAnswer{}, err
		}
	}
}

// lookupCtxErr is ctx's error, also when its deadline passed and the
// connection's deadline (the same instant) fired first.
func lookupCtxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// aLongTimeAgo is a deadline in the past: it unblocks a connection's
// reads and writes when the lookup's context ends.
var aLongTimeAgo = time.Unix(1, 0)

func (c *lookupConn) do(ctx context.Context, host string, target []byte, reused bool) (a lookupAnswer, keep bool, err error) {
	if d, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(d)
		c.deadline = true
	} else if c.deadline {
		c.nc.SetDeadline(time.Time{})
		c.deadline = false
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
		defer func() {
			if !stop() {
				c.deadline = true
				if err == nil {
					// The deadline may have hit the connection after
					// the answer: do not reuse it.
					keep = false
				}
			}
		}()
	}
	req := append(c.req[:0], "GET "...)
	req = append(req, target...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	req = append(req, "\r\nUser-Agent: kvlog-client\r\n\r\n"...)
	c.req = req
	if _, err := c.nc.Write(req); err != nil {
		if reused {
			return a, false, fmt.Errorf("%w: %w", errStale, err)
		}
		return a, false, err
	}
	a, keep, err = readAnswer(c.br)
	if err != nil && reused && errors.Is(err, errNothingRead) {
		err = fmt.Errorf("%w: %w", errStale, err)
	}
	return a, keep, err
}

// errNothingRead is a connection that ended before the status line.
var errNothingRead = errors.New("connection closed before the answer")

// readAnswer reads one HTTP/1.1 answer: keep reports whether the
// connection can carry another request.
func readAnswer(br *bufio.Reader) (a lookupAnswer, keep bool, err error) {
	a = lookupAnswer{partition: -1, stable: -1, offset: -1, timestamp: -1, headerCount: -1}
	line, err := br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && (err == io.EOF || isConnReset(err)) {
			return a, false, fmt.Errorf("%w: %w", errNothingRead, err)
		}
		return a, false, fmt.Errorf("reading the status line: %w", err)
	}
	// HTTP/1.x NNN reason
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return a, false, fmt.Errorf("not an HTTP/1.x answer: %q", bytes.TrimSpace(line))
	}
	keep = line[7] == '1'
	status, ok := parseDec(line[9:12])
	if !ok {
		return a, false, fmt.Errorf("bad status line %q", bytes.TrimSpace(line))
	}
	a.status = int(status)
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return a, false, fmt.Errorf("reading the headers: %w", err)
		}
		line = trimEOL(line)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return a, false, fmt.Errorf("bad header line %q", line)
		}
		name, val := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case len(name) > 8 && bytes.EqualFold(name[:8], []byte("X-Kvlog-")):
			neg := len(val) > 0 && val[0] == '-'
			if neg {
				val = val[1:]
			}
			n, ok := parseDec(val)
			if !ok {
				continue
			}
			if neg {
				n = -n
			}
			switch rest := name[8:]; {
			case bytes.EqualFold(rest, []byte("Partition")):
				a.partition = n
			case bytes.EqualFold(rest, []byte("Stable-Offset")):
				a.stable = n
			case bytes.EqualFold(rest, []byte("Offset")):
				a.offset = n
			case bytes.EqualFold(rest, []byte("Timestamp")):
				a.timestamp = n
			case bytes.EqualFold(rest, []byte("Header-Count")):
				a.headerCount = n
			}
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseDec(val)
			if !ok || n > lookupMaxBody {
				return a, false, fmt.Errorf("Content-Length %q", val)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(val, []byte("chunked")) {
				return a, false, fmt.Errorf("Transfer-Encoding %q", val)
			}
			chunked = true
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(val, []byte("close")) {
				keep = false
			}
		case bytes.EqualFold(name, []byte("Content-Type")):
			a.json = bytes.HasPrefix(val, []byte("application/json"))
		case bytes.EqualFold(name, []byte("Location")):
			a.location = string(val)
		}
	}
	switch {
	case chunked:
		a.body, err = readChunked(br)
	case length >= 0:
		a.body = make([]byte, length)
		_, err = io.ReadFull(br, a.body)
	case a.status == http.StatusNoContent || a.status == http.StatusNotModified || a.status < 200:
	default:
		// Delimited by the end of the connection.
		a.body, err = io.ReadAll(io.LimitReader(br, lookupMaxBody))
		keep = false
	}
	if err != nil {
		return a, false, fmt.Errorf("reading the body: %w", err)
	}
	return a, keep, nil
}

func readChunked(br *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		line = trimEOL(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("chunk size %q: %w", line, err)
		}
		if n == 0 {
			break
		}
		if uint64(len(body))+n > lookupMaxBody {
			return nil, fmt.Errorf("answer larger than %d bytes", lookupMaxBody)
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(br, body[start:]); err != nil {
			return nil, err
		}
		if line, err = br.ReadSlice('\n'); err != nil || len(trimEOL(line)) != 0 {
			return nil, fmt.Errorf("no CRLF after a chunk: %q, %v", line, err)
		}
	}
	for { // trailers, up to the empty line
		line, err := br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		if len(trimEOL(line)) == 0 {
			return body, nil
		}
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// parseDec parses a non-negative decimal of at most 18 digits.
func parseDec(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// isNetErr is a failure of the connection (not of the answer's syntax).
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errNothingRead)
}

func isConnReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}
