package controller

import (
	"errors"
	"fmt"
	"slices"

	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/server/zkstore"
)

// The controller's copy of the partition states (Kafka's controller
// context): read from the store in one batch when it is elected (new
// topics and partitions are created without a read: a state that exists
// makes the create fail, and is read then), kept current by its own
// writes, and read
// again for the partitions named by ISR change notifications (a leader's
// ISR change and its notification are one multi, so after taking the
// notifications the copy holds every ISR change committed before). A write
// made from an outdated copy fails on the znode version and the partition
// is read again. The requests the controller sends are built from the copy,
// never from a read per partition.
//
// The events touch only the partitions they can change (incremental
// reconciliation): the new partitions of a new topic; for a broker that
// dies, the partitions it hosts (an index by broker) and those without a
// leader; for a broker that registers, those without a leader. Only an
// election walks every partition, once.

// cachedState is tp's state and whether it has one.
func (c *Controller) cachedState(tp zkstore.TopicPartition) (zkstore.PartitionState, bool) {
	st, ok := c.states[tp]
	return st, ok
}

// setCached records tp's state (ok false: it has none) and keeps the set of
// partitions without a leader.
func (c *Controller) setCached(tp zkstore.TopicPartition, st zkstore.PartitionState, ok bool) {
	if !ok {
		delete(c.states, tp)
		c.leaderless[tp] = true
		return
	}
	c.states[tp] = st
	if st.Leader == NoLeader {
		c.leaderless[tp] = true
	} else {
		delete(c.leaderless, tp)
	}
}

// loadStates reads the states of tps from the store, in one batch.
func (c *Controller) loadStates(tps []zkstore.TopicPartition) error {
	if len(tps) == 0 {
		return nil
	}
	sts, oks, err := c.cfg.Store.PartitionStates(tps)
	if err != nil {
		return err
	}
	for i, tp := range tps {
		c.setCached(tp, sts[i], oks[i])
	}
	return nil
}

// indexTopic records the replicas of partitions [from, len) of topic n in
// the by-broker index.
func (c *Controller) indexTopic(n string, a zkstore.TopicAssignment, from int) {
	for p := from; p < len(a.Replicas); p++ {
		tp := zkstore.TopicPartition{Topic: n, Partition: int32(p)}
		for _, r := range a.Replicas[p] {
			set := c.hosted[r]
			if set == nil {
				set = map[zkstore.TopicPartition]struct{}{}
				c.hosted[r] = set
			}
			set[tp] = struct{}{}
		}
	}
}

// forgetTopic drops topic n's partitions from the index and the states.
func (c *Controller) forgetTopic(n string, a zkstore.TopicAssignment) {
	for p, rs := range a.Replicas {
		tp := zkstore.TopicPartition{Topic: n, Partition: int32(p)}
		for _, r := range rs {
			delete(c.hosted[r], tp)
		}
		delete(c.states, tp)
		delete(c.leaderless, tp)
	}
}

// topicPartitions lists topic n's partitions.
func topicPartitions(n string, a zkstore.TopicAssignment, from int) []zkstore.TopicPartition {
	out := make([]zkstore.TopicPartition, 0, len(a.Replicas)-min(from, len(a.Replicas)))
	for p := from; p < len(a.Replicas); p++ {
		out = append(out, zkstore.TopicPartition{Topic: n, Partition: int32(p)})
	}
	return out
}

// allPartitions lists every partition of the topics not being deleted.
func (c *Controller) allPartitions() []zkstore.TopicPartition {
	var out []zkstore.TopicPartition
	for _, n := range c.topicNames() {
		if ti := c.topics[n]; !ti.deleting {
			out = append(out, topicPartitions(n, ti.assign, 0)...)
		}
	}
	return out
}

// hostedBy lists the partitions with a replica on one of ids, sorted.
func (c *Controller) hostedBy(ids ...int32) []zkstore.TopicPartition {
	seen := map[zkstore.TopicPartition]bool{}
	var out []zkstore.TopicPartition
	for _, id := range ids {
		for tp := range c.hosted[id] {
			if !seen[tp] {
				seen[tp] = true
				out = append(out, tp)
			}
		}
	}
	sortTPs(out)
	return out
}

// leaderlessPartitions lists the partitions without a leader (or state),
// sorted.
func (c *Controller) leaderlessPartitions() []zkstore.TopicPartition {
	out := make([]zkstore.TopicPartition, 0, len(c.leaderless))
	for tp := range c.leaderless {
		out = append(out, tp)
	}
	sortTPs(out)
	return out
}

func sortTPs(tps []zkstore.TopicPartition) {
	slices.SortFunc(tps, func(a, b zkstore.TopicPartition) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition - b.Partition)
	})
}

// replicasOf is tp's assignment (ok false when its topic is unknown, being
// deleted, or has no such partition).
func (c *Controller) replicasOf(tp zkstore.TopicPartition) ([]int32, bool) {
	ti := c.topics[tp.Topic]
	if ti == nil || ti.deleting || int(tp.Partition) >= len(ti.assign.Replicas) || tp.Partition < 0 {
		return nil, false
	}
	return ti.assign.Replicas[tp.Partition], true
}

