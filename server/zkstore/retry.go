package zkstore

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-zookeeper/zk"
)

// Requests across a lost connection.
//
// A ZooKeeper session outlives its TCP connection: when the connection
// drops (a missed ping on a loaded machine, a server restart), the client
// reconnects and resumes the same session, with its ephemeral znodes and
// watches, as long as it does so within the session timeout. Apache
// Kafka's ZooKeeper client therefore does not fail a request on a lost
// connection: the request waits for the session to reconnect, and only a
// session expiry fails it.
//
// go-zookeeper fails every request in flight at once when the connection
// drops (zk.ErrConnectionClosed), fails requests queued while it cycles
// through the servers without reaching one (zk.ErrNoServer), and hands a
// socket error from writing a request to its caller. The store's reads
// (and the writes that are idempotent) go through Store.retry, which sends
// them again on those errors, with a short backoff, within the same
// session, for at most the session timeout. Any other error returns at
// once, and so does a session expiry: zk.ErrSessionExpired, or a retry
// that would run on a new session (go-zookeeper opens one by itself after
// an expiry) — a request that spanned an expiry fails, as in Kafka, and
// the session listeners (OnNewSession) do what a new session needs.
//
// The bound is Options.SessionTimeout, counted from the first failure:
// the server expires a session that long after it last heard from the
// client, so by then the session is gone (unless the server granted a
// longer timeout than asked, as it does below its minimum of two ticks),
// and the reconnection reports the expiry.
//
// Writes whose outcome is unknown after a lost connection (a create or
// multi that may have been applied, conditional sets, sequential
// notifications) are not retried here: each returns the error to its
// caller as before.
// The writes retried are those whose repetition is harmless: creating a
// persistent path whose existence is accepted, and deleting a znode
// whatever its version whose absence is accepted.

const (
	retryFirstBackoff = 25 * time.Millisecond
	retryMaxBackoff   = 500 * time.Millisecond
)

// connectionLost reports whether err means the connection to ZooKeeper
// was lost while the session may still be valid.
func connectionLost(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// retry runs op, an idempotent ZooKeeper request, and runs it again while
// it fails because the connection was lost (see above).
func (s *Store) retry(op func() error) error {
	sid := s.conn.SessionID()
	err := op()
	if !connectionLost(err) {
		return err
	}
	deadline := time.Now().Add(s.opts.SessionTimeout)
	backoff := retryFirstBackoff
	for attempt := 1; ; attempt++ {
		if s.isClosed() {
			return err
		}
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 {
			return fmt.Errorf("%w (no connection to ZooKeeper within the session timeout %v, %d attempts)",
				err, s.opts.SessionTimeout, attempt)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return err
		}
		backoff = min(2*backoff, retryMaxBackoff)
		if cur := s.conn.SessionID(); cur != sid {
			return expiredDuring(sid, cur, err)
		}
		if h := s.retryHook; h != nil {
			h(err)
		}
		lost := err
		err = op()
		if !connectionLost(err) {
			if cur := s.conn.SessionID(); cur != sid && !errors.Is(err, zk.ErrSessionExpired) {
				// Sent after go-zookeeper replaced an expired session.
				return expiredDuring(sid, cur, lost)
			}
			return err
		}
	}
}

// expiredDuring is the error of a request that spanned a session expiry.
func expiredDuring(old, cur int64, lost error) error {
	return fmt.Errorf("%w (session 0x%x replaced by 0x%x after the connection was lost: %v)", zk.ErrSessionExpired, old, cur, lost)
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// The store's reads, each retried across a lost connection.

func (s *Store) get(full string) (data []byte, st *zk.Stat, err error) {
	err = s.retry(func() (err error) {
		data, st, err = s.conn.Get(full)
		return err
	})
	return data, st, err
}

func (s *Store) getW(full string) (data []byte, st *zk.Stat, ch <-chan zk.Event, err error) {
	err = s.retry(func() (err error) {
		data, st, ch, err = s.conn.GetW(full)
		return err
	})
	return data, st, ch, err
}

func (s *Store) children(full string) (names []string, st *zk.Stat, err error) {
	err = s.retry(func() (err error) {
		names, st, err = s.conn.Children(full)
		return err
	})
	return names, st, err
}

func (s *Store) childrenW(full string) (names []string, st *zk.Stat, ch <-chan zk.Event, err error) {
	err = s.retry(func() (err error) {
		names, st, ch, err = s.conn.ChildrenW(full)
		return err
	})
	return names, st, ch, err
}

func (s *Store) exists(full string) (ok bool, st *zk.Stat, err error) {
	err = s.retry(func() (err error) {
		ok, st, err = s.conn.Exists(full)
		return err
	})
	return ok, st, err
}

func (s *Store) existsW(full string) (ok bool, st *zk.Stat, ch <-chan zk.Event, err error) {
	err = s.retry(func() (err error) {
		ok, st, ch, err = s.conn.ExistsW(full)
		return err
	})
	return ok, st, ch, err
}

func (s *Store) sync(full string) error {
	return s.retry(func() error {
		_, err := s.conn.Sync(full)
		return err
	})
}

// The idempotent writes, retried the same way.

// createPersistent creates a persistent znode; one that exists already
// (created by someone else, or by this very request before the connection
// dropped) is no error.
func (s *Store) createPersistent(full string, data []byte, acl []zk.ACL) error {
	err := s.retry(func() error {
		_, err := s.conn.Create(full, data, 0, acl)
		if errors.Is(err, zk.ErrNodeExists) {
			return nil
		}
		return err
	})
	return err
}

// deleteAny deletes a znode whatever its version; an absent one (deleted
// by someone else, or by this very request before the connection dropped)
// is no error.
func (s *Store) deleteAny(full string) error {
	return s.retry(func() error {
		err := s.conn.Delete(full, -1)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		return err
	})
}
