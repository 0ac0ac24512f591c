package group

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"

	"github.com/kvlog/kvlog/internal/clock"
)

// Store is the coordinator's access to the __consumer_offsets partitions.
// Append and Replay of one partition are never called concurrently with
// each other by the coordinator; Sync may run concurrently with anything.
type Store interface {
	// Append writes records to the partition as one batch (creating the
	// topic if needed). It need not be durable yet.
	Append(partition int32, recs []Record) error
	// Sync makes everything appended so far durable and visible (the
	// coordinator calls it, outside its locks, before answering requests
	// whose records were appended).
	Sync(partition int32) error
	// AppendTxn writes records as one transactional batch of producer
	// pid at epoch (a TxnOffsetCommit); its marker comes later from the
	// transaction coordinator.
	AppendTxn(partition int32, pid int64, epoch int16, recs []Record) error
	// Replay calls fn with every record of the partition, oldest first
	// (nothing when the topic does not exist), with the transaction
	// fields of Record set, and for every transaction marker. Record
	// bytes are valid only during the call.
	Replay(partition int32, fn func(Record)) error
}

// Options are the coordinator's dependencies.
type Options struct {
	Clock  clock.Clock  // nil: clock.Real
	Logger *slog.Logger // nil: slog.Default()
	// NewMemberID makes member ids; nil: prefix + "-" + a random UUID, as
	// Kafka does (prefix is the client id, or the instance id of a static
	// member).
	NewMemberID func(prefix string) string
}

// Coordinator is the group coordinator: one shard per __consumer_offsets
// partition, each a core behind a mutex with a timer for its deadlines.
// All methods are safe for concurrent use.
type Coordinator struct {
	cfg    Config
	store  Store
	clock  clock.Clock
	log    *slog.Logger
	newID  func(string) string
	shards []*shard
	// rebalances counts the rebalances completed here (a generation
	// started), for the broker's metrics.
	rebalances atomic.Int64
}

// Rebalances is how many rebalances completed on this coordinator since
// it started: a new generation of some group, members or not.
func (co *Coordinator) Rebalances() int64 { return co.rebalances.Load() }

// shard runs the core of one partition. A shard is served only once
// loaded: before that requests for its groups fail with NOT_COORDINATOR
// (or COORDINATOR_LOAD_IN_PROGRESS while loading), which is the seam for
// a cluster where another broker leads the partition.
type shard struct {
	co        *Coordinator
	partition int32

	mu      sync.Mutex
	core    *core // nil: not loaded here
	loading bool
	closed  bool
	stop    func() bool // cancels the timer set on the clock (nil: none)
	armed   time.Time   // when timer fires (zero: not armed)
}

// New returns a coordinator with no partition loaded.
func New(cfg Config, store Store, opts Options) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	co := &Coordinator{cfg: cfg, store: store, clock: opts.Clock, log: opts.Logger, newID: opts.NewMemberID}
	if co.clock == nil {
		co.clock = clock.Real
	}
	if co.log == nil {
		co.log = slog.Default()
	}
	if co.newID == nil {
		co.newID = randomMemberID
	}
	for p := int32(0); p < cfg.Partitions; p++ {
		co.shards = append(co.shards, &shard{co: co, partition: p})
	}
	return co, nil
}

func randomMemberID(prefix string) string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%s-%x-%x-%x-%x-%x", prefix, u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// Partitions is the number of __consumer_offsets partitions.
func (co *Coordinator) Partitions() int32 { return co.cfg.Partitions }

// PartitionFor is the __consumer_offsets partition of a group, as Kafka
// computes it: abs(Java String.hashCode(group)) mod partitions.
func (co *Coordinator) PartitionFor(group string) int32 {
	return PartitionFor(group, co.cfg.Partitions)
}

// PartitionFor is Kafka's mapping of a group to one of n partitions.
func PartitionFor(group string, n int32) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(u)
	}
	if h == -1<<31 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % n
}

