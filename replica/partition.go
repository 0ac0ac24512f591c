package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
)

// Role is a replica's role in its partition.
type Role int

const (
	RoleNone     Role = iota // not serving (not yet told, or stopped)
	RoleLeader               // accepts produce, serves fetches
	RoleFollower             // copies the leader
)

func (r Role) String() string {
	switch r {
	case RoleLeader:
		return "leader"
	case RoleFollower:
		return "follower"
	default:
		return "none"
	}
}

// State is a partition's state as the controller decided it (LeaderAndIsr,
// /brokers/topics/<t>/partitions/<p>/state).
type State struct {
	Leader          int32
	LeaderEpoch     int32
	ISR             []int32
	Replicas        []int32
	ZkVersion       int32
	ControllerEpoch int32
}

// Options configure a Partition.
type Options struct {
	ID     int32         // this broker
	LagMax time.Duration // replica.lag.time.max.ms
	// SyncAlone (kvlog.fsync.acks.all): while the leader is alone in the
	// ISR, the HW passes only what is fsynced (Flush).
	SyncAlone bool
	// AroundTruncate, when set, runs every truncation of the log (a
	// follower diverging from its leader, or starting over at the
	// leader's log start): it must call truncate once and return its
	// error. The broker keeps its log cleaner away from the log meanwhile.
	// Called with the Partition's lock held; it must not call back into
	// the Partition.
	AroundTruncate func(truncate func() error) error
	Logger         *slog.Logger
}

// Partition is one replica of one partition. See the package doc for the
// rules; every method is safe for concurrent use.
type Partition struct {
	mu    sync.Mutex
	log   *engine.Log
	key   tpKey // the log's topic-partition (fetchers key by it)
	opts  Options
	role  Role
	state State
	// view is role and state.LeaderEpoch (packView), stored under mu after
	// each change (publishView) and read without it: every consumer fetch
	// checks both for each partition it reads, and taking mu for that made
	// the fetch wait behind whatever held it, a leader append writing its
	// batch or the commit moving the HW, whose answer it was waiting for.
	view   atomic.Uint64
	leader *Leader // when RoleLeader
	// following
	truncating bool   // OffsetsForLeaderEpoch needed before fetching
	fenced     bool   // the leader fenced our epoch: wait for a new state
	fetchPos   Offset // next fetch offset when not truncating
	waiters    map[*ackWaiter]struct{}
	closed     bool
	flushing   bool // a Flush is due or running (AppendAsLeader asked for it)
	// flushErr is the error of the last failed flush, which covered the
	// offsets below flushErrTo: an acks=all append there whose waiter
	// registers only after the failure (the commit ran between Append
	// and AwaitAck) fails with it instead of waiting for a HW the failed
	// flush will never move. A flush that succeeds clears it.
	flushErr   error
	flushErrTo Offset
	// uncommitted are the leader's appends the HW has not passed yet,
	// oldest first, kept while a commit-wait observer is installed
	// (SetCommitWaitObserver; at most maxUncommitted).
	uncommitted []appendedAt

	watchMu sync.Mutex       // a leaf: guards parked
	parked  map[*parked]bool // parked fetches watching this partition (true: a follower's)
	// moves counts the wake-ups of parked fetches (FetchState); wide are
	// the Manager's fetches parked on a whole session (nil: none).
	moves atomic.Uint64
	wide  *wideParked
	// reqs moves whenever what NextRequest returns may have changed
	// (role, state, truncating, fenced, fetch position, log start), after
	// the change.
	reqs atomic.Uint64
	// reqWatch is the flag of the fetcher fetching the partition, set
	// after each move of reqs (see fetcher.collect).
	reqWatch atomic.Pointer[atomic.Bool]
	// isrSet is the Manager's set of partitions its ISR check looks at
	// (nil: none), isrMarked whether p is in it (isr_watch.go).
	isrSet    *isrWatch
	isrMarked atomic.Bool
}

// requestChanged records that NextRequest's answer may have changed: after
// the change.
func (p *Partition) requestChanged() {
	p.reqs.Add(1)
	if w := p.reqWatch.Load(); w != nil {
		w.Store(true)
	}
}

// RequestState is a counter that moves whenever NextRequest's answer may
// change: a fetcher reuses the last request while it stays (read it before
// NextRequest).
func (p *Partition) RequestState() uint64 { return p.reqs.Load() }

type ackWaiter struct {
	last   Offset
	minISR int
	done   func(error)
}

// New wraps log. The replica starts with RoleNone.
func New(log *engine.Log, opts Options) *Partition { return newPartition(log, opts, nil) }

