package replica

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/clock"
)

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	ID     int32         // this broker
	LagMax time.Duration // replica.lag.time.max.ms
	// SyncAlone is kvlog.fsync.acks.all: while a leader is alone in its
	// ISR, its HW passes only fsynced offsets.
	SyncAlone bool
	// Clock gives the time (ISR lag) and runs the acks=all and parked
	// fetch timeouts (nil: clock.Real).
	Clock  clock.Clock
	Logger *slog.Logger
	// AroundTruncate, when set, gives each log's Options.AroundTruncate.
	AroundTruncate func(l *engine.Log) func(truncate func() error) error
	// GroupSync is how a group commit syncs the partitions waiting:
	// engine.SyncAuto (the zero value: fdatasyncs or one syncfs per log
	// dir, whichever was measured faster), or one of them always.
	GroupSync engine.SyncStrategy
	// OnISRChange receives the ISR changes leaders propose (follower
	// fetches, Tick): the caller persists them and reports back with
	// Partition.ISRChangeDone. Nil when no partition has followers.
	OnISRChange func(p *Partition, ch *ISRChange)
}

// Manager owns the partitions this broker hosts, as leaders or followers
// (a single node is a cluster of one: its partitions lead with ISR = this
// broker). It is the one path for leader appends and their durability
// (fsyncs scheduled off the caller's goroutine and group-committed across
// partitions: one committer syncs every partition waiting at once, see
// requestFlush), acks=all completion with its timeout, follower fetches
// with their ISR proposals, and parked fetches and their wake-ups. Safe
// for concurrent use.
type Manager struct {
	cfg     ManagerConfig
	mu      sync.Mutex
	parts   map[*Partition]struct{}
	wide    wideParked // fetches parked on whole sessions (ParkWide)
	wakers  wakers     // run the parked fetches' completions
	isr     isrWatch   // the partitions the ISR check looks at (Tick)
	closing atomic.Bool
	flushes sync.WaitGroup

	// The group commit: partitions whose HW waits for an fsync, and
	// whether the committer goroutine runs (flushMu).
	flushMu   sync.Mutex
	toFlush   []*Partition
	committer bool
	// The holds (HoldCommits): how many are not yet released, and the
	// sequence number the last one got.
	holds   int
	holdSeq uint64
	// lastCommit is how long the last group commit's sync took, lastHold
	// how long the last hold released lasted: the longer of the two bounds
	// the committer's wait for holds in progress (awaitHolds).
	lastCommit, lastHold time.Duration
	// While the committer waits for the holds in progress: the last
	// sequence number it waits for, how many of those are not yet
	// released, and the channel closed when none is left.
	waitUpTo  uint64
	waitLeft  int
	holdsDone chan struct{}
}

// NewManager returns a Manager with no partitions.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	return &Manager{cfg: cfg, parts: map[*Partition]struct{}{}}
}

// Add hosts l as a replica with RoleNone (cluster mode: LeaderAndIsr then
// gives it its role).
func (m *Manager) Add(l *engine.Log) *Partition {
	opts := Options{ID: m.cfg.ID, LagMax: m.cfg.LagMax, SyncAlone: m.cfg.SyncAlone, Logger: m.cfg.Logger}
	if m.cfg.AroundTruncate != nil {
		opts.AroundTruncate = m.cfg.AroundTruncate(l)
	}
	p := newPartition(l, opts, &m.wide)
	p.isrSet = &m.isr
	m.mu.Lock()
	m.parts[p] = struct{}{}
	m.mu.Unlock()
	return p
}

// LeadAlone hosts l as the leader of a partition whose only replica is
// this broker (a single node), at leader epoch epoch.
func (m *Manager) LeadAlone(l *engine.Log, epoch int32) (*Partition, error) {
	p := m.Add(l)
	me := []int32{m.cfg.ID}
	if _, err := p.MakeLeader(State{Leader: m.cfg.ID, LeaderEpoch: epoch, ISR: me, Replicas: me}, m.cfg.Clock.Now()); err != nil {
		m.Remove(p)
		return nil, err
	}
	return p, nil
}

// Remove stops p (acks=all waiters fail, parked fetches wake) and forgets
// it (its log is being deleted).
func (m *Manager) Remove(p *Partition) {
	p.Stop()
	m.mu.Lock()
	delete(m.parts, p)
	m.mu.Unlock()
	m.isr.forget(p)
}

