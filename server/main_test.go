package server

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/kvlog/kvlog/server/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testBroker is an in-process broker on a free loopback port.
type testBroker struct {
	s    *Server
	addr string
	dir  string
}

// startBroker starts a broker with extra server.properties lines.
func startBroker(t testing.TB, extra ...string) *testBroker {
	t.Helper()
	dir := t.TempDir()
	return startBrokerIn(t, dir, extra...)
}

func startBrokerIn(t testing.TB, dir string, extra ...string) *testBroker {
	t.Helper()
	return startBrokerOpts(t, dir, Options{}, extra...)
}

// startBrokerOpts is startBrokerIn with options (a clock, a file system);
// the logger is the tests'.
func startBrokerOpts(t testing.TB, dir string, opts Options, extra ...string) *testBroker {
	t.Helper()
	// A 4 MiB offset map instead of Kafka's 128 MiB: the cleaner allocates
	// it when its thread starts, and the tests run many brokers.
	props := "listeners=PLAINTEXT://127.0.0.1:0\nlog.dirs=" + dir + "\nlog.cleaner.dedupe.buffer.size=4194304\n" + strings.Join(extra, "\n")
	pp, err := config.ParseProperties(strings.NewReader(props))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg, err := config.Parse(pp, logger)
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = logger
	s, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := &testBroker{s: s, addr: s.ListenerAddrs()["PLAINTEXT"].String(), dir: dir}
	t.Cleanup(func() { b.stop(t) })
	return b
}

func (b *testBroker) stop(t testing.TB) {
	if b.s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	b.s = nil
}

func (b *testBroker) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (b *testBroker) admin(t testing.TB) *kadm.Client {
	return kadm.NewClient(b.client(t))
}

// rawConn is a hand-driven protocol connection.
type rawConn struct {
	t  testing.TB
	nc net.Conn
}

func (b *testBroker) dial(t testing.TB) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, nc: nc}
}

// frame encodes a request frame with header v1/v2 as kmsg requires.
func frame(req kmsg.Request, corr int32, clientID string) []byte {
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func (c *rawConn) send(req kmsg.Request, corr int32) {
	c.t.Helper()
	if _, err := c.nc.Write(frame(req, corr, "test")); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawConn) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// readFrame reads one response frame.
func (c *rawConn) readFrame() ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(c.nc, b)
	return b, err
}

// recv reads a response for req (which must carry the version sent) and
// checks the correlation id.
func (c *rawConn) recv(req kmsg.Request, corr int32) kmsg.Response {
	c.t.Helper()
	b, err := c.readFrame()
	if err != nil {
		c.t.Fatalf("reading response %d: %v", corr, err)
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	got := int32(binary.BigEndian.Uint32(b))
	if got != corr {
		c.t.Fatalf("correlation id %d, want %d", got, corr)
	}
	b = b[4:]
	if resp.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		b = b[1:]
	}
	if err := resp.ReadFrom(b); err != nil {
		c.t.Fatalf("decoding response: %v", err)
	}
	return resp
}

// expectClosed asserts the broker closes the connection.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err := c.nc.Read(b[:])
	if err == nil {
		c.t.Fatal("connection still open")
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection not closed within 5s")
	}
}
