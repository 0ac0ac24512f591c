package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/internal/kconn"
)

// FetcherConfig configures the follower fetchers (Kafka's replica.fetch.*
// settings).
type FetcherConfig struct {
	ReplicaID int32 // this broker: the Fetch and OffsetsForLeaderEpoch replica id
	// Resolve gives a broker's inter-broker address (host:port).
	Resolve           func(broker int32) (string, bool)
	MaxWait           time.Duration // replica.fetch.wait.max.ms (500 ms)
	MinBytes          int32         // replica.fetch.min.bytes (1)
	MaxBytes          int32         // replica.fetch.response.max.bytes (10 MiB)
	PartitionMaxBytes int32         // replica.fetch.max.bytes (1 MiB)
	Backoff           time.Duration // replica.fetch.backoff.ms (1 s)
	RequestTimeout    time.Duration // on top of MaxWait (30 s)
	Logger            *slog.Logger
	// Dialer secures connections to leaders (the inter-broker listener's
	// TLS and SASL); nil dials plaintext.
	Dialer *kconn.Dialer
	// Clock times the back-offs (nil: clock.Real).
	Clock clock.Clock
}

func (c *FetcherConfig) defaults() {
	if c.MaxWait <= 0 {
		c.MaxWait = 500 * time.Millisecond
	}
	if c.MinBytes <= 0 {
		c.MinBytes = 1
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 10 << 20
	}
	if c.PartitionMaxBytes <= 0 {
		c.PartitionMaxBytes = 1 << 20
	}
	if c.Backoff <= 0 {
		c.Backoff = time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = clock.Real
	}
}

// Fetchers runs one fetcher goroutine per source broker (a leader this
// broker follows partitions of). Each fetcher loops: ask every partition it
// serves for its next request (Partition.NextRequest), send the
// OffsetsForLeaderEpoch queries and the fetches in one request each, and
// hand the answers back to the partitions. Safe for concurrent use.
type Fetchers struct {
	cfg      FetcherConfig
	mu       sync.Mutex
	byLeader map[int32]*fetcher
	leaderOf map[*Partition]int32
	closed   bool
}

// NewFetchers returns an idle set of fetchers.
func NewFetchers(cfg FetcherConfig) *Fetchers {
	cfg.defaults()
	return &Fetchers{cfg: cfg, byLeader: map[int32]*fetcher{}, leaderOf: map[*Partition]int32{}}
}

// Follow makes p fetched from leader, moving it off any other fetcher, and
// wakes the fetcher (a new state means new requests).
func (fs *Fetchers) Follow(p *Partition, leader int32) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.closed {
		return
	}
	if old, ok := fs.leaderOf[p]; ok && old != leader {
		fs.removeLocked(p, old)
	}
	fs.leaderOf[p] = leader
	f := fs.byLeader[leader]
	if f == nil {
		f = newFetcher(fs, leader)
		fs.byLeader[leader] = f
		go f.run()
	}
	f.add(p)
}

// Unfollow stops fetching p.
func (fs *Fetchers) Unfollow(p *Partition) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if old, ok := fs.leaderOf[p]; ok {
		fs.removeLocked(p, old)
		delete(fs.leaderOf, p)
	}
}

func (fs *Fetchers) removeLocked(p *Partition, leader int32) {
	f := fs.byLeader[leader]
	if f == nil {
		return
	}
	if f.remove(p) == 0 {
		delete(fs.byLeader, leader)
		f.close()
	}
}

// Following reports how many partitions are fetched, per source broker.
func (fs *Fetchers) Following() map[int32]int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := map[int32]int{}
	for _, l := range fs.leaderOf {
		out[l]++
	}
	return out
}

// Close stops every fetcher and waits for them.
func (fs *Fetchers) Close() {
	fs.mu.Lock()
	fs.closed = true
	fetchers := fs.byLeader
	fs.byLeader = map[int32]*fetcher{}
	fs.leaderOf = map[*Partition]int32{}
	fs.mu.Unlock()
	for _, f := range fetchers {
		f.close()
	}
	for _, f := range fetchers {
		<-f.done
	}
}