func (m *Manager) partitions() []*Partition {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Partition, 0, len(m.parts))
	for p := range m.parts {
		out = append(out, p)
	}
	return out
}

// Append appends a producer's batch to p as its leader (acksAll: refused
// below minISR in-sync replicas). When the HW now waits for an fsync, one
// is started on its own goroutine; appends arriving meanwhile share it.
// The caller answers acks=1 at once and acks=all with AwaitAcks.
func (m *Manager) Append(p *Partition, batch []byte, acksAll bool, minISR int) (engine.AppendResult, error) {
	res, flush, err := p.AppendAsLeader(batch, acksAll, minISR)
	if flush {
		m.requestFlush(p)
	}
	return res, err
}

// requestFlush hands p, whose HW now waits for an fsync, to the group
// commit: one committer goroutine takes every partition waiting, makes
// them durable together (engine.SyncLogs: their fdatasyncs in parallel or
// one file-system sync per log dir, whichever is faster for that many
// partitions), lets their HWs pass, and goes on with the partitions
// that waited meanwhile, until none is left. So the number of syncs
// follows the time a sync takes, not the number of partitions or requests.
//
// While a caller holds commits (HoldCommits), p waits for a release, an
// AwaitAcks or a commit already running instead of starting one.
func (m *Manager) requestFlush(p *Partition) {
	m.flushMu.Lock()
	m.toFlush = append(m.toFlush, p)
	start := !m.committer && m.holds == 0
	if start {
		m.committer = true
		m.flushes.Add(1)
	}
	m.flushMu.Unlock()
	if start {
		go m.commit()
	}
}

// HoldCommits delays the group commits that appends from now on would
// start until release is called: a produce request appends to every one of
// its partitions, then releases, and one group commit covers them all
// instead of a commit starting with its first partition and more during its
// other appends. The last release starts the commit of whatever waits.
//
// A committer already running (started by another caller's release, an
// AwaitAcks, or going on after its previous sync) waits, before it takes
// its next group, for the holds in progress at that moment, so that a
// request being appended is not split across two commits and answered
// only after the second (awaitHolds). That wait is bounded: holds begun
// during it are not waited for (a steady stream of overlapping requests
// cannot postpone a commit), and it lasts at most as long as the last
// commit's sync or the last hold took, whichever is longer (a request
// appends for about as long as the previous one did; one that holds much
// longer is committed in parts), so a wait for acks never depends on a
// hold being released. release must be called exactly once.
func (m *Manager) HoldCommits() (release func()) {
	m.flushMu.Lock()
	m.holds++
	m.holdSeq++
	seq := m.holdSeq
	m.flushMu.Unlock()
	start := m.cfg.Clock.Now()
	var once sync.Once
	return func() {
		once.Do(func() { m.releaseHold(seq, m.cfg.Clock.Now().Sub(start)) })
	}
}

// releaseHold ends hold seq: it wakes the committer waiting for it, if it
// was the last of the holds it waits for, and otherwise starts the
// committer when partitions wait and it is not running.
func (m *Manager) releaseHold(seq uint64, held time.Duration) {
	m.flushMu.Lock()
	m.holds--
	m.lastHold = held
	if m.holdsDone != nil && seq <= m.waitUpTo {
		if m.waitLeft--; m.waitLeft == 0 {
			close(m.holdsDone)
			m.holdsDone = nil
		}
	}
	start := !m.committer && len(m.toFlush) > 0
	if start {
		m.committer = true
		m.flushes.Add(1)
	}
	m.flushMu.Unlock()
	if start {
		go m.commit()
	}
}

// kickCommit starts the committer when partitions wait and it is not
// running: whenever someone waits for acks (AwaitAcks), so that a wait
// never depends on a hold being released (a committer running waits for
// holds a bounded time: awaitHolds).
func (m *Manager) kickCommit() {
	m.flushMu.Lock()
	start := !m.committer && len(m.toFlush) > 0
	if start {
		m.committer = true
		m.flushes.Add(1)
	}
	m.flushMu.Unlock()
	if start {
		go m.commit()
	}
}