// newPartition is New for a Manager whose wide-parked fetches are wide.
func newPartition(log *engine.Log, opts Options, wide *wideParked) *Partition {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	tp := log.TopicPartition()
	p := &Partition{log: log, key: tpKey{tp.Topic, tp.Partition}, opts: opts, waiters: map[*ackWaiter]struct{}{}, state: State{Leader: -1, LeaderEpoch: -1}, wide: wide}
	p.publishView()
	log.OnLogStartMoved(func() {
		// (Fetch answers and follower requests carry the log start.)
		p.moves.Add(1)
		if p.wide != nil {
			p.wide.moves.Add(1)
		}
		p.requestChanged()
	})
	return p
}

// Log is the partition's log.
func (p *Partition) Log() *engine.Log { return p.log }

// packView packs a role and a leader epoch into Partition.view.
func packView(r Role, epoch int32) uint64 { return uint64(r)<<32 | uint64(uint32(epoch)) }

// publishView stores the role and leader epoch for the lock-free readers
// (Role, LeaderEpoch, View). Caller holds mu, after changing either.
func (p *Partition) publishView() { p.view.Store(packView(p.role, p.state.LeaderEpoch)) }

// View is the current role and leader epoch, read together without the
// partition's lock (a fetch's check never waits for an append or a
// commit in progress).
func (p *Partition) View() (Role, int32) {
	v := p.view.Load()
	return Role(v >> 32), int32(uint32(v))
}

// Role is the current role (without the partition's lock, see View).
func (p *Partition) Role() Role {
	r, _ := p.View()
	return r
}

// State is the last applied partition state (with the leader's current
// committed ISR when leading).
func (p *Partition) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state
	st.ISR = slices.Clone(st.ISR)
	st.Replicas = slices.Clone(st.Replicas)
	if p.leader != nil {
		st.ISR = p.leader.ISR()
		st.ZkVersion = p.leader.ZkVersion()
	}
	return st
}

// FollowerCaughtUp is when this replica, leading, last saw follower id
// caught up with its log (false: not leading, or not heard from id).
func (p *Partition) FollowerCaughtUp(id int32) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leader == nil {
		return time.Time{}, false
	}
	return p.leader.CaughtUp(id)
}

// LeaderEpoch is the current leader epoch (-1 before any state; without
// the partition's lock, see View).
func (p *Partition) LeaderEpoch() int32 {
	_, e := p.View()
	return e
}

// completion is a callback to run once mu is released.
type completion struct {
	fn  func(error)
	err error
}

func runCompletions(cs []completion) {
	for _, c := range cs {
		c.fn(c.err)
	}
}

// appendedAt is a leader append waiting for the HW: its batch's last
// offset and when it was appended.
type appendedAt struct {
	last Offset
	at   time.Time
}

// maxUncommitted bounds Partition.uncommitted: appends beyond it while the
// HW stands still are not observed.
const maxUncommitted = 4096

// commitWaitObserver receives, for every leader append, the time from the
// append to the HW passing its batch (acks=all answered, consumers may
// read it): the broker's commit-wait histogram. One per process.
var commitWaitObserver atomic.Pointer[func(time.Duration)]

// SetCommitWaitObserver installs fn (nil removes it). fn must be cheap and
// safe for concurrent use: it runs under a partition's lock.
func SetCommitWaitObserver(fn func(time.Duration)) {
	if fn == nil {
		commitWaitObserver.Store(nil)
		return
	}
	commitWaitObserver.Store(&fn)
}

// noteAppend records a leader append whose batch ends at last for the
// commit-wait observer. Caller holds mu.
func (p *Partition) noteAppend(last Offset) {
	if commitWaitObserver.Load() == nil || len(p.uncommitted) >= maxUncommitted {
		return
	}
	p.uncommitted = append(p.uncommitted, appendedAt{last, time.Now()})
}

// observeCommitted reports the appends the HW hw passed. Caller holds mu.
func (p *Partition) observeCommitted(hw Offset) {
	n := 0
	for n < len(p.uncommitted) && p.uncommitted[n].last < hw {
		n++
	}
	if n == 0 {
		return
	}
	if fn := commitWaitObserver.Load(); fn != nil {
		now := time.Now()
		for _, a := range p.uncommitted[:n] {
			(*fn)(now.Sub(a.at))
		}
	}
	k := copy(p.uncommitted, p.uncommitted[n:])
	clear(p.uncommitted[k:])
	p.uncommitted = p.uncommitted[:k]
}

// failWaiters completes every acks=all waiter with err (and forgets the
// appends waiting for the HW). Caller holds mu.
func (p *Partition) failWaiters(err error) []completion {
	p.uncommitted = nil
	var cs []completion
	for w := range p.waiters {
		cs = append(cs, completion{w.done, err})
		delete(p.waiters, w)
	}
	return cs
}