// fetcher fetches every partition this broker follows on one leader.
type fetcher struct {
	fs     *Fetchers
	leader int32
	log    *slog.Logger

	mu    sync.Mutex
	parts map[*Partition]*fetchEntry
	// members moves when a partition is added or removed, or enters or
	// leaves a back-off.
	members   uint64
	collected uint64 // members as of the last collect
	// changed is set when a partition's request may have changed
	// (Partition.reqWatch); backingOff counts the partitions the last
	// collect skipped for their back-off.
	changed    atomic.Bool
	backingOff int
	scans      int // collects that looked at every partition (tests)
	wake       chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	conn   *kconn.Conn
	sess   fetchSession // the fetch session with the leader (fetch_session.go)
	// The last round's requests, their slices reused by the next (the
	// fetcher's goroutine only): an idle follower of thousands of
	// partitions allocated them anew twice a second.
	queryBuf, fetchBuf []pendingReq
}

func newFetcher(fs *Fetchers, leader int32) *fetcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &fetcher{
		fs: fs, leader: leader, log: fs.cfg.Logger.With("component", "replica-fetcher", "source_broker", leader),
		parts: map[*Partition]*fetchEntry{}, wake: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
}

// fetchEntry is a partition of a fetcher: its back-off, and its last
// request with the RequestState it was made at (reused while it stays).
type fetchEntry struct {
	notBefore time.Time
	state     uint64
	cached    bool
	req       FollowerRequest
	backedOff bool // skipped by the last collect for its back-off
}

func (f *fetcher) add(p *Partition) {
	f.mu.Lock()
	f.parts[p] = &fetchEntry{}
	f.members++
	p.reqWatch.Store(&f.changed)
	f.mu.Unlock()
	f.poke()
}

func (f *fetcher) remove(p *Partition) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.parts[p]; ok {
		delete(f.parts, p)
		f.members++
		p.reqWatch.CompareAndSwap(&f.changed, nil)
	}
	return len(f.parts)
}

func (f *fetcher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fetcher) close() { f.cancel() }

// pendingReq is one partition's request in a round.
type pendingReq struct {
	p   *Partition
	req FollowerRequest
}

func (f *fetcher) run() {
	defer close(f.done)
	defer func() {
		if f.conn != nil {
			f.conn.Close()
		}
	}()
	for f.ctx.Err() == nil {
		queries, fetches, next, same := f.collect()
		if len(queries) == 0 && len(fetches) == 0 {
			wait := 250 * time.Millisecond
			if !next.IsZero() {
				wait = min(wait, max(next.Sub(f.fs.cfg.Clock.Now()), time.Millisecond))
			}
			f.sleep(wait, true)
			continue
		}
		if err := f.ensureConn(); err != nil {
			if errors.Is(err, kconn.ErrAuthentication) {
				f.log.Error("authenticating to the leader failed (inter-broker listener security)", "err", err)
			} else {
				f.log.Debug("connecting to leader failed", "err", err)
			}
			f.sleep(f.fs.cfg.Backoff, false)
			continue
		}
		if len(queries) > 0 {
			if err := f.sendQueries(queries); err != nil {
				f.transportError(err)
				continue
			}
		}
		if len(fetches) > 0 {
			if err := f.sendFetch(fetches, same); err != nil {
				f.transportError(err)
			}
		}
	}
}

func (f *fetcher) transportError(err error) {
	if f.ctx.Err() != nil {
		return
	}
	f.log.Info("request to leader failed", "err", err)
	f.sess.reset()
	if f.conn != nil {
		f.conn.Close()
		f.conn = nil
	}
	f.sleep(f.fs.cfg.Backoff, false)
}

// sleep waits d, or less when woken (if wakeable) or stopped.
func (f *fetcher) sleep(d time.Duration, wakeable bool) {
	t := clock.NewTimer(f.fs.cfg.Clock, d)
	defer t.Stop()
	if wakeable {
		select {
		case <-t.C:
		case <-f.wake:
		case <-f.ctx.Done():
		}
		return
	}
	select {
	case <-t.C:
	case <-f.ctx.Done():
	}
}