// awaitHolds is the committer's wait, before it takes a group, for the
// holds in progress (HoldCommits): until each of them is released, or as
// long as the last commit's sync or the last hold took (whichever is
// longer), whichever comes first. Holds begun meanwhile are not waited
// for. Caller holds flushMu, which is released during the wait.
func (m *Manager) awaitHolds() {
	bound := max(m.lastCommit, m.lastHold)
	if m.holds == 0 || bound <= 0 || m.closing.Load() {
		return
	}
	done := make(chan struct{})
	m.waitUpTo, m.waitLeft, m.holdsDone = m.holdSeq, m.holds, done
	m.flushMu.Unlock()
	t := clock.NewTimer(m.cfg.Clock, bound)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	m.flushMu.Lock()
	if m.holdsDone == done {
		m.holdsDone = nil // timed out
	}
}

// commit is the committer goroutine.
func (m *Manager) commit() {
	defer m.flushes.Done()
	for {
		m.flushMu.Lock()
		if len(m.toFlush) > 0 {
			m.awaitHolds()
		}
		group := m.toFlush
		m.toFlush = nil
		if len(group) == 0 {
			m.committer = false
			m.flushMu.Unlock()
			return
		}
		m.flushMu.Unlock()
		logs := make([]*engine.Log, len(group))
		for i, p := range group {
			logs[i] = p.log
		}
		start := m.cfg.Clock.Now()
		errs := engine.SyncLogsWith(logs, m.cfg.GroupSync)
		took := m.cfg.Clock.Now().Sub(start)
		// Every HW moves first, then the acks=all completions run, each
		// partition's on a goroutine of its own as with a flush of its
		// own: a completion may append and wait for the next commit
		// (a transaction coordinator recording a commit once its markers
		// are in), which this goroutine must stay free to run.
		var again []*Partition
		for i, p := range group {
			more, cs := p.flushed(errs[i])
			if more {
				again = append(again, p)
			}
			if len(cs) > 0 {
				m.flushes.Add(1) // Close waits for them too
				go func() {
					defer m.flushes.Done()
					runCompletions(cs)
				}()
			}
		}
		m.flushMu.Lock()
		m.lastCommit = took
		m.toFlush = append(m.toFlush, again...)
		m.flushMu.Unlock()
	}
}

// AppendMarker appends a transaction marker to p as its leader (refused
// below minISR in-sync replicas); the caller waits for it with AwaitAcks.
func (m *Manager) AppendMarker(p *Partition, mk engine.Marker, minISR int) (engine.AppendResult, error) {
	res, flush, err := p.AppendMarkerAsLeader(mk, minISR)
	if flush {
		m.requestFlush(p)
	}
	return res, err
}

// AckWait is one partition of an acks=all produce: complete when the HW
// passed Last. AwaitAcks sets Err (nil on success).
type AckWait struct {
	P      *Partition
	Last   Offset
	MinISR int
	Err    error
}

// AwaitAcks calls done once every wait is complete (Err nil or
// ErrNotEnoughReplicasAfterAppend), can never complete here (ErrNotLeader,
// a storage error), or timeout passed (ErrTimedOut for the rest). done runs
// once, on the caller's goroutine or later on another.
func (m *Manager) AwaitAcks(waits []AckWait, timeout time.Duration, done func()) {
	if len(waits) == 0 {
		done()
		return
	}
	m.kickCommit()
	var (
		mu       sync.Mutex
		pending  = len(waits)
		finished bool
		complete = make([]bool, len(waits))
		cancels  = make([]func() bool, len(waits))
		stop     func() bool // the timeout's timer
	)
	finish := func(i int, err error) {
		mu.Lock()
		if finished || complete[i] {
			mu.Unlock()
			return
		}
		complete[i] = true
		waits[i].Err = err
		if pending--; pending > 0 {
			mu.Unlock()
			return
		}
		finished = true
		st := stop
		mu.Unlock()
		if st != nil {
			st()
		}
		done()
	}
	mu.Lock()
	stop = clock.AfterFunc(m.cfg.Clock, timeout, func() {
		mu.Lock()
		if finished {
			mu.Unlock()
			return
		}
		finished = true
		for i := range waits {
			if !complete[i] {
				if cancels[i] != nil {
					cancels[i]()
				}
				waits[i].Err = ErrTimedOut
			}
		}
		mu.Unlock()
		done()
	})
	mu.Unlock()
	for i, w := range waits {
		cancel := w.P.AwaitAck(w.Last, w.MinISR, func(err error) { finish(i, err) })
		mu.Lock()
		cancels[i] = cancel
		mu.Unlock()
	}
}