// hwMoved publishes the leader's HW to the log, wakes the parked fetches
// and collects the acks=all waiters it completes. Caller holds mu.
func (p *Partition) hwMoved() []completion {
	p.log.SetHighWatermark(p.leader.HW())
	if len(p.uncommitted) > 0 {
		p.observeCommitted(p.leader.HW())
	}
	var cs []completion
	for w := range p.waiters {
		if ok, err := p.leader.AckStatus(w.last, w.minISR); ok {
			cs = append(cs, completion{w.done, err})
			delete(p.waiters, w)
		}
	}
	p.wakeParked(true)
	return cs
}

// settleLocked fsyncs the log when the HW waits for it and no Flush is due
// (an ISR change left the leader alone), and returns the completions of
// the HW move. Caller holds mu.
func (p *Partition) settleLocked() []completion {
	if p.leader == nil || p.flushing || !p.leader.NeedsFlush() {
		return nil
	}
	if err := p.log.Sync(); err != nil {
		p.opts.Logger.Error("fsync of a leader left alone in the ISR failed", "partition", p.log.TopicPartition(), "err", err)
		return p.failWaiters(storageErr(err))
	}
	if p.leader.Flushed(p.log.Durable()) {
		return p.hwMoved()
	}
	return nil
}

// watch registers a parked fetch (follower: a follower's, woken by appends
// as well as by HW moves).
func (p *Partition) watch(w *parked, follower bool) {
	p.watchMu.Lock()
	if p.parked == nil {
		p.parked = map[*parked]bool{}
	}
	p.parked[w] = follower
	p.watchMu.Unlock()
}

func (p *Partition) unwatch(w *parked) {
	p.watchMu.Lock()
	delete(p.parked, w)
	p.watchMu.Unlock()
}

// Parked is the number of fetches parked on the partition.
func (p *Partition) Parked() int {
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	return len(p.parked)
}

// wakeParked wakes the parked fetches: every one when all (the HW moved,
// the role changed), else the followers' (the LEO moved).
func (p *Partition) wakeParked(all bool) {
	p.moves.Add(1) // after the state moved: see FetchState
	p.watchMu.Lock()
	for w, follower := range p.parked {
		if all || follower {
			w.fire(false)
		}
	}
	p.watchMu.Unlock()
	if p.wide != nil {
		p.wide.wake(p, all)
	}
}

// FetchState is what an incremental fetch session compares to pass over a
// partition whose answer cannot have changed: a counter that moves, after
// the change, whenever a parked fetch of the partition would be woken (its
// high watermark or log end moved, its role or leader epoch changed, it
// was stopped) and when its log start offset moves. Read it before
// anything else of the partition: a change after that read moves it.
func (p *Partition) FetchState() uint64 { return p.moves.Load() }

// FetchCounter is the counter FetchState reads, for a caller that keeps
// it to compare without a call per partition.
func (p *Partition) FetchCounter() *atomic.Uint64 { return &p.moves }

// checkState refuses a state older than the applied one. Caller holds mu.
func (p *Partition) checkState(st State) error {
	if st.LeaderEpoch < p.state.LeaderEpoch {
		return fmt.Errorf("%w: leader epoch %d < %d", ErrStaleState, st.LeaderEpoch, p.state.LeaderEpoch)
	}
	return nil
}

