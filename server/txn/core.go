package txn

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// core is the deterministic coordinator of one __transaction_state
// partition: no goroutines, locks, clock or timers; every call takes now.
// Its outputs are collected for the runner: records appended and the
// continuations that run once they are durable (writes), answers to
// deliver (effects) and marker requests to send (sends).
type core struct {
	cfg       *Config
	partition int32
	epoch     int32 // the coordinator epoch: the partition's leader epoch at load
	log       *slog.Logger
	nextPID   func() (int64, error)
	appendFn  func([]Record) error
	offsetsTP func(group string) TopicPartition

	txns map[string]*txnMeta

	writes  []*write
	effects []func()
	sends   []*MarkerRequest

	// retries: transactions whose markers some partition did not take
	// (or whose completion record failed), with when to try again.
	retries map[*txnMeta]time.Time
	// inFlight: transactions with a marker request out (answered through
	// markersDone).
	inFlight map[*txnMeta]*MarkerRequest
	// parked: AddPartitionsToTxn requests that came while their
	// transaction was completing (see addPartitions).
	parked map[*txnMeta][]parkedAdd

	nextAbortCheck  time.Time
	nextExpireCheck time.Time
	wake            time.Time // earliest deadline (zero: none)
}

// write is a record appended to the log and the continuation that runs
// once it is durable (err nil) or failed.
type write struct {
	m    *txnMeta
	t    transit
	done func(now time.Time, err error)
}

func newCore(cfg *Config, partition, epoch int32, log *slog.Logger, nextPID func() (int64, error), appendFn func([]Record) error, offsetsTP func(string) TopicPartition) *core {
	return &core{
		cfg: cfg, partition: partition, epoch: epoch, log: log,
		nextPID: nextPID, appendFn: appendFn, offsetsTP: offsetsTP,
		txns:     map[string]*txnMeta{},
		retries:  map[*txnMeta]time.Time{},
		inFlight: map[*txnMeta]*MarkerRequest{},
		parked:   map[*txnMeta][]parkedAdd{},
	}
}

// parkedAdd is an AddPartitionsToTxn waiting for its transaction's
// previous one to complete: run again once it has, answered
// CONCURRENT_TRANSACTIONS at until.
type parkedAdd struct {
	until time.Time
	retry func(now time.Time)
	cb    func(error)
}

// Waiting for a completing transaction (addPartitions): how long a
// request waits at most, and how many wait per transaction.
const (
	completionWait = 100 * time.Millisecond
	maxParked      = 16
)

// completing reports whether m's markers are being written or its
// Complete* record is: it will be complete without any request's help.
func (c *core) completing(m *txnMeta) bool {
	if m.state != PrepareCommit && m.state != PrepareAbort {
		return false
	}
	return c.inFlight[m] != nil || m.hasPending && (m.pending == CompleteCommit || m.pending == CompleteAbort)
}

// unpark runs again the requests waiting for m, now complete.
func (c *core) unpark(now time.Time, m *txnMeta) {
	ps := c.parked[m]
	delete(c.parked, m)
	for _, p := range ps {
		p.retry(now)
	}
}

// expireParked answers the waiting requests whose wait is over
// CONCURRENT_TRANSACTIONS (the client retries as Kafka has it do).
func (c *core) expireParked(now time.Time) {
	for m, ps := range c.parked {
		kept := ps[:0]
		for _, p := range ps {
			if now.Before(p.until) {
				kept = append(kept, p)
				c.schedule(p.until)
				continue
			}
			cb, id := p.cb, m.id
			c.answer(func() { cb(fmt.Errorf("%w: %s is completing a transaction", ErrConcurrentTransactions, id)) })
		}
		if len(kept) == 0 {
			delete(c.parked, m)
		} else {
			c.parked[m] = kept
		}
	}
}

// dropParked returns the answers (err) of every waiting request, for a
// core being unloaded; they are to be delivered outside the shard lock.
func (c *core) dropParked(err error) []func() {
	var out []func()
	for _, ps := range c.parked {
		for _, p := range ps {
			cb := p.cb
			out = append(out, func() { cb(err) })
		}
	}
	clear(c.parked)
	return out
}