// FollowerFetch records a follower's fetch on p (Partition.FollowerFetch)
// and hands an ISR expansion to OnISRChange.
func (m *Manager) FollowerFetch(p *Partition, replicaID int32, fetchOffset Offset, currentEpoch int32) (FollowerView, error) {
	return m.SessionFollowerFetch(p, replicaID, fetchOffset, currentEpoch, nil)
}

// SessionFollowerFetch is FollowerFetch through an incremental fetch
// session that passes over the partition while nothing changes:
// sessionClock is where the session writes when it last did (unix
// nanoseconds). Until the follower's next fetch of the partition, such a
// fetch counts as one at the leader's log end (the follower stays in
// sync without a fetch of the partition itself).
func (m *Manager) SessionFollowerFetch(p *Partition, replicaID int32, fetchOffset Offset, currentEpoch int32, sessionClock SessionClock) (FollowerView, error) {
	v, err := p.followerFetch(replicaID, fetchOffset, currentEpoch, m.cfg.Clock.Now(), sessionClock)
	if err == nil && v.Expand != nil {
		m.proposeISR(p, v.Expand)
	}
	return v, err
}

// Tick checks the led partitions that may have an out-of-sync follower
// (ISR shrinks go to OnISRChange): those whose leader state changed since
// they were last found quiet (isr_watch.go), not every partition.
func (m *Manager) Tick() {
	now := m.cfg.Clock.Now()
	for _, p := range m.isr.marked() {
		m.isr.looked.Add(1)
		ch, quiet := p.tick(now)
		if ch != nil {
			m.proposeISR(p, ch)
		}
		if quiet {
			m.isr.settle(p)
		}
	}
}

func (m *Manager) proposeISR(p *Partition, ch *ISRChange) {
	if m.cfg.OnISRChange == nil {
		p.ISRChangeDone(ch, 0, errNoISRWriter, nil)
		return
	}
	m.cfg.OnISRChange(p, ch)
}

var errNoISRWriter = errors.New("replica: no ISR writer")

// Watched is one partition a parked fetch waits on, with the end it read
// up to: the HW (a consumer), or the LEO (Follower).
type Watched struct {
	P        *Partition
	Follower bool
	Seen     Offset
}

// parked is a fetch short of its minimum bytes, registered on its
// partitions with a timer for its deadline.
type parked struct {
	fired atomic.Bool
	parts []*Partition
	stop  func() bool // the deadline's timer
	done  func(final bool)
	run   *wakers // where done runs
	// Of a fetch parked on a whole session (ParkWide): its set, and the
	// partitions it covers.
	wide *wideParked
	spec Wide
}

// Wide is the rest of an incremental fetch session a fetch parks on
// (ParkWide): the session's partitions the fetch passed over because
// nothing of theirs changed. Registering a wait on each of thousands of
// partitions at every fetch cost an idle follower's leader more than
// reading them.
type Wide struct {
	Follower bool // a follower's session: woken by log-end moves too
	// Covers reports whether p is one of the session's partitions.
	Covers func(p *Partition) bool
	// Moved reports whether a partition the fetch passed over changed
	// since (checked once the wait is registered).
	Moved func() bool
}

// wideParked are the fetches parked on whole sessions. Every move of a
// partition looks at each of them (few: a follower's or a large
// consumer's sessions).
type wideParked struct {
	n     atomic.Int32
	moves atomic.Uint64 // every move of every partition (Manager.Moves)
	mu    sync.Mutex
	ws    map[*parked]struct{}
}

func (wp *wideParked) add(w *parked) {
	wp.mu.Lock()
	if wp.ws == nil {
		wp.ws = map[*parked]struct{}{}
	}
	wp.ws[w] = struct{}{}
	wp.n.Store(int32(len(wp.ws)))
	wp.mu.Unlock()
}

func (wp *wideParked) remove(w *parked) {
	wp.mu.Lock()
	delete(wp.ws, w)
	wp.n.Store(int32(len(wp.ws)))
	wp.mu.Unlock()
}