func (co *Coordinator) shardFor(group string) *shard { return co.shards[co.PartitionFor(group)] }

// LoadAll loads every partition (a single broker coordinates all groups).
func (co *Coordinator) LoadAll() error {
	var errs []error
	for p := range co.shards {
		if err := co.Load(int32(p)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Load makes this coordinator serve partition p's groups, rebuilding them
// by replaying the partition. Requests for them get
// COORDINATOR_LOAD_IN_PROGRESS meanwhile.
func (co *Coordinator) Load(p int32) error {
	s := co.shards[p]
	s.mu.Lock()
	if s.closed || s.core != nil || s.loading {
		s.mu.Unlock()
		return nil
	}
	s.loading = true
	s.mu.Unlock()

	start := time.Now()
	l := newLoader()
	err := co.store.Replay(p, l.add)

	s.mu.Lock()
	s.loading = false
	if err != nil || s.closed {
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("group: loading %s-%d: %w", OffsetsTopic, p, err)
		}
		return nil
	}
	now := co.clock.Now()
	c := newCore(&co.cfg, p, co.log, co.newID, func(recs []Record) error {
		return co.store.Append(p, recs)
	})
	c.writeTxn = func(pid int64, epoch int16, recs []Record) error { return co.store.AppendTxn(p, pid, epoch, recs) }
	c.onRebalance = func() { co.rebalances.Add(1) }
	l.install(c, now)
	s.core = c
	s.arm(now)
	n := len(c.groups)
	s.mu.Unlock()
	if n > 0 || l.skipped > 0 {
		co.log.Info("loaded groups", "partition", p, "groups", n, "skipped_records", l.skipped, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// Unload stops serving partition p: parked JoinGroup and SyncGroup
// requests get NOT_COORDINATOR and the state is dropped (it stays in the
// log).
func (co *Coordinator) Unload(p int32) {
	co.shards[p].unload(false)
}

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
	var effects []func(error)
	if s.core != nil {
		s.core.unload(s.co.clock.Now(), ErrNotCoordinator)
		effects, _ = s.core.takeEffects()
		s.core = nil
	}
	if s.stop != nil {
		s.stop()
		s.stop = nil
		s.armed = time.Time{}
	}
	s.mu.Unlock()
	for _, e := range effects {
		e(nil)
	}
}

// run executes fn on the core under the lock, with the deadlines due now
// processed before and after; then, unlocked, makes written records
// durable and delivers the responses fn and the deadlines produced.
// It returns ErrNotCoordinator, ErrCoordinatorLoadInProgress or
// ErrCoordinatorNotAvailable without running fn when the shard does not
// serve, and otherwise the Sync error of records fn's call wrote.
func (s *shard) run(fn func(c *core, now time.Time)) (notServed, syncErr error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrCoordinatorNotAvailable, nil
	case s.loading:
		s.mu.Unlock()
		return ErrCoordinatorLoadInProgress, nil
	case s.core == nil:
		s.mu.Unlock()
		return ErrNotCoordinator, nil
	}
	now := s.co.clock.Now()
	c := s.core
	c.tick(now)
	before, wroteBefore := c.takeEffects()
	fn(c, now)
	c.tick(now)
	effects, wrote := c.takeEffects()
	commits := c.takeCommits()
	s.arm(now)
	s.mu.Unlock()

	var beforeErr error
	if wroteBefore || wrote {
		if err := s.co.store.Sync(s.partition); err != nil {
			s.co.log.Error("syncing the offsets topic failed", "partition", s.partition, "err", err)
			beforeErr = err
			if wrote {
				syncErr = err
			}
		}
	}
	if len(commits) > 0 {
		// Before anyone is answered: an OffsetFetch sent after a commit's
		// answer sees it.
		s.mu.Lock()
		if s.core == c {
			c.installCommits(commits, syncErr == nil)
		}
		s.mu.Unlock()
	}
	for _, e := range before {
		e(beforeErr)
	}
	for _, e := range effects {
		e(syncErr)
	}
	return nil, syncErr
}

// arm sets the timer for the core's next deadline. Caller holds mu.
func (s *shard) arm(now time.Time) {
	wake := s.core.wake
	if wake.IsZero() || (!s.armed.IsZero() && !wake.Before(s.armed)) {
		return // nothing due, or the timer fires earlier anyway
	}
	s.armed = wake
	if s.stop != nil {
		s.stop()
	}
	s.stop = clock.AfterFunc(s.co.clock, max(wake.Sub(now), 0), s.fire)
}

// fire runs the deadlines that are due.
func (s *shard) fire() {
	s.run(func(*core, time.Time) {
		s.armed = time.Time{} // run re-arms for what remains
	})
}

func wrapSync(err error) error {
	return fmt.Errorf("%w: syncing %s: %v", ErrCoordinatorNotAvailable, OffsetsTopic, err)
}

// ---- the API the broker's handlers call ----

// Join handles a JoinGroup; cb is called exactly once, possibly later (at
// the end of the join phase) and from another goroutine.
func (co *Coordinator) Join(req JoinRequest, cb func(JoinResult)) {
	if notServed, _ := co.shardFor(req.Group).run(func(c *core, now time.Time) { c.join(now, req, cb) }); notServed != nil {
		cb(joinError(req.MemberID, notServed))
	}
}

// Sync handles a SyncGroup; cb is called exactly once, possibly later.
func (co *Coordinator) Sync(req SyncRequest, cb func(SyncResult)) {
	notServed, _ := co.shardFor(req.Group).run(func(c *core, now time.Time) { c.sync(now, req, cb) })
	if errors.Is(notServed, ErrCoordinatorLoadInProgress) {
		// The rebalance state is lost with a reload: rejoin (older clients
		// do not know COORDINATOR_LOAD_IN_PROGRESS here).
		notServed = ErrRebalanceInProgress
	}
	if notServed != nil {
		cb(SyncResult{Err: notServed})
	}
}

// Heartbeat handles a Heartbeat.
func (co *Coordinator) Heartbeat(req HeartbeatRequest) error {
	var err error
	notServed, _ := co.shardFor(req.Group).run(func(c *core, now time.Time) { err = c.heartbeat(now, req) })
	if errors.Is(notServed, ErrCoordinatorLoadInProgress) {
		return nil // as Kafka: answer blindly while loading
	}
	if notServed != nil {
		return notServed
	}
	return err
}

// Leave handles a LeaveGroup: one error per member, or a group-level
// error.
func (co *Coordinator) Leave(group string, members []LeaveMember) ([]error, error) {
	var (
		errs []error
		gerr error
	)
	if notServed, _ := co.shardFor(group).run(func(c *core, now time.Time) { errs, gerr = c.leave(now, group, members) }); notServed != nil {
		return nil, notServed
	}
	return errs, gerr
}

// Commit handles an OffsetCommit; one error per offset.
func (co *Coordinator) Commit(req CommitRequest) []error {
	var errs []error
	notServed, syncErr := co.shardFor(req.Group).run(func(c *core, now time.Time) { errs = c.commit(now, req) })
	if notServed != nil {
		errs = make([]error, len(req.Offsets))
		for i := range errs {
			errs[i] = notServed
		}
		return errs
	}
	if syncErr != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = wrapSync(syncErr)
			}
		}
	}
	return errs
}