// collect asks every partition for its next request; next is the earliest
// back-off deadline among the skipped ones. same reports that the requests
// are those of the last collect, for the same partitions: a partition's
// last request is reused while its RequestState and log start stay, so an
// idle follower of thousands of partitions takes no lock per partition.
func (f *fetcher) collect() (queries, fetches []pendingReq, next time.Time, same bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Nothing changed since the last collect (no partition's request, no
	// partition added, removed or backing off): its requests again,
	// without looking at any partition.
	if !f.changed.Swap(false) && f.collected == f.members && f.backingOff == 0 {
		return f.queryBuf, f.fetchBuf, time.Time{}, true
	}
	queries, fetches = f.queryBuf[:0], f.fetchBuf[:0]
	defer func() { f.queryBuf, f.fetchBuf = queries, fetches }()
	now := f.fs.cfg.Clock.Now()
	members := f.members
	same = true
	f.backingOff = 0
	f.scans++
	for p, e := range f.parts {
		if now.Before(e.notBefore) {
			if next.IsZero() || e.notBefore.Before(next) {
				next = e.notBefore
			}
			if !e.backedOff {
				e.backedOff = true
				f.members++
			}
			f.backingOff++
			continue
		}
		if e.backedOff {
			e.backedOff = false
			f.members++
		}
		st := p.RequestState()
		if !e.cached || e.state != st {
			e.req, e.state, e.cached = p.NextRequest(), st, true
			same = false
		}
		req := e.req
		if req.Leader != f.leader {
			continue
		}
		switch req.Kind {
		case RequestEpochQuery:
			queries = append(queries, pendingReq{p, req})
		case RequestFetch:
			fetches = append(fetches, pendingReq{p, req})
		}
	}
	same = same && members == f.members && f.collected == members
	f.collected = f.members
	return queries, fetches, next, same
}

func (f *fetcher) backoff(p *Partition) {
	f.mu.Lock()
	if e, ok := f.parts[p]; ok {
		e.notBefore = f.fs.cfg.Clock.Now().Add(f.fs.cfg.Backoff)
		e.cached = false // asked again once the back-off ends
		f.changed.Store(true)
	}
	f.mu.Unlock()
}

func (f *fetcher) ensureConn() error {
	if f.conn != nil && !f.conn.Closed() {
		return nil
	}
	addr, ok := f.fs.cfg.Resolve(f.leader)
	if !ok {
		return fmt.Errorf("no address for broker %d", f.leader)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	c, err := f.fs.cfg.Dialer.Dial(ctx, addr, fmt.Sprintf("kvlog-replica-fetcher-%d", f.fs.cfg.ReplicaID))
	if err != nil {
		return err
	}
	f.conn = c
	return nil
}

func (f *fetcher) request(req kmsg.Request, wait time.Duration) (kmsg.Response, error) {
	ctx, cancel := context.WithTimeout(f.ctx, wait+f.fs.cfg.RequestTimeout)
	defer cancel()
	return f.conn.Request(ctx, req)
}

type tpKey struct {
	topic     string
	partition int32
}

// keyOf is p's key, kept in p: a fetch of thousands of partitions touches
// no log for it.
func keyOf(p *Partition) tpKey { return p.key }

// groupByTopic indexes requests by partition and adds them to a request
// grouped by topic: addTopic appends a topic entry and returns its index,
// addPartition appends a partition to the topic entry at index i.
func groupByTopic(qs []pendingReq, addTopic func(topic string) int, addPartition func(i int, k tpKey, q pendingReq)) map[tpKey]pendingReq {
	byKey := make(map[tpKey]pendingReq, len(qs))
	topics := map[string]int{}
	for _, q := range qs {
		k := keyOf(q.p)
		byKey[k] = q
		i, ok := topics[k.topic]
		if !ok {
			i = addTopic(k.topic)
			topics[k.topic] = i
		}
		addPartition(i, k, q)
	}
	return byKey
}

func (f *fetcher) sendQueries(qs []pendingReq) error {
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.Version = 3
	req.ReplicaID = f.fs.cfg.ReplicaID
	byKey := groupByTopic(qs, func(topic string) int {
		t := kmsg.NewOffsetForLeaderEpochRequestTopic()
		t.Topic = topic
		req.Topics = append(req.Topics, t)
		return len(req.Topics) - 1
	}, func(i int, k tpKey, q pendingReq) {
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.Partition = k.partition
		rp.CurrentLeaderEpoch = q.req.CurrentLeaderEpoch
		rp.LeaderEpoch = q.req.Epoch
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	})
	kresp, err := f.request(req, 0)
	if err != nil {
		return err
	}
	resp := kresp.(*kmsg.OffsetForLeaderEpochResponse)
	for _, t := range resp.Topics {
		for _, sp := range t.Partitions {
			q, ok := byKey[tpKey{t.Topic, sp.Partition}]
			if !ok {
				continue
			}
			if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
				f.partitionError(q, err, -1, -1)
				continue
			}
			if err := q.p.HandleEpochAnswer(q.req, EpochEndOffset{Epoch: sp.LeaderEpoch, EndOffset: Offset(sp.EndOffset)}); err != nil {
				f.log.Error("truncation failed", "partition", q.p.Log().TopicPartition(), "err", err)
				f.backoff(q.p)
			}
		}
	}
	return nil
}

func (f *fetcher) sendFetch(fs []pendingReq, same bool) error {
	cfg := &f.fs.cfg
	req := kmsg.NewPtrFetchRequest()
	req.Version = 12
	req.ReplicaID = cfg.ReplicaID
	req.MaxWaitMillis = int32(cfg.MaxWait / time.Millisecond)
	req.MinBytes = cfg.MinBytes
	req.MaxBytes = cfg.MaxBytes
	next := f.sess.build(req, fs, cfg.PartitionMaxBytes, same)
	kresp, err := f.request(req, cfg.MaxWait)
	if err != nil {
		return err
	}
	resp := kresp.(*kmsg.FetchResponse)
	f.sess.answered(resp, next)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		if sessionError(err) {
			f.log.Debug("fetch session lost; starting a new one", "err", err)
			return nil // the next fetch is full
		}
		return fmt.Errorf("fetch: %w", err)
	}
	// Indexed only when the answer lists a partition (an idle session's
	// lists none).
	var byKey map[tpKey]pendingReq
	for _, t := range resp.Topics {
		for _, sp := range t.Partitions {
			if byKey == nil {
				byKey = make(map[tpKey]pendingReq, len(fs))
				for _, q := range fs {
					byKey[keyOf(q.p)] = q
				}
			}
			q, ok := byKey[tpKey{t.Topic, sp.Partition}]
			if !ok {
				continue
			}
			if err := kerr.ErrorForCode(sp.ErrorCode); err != nil {
				f.partitionError(q, err, Offset(sp.LogStartOffset), Offset(sp.HighWatermark))
				continue
			}
			if err := q.p.HandleFetchAnswer(q.req, sp.RecordBatches, Offset(sp.HighWatermark), Offset(sp.LogStartOffset)); err != nil {
				f.log.Error("appending fetched batches failed", "partition", q.p.Log().TopicPartition(), "err", err)
				f.backoff(q.p)
			}
		}
	}
	return nil
}

// partitionError handles one partition's error from the leader.
func (f *fetcher) partitionError(q pendingReq, err error, logStart, hw Offset) {
	tp := q.p.Log().TopicPartition()
	switch {
	case errors.Is(err, kerr.FencedLeaderEpoch):
		// Routine while leaders move (one line per partition of a
		// fail-over otherwise): the new state follows.
		f.log.Debug("leader fenced our leader epoch; waiting for a newer partition state", "partition", tp, "epoch", q.req.CurrentLeaderEpoch)
		q.p.HandleFenced(q.req)
	case errors.Is(err, kerr.OffsetOutOfRange) && hw >= 0 && logStart >= 0:
		// The response carries the leader's log start and HW; the HW is a
		// lower bound of its LEO, so truncating to it is safe.
		if herr := q.p.HandleOutOfRange(q.req, logStart, hw); herr != nil {
			f.log.Error("handling out-of-range fetch failed", "partition", tp, "err", herr)
			f.backoff(q.p)
		}
	default:
		f.log.Debug("partition error from leader", "partition", tp, "err", err)
		f.backoff(q.p)
	}
}