// MakeLeader makes this replica the leader for st (st.Leader must be this
// broker). The new epoch is assigned at the LEO in the epoch cache; when the
// ISR is this replica alone the log is fsynced first (last replica
// standing). A state with the current epoch only refreshes the ISR. It
// reports whether the role or epoch changed.
func (p *Partition) MakeLeader(st State, now time.Time) (bool, error) {
	p.mu.Lock()
	if err := p.checkState(st); err != nil {
		p.mu.Unlock()
		return false, err
	}
	if st.Leader != p.opts.ID {
		p.mu.Unlock()
		return false, fmt.Errorf("replica: MakeLeader for leader %d on broker %d", st.Leader, p.opts.ID)
	}
	if p.role == RoleLeader && st.LeaderEpoch == p.state.LeaderEpoch {
		var cs []completion
		if st.ZkVersion > p.leader.ZkVersion() {
			if p.leader.SetCommittedISR(st.ISR, st.ZkVersion) {
				cs = p.hwMoved()
			}
			cs = append(cs, p.settleLocked()...)
		}
		p.state = cloneState(st)
		p.publishView()
		p.markISR()
		p.mu.Unlock()
		runCompletions(cs)
		return false, nil
	}
	leo := p.log.LogEndOffset()
	// The new epoch starts at the log end: the entry describes only
	// records yet to be appended, so it is written with their flush (the
	// log's flush writes its leader-epoch checkpoint after the data) or
	// when the log closes. A crash before that loses only unflushed records
	// of this epoch, whose epochs recovery rebuilds from the batches, and
	// an epoch with no record ends where the previous one does, which is
	// what the lost entry said. Writing it now cost an fsynced file per
	// partition: a controller fail-over moving thousands of leaders to a
	// broker waited for thousands of fsyncs.
	if err := p.log.Epochs().AssignDeferred(st.LeaderEpoch, int64(leo)); err != nil {
		p.mu.Unlock()
		return false, fmt.Errorf("replica: %s: assigning leader epoch %d at %d: %w", p.log.TopicPartition(), st.LeaderEpoch, leo, storageErr(err))
	}
	if len(st.ISR) == 1 && st.ISR[0] == p.opts.ID {
		if err := p.log.Sync(); err != nil {
			p.mu.Unlock()
			return false, fmt.Errorf("replica: %s: sync before leading alone: %w", p.log.TopicPartition(), storageErr(err))
		}
	}
	p.state = cloneState(st)
	p.role = RoleLeader
	p.truncating, p.fenced = false, false
	p.requestChanged()
	p.leader = NewLeader(LeaderParams{
		ID: p.opts.ID, Epoch: st.LeaderEpoch, Replicas: st.Replicas, ISR: st.ISR, ZkVersion: st.ZkVersion,
		LEO: leo, HW: p.log.HighWatermark(), EpochStart: leo, LagMax: p.opts.LagMax,
		SyncAlone: p.opts.SyncAlone, Durable: p.log.Durable(),
	}, now)
	var cs []completion
	if p.leader.HW() > p.log.HighWatermark() {
		cs = p.hwMoved()
	}
	p.publishView() // (before the wake: a woken fetch sees the new epoch)
	p.wakeParked(true)
	p.markISR()
	p.mu.Unlock()
	runCompletions(cs)
	return true, nil
}

// MakeFollower makes this replica a follower for st. acks=all waiters fail
// with ErrNotLeader. It reports whether the leader or epoch changed (the
// fetcher must then truncate and fetch anew).
func (p *Partition) MakeFollower(st State) (bool, error) {
	p.mu.Lock()
	if err := p.checkState(st); err != nil {
		p.mu.Unlock()
		return false, err
	}
	if p.role == RoleFollower && st.Leader == p.state.Leader && st.LeaderEpoch == p.state.LeaderEpoch {
		p.state = cloneState(st)
		p.publishView()
		p.mu.Unlock()
		return false, nil
	}
	p.state = cloneState(st)
	p.role = RoleFollower
	p.publishView()
	p.leader = nil
	p.truncating, p.fenced = true, false
	p.requestChanged()
	p.setFetchPos(p.log.LogEndOffset())
	cs := p.failWaiters(ErrNotLeader)
	p.wakeParked(true)
	p.mu.Unlock()
	runCompletions(cs)
	return true, nil
}

// Stop takes the replica out of service (StopReplica, shutdown): acks=all
// waiters fail with ErrNotLeader.
func (p *Partition) Stop() {
	p.mu.Lock()
	p.role = RoleNone
	p.leader = nil
	p.closed = true
	p.publishView()
	p.requestChanged()
	cs := p.failWaiters(ErrNotLeader)
	p.wakeParked(true)
	p.mu.Unlock()
	runCompletions(cs)
}

// setFetchPos sets the next fetch offset. Caller holds mu.
func (p *Partition) setFetchPos(o Offset) {
	if o != p.fetchPos {
		p.fetchPos = o
		p.requestChanged()
	}
}

func cloneState(st State) State {
	st.ISR = slices.Clone(st.ISR)
	st.Replicas = slices.Clone(st.Replicas)
	return st
}

// ---- leader side ----

