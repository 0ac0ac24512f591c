package zkstore

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/server/metastore"
)

// cutProxy is a TCP proxy on 127.0.0.1 in front of ZooKeeper that can
// hold what clients send, cut the live connections, and refuse new ones
// (accepting and closing them at once), so that a test can drop a
// session's connection while a request is in flight.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   []net.Conn
	accepts int
	hold    bool   // keep what clients send instead of forwarding it
	held    []byte // what was kept
	refuse  bool
	changed chan struct{} // closed and replaced on every event
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target, changed: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		p.cut()
	})
	return p
}

func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

// event wakes the waiters; p.mu is held.
func (p *cutProxy) event() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *cutProxy) serve(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepts++
	p.event()
	if p.refuse {
		c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.conns = append(p.conns, c, up)
	go func() { _, _ = io.Copy(c, up); c.Close() }()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				p.mu.Lock()
				hold := p.hold
				if hold {
					p.held = append(p.held, buf[:n]...)
					p.event()
				}
				p.mu.Unlock()
				if !hold {
					if _, err := up.Write(buf[:n]); err != nil {
						break
					}
				}
			}
			if err != nil {
				break
			}
		}
		up.Close()
	}()
}

// cut closes every live connection (what was held is dropped) and stops
// holding.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.hold, p.held = false, nil
	p.event()
}

func (p *cutProxy) set(f func(p *cutProxy)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
	p.event()
}

// waitFor waits (bounded) until cond, evaluated under p.mu, holds.
func (p *cutProxy) waitFor(what string, cond func(p *cutProxy) bool) {
	p.t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ok, ch := cond(p), p.changed
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			p.t.Fatalf("proxy: no %s within 30s", what)
		}
	}
}

// testConnectionLoss: a read in flight when the connection to ZooKeeper
// drops is sent again once the client has reconnected with the same
// session, returns the data, and the watch it sets works; a read that
// spans a session expiry fails with zk.ErrSessionExpired.
func testConnectionLoss(t *testing.T, zkAddr, chroot string) {
	direct := open(t, zkAddr+chroot, 2, 10*time.Second)
	if err := direct.CreateTopic(metastore.Topic{Name: "t", Partitions: 1, ReplicationFactor: 1, Assignment: [][]int32{{1}}}); err != nil {
		t.Fatal(err)
	}

	t.Run("InFlightRead", func(t *testing.T) {
		px := newCutProxy(t, zkAddr)
		s := open(t, px.Addr()+chroot, 1, 10*time.Second)
		sid := s.SessionID()
		px.set(func(p *cutProxy) { p.hold = true })
		type result struct {
			a   TopicAssignment
			ch  <-chan zk.Event
			err error
		}
		res := make(chan result, 1)
		go func() {
			a, ch, err := s.AssignmentW("t")
			res <- result{a, ch, err}
		}()
		path := []byte(s.p(topicPath("t")))
		px.waitFor("read request", func(p *cutProxy) bool { return bytes.Contains(p.held, path) })
		accepts := 0
		px.set(func(p *cutProxy) { accepts = p.accepts })
		px.cut()
		var r result
		select {
		case r = <-res:
		case <-time.After(30 * time.Second):
			t.Fatal("the read did not return within 30s")
		}
		if r.err != nil {
			t.Fatalf("read across a dropped connection: %v", r.err)
		}
		if len(r.a.Replicas) != 1 || r.a.Replicas[0][0] != 1 {
			t.Fatalf("assignment %+v", r.a)
		}
		px.waitFor("reconnection", func(p *cutProxy) bool { return p.accepts > accepts })
		if s.SessionID() != sid {
			t.Fatalf("session 0x%x replaced by 0x%x", sid, s.SessionID())
		}
		// The retried read set its watch.
		if err := direct.AddPartitions("t", [][]int32{{1}}, r.a.Version); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-r.ch:
			if ev.Type != zk.EventNodeDataChanged {
				t.Fatalf("watch event %+v", ev)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the watch set by the retried read did not fire within 30s")
		}
	})

	t.Run("SessionExpired", func(t *testing.T) {
		px := newCutProxy(t, zkAddr)
		s := open(t, px.Addr()+chroot, 3, 4*time.Second)
		eph := s.p("/expiry-probe")
		if _, err := s.conn.Create(eph, nil, zk.FlagEphemeral, openACL); err != nil {
			t.Fatal(err)
		}
		retried := make(chan error, 100)
		s.retryHook = func(err error) {
			select {
			case retried <- err:
			default:
			}
		}
		px.set(func(p *cutProxy) { p.refuse = true })
		px.cut()
		// The server expires the session: its ephemeral znode goes.
		deadline := time.After(30 * time.Second)
		for {
			ok, _, ch, err := direct.existsW(eph)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			select {
			case <-ch:
			case <-deadline:
				t.Fatal("the session did not expire within 30s")
			}
		}
		res := make(chan error, 1)
		go func() {
			_, err := s.Assignment("t")
			res <- err
		}()
		select {
		case <-retried: // the read is waiting for a connection
		case err := <-res:
			t.Fatalf("the read returned while disconnected: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("the read was not retried within 30s")
		}
		px.set(func(p *cutProxy) { p.refuse = false })
		select {
		case err := <-res:
			if !errors.Is(err, zk.ErrSessionExpired) {
				t.Fatalf("a read across a session expiry: %v, want %v", err, zk.ErrSessionExpired)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the read did not return within 30s")
		}
	})
}
