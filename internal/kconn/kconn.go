// Package kconn is a minimal Kafka protocol client connection for
// broker-to-broker requests (replica fetchers, the controller's
// LeaderAndIsr/UpdateMetadata/StopReplica, controlled shutdown): one TCP
// connection, one request in flight, versions chosen by the caller, no
// metadata and no retries. Clients outside the broker use franz-go's kgo.
//
// A Dialer secures the connection as the inter-broker listener requires:
// TLS (SSL, SASL_SSL) and SASL authentication (SASL_PLAINTEXT, SASL_SSL)
// with SaslHandshake v1 and SaslAuthenticate v1, using franz-go's client
// mechanisms (PLAIN, SCRAM). A failed authentication is an error of Dial
// wrapping ErrAuthentication.
package kconn

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
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

// Dial connects to addr (host:port) in plaintext.
func Dial(ctx context.Context, addr, clientID string) (*Conn, error) {
	return (*Dialer)(nil).Dial(ctx, addr, clientID)
}

// ErrAuthentication: the peer refused this broker's SASL authentication
// or the TLS handshake failed.
var ErrAuthentication = errors.New("kconn: authentication failed")

// Dialer says how to secure connections; the nil Dialer dials plaintext.
type Dialer struct {
	// TLS, when set, wraps the connection (its ServerName is set from the
	// address's host when empty).
	TLS *tls.Config
	// SASL, when set, authenticates the connection.
	SASL sasl.Mechanism
}

// Dial connects to addr and secures the connection as d says.
func (d *Dialer) Dial(ctx context.Context, addr, clientID string) (*Conn, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return &Conn{nc: nc, clientID: clientID}, nil
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	if d.TLS != nil {
		cfg := d.TLS.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("kconn %s: TLS: %w: %w", addr, ErrAuthentication, err)
		}
		nc = tc
	}
	c := &Conn{nc: nc, clientID: clientID}
	if d.SASL != nil {
		if err := c.authenticate(ctx, addr, d.SASL); err != nil {
			nc.Close()
			return nil, fmt.Errorf("kconn %s: SASL %s: %w", addr, d.SASL.Name(), err)
		}
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// authenticate runs SaslHandshake v1 and the mechanism's exchange in
// SaslAuthenticate v1 requests.
func (c *Conn) authenticate(ctx context.Context, addr string, m sasl.Mechanism) error {
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version = 1
	hs.Mechanism = m.Name()
	resp, err := c.roundTrip(hs)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.(*kmsg.SASLHandshakeResponse).ErrorCode); err != nil {
		return fmt.Errorf("%w: %w (enabled: %v)", ErrAuthentication, err, resp.(*kmsg.SASLHandshakeResponse).SupportedMechanisms)
	}
	host, _, _ := net.SplitHostPort(addr)
	sess, tok, err := m.Authenticate(ctx, host)
	if err != nil {
		return err
	}
	for range 8 {
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version = 1
		req.SASLAuthBytes = tok
		r, err := c.roundTrip(req)
		if err != nil {
			return err
		}
		ar := r.(*kmsg.SASLAuthenticateResponse)
		if err := kerr.ErrorForCode(ar.ErrorCode); err != nil {
			msg := ""
			if ar.ErrorMessage != nil {
				msg = *ar.ErrorMessage
			}
			return fmt.Errorf("%w: %w: %s", ErrAuthentication, err, msg)
		}
		done, next, err := sess.Challenge(ar.SASLAuthBytes)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrAuthentication, err)
		}
		if done {
			return nil
		}
		tok = next
	}
	return fmt.Errorf("%w: the exchange did not finish", ErrAuthentication)
}

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
