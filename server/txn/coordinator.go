package txn

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/kvlog/kvlog/internal/clock"
)

// Store is the coordinator's access to the __transaction_state
// partitions. Append and Replay of one partition are never called
// concurrently with each other by the coordinator; Sync may run
// concurrently with anything.
type Store interface {
	// Append writes records to the partition as one batch (creating the
	// topic if needed). It need not be durable yet. An error wrapping
	// ErrNotCoordinator says this broker does not lead the partition.
	Append(partition int32, recs []Record) error
	// Sync returns once everything appended so far is durable (past the
	// partition's high watermark).
	Sync(partition int32) error
	// Replay calls fn with every record of the partition, oldest first
	// (nothing when the topic does not exist). Record bytes are valid only
	// during the call.
	Replay(partition int32, fn func(Record)) error
}

// MarkerWriter writes transaction markers to partition leaders (the
// broker's WriteTxnMarkers, local or to other brokers).
type MarkerWriter interface {
	// WriteMarkers writes req's marker to each of its partitions and
	// calls done once, on any goroutine, with one error per partition
	// (nil: written and durable; ErrMarkerPartitionGone, ErrMarkerFenced,
	// or anything else, which is retried).
	WriteMarkers(req *MarkerRequest, done func(errs []error))
}

// Options are the coordinator's dependencies.
type Options struct {
	Clock  clock.Clock  // nil: clock.Real
	Logger *slog.Logger // nil: slog.Default()
	// NextProducerID allocates a producer id (never reused).
	NextProducerID func() (int64, error)
	// OffsetsPartition is the __consumer_offsets partition of a group
	// (AddOffsetsToTxn adds it to the transaction).
	OffsetsPartition func(group string) TopicPartition
	Markers          MarkerWriter
}

// Coordinator is the transaction coordinator: one shard per
// __transaction_state partition, each a core behind a mutex with a timer
// for its deadlines. All methods are safe for concurrent use.
type Coordinator struct {
	cfg    Config
	store  Store
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	shards []*shard
}

// shard runs the core of one partition; it serves only once loaded
// (otherwise NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS while
// loading).
type shard struct {
	co        *Coordinator
	partition int32

	mu      sync.Mutex
	core    *core
	loading bool
	closed  bool
	stop    func() bool // cancels the timer set on the clock (nil: none)
	armed   time.Time
}

// New returns a coordinator with no partition loaded.
func New(cfg Config, store Store, opts Options) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if opts.NextProducerID == nil || opts.Markers == nil || opts.OffsetsPartition == nil {
		return nil, errors.New("txn: NextProducerID, OffsetsPartition and Markers are required")
	}
	co := &Coordinator{cfg: cfg, store: store, opts: opts, clock: opts.Clock, log: opts.Logger}
	if co.clock == nil {
		co.clock = clock.Real
	}
	if co.log == nil {
		co.log = slog.Default()
	}
	for p := int32(0); p < cfg.Partitions; p++ {
		co.shards = append(co.shards, &shard{co: co, partition: p})
	}
	return co, nil
}

// Partitions is the number of __transaction_state partitions.
func (co *Coordinator) Partitions() int32 { return co.cfg.Partitions }

// PartitionFor is the __transaction_state partition of a transactional
// id: abs(Java String.hashCode(id)) mod partitions, as Kafka computes it.
func (co *Coordinator) PartitionFor(id string) int32 { return PartitionFor(id, co.cfg.Partitions) }

// PartitionFor is Kafka's mapping of a transactional id to one of n
// partitions.
func PartitionFor(id string, n int32) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(id)) {
		h = 31*h + int32(u)
	}
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % n
}

func (co *Coordinator) shardFor(id string) *shard { return co.shards[co.PartitionFor(id)] }