// AppendAsLeader appends a producer's batch at the current leader epoch.
// acks=all is refused when the ISR is smaller than minISR. flush says the
// HW now waits for an fsync that the caller must run (Flush): the leader is
// alone in the ISR with SyncAlone set and no Flush was due yet. Appends
// made while a Flush is due or running are covered by it (group commit).
//
// The batch is validated (CRC, every record; for a compressed batch its
// decompression) before mu is taken, so that producers of one partition
// validate in parallel; its errors still come after those of the role and
// ISR checks, as Kafka's leader answers.
func (p *Partition) AppendAsLeader(batch []byte, acksAll bool, minISR int) (res engine.AppendResult, flush bool, err error) {
	v, verr := p.log.Validate(batch)
	if appendValidated != nil {
		appendValidated()
	}
	p.mu.Lock()
	if p.role != RoleLeader {
		p.mu.Unlock()
		return engine.AppendResult{}, false, ErrNotLeader
	}
	if acksAll {
		if err := p.leader.CheckAcksAll(minISR); err != nil {
			p.mu.Unlock()
			return engine.AppendResult{}, false, err
		}
	}
	if verr != nil {
		p.mu.Unlock()
		return engine.AppendResult{}, false, verr
	}
	res, err = p.log.AppendValidated(v, p.leader.Epoch())
	if err != nil {
		p.mu.Unlock()
		return res, false, err
	}
	var cs []completion
	if !res.Duplicate {
		p.noteAppend(res.LastOffset)
		if p.leader.Appended(p.log.LogEndOffset()) {
			cs = p.hwMoved()
		} else {
			p.wakeParked(false) // followers read up to the LEO
		}
		p.markISR()
	}
	if !p.flushing && p.leader.NeedsFlush() {
		p.flushing, flush = true, true
	}
	p.mu.Unlock()
	runCompletions(cs)
	return res, flush, nil
}

// appendValidated, when set (tests), runs in AppendAsLeader between the
// batch's validation and taking the partition's lock.
var appendValidated func()

// AppendMarkerAsLeader appends a transaction marker (WriteTxnMarkers) at
// the current leader epoch, as AppendAsLeader does a producer's batch
// with acks=all.
func (p *Partition) AppendMarkerAsLeader(m engine.Marker, minISR int) (res engine.AppendResult, flush bool, err error) {
	p.mu.Lock()
	if p.role != RoleLeader {
		p.mu.Unlock()
		return engine.AppendResult{}, false, ErrNotLeader
	}
	if err := p.leader.CheckAcksAll(minISR); err != nil {
		p.mu.Unlock()
		return engine.AppendResult{}, false, err
	}
	res, err = p.log.AppendMarker(m, p.leader.Epoch())
	if err != nil {
		p.mu.Unlock()
		return res, false, err
	}
	var cs []completion
	if p.leader.Appended(p.log.LogEndOffset()) {
		cs = p.hwMoved()
	} else {
		p.wakeParked(false)
	}
	p.markISR()
	if !p.flushing && p.leader.NeedsFlush() {
		p.flushing, flush = true, true
	}
	p.mu.Unlock()
	runCompletions(cs)
	return res, flush, nil
}

// Flush fsyncs the log for AppendAsLeader (outside mu, so appends go on
// meanwhile) and lets the HW pass what it made durable. It reports whether
// the caller must call it again: appends arrived during the fsync and the
// HW waits for them. A failed fsync fails the acks=all waiters.
func (p *Partition) Flush() bool {
	more, cs := p.flushed(p.log.Sync())
	runCompletions(cs)
	return more
}

// flushed completes a Flush whose fsync (the log's own, or a group sync
// covering it) returned err, and returns the acks=all completions for the
// caller to run (outside mu: a completion may append and wait for another
// commit).
func (p *Partition) flushed(err error) (more bool, cs []completion) {
	p.mu.Lock()
	switch {
	case err != nil:
		if !errors.Is(err, engine.ErrClosed) {
			p.opts.Logger.Error("fsync failed", "partition", p.log.TopicPartition(), "err", err)
		}
		cs = p.failWaiters(storageErr(err))
		p.flushErr, p.flushErrTo = storageErr(err), p.log.LogEndOffset()
	case p.role == RoleLeader:
		p.flushErr = nil
		if p.leader.Flushed(p.log.Durable()) {
			cs = p.hwMoved()
		}
		more = p.leader.NeedsFlush()
	}
	p.flushing = more
	p.mu.Unlock()
	return more, cs
}

// AwaitAck calls done once an acks=all append whose last offset is last is
// complete (nil or ErrNotEnoughReplicasAfterAppend) or can never complete
// here (ErrNotLeader). done may run before AwaitAck returns, on the caller's
// goroutine, or later on whichever goroutine moved the HW. cancel forgets
// the waiter (done is then not called); it reports whether it did.
func (p *Partition) AwaitAck(last Offset, minISR int, done func(error)) (cancel func() bool) {
	p.mu.Lock()
	if p.role != RoleLeader {
		p.mu.Unlock()
		done(ErrNotLeader)
		return func() bool { return false }
	}
	if ok, err := p.leader.AckStatus(last, minISR); ok {
		p.mu.Unlock()
		done(err)
		return func() bool { return false }
	}
	if p.flushErr != nil && last < p.flushErrTo {
		err := p.flushErr
		p.mu.Unlock()
		done(err)
		return func() bool { return false }
	}
	w := &ackWaiter{last: last, minISR: minISR, done: done}
	p.waiters[w] = struct{}{}
	p.mu.Unlock()
	return func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		_, ok := p.waiters[w]
		delete(p.waiters, w)
		return ok
	}
}

