package replica

import (
	"errors"
	"slices"
	"time"

	"github.com/kvlog/kvlog/engine"
)

// Offset is a Kafka offset.
type Offset = engine.Offset

// UnknownOffset is a follower LEO the leader has not learned yet.
const UnknownOffset Offset = -1

// Errors returned by the replica package; the server maps them to Kafka
// error codes.
var (
	ErrNotLeader                    = errors.New("replica: not the leader")                                                   // NOT_LEADER_OR_FOLLOWER
	ErrNotEnoughReplicas            = errors.New("replica: fewer in-sync replicas than min.insync.replicas")                  // NOT_ENOUGH_REPLICAS
	ErrNotEnoughReplicasAfterAppend = errors.New("replica: in-sync replicas fell below min.insync.replicas after the append") // NOT_ENOUGH_REPLICAS_AFTER_APPEND
	ErrFencedLeaderEpoch            = errors.New("replica: leader epoch is older than the current one")                       // FENCED_LEADER_EPOCH
	ErrUnknownLeaderEpoch           = errors.New("replica: leader epoch is newer than the current one")                       // UNKNOWN_LEADER_EPOCH
	ErrNotReplica                   = errors.New("replica: broker is not a replica of the partition")                         // NOT_LEADER_OR_FOLLOWER
	ErrStaleState                   = errors.New("replica: partition state is older than the current one")                    // STALE_CONTROLLER_EPOCH / ignored
	ErrTimedOut                     = errors.New("replica: acks=all timed out before the high watermark reached the batch")   // REQUEST_TIMED_OUT
)

// ISRChange is an ISR change the leader proposes. The caller writes it to
// the partition state (conditionally on ZkVersion) and reports the outcome
// with Leader.ISRCommitted or Leader.ISRChangeFailed. At most one change is
// in flight.
type ISRChange struct {
	LeaderEpoch int32
	ISR         []int32 // the proposed ISR, leader first
	ZkVersion   int32   // the partition state version the write must match
	Shrink      bool
	// SyncFirst says the ISR is about to be the leader alone: the log is
	// fsynced when the change is proposed and again when it is committed
	// (Partition does both; see the package doc, last replica standing).
	SyncFirst bool
}

// followerState is what the leader knows of one follower.
type followerState struct {
	leo                Offset
	lastCaughtUp       time.Time
	lastFetchLeaderLEO Offset
	lastFetch          time.Time
	// sessionFetch, when set, is when the follower's fetch session last
	// passed over the partition (unix nanoseconds; SetSessionClock).
	sessionFetch SessionClock
}

// SessionClock is when a follower's fetch session last passed over a
// partition (unix nanoseconds; 0: never). An *atomic.Int64 is one.
type SessionClock interface{ Load() int64 }

// lastFetchAt is when the follower last fetched the partition: its last
// fetch seen by FollowerFetch, or later a fetch of its session that passed
// over the partition. A session passes over a partition only while the
// follower is at the leader's log end and nothing changed since its last
// answer, so such a fetch counts only while the follower had reached the
// leader's log end at the fetch FollowerFetch saw.
func (f *followerState) lastFetchAt() time.Time {
	t := f.lastFetch
	if f.sessionFetch != nil && f.lastFetchLeaderLEO >= 0 && f.leo >= f.lastFetchLeaderLEO {
		if n := f.sessionFetch.Load(); n > 0 {
			t = later(t, time.Unix(0, n))
		}
	}
	return t
}

// caughtUpAt is when the follower was last caught up (Kafka's
// lastCaughtUpTime), counting the session's fetches that passed over the
// partition while it was at the leader's log end.
func (f *followerState) caughtUpAt() time.Time {
	if f.leo >= f.lastFetchLeaderLEO && f.lastFetchLeaderLEO >= 0 {
		return later(f.lastCaughtUp, f.lastFetchAt())
	}
	return f.lastCaughtUp
}

// LeaderParams start a Leader.
type LeaderParams struct {
	ID         int32   // this broker
	Epoch      int32   // leader epoch
	Replicas   []int32 // assignment
	ISR        []int32 // committed ISR
	ZkVersion  int32   // version of the committed partition state
	LEO        Offset  // leader log end offset now
	HW         Offset  // leader log high watermark now
	EpochStart Offset  // start offset of this leader epoch (the LEO when elected)
	LagMax     time.Duration
	// SyncAlone: while the maximal ISR is the leader alone, the HW passes
	// only offsets below Durable (kvlog.fsync.acks.all; see the package doc).
	SyncAlone bool
	Durable   Offset // the log is fsynced below this offset
}

// Leader is the deterministic leader-side state of one partition. It is not
// safe for concurrent use.
type Leader struct {
	id         int32
	epoch      int32
	epochStart Offset
	replicas   []int32
	isr        []int32 // committed
	zkVersion  int32
	pending    *ISRChange
	followers  map[int32]*followerState
	leo        Offset
	hw         Offset
	lagMax     time.Duration
	syncAlone  bool
	durable    Offset
}