// LoadAll loads every partition at coordinator epoch 0 (a single node).
func (co *Coordinator) LoadAll() error {
	var errs []error
	for p := range co.shards {
		if err := co.Load(int32(p), 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Load makes this coordinator serve partition p's transactional ids at
// coordinator epoch epoch (the partition's leader epoch), rebuilding them
// by replaying the partition; transactions found between Prepare* and
// Complete* get their markers sent again. A partition already loaded is
// reloaded when epoch differs.
func (co *Coordinator) Load(p, epoch int32) error {
	s := co.shards[p]
	s.mu.Lock()
	if s.closed || s.loading || (s.core != nil && s.core.epoch == epoch) {
		s.mu.Unlock()
		return nil
	}
	answers := s.dropCore()
	s.loading = true
	s.mu.Unlock()
	for _, a := range answers {
		a()
	}

	snaps := map[string]*snapshot{}
	skipped := 0
	err := co.store.Replay(p, func(r Record) {
		id, ok, err := decodeKey(r.Key)
		if err != nil || !ok {
			skipped++
			return
		}
		if r.Value == nil {
			snaps[id] = nil
			return
		}
		v, err := decodeValue(r.Value)
		if err != nil {
			skipped++
			return
		}
		snaps[id] = v
	})

	s.mu.Lock()
	s.loading = false
	if err != nil || s.closed {
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("txn: loading %s-%d: %w", StateTopic, p, err)
		}
		return nil
	}
	c := newCore(&co.cfg, p, epoch, co.log, co.opts.NextProducerID, func(recs []Record) error {
		return co.store.Append(p, recs)
	}, co.opts.OffsetsPartition)
	now := co.clock.Now()
	c.install(now, snaps)
	s.core = c
	n := len(c.txns)
	s.mu.Unlock()
	if n > 0 || skipped > 0 {
		co.log.Info("loaded transactional ids", "partition", p, "coordinator_epoch", epoch, "ids", n, "skipped_records", skipped)
	}
	// Deliver the resumed markers (and arm the timer).
	s.runOn(c, func(*core, time.Time) {})
	return nil
}

// Unload stops serving partition p (the state stays in the log; writes
// in flight are answered NOT_COORDINATOR, marker answers are ignored).
func (co *Coordinator) Unload(p int32) { co.shards[p].unload(false) }

// Close unloads everything; later requests get COORDINATOR_NOT_AVAILABLE.
func (co *Coordinator) Close() {
	for _, s := range co.shards {
		s.unload(true)
	}
}

func (s *shard) unload(closing bool) {
	s.mu.Lock()
	if closing {
		s.closed = true
	}
	answers := s.dropCore()
	if s.stop != nil {
		s.stop()
		s.stop = nil
		s.armed = time.Time{}
	}
	s.mu.Unlock()
	for _, a := range answers {
		a()
	}
}

// dropCore unloads the core and returns the answers (NOT_COORDINATOR) of
// the requests waiting in it, to deliver once mu is released. Caller
// holds mu.
func (s *shard) dropCore() []func() {
	if s.core == nil {
		return nil
	}
	answers := s.core.dropParked(fmt.Errorf("%w: %s-%d was unloaded", ErrNotCoordinator, StateTopic, s.partition))
	s.core = nil
	return answers
}

// run executes fn on the loaded core; see runOn.
func (s *shard) run(fn func(c *core, now time.Time)) (notServed error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrCoordinatorNotAvailable
	case s.loading:
		s.mu.Unlock()
		return ErrCoordinatorLoadInProgress
	case s.core == nil:
		s.mu.Unlock()
		return ErrNotCoordinator
	}
	s.step(s.core, fn)
	return nil
}

// runOn executes fn on c if c is still the loaded core (a marker answer
// or timer of an earlier load is dropped).
func (s *shard) runOn(c *core, fn func(c *core, now time.Time)) {
	s.mu.Lock()
	if s.core != c {
		s.mu.Unlock()
		return
	}
	s.step(c, fn)
}

// step runs the deadlines due, fn, and the deadlines again under the
// lock (held on entry, released on return); then makes the records
// written durable with the lock released and runs their continuations
// under it again (persistence before action), until nothing is left to
// write; finally, unlocked, delivers the answers and sends the markers.
func (s *shard) step(c *core, fn func(c *core, now time.Time)) {
	now := s.co.clock.Now()
	c.tick(now)
	fn(c, now)
	c.tick(now)
	for {
		ws := c.takeWrites()
		if len(ws) == 0 {
			break
		}
		s.mu.Unlock()
		err := s.co.store.Sync(s.partition)
		if err != nil {
			s.co.log.Warn("syncing the transaction log failed", "partition", s.partition, "err", err)
			err = storeErr(err)
		}
		s.mu.Lock()
		if s.core != c {
			err = fmt.Errorf("%w: %s-%d was unloaded", ErrNotCoordinator, StateTopic, s.partition)
		}
		now = s.co.clock.Now()
		for _, w := range ws {
			w.done(now, err)
		}
		if s.core == c {
			c.tick(now)
		}
	}
	effects, sends := c.takeOutputs()
	if s.core == c {
		s.arm(now)
	} else {
		sends = nil // an unloaded core drives no transaction
	}
	s.mu.Unlock()
	for _, e := range effects {
		e()
	}
	for _, req := range sends {
		s.co.opts.Markers.WriteMarkers(req, func(errs []error) {
			s.runOn(c, func(c *core, now time.Time) { c.markersDone(now, req, errs) })
		})
	}
}

// arm sets the timer for the core's next deadline. Caller holds mu.
func (s *shard) arm(now time.Time) {
	wake := s.core.wake
	if wake.IsZero() || (!s.armed.IsZero() && !wake.Before(s.armed)) {
		return
	}
	s.armed = wake
	if s.stop != nil {
		s.stop()
	}
	s.stop = clock.AfterFunc(s.co.clock, max(wake.Sub(now), 0), s.fire)
}

func (s *shard) fire() {
	s.run(func(*core, time.Time) { s.armed = time.Time{} })
}

// ---- the API the broker's handlers call ----

// InitProducerID handles an InitProducerId with a transactional id; cb is
// called exactly once, possibly on another goroutine.
func (co *Coordinator) InitProducerID(req InitRequest, cb func(InitResult)) {
	if req.TransactionalID == "" {
		cb(InitResult{ProducerID: noProducerID, Epoch: noEpoch, Err: fmt.Errorf("%w: empty transactional id", ErrInvalidRequest)})
		return
	}
	if ns := co.shardFor(req.TransactionalID).run(func(c *core, now time.Time) { c.initProducerID(now, req, cb) }); ns != nil {
		cb(InitResult{ProducerID: noProducerID, Epoch: noEpoch, Err: ns})
	}
}

// AddPartitions handles AddPartitionsToTxn (one transaction); cb gets
// the error for all its partitions.
func (co *Coordinator) AddPartitions(id string, pid int64, epoch int16, tps []TopicPartition, cb func(error)) {
	if id == "" {
		cb(fmt.Errorf("%w: empty transactional id", ErrInvalidRequest))
		return
	}
	if ns := co.shardFor(id).run(func(c *core, now time.Time) { c.addPartitions(now, id, pid, epoch, tps, cb) }); ns != nil {
		cb(ns)
	}
}

// AddOffsets handles AddOffsetsToTxn: the group's __consumer_offsets
// partition joins the transaction.
func (co *Coordinator) AddOffsets(id string, pid int64, epoch int16, group string, cb func(error)) {
	co.AddPartitions(id, pid, epoch, []TopicPartition{co.opts.OffsetsPartition(group)}, cb)
}

// EndTxn handles EndTxn; cb is called once the Prepare* record is
// durable (the markers follow asynchronously) or on failure.
func (co *Coordinator) EndTxn(id string, pid int64, epoch int16, commit bool, cb func(error)) {
	if id == "" {
		cb(fmt.Errorf("%w: empty transactional id", ErrInvalidRequest))
		return
	}
	if ns := co.shardFor(id).run(func(c *core, now time.Time) { c.endTxn(now, id, pid, epoch, commit, true, cb) }); ns != nil {
		cb(ns)
	}
}

// Describe handles DescribeTransactions for one id.
func (co *Coordinator) Describe(id string) (Description, error) {
	if id == "" {
		return Description{}, fmt.Errorf("%w: empty transactional id", ErrInvalidRequest)
	}
	var (
		d   Description
		err error
	)
	if ns := co.shardFor(id).run(func(c *core, now time.Time) { d, err = c.describe(id) }); ns != nil {
		return Description{TransactionalID: id}, ns
	}
	return d, err
}

// List handles ListTransactions over every partition served here; the
// error is COORDINATOR_LOAD_IN_PROGRESS while a partition loads (the list
// is then partial).
func (co *Coordinator) List(f ListFilter) ([]Listing, error) {
	var (
		out     []Listing
		listErr error
	)
	for _, s := range co.shards {
		ns := s.run(func(c *core, now time.Time) { out = append(out, c.list(now, f)...) })
		if errors.Is(ns, ErrCoordinatorLoadInProgress) || errors.Is(ns, ErrCoordinatorNotAvailable) {
			listErr = ns
		}
	}
	return out, listErr
}
