package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/kconn"
	"github.com/kvlog/kvlog/server/zkstore"
)

// Dialer opens the controller's connections to brokers. The real one
// (KafkaDialer) speaks the Kafka protocol over TCP; the tests record the
// requests and script the answers.
type Dialer interface {
	// Dial connects to broker b (at its first endpoint). An error means
	// the broker cannot be reached now: the sender tries again after a
	// backoff, for as long as the broker is registered.
	Dial(ctx context.Context, b zkstore.Broker) (Conn, error)
}

// Conn is one connection to a broker, used by one sender goroutine at a
// time.
type Conn interface {
	// Request sends req (LeaderAndIsr, UpdateMetadata or StopReplica, at
	// the version set in it) and returns the broker's response. An error
	// means there was no response (connection lost, ctx ended: the
	// controller's request timeout): the connection is then closed and the
	// sender sends the same request again on a new one. A response whose
	// top-level error code is set (the broker refused the request, e.g.
	// STALE_CONTROLLER_EPOCH) is final.
	Request(ctx context.Context, req kmsg.Request) (kmsg.Response, error)
	// Closed reports whether the connection is closed (a new one is needed).
	Closed() bool
	Close() error
}

// KafkaDialer dials brokers over TCP with kconn.
type KafkaDialer struct {
	// ClientID is the client id of the requests.
	ClientID string
	// Timeout bounds connecting (5 s when zero).
	Timeout time.Duration
	// Secure secures the connections (the inter-broker listener's TLS
	// and SASL); nil dials plaintext.
	Secure *kconn.Dialer
}

// Dial implements Dialer.
func (d KafkaDialer) Dial(ctx context.Context, b zkstore.Broker) (Conn, error) {
	ep, _ := b.Endpoint("")
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := d.Secure.Dial(dctx, fmt.Sprintf("%s:%d", ep.Host, ep.Port), d.ClientID)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// sender delivers requests to one broker in order, retrying on connection
// errors until the broker is gone (the sender is closed).
type sender struct {
	c      *Controller
	id     int32
	broker zkstore.Broker
	queue  chan outbound
	ctx    context.Context
	cancel context.CancelFunc
	// queued counts the requests queued, by API key (the loop's; tests).
	queued map[int16]int
}

// outbound is a queued request; done is closed once the broker answered it.
type outbound struct {
	req  kmsg.Request
	done chan struct{}
}

// delivery tracks a sent request: done is closed once the broker answered
// it (whatever the answer: a refusal is final too); the sender's context
// ends when it gives up on the broker.
type delivery struct {
	s    *sender
	done <-chan struct{}
	// leads: a LeaderAndIsr naming the broker leader of a partition.
	leads bool
}

func newSender(c *Controller, b zkstore.Broker) *sender {
	ctx, cancel := context.WithCancel(c.ctx)
	s := &sender{c: c, id: b.ID, broker: b, queue: make(chan outbound, 1024), ctx: ctx, cancel: cancel, queued: map[int16]int{}}
	go s.run()
	return s
}

func (s *sender) send(req kmsg.Request) delivery {
	s.queued[req.Key()]++
	done := make(chan struct{})
	select {
	case s.queue <- outbound{req: req, done: done}:
	default:
		s.c.log.Error("controller request queue full; dropping request", "broker", s.id, "api", kmsg.NameForKey(req.Key()))
		close(done) // nothing to wait for
	}
	return delivery{s: s, done: done}
}

func (s *sender) close() { s.cancel() }

func (s *sender) run() {
	var conn Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		var out outbound
		select {
		case <-s.ctx.Done():
			return
		case out = <-s.queue:
		}
		req := out.req
		for attempt := 0; ; attempt++ {
			if s.ctx.Err() != nil {
				return
			}
			if conn == nil || conn.Closed() {
				c, err := s.c.cfg.Dialer.Dial(s.ctx, s.broker)
				if err != nil {
					if errors.Is(err, kconn.ErrAuthentication) {
						s.c.log.Error("controller: authenticating to a broker failed", "broker", s.id, "err", err)
					}
					s.backoff(attempt)
					continue
				}
				conn = c
			}
			rctx, cancel := context.WithTimeout(s.ctx, s.c.cfg.RequestTimeout)
			resp, err := conn.Request(rctx, req)
			cancel()
			if err != nil {
				s.c.log.Debug("controller request failed; retrying", "broker", s.id, "api", kmsg.NameForKey(req.Key()), "err", err)
				s.backoff(attempt)
				continue
			}
			if code := topErrorCode(resp); code != 0 {
				s.c.log.Warn("broker refused controller request", "broker", s.id, "api", kmsg.NameForKey(req.Key()), "err", kerr.ErrorForCode(code))
			} else if lr, ok := resp.(*kmsg.LeaderAndISRResponse); ok {
				s.leaderAndIsrAnswered(lr)
			}
			close(out.done)
			break
		}
	}
}

// leaderAndIsrAnswered hands the loop the partitions the broker answered
// with KAFKA_STORAGE_ERROR and without error.
func (s *sender) leaderAndIsrAnswered(resp *kmsg.LeaderAndISRResponse) {
	ev := event{kind: evLeaderAndIsrResponse, from: s}
	add := func(p kmsg.LeaderAndISRResponseTopicPartition) {
		tp := zkstore.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		switch p.ErrorCode {
		case 0:
			ev.online = append(ev.online, tp)
		case kerr.KafkaStorageError.Code:
			ev.offline = append(ev.offline, tp)
		}
	}
	for _, p := range resp.Partitions {
		add(p)
	}
	for _, t := range resp.Topics { // v5+ (kvlog sends v4)
		for _, p := range t.Partitions {
			add(p)
		}
	}
	if len(ev.offline) == 0 && len(ev.online) == 0 {
		return
	}
	select {
	case s.c.events <- ev:
	case <-s.ctx.Done():
	}
}

func (s *sender) backoff(attempt int) {
	d := min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}

func topErrorCode(resp kmsg.Response) int16 {
	switch r := resp.(type) {
	case *kmsg.LeaderAndISRResponse:
		return r.ErrorCode
	case *kmsg.UpdateMetadataResponse:
		return r.ErrorCode
	case *kmsg.StopReplicaResponse:
		return r.ErrorCode
	}
	return 0
}
