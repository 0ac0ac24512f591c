package server

import (
	"time"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/txn"
)

// Group coordination in cluster mode, as Kafka does it with ZooKeeper:
//
//   - A broker coordinates the groups of the __consumer_offsets partitions
//     it leads. LeaderAndIsr queues a load when it becomes leader of
//     __consumer_offsets-p (the coordinator replays the partition, up to its
//     log end offset: everything a new leader holds becomes committed) and an
//     unload when it becomes follower or the replica stops. The
//     membership's serial queue applies them in order, off the
//     controller's request; a load whose leader epoch is no longer current is skipped,
//     since the change that superseded it queued its own event.
//   - FindCoordinator answers with the leader of the group's partition from
//     the metadata cache; until it is loaded there, group requests get
//     COORDINATOR_LOAD_IN_PROGRESS (while replaying) or NOT_COORDINATOR.
//   - Writes are leader appends with acks=all (offsetsStore.Append) and are
//     answered once the high watermark passed them (offsetsStore.Sync), or
//     fail after offsets.commit.timeout.ms.

// coordLoadRetry is how long a failed coordinator load waits before it
// is queued again.
const coordLoadRetry = time.Second

// coordEvent is a load or unload of one coordinator partition, or (when
// deleted is set) the removal of deleted topics' committed offsets.
type coordEvent struct {
	// topic is the coordinator's topic: __consumer_offsets (or "") or
	// __transaction_state.
	topic string
	p     int32
	epoch int32 // load: the leader epoch leadership was won at
	load  bool
	// deleted are topics the controller's metadata stopped listing, with
	// the id this broker knew them by.
	deleted map[string]metastore.TopicID
}

// queueCoordinator queues a coordinator event on the membership's serial
// queue (LeaderAndIsr and StopReplica of __consumer_offsets partitions;
// caller holds partMu, which keeps the queue in the order of the role
// changes).
func (c *cluster) queueCoordinator(ev coordEvent) {
	c.m.Enqueue(func() { c.applyCoordinatorEvent(ev) })
}

// coordReplica is this broker's replica of partition p of a coordinator's
// topic, or nil.
func (c *cluster) coordReplica(name string, p int32) *replica.Partition {
	t := c.s.topic(name)
	if t == nil || p < 0 || int(p) >= len(t.parts) {
		return nil
	}
	return t.parts[p].rep
}

// leadsAt reports whether this broker still leads partition p of a
// coordinator's topic at leader epoch epoch.
func (c *cluster) leadsAt(name string, p, epoch int32) bool {
	rep := c.coordReplica(name, p)
	return rep != nil && rep.Role() == replica.RoleLeader && rep.LeaderEpoch() == epoch
}

func (c *cluster) applyCoordinatorEvent(ev coordEvent) {
	co := c.s.groups
	if ev.deleted != nil {
		c.removeDeletedOffsets(ev.deleted)
		return
	}
	if ev.topic == txn.StateTopic {
		c.applyTxnCoordinatorEvent(ev)
		return
	}
	if ev.p >= co.Partitions() {
		// The topic has more partitions than the coordinator was started
		// with (created elsewhere with another offsets.topic.num.partitions
		// after this broker started): FindCoordinator refuses such groups.
		c.log.Warn("no coordinator shard for partition", "topic", group.OffsetsTopic, "partition", ev.p, "coordinator_partitions", co.Partitions())
		return
	}
	if !ev.load {
		co.Unload(ev.p)
		c.log.Info("stopped coordinating groups", "partition", ev.p)
		return
	}
	if !c.leadsAt(group.OffsetsTopic, ev.p, ev.epoch) {
		return // superseded: a later event follows
	}
	start := time.Now()
	if err := co.Load(ev.p); err != nil {
		c.log.Error("loading groups failed; retrying", "partition", ev.p, "leader_epoch", ev.epoch, "err", err)
		clock.AfterFunc(c.s.clock, coordLoadRetry, func() {
			if c.ctx.Err() == nil && c.leadsAt(group.OffsetsTopic, ev.p, ev.epoch) {
				c.partMu.Lock()
				c.queueCoordinator(ev)
				c.partMu.Unlock()
			}
		})
		return
	}
	c.log.Info("coordinating groups", "partition", ev.p, "leader_epoch", ev.epoch, "took", time.Since(start).Round(time.Millisecond))
}

// noteRemovedTopics is called with each new metadata cache before it
// replaces the current one (UpdateMetadata): topics it no longer lists may
// have been deleted, and then the groups this broker coordinates must lose
// their committed offsets (Kafka's ZooKeeper-mode brokers do this on the
// UpdateMetadata that removes a topic). The check against ZooKeeper and the
// tombstones happen on the coordinator loader, off the controller's
// request.
func (c *cluster) noteRemovedTopics(next *clusterMeta) {
	cur := c.meta.Load()
	snap := c.s.topics.Load()
	gone := map[string]metastore.TopicID{}
	for name := range cur.topics {
		if _, ok := next.topics[name]; ok {
			continue
		}
		if t := snap.byName[name]; t != nil {
			gone[name] = t.id
		}
	}
	if len(gone) == 0 {
		return
	}
	c.queueCoordinator(coordEvent{deleted: gone})
}

// removeDeletedOffsets removes the committed offsets of the candidates
// ZooKeeper confirms deleted (package cluster's Member.DeletedTopics).
func (c *cluster) removeDeletedOffsets(candidates map[string]metastore.TopicID) {
	if deleted := c.m.DeletedTopics(candidates); len(deleted) > 0 {
		c.s.removeDeletedOffsets(deleted)
	}
}