// NewLeader starts leading at now. Followers in the ISR count as caught up
// now (so they are not dropped before their first fetch); others as never.
func NewLeader(p LeaderParams, now time.Time) *Leader {
	l := &Leader{
		id:         p.ID,
		epoch:      p.Epoch,
		epochStart: p.EpochStart,
		replicas:   slices.Clone(p.Replicas),
		isr:        slices.Clone(p.ISR),
		zkVersion:  p.ZkVersion,
		followers:  map[int32]*followerState{},
		leo:        p.LEO,
		hw:         p.HW,
		lagMax:     p.LagMax,
		syncAlone:  p.SyncAlone,
		durable:    p.Durable,
	}
	if !slices.Contains(l.isr, l.id) {
		l.isr = append([]int32{l.id}, l.isr...)
	}
	for _, r := range l.replicas {
		if r == l.id {
			continue
		}
		f := &followerState{leo: UnknownOffset, lastFetchLeaderLEO: UnknownOffset}
		if slices.Contains(l.isr, r) {
			f.lastCaughtUp = now
		}
		l.followers[r] = f
	}
	l.maybeRaiseHW()
	return l
}

// Epoch is the leader epoch.
func (l *Leader) Epoch() int32 { return l.epoch }

// HW is the high watermark.
func (l *Leader) HW() Offset { return l.hw }

// LEO is the leader's log end offset as last reported.
func (l *Leader) LEO() Offset { return l.leo }

// ISR is the committed ISR (a copy).
func (l *Leader) ISR() []int32 { return slices.Clone(l.isr) }

// ZkVersion is the version of the committed partition state.
func (l *Leader) ZkVersion() int32 { return l.zkVersion }

// CaughtUp is when follower id was last seen caught up, counting the
// fetches of its session that passed over the partition (the time the ISR
// rule uses; false: not a follower this leader has heard from).
func (l *Leader) CaughtUp(id int32) (time.Time, bool) {
	f, ok := l.followers[id]
	if !ok {
		return time.Time{}, false
	}
	return f.caughtUpAt(), true
}

// Pending is the ISR change in flight, or nil.
func (l *Leader) Pending() *ISRChange { return l.pending }

// Replicas is the assignment (a copy).
func (l *Leader) Replicas() []int32 { return slices.Clone(l.replicas) }

// FollowerLEO is what the leader knows of a follower's LEO (UnknownOffset
// before its first fetch), and whether id is a follower.
func (l *Leader) FollowerLEO(id int32) (Offset, bool) {
	f, ok := l.followers[id]
	if !ok {
		return UnknownOffset, false
	}
	return f.leo, true
}

// maximalISR is the set the HW is computed over: the committed ISR plus any
// member being added (a member being removed still counts until the removal
// is committed).
func (l *Leader) maximalISR() []int32 {
	if l.pending != nil && !l.pending.Shrink {
		return l.pending.ISR
	}
	return l.isr
}

// maybeRaiseHW recomputes HW = min LEO over the maximal ISR and raises it
// (never lowers). When the maximal ISR is the leader alone and SyncAlone is
// set, the leader's own term is its durable offset instead of its LEO. It
// reports whether the HW moved.
func (l *Leader) maybeRaiseHW() bool {
	hw := l.leo
	if l.syncAlone && l.aloneMaximal() {
		hw = min(hw, l.durable)
	}
	for _, r := range l.maximalISR() {
		if r == l.id {
			continue
		}
		f, ok := l.followers[r]
		if !ok {
			continue
		}
		hw = min(hw, f.leo)
	}
	if hw > l.hw {
		l.hw = hw
		return true
	}
	return false
}

// Appended records a new leader LEO (after an append). It reports whether
// the HW moved (it does when the maximal ISR is the leader alone).
func (l *Leader) Appended(leo Offset) bool {
	if leo > l.leo {
		l.leo = leo
	}
	return l.maybeRaiseHW()
}

// FetchResult is what a follower fetch changed.
type FetchResult struct {
	HWChanged bool
	// Expand is an ISR expansion to persist, or nil.
	Expand *ISRChange
}

// FollowerFetch records a fetch by follower id at fetchOffset (it has every
// offset below it) at time now, with Kafka's caught-up rule, then
// recomputes the HW and checks for ISR expansion.
func (l *Leader) FollowerFetch(id int32, fetchOffset Offset, now time.Time) (FetchResult, error) {
	f, ok := l.followers[id]
	if !ok {
		return FetchResult{}, ErrNotReplica
	}
	switch {
	case fetchOffset >= l.leo:
		f.lastCaughtUp = later(f.lastCaughtUp, now)
	case fetchOffset >= f.lastFetchLeaderLEO && f.lastFetchLeaderLEO >= 0:
		f.lastCaughtUp = later(f.lastCaughtUp, f.lastFetchAt())
	}
	f.leo = fetchOffset
	f.lastFetchLeaderLEO = l.leo
	f.lastFetch = now
	var res FetchResult
	res.Expand = l.maybeExpand(id)
	res.HWChanged = l.maybeRaiseHW()
	return res, nil
}