// FollowerView is what a follower fetch learns besides the records.
type FollowerView struct {
	HW, LEO, LogStart Offset
	// Expand is an ISR expansion the caller must persist, or nil.
	Expand *ISRChange
}

// FollowerFetch records a fetch from follower replicaID at fetchOffset with
// its current leader epoch (KIP-320 checked), moving the HW and completing
// acks=all waiters as needed. The caller then reads the log from
// fetchOffset up to the LEO.
func (p *Partition) FollowerFetch(replicaID int32, fetchOffset Offset, currentEpoch int32, now time.Time) (FollowerView, error) {
	return p.followerFetch(replicaID, fetchOffset, currentEpoch, now, nil)
}

// followerFetch is FollowerFetch through a fetch session whose clock is
// sessionClock (nil: none; Leader.SetSessionClock).
func (p *Partition) followerFetch(replicaID int32, fetchOffset Offset, currentEpoch int32, now time.Time, sessionClock SessionClock) (FollowerView, error) {
	p.mu.Lock()
	if p.role != RoleLeader {
		p.mu.Unlock()
		return FollowerView{}, ErrNotLeader
	}
	if err := CheckLeaderEpoch(p.leader.Epoch(), currentEpoch); err != nil {
		p.mu.Unlock()
		return FollowerView{}, err
	}
	v := FollowerView{HW: p.leader.HW(), LEO: p.log.LogEndOffset(), LogStart: p.log.LogStartOffset()}
	if fetchOffset < v.LogStart || fetchOffset > v.LEO {
		p.mu.Unlock()
		return v, fmt.Errorf("%w: follower %d fetch offset %d outside [%d, %d]", engine.ErrOffsetOutOfRange, replicaID, fetchOffset, v.LogStart, v.LEO)
	}
	leo := p.leader.LEO()
	p.leader.Appended(v.LEO)
	res, err := p.leader.FollowerFetch(replicaID, fetchOffset, now)
	if err != nil {
		p.mu.Unlock()
		return v, err
	}
	if fetchOffset != v.LEO || leo != v.LEO || res.Expand != nil {
		// A follower short of the log end may fall out of sync (a
		// fetch at the log end of a quiet partition changes nothing
		// the ISR check looks at).
		p.markISR()
	}
	p.leader.SetSessionClock(replicaID, sessionClock)
	v.Expand = res.Expand
	var cs []completion
	if res.HWChanged {
		cs = p.hwMoved()
	}
	v.HW = p.leader.HW()
	p.mu.Unlock()
	runCompletions(cs)
	return v, nil
}

// LastOffsetForEpoch answers OffsetsForLeaderEpoch as the leader.
func (p *Partition) LastOffsetForEpoch(currentEpoch, epoch int32) (EpochEndOffset, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.role != RoleLeader {
		return EpochEndOffset{}, ErrNotLeader
	}
	if err := CheckLeaderEpoch(p.leader.Epoch(), currentEpoch); err != nil {
		return EpochEndOffset{}, err
	}
	ans, _ := EndOffsetForEpoch(p.log.Epochs(), epoch, p.log.LogEndOffset())
	return ans, nil
}

// Tick proposes an ISR shrink when followers fell out of sync at now. A
// shrink to the leader alone is preceded by an fsync of the log (and its
// commit in ISRChangeDone by another), so the caller only persists it.
func (p *Partition) Tick(now time.Time) *ISRChange {
	ch, _ := p.tick(now)
	return ch
}

// tick is Tick for the Manager's ISR check: it also reports whether p is
// quiet (isr_watch.go), and then clears its mark, under mu.
func (p *Partition) tick(now time.Time) (ch *ISRChange, quiet bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch = p.tickLocked(now)
	if ch == nil && p.quietLocked() {
		p.isrMarked.Store(false)
		quiet = true
	}
	return ch, quiet
}

// tickLocked is Tick. Caller holds mu.
func (p *Partition) tickLocked(now time.Time) *ISRChange {
	if p.role != RoleLeader {
		return nil
	}
	p.leader.Appended(p.log.LogEndOffset())
	ch := p.leader.Tick(now)
	if ch != nil && ch.SyncFirst {
		// Last replica standing: everything committed so far must be on
		// this disk before the ISR names this replica alone.
		if err := p.log.Sync(); err != nil {
			p.opts.Logger.Error("fsync before shrinking the ISR to the leader alone failed", "partition", p.log.TopicPartition(), "err", err)
			p.leader.ISRChangeFailed()
			return nil
		}
		p.leader.Flushed(p.log.Durable())
	}
	return ch
}

