// Package kconn is a minimal Kafka protocol client connection for
// broker-to-broker requests (replica fetchers, the controller's
// LeaderAndIsr/UpdateMetadata/StopReplica, controlled shutdown): one TCP
// connection, one request in flight, versions chosen by the caller, no
// metadata and no retries. Clients outside the broker use franz-go's kgo.
package kconn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// MaxResponseBytes bounds a response frame.
const MaxResponseBytes = 256 << 20

// ErrClosed is returned after Close.
var ErrClosed = errors.New("kconn: connection closed")

// Conn is one connection to a broker. Request calls are serialised.
type Conn struct {
	mu       sync.Mutex
	nc       net.Conn
	clientID string
	corr     int32
	buf      []byte
	closed   bool
}

// Dial connects to addr (host:port).
func Dial(ctx context.Context, addr, clientID string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Conn{nc: nc, clientID: clientID}, nil
}

// NewConn wraps an open connection (one dialed in a particular network
// namespace, say).
func NewConn(nc net.Conn, clientID string) *Conn { return &Conn{nc: nc, clientID: clientID} }

// Addr is the remote address.
func (c *Conn) Addr() string { return c.nc.RemoteAddr().String() }

// Request sends req (at req.GetVersion()) and reads its response. A
// transport or framing error closes the connection; the caller dials again.
// The context's deadline (or cancellation) bounds the round trip.
func (c *Conn) Request(ctx context.Context, req kmsg.Request) (kmsg.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
	} else {
		c.nc.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, err := c.roundTrip(req)
	if err != nil {
		c.closeLocked()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("kconn %s: %w (%w)", c.nc.RemoteAddr(), ctx.Err(), err)
		}
		return nil, fmt.Errorf("kconn %s: %w", c.nc.RemoteAddr(), err)
	}
	return resp, nil
}

func (c *Conn) roundTrip(req kmsg.Request) (kmsg.Response, error) {
	c.corr++
	corr := c.corr
	b := c.buf[:0]
	b = append(b, 0, 0, 0, 0)
	b = kbin.AppendInt16(b, req.Key())
	b = kbin.AppendInt16(b, req.GetVersion())
	b = kbin.AppendInt32(b, corr)
	b = kbin.AppendNullableString(b, &c.clientID)
	if req.IsFlexible() {
		b = append(b, 0) // request header v2: empty tag section
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.buf = b
	if _, err := c.nc.Write(b); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > MaxResponseBytes {
		return nil, fmt.Errorf("response frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.nc, body); err != nil {
		return nil, err
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		return nil, fmt.Errorf("correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	if resp.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		r := kbin.Reader{Src: body}
		kmsg.SkipTags(&r)
		if !r.Ok() {
			return nil, errors.New("truncated response header")
		}
		body = r.Src
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decoding %s v%d response: %w", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return resp, nil
}

func (c *Conn) closeLocked() {
	if !c.closed {
		c.closed = true
		c.nc.Close()
	}
}

// Close closes the connection. A Request in flight fails.
func (c *Conn) Close() error {
	c.nc.SetDeadline(time.Unix(1, 0))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
	return nil
}

// Closed reports whether the connection is closed (after an error or Close).
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