// FetchOffsets handles an OffsetFetch for one group (tps nil: every
// partition the group has an offset for).
func (co *Coordinator) FetchOffsets(group string, tps []TopicPartition) ([]CommittedOffset, error) {
	return co.FetchOffsetsStable(group, tps, false)
}

// FetchOffsetsStable is FetchOffsets; with requireStable (OffsetFetch v7+
// require_stable) a partition with a pending transactional commit gets
// ErrUnstableOffsetCommit and offset -1, as in Kafka.
func (co *Coordinator) FetchOffsetsStable(group string, tps []TopicPartition, requireStable bool) ([]CommittedOffset, error) {
	var out []CommittedOffset
	if notServed, _ := co.shardFor(group).run(func(c *core, now time.Time) {
		out = c.fetchOffsets(group, tps)
		if g := c.groups[group]; requireStable && g != nil {
			for i := range out {
				if c.hasPendingOffset(g, out[i].TopicPartition) {
					out[i] = CommittedOffset{TopicPartition: out[i].TopicPartition, Offset: -1, LeaderEpoch: -1, Err: ErrUnstableOffsetCommit}
				}
			}
		}
	}); notServed != nil {
		return nil, notServed
	}
	return out, nil
}

// Describe handles DescribeGroups for one group.
func (co *Coordinator) Describe(group string) (Description, error) {
	var d Description
	if notServed, _ := co.shardFor(group).run(func(c *core, now time.Time) { d = c.describe(group) }); notServed != nil {
		return Description{Group: group}, notServed
	}
	return d, nil
}

