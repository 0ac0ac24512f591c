package txn

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// noEpoch and noProducerID are Kafka's "none" values.
const (
	noEpoch      int16 = -1
	noProducerID int64 = -1
)

// epochExhausted reports whether e leaves no room to fence (Kafka keeps
// MaxInt16 for the coordinator's own fencing bump).
func epochExhausted(e int16) bool { return e >= math.MaxInt16-1 }

// txnMeta is one transactional id's state, Kafka's TransactionMetadata.
// A change is prepared (a transit, which sets pending and so refuses any
// other change meanwhile), written to the log, and applied only once
// durable (complete); a failed write drops the pending state.
type txnMeta struct {
	id             string
	producerID     int64
	lastProducerID int64 // the producer id before the latest transition
	epoch          int16
	lastEpoch      int16 // the epoch before the latest bump, for a retried InitProducerId
	timeoutMs      int32
	state          State
	partitions     map[TopicPartition]struct{}
	startMs        int64 // when the transaction began; -1 when none
	lastUpdateMs   int64

	pending    State
	hasPending bool
	// failedFence: an epoch fence was prepared but its write failed; the
	// in-memory epoch is already bumped (never handed out), so the next
	// fence does not bump again.
	failedFence bool
}

// transit is a prepared change: the state the transactional id has
// once its record is durable.
type transit struct {
	snapshot
	lastProducerID int64
	lastEpoch      int16
}

func (m *txnMeta) snapshotOf() snapshot {
	return snapshot{
		producerID:    m.producerID,
		producerEpoch: m.epoch,
		timeoutMs:     m.timeoutMs,
		state:         m.state,
		partitions:    m.sortedPartitions(),
		lastUpdateMs:  m.lastUpdateMs,
		startMs:       m.startMs,
	}
}

func (m *txnMeta) sortedPartitions() []TopicPartition {
	tps := slices.Collect(maps.Keys(m.partitions))
	slices.SortFunc(tps, compareTP)
	return tps
}

func (m *txnMeta) base(to State) transit {
	t := transit{snapshot: m.snapshotOf(), lastProducerID: m.producerID, lastEpoch: m.lastEpoch}
	t.state = to
	return t
}

// prepare checks and records a transition as pending.
func (m *txnMeta) prepare(t transit) (transit, error) {
	switch {
	case m.hasPending:
		return t, fmt.Errorf("%w: %s has a pending transition to %s", ErrConcurrentTransactions, m.id, m.pending)
	case t.producerID < 0:
		return t, fmt.Errorf("txn: %s: illegal producer id %d", m.id, t.producerID)
	case t.state != Dead && t.producerEpoch < 0:
		return t, fmt.Errorf("txn: %s: illegal producer epoch %d", m.id, t.producerEpoch)
	case !canTransition(m.state, t.state):
		return t, fmt.Errorf("%w: %s cannot go from %s to %s", ErrInvalidTxnState, m.id, m.state, t.state)
	}
	m.pending, m.hasPending = t.state, true
	return t, nil
}

func (m *txnMeta) clearPending() { m.hasPending = false }

// complete applies a durable transit.
func (m *txnMeta) complete(t transit) error {
	if !m.hasPending || m.pending != t.state {
		return fmt.Errorf("txn: %s: completing a transition to %s while pending is %v/%s", m.id, t.state, m.hasPending, m.pending)
	}
	m.producerID = t.producerID
	m.lastProducerID = t.lastProducerID
	m.epoch = t.producerEpoch
	m.lastEpoch = t.lastEpoch
	m.timeoutMs = t.timeoutMs
	m.partitions = make(map[TopicPartition]struct{}, len(t.partitions))
	for _, tp := range t.partitions {
		m.partitions[tp] = struct{}{}
	}
	m.startMs = t.startMs
	m.lastUpdateMs = t.lastUpdateMs
	m.state = t.state
	m.hasPending = false
	if t.state == PrepareCommit || t.state == PrepareAbort || t.state.idle() {
		m.failedFence = false
	}
	return nil
}