// ISRChangeDone reports the outcome of persisting ch: err nil with the new
// zkVersion, or the write's error. With current (non-nil) the caller re-read
// the partition state after a version conflict: if it still names this
// leader and epoch, its ISR and version are adopted.
func (p *Partition) ISRChangeDone(ch *ISRChange, zkVersion int32, err error, current *State) {
	p.mu.Lock()
	if p.role != RoleLeader || p.leader.Pending() != ch {
		p.mu.Unlock()
		return
	}
	var cs []completion
	switch {
	case err == nil:
		if ch.SyncFirst {
			// Appends since Tick's fsync become committed now: make them
			// durable first (last replica standing).
			if serr := p.log.Sync(); serr != nil {
				p.opts.Logger.Error("fsync after shrinking the ISR to the leader alone failed", "partition", p.log.TopicPartition(), "err", serr)
			} else {
				p.leader.Flushed(p.log.Durable())
			}
		}
		if p.leader.ISRCommitted(zkVersion) {
			cs = p.hwMoved()
		}
		p.state.ISR = p.leader.ISR()
		p.state.ZkVersion = zkVersion
	case current != nil && current.Leader == p.opts.ID && current.LeaderEpoch == p.leader.Epoch():
		if p.leader.SetCommittedISR(current.ISR, current.ZkVersion) {
			cs = p.hwMoved()
		}
	default:
		if p.leader.ISRChangeFailed() {
			cs = p.hwMoved()
		}
	}
	cs = append(cs, p.settleLocked()...)
	p.markISR()
	p.mu.Unlock()
	runCompletions(cs)
}

// ---- follower side ----

// RequestKind says what a follower must send next.
type RequestKind int

const (
	RequestNone       RequestKind = iota // nothing (not following, or fenced)
	RequestEpochQuery                    // OffsetsForLeaderEpoch
	RequestFetch                         // Fetch
	RequestOutOfRange                    // ask the leader's log start and end (ListOffsets)
)

// FollowerRequest is the follower's next request to its leader.
type FollowerRequest struct {
	Kind               RequestKind
	Leader             int32
	CurrentLeaderEpoch int32
	Epoch              int32  // RequestEpochQuery: the follower's latest epoch
	FetchOffset        Offset // RequestFetch
	LogStart           Offset // RequestFetch: the follower's log start
}

// NextRequest is the follower's next request to its leader.
func (p *Partition) NextRequest() FollowerRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.role != RoleFollower || p.fenced {
		return FollowerRequest{}
	}
	r := FollowerRequest{Leader: p.state.Leader, CurrentLeaderEpoch: p.state.LeaderEpoch}
	if p.truncating {
		epoch, ok := p.log.Epochs().LatestEpoch()
		if !ok {
			// No epochs: nothing to compare; keep what is committed.
			if err := p.truncateLocked(p.log.HighWatermark()); err != nil {
				p.opts.Logger.Error("truncating to the high watermark failed", "partition", p.log.TopicPartition(), "err", err)
				return FollowerRequest{}
			}
			p.truncating = false
			p.requestChanged()
			p.setFetchPos(p.log.LogEndOffset())
		} else {
			r.Kind = RequestEpochQuery
			r.Epoch = epoch
			return r
		}
	}
	r.Kind = RequestFetch
	r.FetchOffset = p.fetchPos
	r.LogStart = p.log.LogStartOffset()
	return r
}

// current reports whether a response to req still applies. Caller holds mu.
func (p *Partition) current(req FollowerRequest) bool {
	return p.role == RoleFollower && !p.fenced && p.state.Leader == req.Leader && p.state.LeaderEpoch == req.CurrentLeaderEpoch
}

// truncateTo truncates the log and its epoch cache to off. Caller holds mu.
func (p *Partition) truncateLocked(off Offset) error {
	if off < p.log.LogEndOffset() {
		if err := p.guardTruncate(func() error { return p.log.TruncateTo(off) }); err != nil {
			return err
		}
	}
	return p.log.Epochs().TruncateFromEnd(int64(p.log.LogEndOffset()))
}

// guardTruncate runs a truncation of the log through Options.AroundTruncate.
// Caller holds mu.
func (p *Partition) guardTruncate(truncate func() error) error {
	if p.opts.AroundTruncate == nil {
		return truncate()
	}
	return p.opts.AroundTruncate(truncate)
}