// takeWrites returns and clears the pending writes.
func (c *core) takeWrites() []*write {
	ws := c.writes
	c.writes = nil
	return ws
}

// takeOutputs returns and clears the answers and marker requests.
func (c *core) takeOutputs() ([]func(), []*MarkerRequest) {
	e, s := c.effects, c.sends
	c.effects, c.sends = nil, nil
	return e, s
}

func (c *core) answer(f func()) { c.effects = append(c.effects, f) }

// persist appends t's record; done runs once it is durable or failed
// (a failed append runs it at once).
func (c *core) persist(now time.Time, m *txnMeta, t transit, done func(now time.Time, err error)) {
	rec := Record{Key: encodeKey(m.id)}
	if t.state != Dead {
		rec.Value = encodeValue(&t.snapshot)
	}
	if err := c.appendFn([]Record{rec}); err != nil {
		done(now, storeErr(err))
		return
	}
	c.writes = append(c.writes, &write{m: m, t: t, done: done})
}

// storeErr classifies a Store error for clients: NOT_COORDINATOR when
// the store says this broker no longer leads the partition, an unknown
// server error for a write that can never succeed, otherwise a retriable
// COORDINATOR_NOT_AVAILABLE.
func storeErr(err error) error {
	switch {
	case errors.Is(err, ErrNotCoordinator), errors.Is(err, ErrUnknownServerError), errors.Is(err, ErrCoordinatorNotAvailable):
		return err
	}
	return fmt.Errorf("%w: %v", ErrCoordinatorNotAvailable, err)
}

func (c *core) schedule(t time.Time) {
	if !t.IsZero() && (c.wake.IsZero() || t.Before(c.wake)) {
		c.wake = t
	}
}

// ---- deadlines ----

// tick runs what is due: aborting timed-out transactions, expiring
// transactional ids, resending markers.
func (c *core) tick(now time.Time) {
	if c.wake.IsZero() || now.Before(c.wake) {
		return
	}
	c.wake = time.Time{}
	if !now.Before(c.nextAbortCheck) {
		c.abortTimedOut(now)
		c.nextAbortCheck = now.Add(c.cfg.AbortTimedOutInterval)
	}
	if !now.Before(c.nextExpireCheck) {
		c.expire(now)
		c.nextExpireCheck = now.Add(c.cfg.RemoveExpiredInterval)
	}
	for m, at := range c.retries {
		if now.Before(at) {
			c.schedule(at)
			continue
		}
		delete(c.retries, m)
		c.resume(now, m)
	}
	c.expireParked(now)
	c.armChecks(now)
}

// armChecks schedules the periodic checks while the partition has
// transactional ids (an idle shard has no timer).
func (c *core) armChecks(now time.Time) {
	if len(c.txns) == 0 {
		return
	}
	if c.nextAbortCheck.IsZero() {
		c.nextAbortCheck = now.Add(c.cfg.AbortTimedOutInterval)
	}
	if c.nextExpireCheck.IsZero() {
		c.nextExpireCheck = now.Add(c.cfg.RemoveExpiredInterval)
	}
	c.schedule(c.nextAbortCheck)
	c.schedule(c.nextExpireCheck)
}

// abortTimedOut fences and aborts every Ongoing transaction older than
// its timeout.
func (c *core) abortTimedOut(now time.Time) {
	nowMs := now.UnixMilli()
	for _, m := range c.sortedTxns() {
		if m.state != Ongoing || m.hasPending || m.startMs < 0 || m.startMs+int64(m.timeoutMs) > nowMs {
			continue
		}
		t, err := m.prepareFence()
		if err != nil {
			continue
		}
		c.log.Info("aborting a transaction past its timeout", "transactional_id", m.id, "producer_id", m.producerID, "epoch", m.epoch, "timeout_ms", m.timeoutMs)
		c.endTxn(now, m.id, t.producerID, t.producerEpoch, false, false, func(err error) {
			if err != nil {
				c.log.Warn("aborting a timed-out transaction failed", "transactional_id", m.id, "err", err)
			}
		})
	}
}