// prepareFence bumps the epoch to fence the current producer (pending
// PrepareEpochFence); the abort that follows writes it.
func (m *txnMeta) prepareFence() (transit, error) {
	t := m.base(PrepareEpochFence)
	if !m.failedFence && m.epoch < math.MaxInt16 {
		t.producerEpoch = m.epoch + 1
	}
	return m.prepare(t)
}

// prepareIncrementEpoch is InitProducerId's bump (KIP-360 with an
// expected epoch).
func (m *txnMeta) prepareIncrementEpoch(timeoutMs int32, expected *int16, nowMs int64) (transit, error) {
	t := m.base(Empty)
	if epochExhausted(m.epoch) {
		return t, fmt.Errorf("%w: %s: producer %d exhausted its epochs", ErrInvalidTxnState, m.id, m.producerID)
	}
	bumped := m.epoch + 1
	switch {
	case expected == nil:
		t.producerEpoch, t.lastEpoch = bumped, noEpoch
	case m.epoch == noEpoch || *expected == m.epoch:
		t.producerEpoch, t.lastEpoch = bumped, m.epoch
	case *expected == m.lastEpoch:
		// A retry of a bump whose answer was lost: the same epoch again.
		t.producerEpoch, t.lastEpoch = m.epoch, m.lastEpoch
	default:
		return t, fmt.Errorf("%w: %s: expected epoch %d, current %d, previous %d", ErrProducerFenced, m.id, *expected, m.epoch, m.lastEpoch)
	}
	t.timeoutMs = timeoutMs
	t.partitions = nil
	t.startMs = -1
	t.lastUpdateMs = nowMs
	return m.prepare(t)
}

// prepareRotate gives the id a new producer id at epoch 0 (the epoch of
// the old one is exhausted).
func (m *txnMeta) prepareRotate(newPID int64, timeoutMs int32, nowMs int64, recordLast bool) (transit, error) {
	t := m.base(Empty)
	t.producerID = newPID
	t.producerEpoch = 0
	t.lastEpoch = noEpoch
	if recordLast {
		t.lastEpoch = m.epoch
	}
	t.timeoutMs = timeoutMs
	t.partitions = nil
	t.startMs = -1
	t.lastUpdateMs = nowMs
	return m.prepare(t)
}

func (m *txnMeta) prepareAddPartitions(tps []TopicPartition, nowMs int64) (transit, error) {
	t := m.base(Ongoing)
	if m.state.idle() {
		t.startMs = nowMs
		t.partitions = nil
	}
	t.partitions = append(t.partitions, tps...)
	slices.SortFunc(t.partitions, compareTP)
	t.partitions = slices.Compact(t.partitions)
	t.lastUpdateMs = nowMs
	return m.prepare(t)
}

func (m *txnMeta) prepareEnd(commit bool, nowMs int64) (transit, error) {
	to := PrepareAbort
	if commit {
		to = PrepareCommit
	}
	t := m.base(to)
	t.lastUpdateMs = nowMs
	return m.prepare(t)
}

// prepareComplete is the end of the marker phase: the transaction's
// partitions are cleared.
func (m *txnMeta) prepareComplete(nowMs int64) (transit, error) {
	to := CompleteAbort
	if m.state == PrepareCommit {
		to = CompleteCommit
	}
	t := m.base(to)
	t.partitions = nil
	t.lastUpdateMs = nowMs
	return m.prepare(t)
}

func (m *txnMeta) prepareDead() (transit, error) {
	t := m.base(Dead)
	t.partitions = nil
	return m.prepare(t)
}

func metaFromSnapshot(id string, s *snapshot) *txnMeta {
	m := &txnMeta{
		id:             id,
		producerID:     s.producerID,
		lastProducerID: noProducerID,
		epoch:          s.producerEpoch,
		lastEpoch:      noEpoch,
		timeoutMs:      s.timeoutMs,
		state:          s.state,
		partitions:     make(map[TopicPartition]struct{}, len(s.partitions)),
		startMs:        s.startMs,
		lastUpdateMs:   s.lastUpdateMs,
	}
	for _, tp := range s.partitions {
		m.partitions[tp] = struct{}{}
	}
	return m
}
