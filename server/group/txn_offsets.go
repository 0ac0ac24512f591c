package group

import (
	"errors"
	"fmt"
	"time"
)

// Transactional offset commits (TxnOffsetCommit), as Kafka's
// GroupMetadataManager keeps them: the offsets are written to the group's
// __consumer_offsets partition in a transactional batch of the producer,
// kept pending (group.txnOffsets) once durable, and applied to the
// group's committed offsets only when the transaction coordinator's
// commit marker reaches the partition (CompleteTxn); an abort marker
// drops them. A pending offset is applied only when no later commit of
// the same partition was written meanwhile (log order, offsetEntry.seq).
// OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for a
// partition with a pending offset. Replay does the same from the batches
// and markers of the log.

// TxnCommitRequest is a TxnOffsetCommit. Generation -1 with no member id
// skips the member checks (v0–v2 clients send neither).
type TxnCommitRequest struct {
	Group         string
	ProducerID    int64
	ProducerEpoch int16
	Generation    int32
	MemberID      string
	InstanceID    *string
	Offsets       []OffsetCommit
}

func (g *group) addTxnOffset(pid int64, tp TopicPartition, e *offsetEntry) {
	if g.txnOffsets == nil {
		g.txnOffsets = map[int64]map[TopicPartition]*offsetEntry{}
	}
	m := g.txnOffsets[pid]
	if m == nil {
		m = map[TopicPartition]*offsetEntry{}
		g.txnOffsets[pid] = m
	}
	m[tp] = e
}

// hasPendingOffset reports whether tp has a transactional offset commit
// pending, or an offset commit appended but not yet durable.
func (c *core) hasPendingOffset(g *group, tp TopicPartition) bool {
	for _, m := range g.txnOffsets {
		if m[tp] != nil {
			return true
		}
	}
	for _, pc := range c.pendingCommits {
		if pc.g == g && pc.tp == tp {
			return true
		}
	}
	return false
}

// txnCommit validates and writes transactional offsets; one error per
// offset. They become pending once durable (installCommits).
func (c *core) txnCommit(now time.Time, req TxnCommitRequest) []error {
	errs := make([]error, len(req.Offsets))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	if c.writeTxn == nil {
		return fail(fmt.Errorf("%w: transactional offset commits are not supported by this store", ErrCoordinatorNotAvailable))
	}
	g := c.groups[req.Group]
	if g == nil {
		g = newGroup(req.Group, now)
		c.groups[req.Group] = g
	}
	defer c.forgetIfVacant(g)
	switch {
	case g.state == Dead:
		return fail(ErrCoordinatorNotAvailable)
	case req.Generation >= 0 || req.MemberID != "" || req.InstanceID != nil:
		if err := g.validateMember(req.MemberID, req.InstanceID); err != nil {
			return fail(err)
		}
		if req.Generation != g.generation {
			return fail(ErrIllegalGeneration)
		}
	}
	var (
		recs    []Record
		entries = make([]*offsetEntry, len(req.Offsets))
	)
	for i, o := range req.Offsets {
		if len(o.Metadata) > c.cfg.MaxMetadataSize {
			errs[i] = ErrOffsetMetadataTooLarge
			continue
		}
		e := &offsetEntry{offset: o.Offset, leaderEpoch: o.LeaderEpoch, metadata: o.Metadata, commitTime: now}
		entries[i] = e
		recs = append(recs, Record{Key: offsetKey(g.id, o.TopicPartition), Value: offsetValue(e)})
	}
	if len(recs) == 0 {
		return errs
	}
	if err := c.writeTxn(req.ProducerID, req.ProducerEpoch, recs); err != nil {
		if errors.Is(err, ErrRecordTooLarge) {
			err = fmt.Errorf("%w: %v", ErrInvalidCommitOffsetSize, err)
		} else if !isPassThrough(err) {
			err = fmt.Errorf("%w: writing to %s-%d: %v", ErrCoordinatorNotAvailable, OffsetsTopic, c.partition, err)
		}
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	c.wrote = true
	for i, e := range entries {
		if e != nil {
			c.commitSeq++
			e.seq = c.commitSeq
			g.pendingCommits++
			c.pendingCommits = append(c.pendingCommits, pendingCommit{g: g, tp: req.Offsets[i].TopicPartition, entry: e, txn: true, pid: req.ProducerID})
		}
	}
	return errs
}

// ErrPassThrough marks a store error the coordinator returns as it is (a
// producer fenced by the partition, for instance), for the server to map.
var ErrPassThrough = errors.New("group: store error passed through")

func isPassThrough(err error) bool { return errors.Is(err, ErrPassThrough) }

// completeTxn applies (commit) or drops producer pid's pending
// transactional offsets on every group of the partition.
func (c *core) completeTxn(pid int64, commit bool) int {
	n := 0
	for _, id := range sortedKeys(c.groups) {
		g := c.groups[id]
		m := g.txnOffsets[pid]
		if m == nil {
			continue
		}
		delete(g.txnOffsets, pid)
		if len(g.txnOffsets) == 0 {
			g.txnOffsets = nil
		}
		if commit {
			for tp, e := range m {
				if cur := g.offsets[tp]; cur == nil || cur.seq < e.seq {
					g.offsets[tp] = e
					n++
				}
			}
		}
		c.forgetIfVacant(g)
	}
	return n
}

// TxnCommit handles a TxnOffsetCommit; one error per offset.
func (co *Coordinator) TxnCommit(req TxnCommitRequest) []error {
	var errs []error
	notServed, syncErr := co.shardFor(req.Group).run(func(c *core, now time.Time) { errs = c.txnCommit(now, req) })
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

// CompleteTxn applies (commit) or drops the pending transactional offsets
// of producer pid in __consumer_offsets partition p, once the
// transaction's marker is written there. A partition not loaded here is
// left alone (its next load replays the marker).
func (co *Coordinator) CompleteTxn(p int32, pid int64, commit bool) {
	if p < 0 || int(p) >= len(co.shards) {
		return
	}
	co.shards[p].run(func(c *core, now time.Time) { c.completeTxn(pid, commit) })
}