// stateFn decides a partition's next state from its current one (exists
// false: it has none yet); changed false leaves it.
type stateFn func(tp zkstore.TopicPartition, replicas []int32, st zkstore.PartitionState, exists bool) (next zkstore.PartitionState, changed bool)

// maxWriteRounds bounds the rounds of updateStates: a partition whose
// version keeps moving under the controller (a leader changing its ISR in
// every round) is given up on after that many.
const maxWriteRounds = 5

// logEachUpTo is the largest batch whose partitions are logged one by one
// at INFO; a larger one logs them at DEBUG and a summary at INFO.
const logEachUpTo = 20

// updateStates applies fn to the cached states of tps and writes the
// changes in one batch (fenced); partitions whose write lost a race (a
// leader's ISR change, a state created meanwhile) are read again and fn is
// applied again, for up to maxWriteRounds rounds. It returns the partitions
// changed, in the order of tps.
func (c *Controller) updateStates(tps []zkstore.TopicPartition, fn stateFn) ([]zkstore.TopicPartition, error) {
	changedSet := map[zkstore.TopicPartition]bool{}
	pending := tps
	for round := 0; len(pending) > 0; round++ {
		if round == maxWriteRounds {
			return c.changedIn(tps, changedSet), fmt.Errorf("controller: partition %s-%d state kept changing", pending[0].Topic, pending[0].Partition)
		}
		var ws []zkstore.StateWrite
		for _, tp := range pending {
			replicas, ok := c.replicasOf(tp)
			if !ok {
				continue
			}
			st, exists := c.cachedState(tp)
			next, changed := fn(tp, replicas, st, exists)
			if !changed {
				continue
			}
			next.ZkVersion = st.ZkVersion
			ws = append(ws, zkstore.StateWrite{TP: tp, State: next, Create: !exists})
		}
		if len(ws) == 0 {
			break
		}
		versions, errs, err := c.cfg.Store.WritePartitionStates(c.fence, ws)
		if err != nil {
			return c.changedIn(tps, changedSet), err
		}
		var retry []zkstore.TopicPartition
		var firstErr error
		for i, w := range ws {
			switch e := errs[i]; {
			case e == nil:
				st := w.State
				st.ZkVersion = versions[i]
				c.setCached(w.TP, st, true)
				changedSet[w.TP] = true
				if len(ws) <= logEachUpTo {
					c.log.Info("partition state changed", "topic", w.TP.Topic, "partition", w.TP.Partition, "leader", st.Leader, "leader_epoch", st.LeaderEpoch, "isr", st.ISR)
				} else {
					c.log.Debug("partition state changed", "topic", w.TP.Topic, "partition", w.TP.Partition, "leader", st.Leader, "leader_epoch", st.LeaderEpoch, "isr", st.ISR)
				}
			case errors.Is(e, zkstore.ErrBadVersion), errors.Is(e, zk.ErrNodeExists):
				retry = append(retry, w.TP)
			case firstErr == nil:
				firstErr = fmt.Errorf("controller: writing the state of %s-%d: %w", w.TP.Topic, w.TP.Partition, e)
			}
		}
		if len(ws) > logEachUpTo {
			c.log.Info("partition states changed", "partitions", len(ws)-len(retry), "retrying", len(retry))
		}
		if firstErr != nil {
			return c.changedIn(tps, changedSet), firstErr
		}
		if err := c.loadStates(retry); err != nil {
			return c.changedIn(tps, changedSet), err
		}
		pending = retry
	}
	return c.changedIn(tps, changedSet), nil
}

func (c *Controller) changedIn(tps []zkstore.TopicPartition, set map[zkstore.TopicPartition]bool) []zkstore.TopicPartition {
	var out []zkstore.TopicPartition
	for _, tp := range tps {
		if set[tp] {
			out = append(out, tp)
			delete(set, tp) // once, if tps repeats it
		}
	}
	return out
}

// reconcile initialises the missing states among tps and elects leaders
// for those whose leader is gone (dead, offline, or none). It returns the
// partitions it changed.
func (c *Controller) reconcile(tps []zkstore.TopicPartition) ([]zkstore.TopicPartition, error) {
	return c.updateStates(tps, func(tp zkstore.TopicPartition, replicas []int32, st zkstore.PartitionState, exists bool) (zkstore.PartitionState, bool) {
		eligible := c.eligibleFor(tp)
		if !exists {
			return InitialState(replicas, eligible, c.fence.Epoch)
		}
		unclean := c.cfg.Unclean(tp.Topic)
		if st.Leader == NoLeader {
			return ElectOnline(st, replicas, eligible, unclean, c.fence.Epoch)
		}
		down := func(id int32) bool { return !c.live(id) || c.replicaOffline(id, tp) }
		return AfterBrokerLoss(st, replicas, down, eligible, unclean, c.fence.Epoch)
	})
}