// expire removes idle transactional ids not updated for IDExpiration
// (a tombstone, then the id is gone: Dead is never kept).
func (c *core) expire(now time.Time) {
	cutoff := now.Add(-c.cfg.IDExpiration).UnixMilli()
	for _, m := range c.sortedTxns() {
		if !m.state.idle() || m.hasPending || m.lastUpdateMs > cutoff {
			continue
		}
		t, err := m.prepareDead()
		if err != nil {
			continue
		}
		c.persist(now, m, t, func(now time.Time, err error) {
			if err != nil {
				m.clearPending()
				return
			}
			if c.txns[m.id] == m {
				delete(c.txns, m.id)
			}
			c.log.Info("transactional id expired", "transactional_id", m.id, "producer_id", m.producerID)
		})
	}
}

func (c *core) sortedTxns() []*txnMeta {
	out := make([]*txnMeta, 0, len(c.txns))
	for _, m := range c.txns {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *txnMeta) int { return strings.Compare(a.id, b.id) })
	return out
}

// ---- operations ----

func (c *core) validTimeout(ms int32) bool {
	return ms > 0 && time.Duration(ms)*time.Millisecond <= c.cfg.MaxTimeout
}

// initProducerID is InitProducerId with a transactional id.
func (c *core) initProducerID(now time.Time, req InitRequest, cb func(InitResult)) {
	fail := func(err error) {
		c.answer(func() { cb(InitResult{ProducerID: noProducerID, Epoch: noEpoch, Err: err}) })
	}
	switch {
	case req.TransactionalID == "":
		fail(fmt.Errorf("%w: empty transactional id", ErrInvalidRequest))
		return
	case !c.validTimeout(req.TimeoutMs):
		fail(fmt.Errorf("%w: %d ms (max %v)", ErrInvalidTransactionTimeout, req.TimeoutMs, c.cfg.MaxTimeout))
		return
	}
	nowMs := now.UnixMilli()
	m := c.txns[req.TransactionalID]
	if m == nil {
		pid, err := c.nextPID()
		if err != nil {
			fail(fmt.Errorf("%w: allocating a producer id: %v", ErrCoordinatorNotAvailable, err))
			return
		}
		m = &txnMeta{
			id: req.TransactionalID, producerID: pid, lastProducerID: noProducerID,
			epoch: noEpoch, lastEpoch: noEpoch, timeoutMs: req.TimeoutMs, state: Empty,
			partitions: map[TopicPartition]struct{}{}, startMs: -1, lastUpdateMs: nowMs,
		}
		c.txns[m.id] = m
		c.armChecks(now)
	}
	if m.hasPending {
		fail(fmt.Errorf("%w: %s is changing to %s", ErrConcurrentTransactions, m.id, m.pending))
		return
	}
	if e := req.Expected; e != nil {
		// Fence a producer whose id is not this transactional id's, unless
		// the id was just created (a producer recovering from
		// UNKNOWN_PRODUCER_ID gets the new one), or it is the id before a
		// rotation and its epoch was exhausted (a retried rotation).
		valid := m.epoch == noEpoch || e.ProducerID == m.producerID ||
			(e.ProducerID == m.lastProducerID && epochExhausted(e.Epoch))
		if !valid {
			fail(fmt.Errorf("%w: %s has producer id %d, not %d", ErrProducerFenced, m.id, m.producerID, e.ProducerID))
			return
		}
	}
	switch m.state {
	case PrepareCommit, PrepareAbort:
		fail(fmt.Errorf("%w: %s is completing a transaction", ErrConcurrentTransactions, m.id))
		return
	case Ongoing:
		// Abort the current transaction with a bumped epoch (fencing the
		// old producer); this epoch is never handed out: the client
		// retries on CONCURRENT_TRANSACTIONS and gets the next bump.
		t, err := m.prepareFence()
		if err != nil {
			fail(err)
			return
		}
		c.endTxn(now, m.id, t.producerID, t.producerEpoch, false, false, func(err error) {
			if err == nil {
				err = fmt.Errorf("%w: aborting the ongoing transaction of %s first", ErrConcurrentTransactions, m.id)
			}
			cb(InitResult{ProducerID: noProducerID, Epoch: noEpoch, Err: err})
		})
		return
	}
	var (
		t   transit
		err error
	)
	if epochExhausted(m.epoch) && (req.Expected == nil || req.Expected.Epoch == m.epoch) {
		pid, perr := c.nextPID()
		if perr != nil {
			fail(fmt.Errorf("%w: allocating a producer id: %v", ErrCoordinatorNotAvailable, perr))
			return
		}
		t, err = m.prepareRotate(pid, req.TimeoutMs, nowMs, req.Expected != nil)
	} else {
		var expected *int16
		if req.Expected != nil {
			expected = &req.Expected.Epoch
		}
		t, err = m.prepareIncrementEpoch(req.TimeoutMs, expected, nowMs)
	}
	if err != nil {
		fail(err)
		return
	}
	c.persist(now, m, t, func(now time.Time, err error) {
		if err == nil {
			err = m.complete(t)
		} else {
			m.clearPending()
		}
		if err != nil {
			c.answer(func() { cb(InitResult{ProducerID: noProducerID, Epoch: noEpoch, Err: err}) })
			return
		}
		c.log.Info("initialized transactional id", "transactional_id", m.id, "producer_id", t.producerID, "epoch", t.producerEpoch, "partition", c.partition)
		c.answer(func() { cb(InitResult{ProducerID: t.producerID, Epoch: t.producerEpoch}) })
	})
}