// List handles ListGroups: every group of every partition served here.
// The error is COORDINATOR_LOAD_IN_PROGRESS while a partition loads
// (the list is then partial).
func (co *Coordinator) List() ([]Listing, error) {
	var (
		out     []Listing
		listErr error
	)
	for _, s := range co.shards {
		notServed, _ := s.run(func(c *core, now time.Time) { out = append(out, c.list()...) })
		switch {
		case errors.Is(notServed, ErrCoordinatorLoadInProgress), errors.Is(notServed, ErrCoordinatorNotAvailable):
			listErr = notServed
		}
	}
	return out, listErr
}

// OnTopicsDeleted removes the committed offsets of deleted topics from
// the groups of every partition served here (Kafka's
// GroupCoordinator.onPartitionsDeleted). Partitions not served here are
// skipped: their coordinator does the same. It returns how many offsets
// went, and the write errors.
func (co *Coordinator) OnTopicsDeleted(topics []string) (int, error) {
	set := map[string]bool{}
	for _, t := range topics {
		set[t] = true
	}
	total := 0
	var errs []error
	for _, s := range co.shards {
		var (
			n   int
			err error
		)
		notServed, syncErr := s.run(func(c *core, now time.Time) { n, err = c.topicsDeleted(now, set) })
		if notServed != nil {
			continue
		}
		if err == nil {
			err = syncErr
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("group: removing offsets of deleted topics from %s-%d: %w", OffsetsTopic, s.partition, err))
			continue
		}
		total += n
	}
	return total, errors.Join(errs...)
}

// DeleteGroups handles DeleteGroups; one error per group.
func (co *Coordinator) DeleteGroups(groups []string) []error {
	errs := make([]error, len(groups))
	for i, g := range groups {
		var derr []error
		notServed, syncErr := co.shardFor(g).run(func(c *core, now time.Time) { derr = c.deleteGroups(now, []string{g}) })
		switch {
		case notServed != nil:
			errs[i] = notServed
		case derr[0] == nil && syncErr != nil:
			errs[i] = wrapSync(syncErr)
		default:
			errs[i] = derr[0]
		}
	}
	return errs
}

// DeleteOffsets handles an OffsetDelete: one error per partition, or a
// group-level error.
func (co *Coordinator) DeleteOffsets(group string, tps []TopicPartition) ([]error, error) {
	var (
		errs []error
		gerr error
	)
	notServed, syncErr := co.shardFor(group).run(func(c *core, now time.Time) { errs, gerr = c.deleteOffsets(now, group, tps) })
	if notServed != nil {
		return nil, notServed
	}
	if syncErr != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = wrapSync(syncErr)
			}
		}
	}
	return errs, gerr
}