// HandleEpochAnswer applies the leader's OffsetsForLeaderEpoch answer to
// req: truncate to the divergence point; fetch from there once truncation
// is complete (else ask again with the new latest epoch).
func (p *Partition) HandleEpochAnswer(req FollowerRequest, ans EpochEndOffset) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.current(req) || !p.truncating {
		return nil
	}
	leo := p.log.LogEndOffset()
	off, done := TruncationOffset(ans, p.log.Epochs(), leo, p.log.HighWatermark())
	if off < leo {
		p.opts.Logger.Info("truncating follower log", "partition", p.log.TopicPartition(), "from", leo, "to", off,
			"leader", req.Leader, "leader_epoch", req.CurrentLeaderEpoch, "asked_epoch", req.Epoch, "answer_epoch", ans.Epoch, "answer_offset", ans.EndOffset)
	}
	if err := p.truncateLocked(off); err != nil {
		return err
	}
	if done {
		p.truncating = false
		p.requestChanged()
		p.setFetchPos(p.log.LogEndOffset())
	}
	return nil
}

// HandleFetchAnswer appends the leader's batches (verbatim: offsets and
// leader epochs as the leader wrote them) and learns the HW and log start.
// A trailing partial batch is dropped (it is fetched again).
func (p *Partition) HandleFetchAnswer(req FollowerRequest, batches []byte, leaderHW, leaderLogStart Offset) error {
	p.mu.Lock()
	if !p.current(req) || p.truncating || req.FetchOffset != p.fetchPos || p.fetchPos != p.log.LogEndOffset() {
		p.mu.Unlock()
		return nil
	}
	batches = wholeBatches(batches)
	if len(batches) > 0 {
		if _, err := p.log.AppendReplicated(batches); err != nil {
			p.setFetchPos(p.log.LogEndOffset())
			p.mu.Unlock()
			return err
		}
	}
	leo := p.log.LogEndOffset()
	p.setFetchPos(leo)
	old := p.log.HighWatermark()
	hw := min(leaderHW, leo)
	if hw != old {
		p.log.SetHighWatermark(hw)
	}
	if ls := min(leaderLogStart, p.log.HighWatermark()); ls > p.log.LogStartOffset() {
		if err := p.log.DeleteRecordsBefore(ls); err != nil {
			p.opts.Logger.Warn("following the leader's log start failed", "partition", p.log.TopicPartition(), "err", err)
		}
	}
	if hw != old || len(batches) > 0 {
		p.wakeParked(true)
	}
	p.mu.Unlock()
	return nil
}

// HandleFenced records that the leader fenced req's epoch (ours is stale):
// stop fetching until a newer state arrives.
func (p *Partition) HandleFenced(req FollowerRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current(req) {
		p.fenced = true
		p.requestChanged()
	}
}

// HandleOutOfRange handles OFFSET_OUT_OF_RANGE from the leader given its log
// start and end: a leader behind us (an unclean election) truncates us to
// its end; a leader whose log starts after our end restarts us empty at its
// start; otherwise we fetch again from our end.
func (p *Partition) HandleOutOfRange(req FollowerRequest, leaderLogStart, leaderLEO Offset) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.current(req) || p.truncating {
		return nil
	}
	leo := p.log.LogEndOffset()
	switch {
	case leaderLEO < leo:
		p.opts.Logger.Warn("leader log ends before ours; truncating", "partition", p.log.TopicPartition(), "leader_end", leaderLEO, "end", leo)
		if err := p.truncateLocked(leaderLEO); err != nil {
			return err
		}
	case leaderLogStart > leo:
		p.opts.Logger.Info("leader log starts after our end; starting over", "partition", p.log.TopicPartition(), "leader_start", leaderLogStart, "end", leo)
		if err := p.guardTruncate(func() error { return p.log.TruncateFullyAndStartAt(leaderLogStart) }); err != nil {
			return err
		}
	}
	p.setFetchPos(p.log.LogEndOffset())
	return nil
}

// wholeBatches trims a trailing partial batch.
func wholeBatches(b []byte) []byte {
	n := 0
	rest := b
	for len(rest) > 0 {
		batch, r, err := record.ReadBatch(rest)
		if err != nil {
			break
		}
		n += len(batch)
		rest = r
	}
	return b[:n]
}

// ErrIsRetriable reports whether a follower error is worth retrying as is.
func ErrIsRetriable(err error) bool {
	return !errors.Is(err, ErrFencedLeaderEpoch)
}

// storageErr marks an I/O failure of the local log as engine.ErrStorage
// (KAFKA_STORAGE_ERROR: the controller takes the replica offline).
func storageErr(err error) error {
	if errors.Is(err, engine.ErrStorage) || errors.Is(err, engine.ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %w", engine.ErrStorage, err)
}