// wake wakes the wide fetches covering p (all: any; else a follower's).
func (wp *wideParked) wake(p *Partition, all bool) {
	wp.moves.Add(1)
	if wp.n.Load() == 0 {
		return
	}
	wp.mu.Lock()
	defer wp.mu.Unlock()
	for w := range wp.ws {
		if (all || w.spec.Follower) && w.spec.Covers(p) {
			w.fire(false)
		}
	}
}

// ParkedWide is how many fetches are parked on whole sessions (ParkWide).
func (m *Manager) ParkedWide() int { return int(m.wide.n.Load()) }

// Moves counts the moves of all partitions (each one moving a partition's
// FetchState), after the move: while it stays, no partition moved.
func (m *Manager) Moves() uint64 { return m.wide.moves.Load() }

func (wp *wideParked) fireAll() {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	for w := range wp.ws {
		w.fire(true)
	}
}

// fire completes the wait once, off the caller's goroutine (wakers): final
// at the deadline or shutdown, otherwise because a partition moved (the
// fetch is evaluated again and may park again until its deadline).
func (w *parked) fire(final bool) {
	if !w.fired.CompareAndSwap(false, true) {
		return
	}
	w.run.run(func() {
		w.stop()
		for _, p := range w.parts {
			p.unwatch(w)
		}
		if w.wide != nil {
			w.wide.remove(w)
		}
		w.done(final)
	})
}

// Park waits for any of parts to move past what the fetch saw (its HW, or
// its LEO for a follower), a role change or removal of one of them, the
// Manager's shutdown, or wait to pass; then done runs once, on another
// goroutine than the one that woke it (wakers; final at the deadline and
// on shutdown).
func (m *Manager) Park(parts []Watched, wait time.Duration, done func(final bool)) {
	m.park(parts, nil, wait, done)
}

// ParkWide is Park for a fetch of an incremental session that passed over
// the session's unchanged partitions: it also wakes when one of those
// moves (wide.Covers), or has moved already (wide.Moved).
func (m *Manager) ParkWide(parts []Watched, wide Wide, wait time.Duration, done func(final bool)) {
	m.park(parts, &wide, wait, done)
}

func (m *Manager) park(parts []Watched, wide *Wide, wait time.Duration, done func(final bool)) {
	w := &parked{done: done, run: &m.wakers, parts: make([]*Partition, len(parts))}
	for i, pw := range parts {
		w.parts[i] = pw.P
	}
	if wide != nil {
		w.wide, w.spec = &m.wide, *wide
	}
	// fire stops the deadline's timer: the timer's own firing waits until
	// w.stop is set.
	set := make(chan struct{})
	w.stop = clock.AfterFunc(m.cfg.Clock, wait, func() { <-set; w.fire(true) })
	close(set)
	for _, pw := range parts {
		pw.P.watch(w, pw.Follower)
	}
	if wide != nil {
		m.wide.add(w)
		if w.fired.Load() {
			m.wide.remove(w) // (fire may have removed it before the add)
		}
	}
	// A move between the fetch's read and the registration would be
	// missed: look again now that it is registered.
	for _, pw := range parts {
		end := pw.P.log.HighWatermark()
		if pw.Follower {
			end = pw.P.log.LogEndOffset()
		}
		if end != pw.Seen {
			w.fire(false)
			break
		}
	}
	if wide != nil && wide.Moved() {
		w.fire(false)
	}
	if m.closing.Load() {
		w.fire(true)
	}
}

// Shutdown answers every parked fetch now, and every later one at once.
func (m *Manager) Shutdown() {
	m.closing.Store(true)
	for _, p := range m.partitions() {
		p.watchMu.Lock()
		for w := range p.parked {
			w.fire(true)
		}
		p.watchMu.Unlock()
	}
	m.wide.fireAll()
	m.wakers.close()
}

// Closing reports whether Shutdown was called.
func (m *Manager) Closing() bool { return m.closing.Load() }

// StopAll stops every partition (acks=all waiters fail with ErrNotLeader).
func (m *Manager) StopAll() {
	for _, p := range m.partitions() {
		p.Stop()
	}
}

// Close shuts down, stops every partition and waits for the fsyncs in
// flight; the logs may be closed after it returns.
func (m *Manager) Close() {
	m.Shutdown()
	m.StopAll()
	m.flushes.Wait()
}
