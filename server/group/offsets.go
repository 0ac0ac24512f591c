package group

import (
	"errors"
	"fmt"
	"time"
)

// Offsets and group administration on the core: OffsetCommit,
// OffsetFetch, DeleteGroups, OffsetDelete, DescribeGroups, ListGroups and
// the retention sweep.

// commit validates and stores offsets; one error per offset.
func (c *core) commit(now time.Time, req CommitRequest) []error {
	errs := make([]error, len(req.Offsets))
	fail := func(err error) []error {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	g := c.groups[req.Group]
	if g == nil {
		if req.Generation >= 0 {
			// A member of a group this coordinator does not know: an old
			// generation, or state lost. It must rejoin.
			return fail(ErrIllegalGeneration)
		}
		// Offsets stored without group management (simple consumers,
		// admin tools): the group exists for its offsets only.
		g = newGroup(req.Group, now)
		c.groups[req.Group] = g
	}
	defer c.forgetIfVacant(g)
	if err := c.validateCommit(g, req); err != nil {
		return fail(err)
	}
	switch g.state {
	case CompletingRebalance:
		// A member with the new generation has not synced yet.
		return fail(ErrRebalanceInProgress)
	case Stable, PreparingRebalance:
		// Commits are allowed while preparing a rebalance; the heartbeat
		// tells the member to rejoin.
		if m := g.byID[req.MemberID]; m != nil {
			c.resetSession(m, now)
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
	if err := c.store(recs); err != nil {
		if errors.Is(err, ErrRecordTooLarge) {
			err = fmt.Errorf("%w: %v", ErrInvalidCommitOffsetSize, err)
		}
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs
	}
	c.commitSeq++
	for i, e := range entries {
		if e != nil {
			e.seq = c.commitSeq
			g.pendingCommits++
			c.pendingCommits = append(c.pendingCommits, pendingCommit{g: g, tp: req.Offsets[i].TopicPartition, entry: e})
		}
	}
	return errs
}

// validateCommit: generation -1 without a member may commit to an empty
// group; anyone naming a member or generation must be a current member of
// the current generation; otherwise a non-empty group refuses.
func (c *core) validateCommit(g *group, req CommitRequest) error {
	switch {
	case g.state == Dead:
		return ErrCoordinatorNotAvailable
	case req.Generation < 0 && g.state == Empty:
		return nil
	case req.Generation >= 0 || req.MemberID != "" || req.InstanceID != nil:
		if err := g.validateMember(req.MemberID, req.InstanceID); err != nil {
			return err
		}
		if req.Generation != g.generation {
			return ErrIllegalGeneration
		}
		return nil
	case g.state != Empty:
		return ErrUnknownMemberID
	}
	return nil
}

// fetchOffsets returns the committed offsets of tps (nil: all the group
// has, sorted); a partition without one gets offset -1.
func (c *core) fetchOffsets(groupID string, tps []TopicPartition) []CommittedOffset {
	g := c.groups[groupID]
	if tps == nil {
		if g == nil {
			return nil
		}
		tps = g.sortedOffsets()
	}
	out := make([]CommittedOffset, 0, len(tps))
	for _, tp := range tps {
		co := CommittedOffset{TopicPartition: tp, Offset: -1, LeaderEpoch: -1}
		if g != nil {
			if e := g.offsets[tp]; e != nil {
				co.Offset, co.LeaderEpoch, co.Metadata = e.offset, e.leaderEpoch, e.metadata
			}
		}
		out = append(out, co)
	}
	return out
}

// deleteGroups removes empty groups with their offsets (tombstones for
// the metadata and every offset); one error per group.
func (c *core) deleteGroups(now time.Time, ids []string) []error {
	errs := make([]error, len(ids))
	var (
		recs    []Record
		victims []int
	)
	for i, id := range ids {
		g := c.groups[id]
		switch {
		case g == nil || g.state == Dead:
			errs[i] = ErrGroupIDNotFound
		case g.state != Empty:
			errs[i] = ErrNonEmptyGroup
		default:
			recs = append(recs, c.groupTombstones(g, g.sortedOffsets())...)
			victims = append(victims, i)
		}
	}
	if err := c.store(recs); err != nil {
		for _, i := range victims {
			errs[i] = err
		}
		return errs
	}
	for _, i := range victims {
		g := c.groups[ids[i]]
		g.transition(Dead, now)
		delete(c.groups, g.id)
		c.log.Info("deleted group", "group", g.id, "offsets", len(g.offsets))
	}
	return errs
}

// groupTombstones deletes the group's metadata and the offsets tps.
func (c *core) groupTombstones(g *group, tps []TopicPartition) []Record {
	recs := make([]Record, 0, len(tps)+1)
	for _, tp := range tps {
		recs = append(recs, Record{Key: offsetKey(g.id, tp)})
	}
	return append(recs, Record{Key: groupKey(g.id)})
}

// deleteOffsets removes committed offsets of a group: all of an empty
// group's, and of a consumer group those of topics it does not consume.
func (c *core) deleteOffsets(now time.Time, groupID string, tps []TopicPartition) ([]error, error) {
	g := c.groups[groupID]
	if g == nil || g.state == Dead {
		return nil, ErrGroupIDNotFound
	}
	if g.state != Empty && g.protocolType != ConsumerProtocolType {
		return nil, ErrNonEmptyGroup
	}
	errs := make([]error, len(tps))
	var (
		recs []Record
		del  []TopicPartition
	)
	for i, tp := range tps {
		if g.state != Empty && g.subscribedTo(tp.Topic) {
			errs[i] = ErrGroupSubscribedToTopic
			continue
		}
		if g.offsets[tp] != nil {
			recs = append(recs, Record{Key: offsetKey(g.id, tp)})
			del = append(del, tp)
		}
	}
	if err := c.store(recs); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs, nil
	}
	for _, tp := range del {
		delete(g.offsets, tp)
	}
	return errs, nil
}

// topicsDeleted removes every group's committed offsets of the deleted
// topics (tombstones), as Kafka's GroupCoordinator.onPartitionsDeleted: a
// topic re-created under the same name starts with no committed offsets.
// A group left Empty with no offsets is removed too (a metadata
// tombstone). It returns how many offsets were removed.
func (c *core) topicsDeleted(now time.Time, topics map[string]bool) (int, error) {
	var (
		recs    []Record
		removed = map[*group][]TopicPartition{}
		dead    []*group
	)
	for _, id := range sortedKeys(c.groups) {
		g := c.groups[id]
		for _, tp := range g.sortedOffsets() {
			if topics[tp.Topic] {
				removed[g] = append(removed[g], tp)
				recs = append(recs, Record{Key: offsetKey(g.id, tp)})
			}
		}
		// A pending transactional offset of a deleted topic gets a
		// tombstone too, even with no committed offset: a replay drops
		// the pending offsets a later tombstone of their partition
		// meets, so its marker, replayed after a restart, does not bring
		// it back.
		pendingOnly := map[TopicPartition]bool{}
		for _, m := range g.txnOffsets {
			for tp := range m {
				if topics[tp.Topic] && g.offsets[tp] == nil {
					pendingOnly[tp] = true
				}
			}
		}
		tps := make([]TopicPartition, 0, len(pendingOnly))
		for tp := range pendingOnly {
			tps = append(tps, tp)
		}
		sortTPs(tps)
		for _, tp := range tps {
			recs = append(recs, Record{Key: offsetKey(g.id, tp)})
		}
		if len(removed[g]) > 0 && g.state == Empty && len(g.offsets) == len(removed[g]) && len(g.pending) == 0 && len(g.txnOffsets) == 0 {
			dead = append(dead, g)
			recs = append(recs, Record{Key: groupKey(g.id)})
		}
	}
	if err := c.store(recs); err != nil {
		return 0, err
	}
	n := 0
	for g, tps := range removed {
		for _, tp := range tps {
			delete(g.offsets, tp)
			n++
		}
	}
	// Pending transactional offsets of the deleted topics are dropped
	// too: their commit must not bring the offsets back.
	for _, g := range c.groups {
		for pid, m := range g.txnOffsets {
			for tp := range m {
				if topics[tp.Topic] {
					delete(m, tp)
				}
			}
			if len(m) == 0 {
				delete(g.txnOffsets, pid)
			}
		}
	}
	for _, g := range dead {
		g.transition(Dead, now)
		delete(c.groups, g.id)
	}
	return n, nil
}

// expireOffsets is the retention sweep (offsets.retention.minutes):
//   - an empty group that used group management loses all its offsets
//     once it has been empty that long;
//   - a stable consumer group loses offsets of topics it no longer
//     consumes that were committed that long ago;
//   - a group that only stores offsets loses each offset that long after
//     its commit.
//
// An empty group left without offsets is removed (a metadata tombstone).
func (c *core) expireOffsets(now time.Time) {
	var (
		recs    []Record
		expired = map[*group][]TopicPartition{}
		dead    []*group
	)
	retention := c.cfg.OffsetsRetention
	for _, id := range sortedKeys(c.groups) {
		g := c.groups[id]
		var base func(e *offsetEntry) time.Time
		switch {
		case g.protocolType != "" && g.state == Empty:
			base = func(*offsetEntry) time.Time { return g.stateSince }
		case g.protocolType == ConsumerProtocolType && g.state == Stable && g.subscribed != nil:
			base = func(e *offsetEntry) time.Time { return e.commitTime }
		case g.protocolType == "":
			base = func(e *offsetEntry) time.Time { return e.commitTime }
		}
		if base != nil {
			for _, tp := range g.sortedOffsets() {
				e := g.offsets[tp]
				if g.state == Stable && g.subscribed[tp.Topic] {
					continue
				}
				gone := !now.Before(base(e).Add(retention))
				if !e.expireTime.IsZero() {
					gone = !now.Before(e.expireTime)
				}
				if gone {
					expired[g] = append(expired[g], tp)
					recs = append(recs, Record{Key: offsetKey(g.id, tp)})
				}
			}
		}
		if g.state == Empty && len(g.offsets) == len(expired[g]) && len(g.pending) == 0 && len(g.txnOffsets) == 0 && g.pendingCommits == 0 {
			dead = append(dead, g)
			recs = append(recs, Record{Key: groupKey(g.id)})
		}
	}
	if err := c.store(recs); err != nil {
		c.log.Warn("removing expired offsets failed; will retry", "partition", c.partition, "err", err)
		return
	}
	n := 0
	for g, tps := range expired {
		for _, tp := range tps {
			delete(g.offsets, tp)
			n++
		}
	}
	for _, g := range dead {
		g.transition(Dead, now)
		delete(c.groups, g.id)
	}
	if n > 0 || len(dead) > 0 {
		c.log.Info("removed expired offsets", "partition", c.partition, "offsets", n, "groups_removed", len(dead))
	}
}

// describe reports a group; an unknown group is reported Dead.
func (c *core) describe(groupID string) Description {
	g := c.groups[groupID]
	if g == nil {
		return Description{Group: groupID, State: Dead}
	}
	d := Description{Group: g.id, State: g.state, ProtocolType: g.protocolType}
	stable := g.state == Stable
	if stable {
		d.Protocol = g.protocol
	}
	for _, m := range g.members {
		md := MemberDescription{MemberID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost}
		if stable {
			md.Metadata = m.metadata(g.protocol)
			md.Assignment = m.assignment
		}
		d.Members = append(d.Members, md)
	}
	return d
}

func (c *core) list() []Listing {
	out := make([]Listing, 0, len(c.groups))
	for _, id := range sortedKeys(c.groups) {
		g := c.groups[id]
		out = append(out, Listing{Group: g.id, ProtocolType: g.protocolType, State: g.state})
	}
	return out
}
