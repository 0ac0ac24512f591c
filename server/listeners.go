package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/config"
)

// listener is one bound listener with the endpoint advertised for it.
type listener struct {
	name    string
	ln      net.Listener
	advHost string
	advPort int32
	sec     *config.ListenerSecurity // protocol, TLS and SASL settings (security.go)
}

// bindListeners binds every configured listener (New calls it first).
// Listener ports of 0 pick a free port, which Metadata then advertises.
func (s *Server) bindListeners() error {
	var lc net.ListenConfig
	for _, l := range s.cfg.Listeners {
		ln, err := lc.Listen(context.Background(), "tcp", l.Addr())
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listener %s: %w", l, err)
		}
		sl := &listener{name: l.Name, ln: ln}
		for _, a := range s.cfg.AdvertisedListeners {
			if a.Name == l.Name {
				sl.advHost, sl.advPort = a.Host, int32(a.Port)
			}
		}
		if sl.advPort == 0 {
			sl.advPort = int32(ln.Addr().(*net.TCPAddr).Port)
		}
		s.lnMu.Lock()
		s.listeners = append(s.listeners, sl)
		s.lnMu.Unlock()
	}
	return nil
}

// ListenerAddrs returns the bound address of every listener, by name.
func (s *Server) ListenerAddrs() map[string]net.Addr {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	out := map[string]net.Addr{}
	for _, l := range s.listeners {
		out[l.name] = l.ln.Addr()
	}
	return out
}

// acceptLoop accepts connections until the listener closes. A failed accept
// (EMFILE/ENFILE when the process is out of file descriptors, ENOBUFS, …)
// is retried with a back-off doubling from 5 ms to 1 s, as net/http's
// server does, so the loop does not spin while descriptors are short; it is
// logged at ERROR at most once per acceptLogEvery and counted in
// kvlog_accept_errors_total. Connections beyond max.connections or
// max.connections.per.ip are closed at once (counted in
// kvlog_connections_refused_total).
func (s *Server) acceptLoop(l *listener) {
	defer s.connWG.Done()
	var (
		backoff    time.Duration
		lastLog    time.Time
		suppressed int
	)
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.metrics.AcceptErrors.WithLabelValues(l.name).Inc()
			if now := s.clock.Now(); now.Sub(lastLog) >= acceptLogEvery {
				s.logger.Error("accept failed; retrying with back-off", "listener", l.name, "err", err,
					"retry_in", backoff, "suppressed_since_last_log", suppressed)
				lastLog, suppressed = now, 0
			} else {
				suppressed++
			}
			s.pauseAccepting(backoff)
			continue
		}
		backoff = 0
		ip := remoteIP(nc)
		s.lnMu.Lock()
		if s.closing.Load() {
			s.lnMu.Unlock()
			nc.Close()
			return
		}
		if reason := s.refuseLocked(ip); reason != "" {
			s.lnMu.Unlock()
			s.metrics.ConnectionsRefused.WithLabelValues(reason).Inc()
			s.logger.Debug("connection limit reached; closing new connection", "limit", reason, "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		pause, refuse := s.quotas.acceptThrottle(ip)
		if refuse {
			s.lnMu.Unlock()
			s.metrics.ConnectionsRefused.WithLabelValues("connection_creation_rate").Inc()
			s.logger.Debug("connection creation rate of the address exceeded; closing new connection", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		c := newConn(s, l, nc)
		s.conns[c] = struct{}{}
		s.connsByIP[c.ip]++
		s.connWG.Add(1)
		s.lnMu.Unlock()
		s.metrics.Connections.Inc()
		go c.serve()
		// max.connection.creation.rate: accept the next one later.
		if pause > 0 {
			s.pauseAccepting(pause)
		}
	}
}

// pauseAccepting waits d on the broker's clock, or less when the broker
// starts closing.
func (s *Server) pauseAccepting(d time.Duration) {
	t := clock.NewTimer(s.clock, d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.closingCh:
	}
}

// acceptLogEvery rate-limits the accept error log.
const acceptLogEvery = 10 * time.Second

// refuseLocked names the connection limit a new connection from ip would
// pass, or "". Caller holds lnMu.
func (s *Server) refuseLocked(ip string) string {
	switch {
	case len(s.conns) >= s.cfg.MaxConnections:
		return "max.connections"
	case s.connsByIP[ip] >= s.cfg.MaxConnectionsPerIP:
		return "max.connections.per.ip"
	}
	return ""
}

func (s *Server) removeConn(c *conn) {
	s.lnMu.Lock()
	delete(s.conns, c)
	if s.connsByIP[c.ip]--; s.connsByIP[c.ip] <= 0 {
		delete(s.connsByIP, c.ip)
	}
	s.lnMu.Unlock()
	s.metrics.Connections.Dec()
	s.connWG.Done()
}

func (s *Server) closeListeners() {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	for _, l := range s.listeners {
		l.ln.Close()
	}
}