// SetSessionClock records c as the clock of follower id's fetch session
// (nil: none; see followerState.sessionFetch). Call it with the fetch
// FollowerFetch records, after it.
func (l *Leader) SetSessionClock(id int32, c SessionClock) {
	if f, ok := l.followers[id]; ok {
		f.sessionFetch = c
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// maybeExpand proposes adding id to the ISR when it reached the HW and the
// start of the current leader epoch.
func (l *Leader) maybeExpand(id int32) *ISRChange {
	if l.pending != nil || slices.Contains(l.isr, id) {
		return nil
	}
	f := l.followers[id]
	if f.leo < l.hw || f.leo < l.epochStart {
		return nil
	}
	isr := append(slices.Clone(l.isr), id)
	l.pending = &ISRChange{LeaderEpoch: l.epoch, ISR: isr, ZkVersion: l.zkVersion}
	return l.pending
}

// OutOfSync lists the ISR followers that are out of sync at now.
func (l *Leader) OutOfSync(now time.Time) []int32 {
	var out []int32
	for _, r := range l.isr {
		if r == l.id {
			continue
		}
		f, ok := l.followers[r]
		if !ok {
			out = append(out, r)
			continue
		}
		if f.leo != l.leo && now.Sub(f.caughtUpAt()) > l.lagMax {
			out = append(out, r)
		}
	}
	return out
}

// Tick proposes an ISR shrink when followers fell out of sync, or returns
// nil. A shrink to the leader alone carries SyncFirst.
func (l *Leader) Tick(now time.Time) *ISRChange {
	if l.pending != nil {
		return nil
	}
	out := l.OutOfSync(now)
	if len(out) == 0 {
		return nil
	}
	isr := make([]int32, 0, len(l.isr))
	for _, r := range l.isr {
		if !slices.Contains(out, r) {
			isr = append(isr, r)
		}
	}
	l.pending = &ISRChange{LeaderEpoch: l.epoch, ISR: isr, ZkVersion: l.zkVersion, Shrink: true,
		SyncFirst: len(isr) == 1 && isr[0] == l.id}
	return l.pending
}

// ISRCommitted installs the pending change as committed at zkVersion. It
// reports whether the HW moved.
func (l *Leader) ISRCommitted(zkVersion int32) bool {
	if l.pending == nil {
		return false
	}
	l.isr = l.pending.ISR
	l.zkVersion = zkVersion
	l.pending = nil
	return l.maybeRaiseHW()
}

// ISRChangeFailed drops the pending change (the write failed; a later tick
// or fetch proposes again). A failed expansion shrinks the maximal ISR, so
// it reports whether the HW moved.
func (l *Leader) ISRChangeFailed() bool {
	l.pending = nil
	return l.maybeRaiseHW()
}

// SetCommittedISR replaces the committed ISR (the controller changed it:
// e.g. a LeaderAndIsr with the same epoch, or a re-read after a version
// conflict). Any pending change is dropped.
func (l *Leader) SetCommittedISR(isr []int32, zkVersion int32) bool {
	l.pending = nil
	l.isr = slices.Clone(isr)
	if !slices.Contains(l.isr, l.id) {
		l.isr = append([]int32{l.id}, l.isr...)
	}
	l.zkVersion = zkVersion
	return l.maybeRaiseHW()
}

// CheckAcksAll is the pre-append check of an acks=all produce.
func (l *Leader) CheckAcksAll(minISR int) error {
	if len(l.isr) < minISR {
		return ErrNotEnoughReplicas
	}
	return nil
}

// AckStatus says whether an acks=all produce whose last offset is
// lastOffset is complete, and with which error.
func (l *Leader) AckStatus(lastOffset Offset, minISR int) (bool, error) {
	if l.hw <= lastOffset {
		return false, nil
	}
	if len(l.isr) < minISR {
		return true, ErrNotEnoughReplicasAfterAppend
	}
	return true, nil
}

// AloneInISR reports whether the committed ISR is the leader alone.
func (l *Leader) AloneInISR() bool { return len(l.isr) == 1 && l.isr[0] == l.id }

// aloneMaximal reports whether the maximal ISR is the leader alone.
func (l *Leader) aloneMaximal() bool {
	isr := l.maximalISR()
	return len(isr) == 1 && isr[0] == l.id
}

// Flushed records that the log is fsynced below durable. It reports
// whether the HW moved.
func (l *Leader) Flushed(durable Offset) bool {
	if durable > l.durable {
		l.durable = durable
	}
	return l.maybeRaiseHW()
}

// NeedsFlush reports whether the HW waits for an fsync: SyncAlone, the
// maximal ISR is the leader alone and the log is not durable up to its LEO.
func (l *Leader) NeedsFlush() bool {
	return l.syncAlone && l.aloneMaximal() && l.durable < l.leo
}