// addPartitions is AddPartitionsToTxn (and AddOffsetsToTxn, with the
// group's __consumer_offsets partition).
func (c *core) addPartitions(now time.Time, id string, pid int64, epoch int16, tps []TopicPartition, cb func(error)) {
	fail := func(err error) { c.answer(func() { cb(err) }) }
	if id == "" {
		fail(fmt.Errorf("%w: empty transactional id", ErrInvalidRequest))
		return
	}
	m := c.txns[id]
	switch {
	case m == nil:
		fail(fmt.Errorf("%w: %s is unknown", ErrInvalidProducerIDMapping, id))
		return
	case m.producerID != pid:
		fail(fmt.Errorf("%w: %s has producer id %d, not %d", ErrInvalidProducerIDMapping, id, m.producerID, pid))
		return
	case m.epoch != epoch:
		fail(fmt.Errorf("%w: %s is at epoch %d, not %d", ErrProducerFenced, id, m.epoch, epoch))
		return
	case c.completing(m) && len(c.parked[m]) < maxParked:
		// The previous transaction's markers are being written (EndTxn
		// is answered once its Prepare* record is durable). Kafka answers
		// CONCURRENT_TRANSACTIONS and the client retries after a backoff
		// (20 ms in franz-go and Java's client), which bounds a producer
		// to one short transaction per backoff; the request waits here
		// instead, up to completionWait, and runs when the transaction
		// completes (a few milliseconds on one broker).
		until := now.Add(completionWait)
		c.parked[m] = append(c.parked[m], parkedAdd{until: until, cb: cb,
			retry: func(now time.Time) { c.addPartitions(now, id, pid, epoch, tps, cb) }})
		c.schedule(until)
		return
	case m.hasPending, m.state == PrepareCommit, m.state == PrepareAbort:
		fail(fmt.Errorf("%w: %s is completing a transaction", ErrConcurrentTransactions, id))
		return
	}
	if m.state == Ongoing {
		all := true
		for _, tp := range tps {
			if _, ok := m.partitions[tp]; !ok {
				all = false
				break
			}
		}
		if all {
			fail(nil)
			return
		}
	}
	t, err := m.prepareAddPartitions(tps, now.UnixMilli())
	if err != nil {
		fail(err)
		return
	}
	c.persist(now, m, t, func(now time.Time, err error) {
		if err == nil {
			err = m.complete(t)
		} else {
			m.clearPending()
		}
		c.answer(func() { cb(err) })
	})
}

// endTxn is EndTxn (fromClient), or the coordinator's own abort of a
// fenced transaction (InitProducerId of a new instance, timeout), which
// passes the bumped epoch of a pending PrepareEpochFence.
func (c *core) endTxn(now time.Time, id string, pid int64, epoch int16, commit, fromClient bool, cb func(error)) {
	m := c.txns[id]
	fail := func(err error) {
		if !fromClient && m != nil && m.hasPending && m.pending == PrepareEpochFence {
			m.clearPending() // the fence this abort was for is off
		}
		c.answer(func() { cb(err) })
	}
	if id == "" {
		fail(fmt.Errorf("%w: empty transactional id", ErrInvalidRequest))
		return
	}
	result := "abort"
	if commit {
		result = "commit"
	}
	invalid := func() error {
		return fmt.Errorf("%w: %s is %s; cannot %s", ErrInvalidTxnState, id, m.state, result)
	}
	switch {
	case m == nil:
		fail(fmt.Errorf("%w: %s is unknown", ErrInvalidProducerIDMapping, id))
		return
	case m.producerID != pid:
		fail(fmt.Errorf("%w: %s has producer id %d, not %d", ErrInvalidProducerIDMapping, id, m.producerID, pid))
		return
	case (fromClient && epoch != m.epoch) || epoch < m.epoch:
		fail(fmt.Errorf("%w: %s is at epoch %d, not %d", ErrProducerFenced, id, m.epoch, epoch))
		return
	case m.hasPending && m.pending != PrepareEpochFence:
		fail(fmt.Errorf("%w: %s is changing to %s", ErrConcurrentTransactions, id, m.pending))
		return
	}
	switch m.state {
	case Ongoing:
	case CompleteCommit, CompleteAbort:
		if (m.state == CompleteCommit) == commit {
			fail(nil) // a retry of an end that completed
		} else {
			fail(invalid())
		}
		return
	case PrepareCommit, PrepareAbort:
		if (m.state == PrepareCommit) == commit {
			fail(fmt.Errorf("%w: %s is completing its %s", ErrConcurrentTransactions, id, result))
		} else {
			fail(invalid())
		}
		return
	default:
		fail(invalid())
		return
	}
	fence := false
	if !commit && m.hasPending && m.pending == PrepareEpochFence {
		// The fence takes effect in memory now (the old producer's
		// requests fail from here on); failedFence remembers a failed
		// write so a later fence does not bump again.
		fence = true
		m.clearPending()
		m.epoch = epoch
		m.lastEpoch = noEpoch
	}
	t, err := m.prepareEnd(commit, now.UnixMilli())
	if err != nil {
		fail(err)
		return
	}
	c.persist(now, m, t, func(now time.Time, err error) {
		if err == nil {
			err = m.complete(t)
		} else {
			m.clearPending()
			if fence {
				m.failedFence = true
			}
		}
		if err != nil {
			c.answer(func() { cb(err) })
			return
		}
		c.answer(func() { cb(nil) })
		c.sendMarkers(m)
	})
}

// ---- markers ----

// sendMarkers sends the markers of m's Prepare* state to the partitions
// that have not taken them yet.
func (c *core) sendMarkers(m *txnMeta) {
	if c.inFlight[m] != nil {
		return
	}
	req := &MarkerRequest{
		TransactionalID:  m.id,
		ProducerID:       m.producerID,
		ProducerEpoch:    m.epoch,
		Commit:           m.state == PrepareCommit,
		CoordinatorEpoch: c.epoch,
		Partitions:       m.sortedPartitions(),
	}
	if len(req.Partitions) == 0 {
		return
	}
	c.inFlight[m] = req
	c.sends = append(c.sends, req)
}

// resume continues a transaction in a Prepare* state: markers to the
// partitions left, or the completion record once none is.
func (c *core) resume(now time.Time, m *txnMeta) {
	if c.txns[m.id] != m || (m.state != PrepareCommit && m.state != PrepareAbort) || m.hasPending {
		return
	}
	if len(m.partitions) == 0 {
		c.completeTxn(now, m)
		return
	}
	c.sendMarkers(m)
}

// markersDone takes a MarkerWriter's answer: partitions that took their
// marker (or no longer exist) leave the transaction; the others are sent
// again after MarkerRetryBackoff; a fenced marker stops this coordinator
// from driving the transaction (a newer one does).
func (c *core) markersDone(now time.Time, req *MarkerRequest, errs []error) {
	m := c.txns[req.TransactionalID]
	if m == nil || c.inFlight[m] != req {
		return // stale: the transaction moved on, or another load
	}
	delete(c.inFlight, m)
	retry := false
	for i, tp := range req.Partitions {
		var err error
		if i < len(errs) {
			err = errs[i]
		}
		switch {
		case err == nil:
			delete(m.partitions, tp)
		case errors.Is(err, ErrMarkerPartitionGone):
			c.log.Info("dropping a deleted partition from a transaction", "transactional_id", m.id, "partition", tp)
			delete(m.partitions, tp)
		case errors.Is(err, ErrMarkerFenced):
			c.log.Warn("transaction markers fenced; a newer coordinator completes the transaction", "transactional_id", m.id, "partition", tp, "err", err)
			return
		default:
			c.log.Debug("transaction marker not written; retrying", "transactional_id", m.id, "partition", tp, "err", err)
			retry = true
		}
	}
	if retry {
		at := now.Add(c.cfg.MarkerRetryBackoff)
		c.retries[m] = at
		c.schedule(at)
		return
	}
	c.completeTxn(now, m)
}

// completeTxn writes CompleteCommit/CompleteAbort once every partition
// has its marker; a failed write is retried (unless this broker stopped
// being the coordinator).
func (c *core) completeTxn(now time.Time, m *txnMeta) {
	t, err := m.prepareComplete(now.UnixMilli())
	if err != nil {
		c.log.Error("completing a transaction", "transactional_id", m.id, "err", err)
		return
	}
	c.persist(now, m, t, func(now time.Time, err error) {
		if err == nil {
			if err := m.complete(t); err != nil {
				c.log.Error("completing a transaction", "transactional_id", m.id, "err", err)
			}
			c.unpark(now, m)
			return
		}
		m.clearPending()
		if errors.Is(err, ErrNotCoordinator) {
			return
		}
		c.log.Warn("writing a transaction's completion failed; retrying", "transactional_id", m.id, "err", err)
		at := now.Add(c.cfg.MarkerRetryBackoff)
		c.retries[m] = at
		c.schedule(at)
	})
}

// ---- reads ----

func (c *core) describe(id string) (Description, error) {
	m := c.txns[id]
	if m == nil || (m.hasPending && m.pending == Dead) {
		return Description{TransactionalID: id}, fmt.Errorf("%w: %s", ErrTransactionalIDNotFound, id)
	}
	return Description{
		TransactionalID: id,
		State:           m.state,
		ProducerID:      m.producerID,
		ProducerEpoch:   m.epoch,
		TimeoutMs:       m.timeoutMs,
		StartMs:         m.startMs,
		Partitions:      m.sortedPartitions(),
	}, nil
}

func (c *core) list(now time.Time, f ListFilter) []Listing {
	var out []Listing
	nowMs := now.UnixMilli()
	for _, m := range c.sortedTxns() {
		if len(f.States) > 0 && !slices.Contains(f.States, m.state) {
			continue
		}
		if len(f.ProducerIDs) > 0 && !slices.Contains(f.ProducerIDs, m.producerID) {
			continue
		}
		if f.MinDurationMs > 0 && (m.state != Ongoing || m.startMs < 0 || nowMs-m.startMs < f.MinDurationMs) {
			continue
		}
		out = append(out, Listing{TransactionalID: m.id, ProducerID: m.producerID, State: m.state})
	}
	return out
}

// ---- loading ----

// install builds the replayed transactional ids into c and resumes those
// caught between Prepare* and Complete*: their markers are sent again.
func (c *core) install(now time.Time, snaps map[string]*snapshot) {
	for id, s := range snaps {
		if s == nil {
			continue
		}
		c.txns[id] = metaFromSnapshot(id, s)
	}
	for _, m := range c.sortedTxns() {
		if m.state == PrepareCommit || m.state == PrepareAbort {
			c.resume(now, m)
		}
	}
	c.armChecks(now)
}
