// Package replica owns the partitions a broker hosts and their
// replication: the partition manager (every leader append, the high
// watermark and its durability rule, acks=all completion, parked fetches),
// the leader's view of its followers (log end offsets, last caught-up
// times, the in-sync replica set and the high watermark), and the
// follower's side (truncation on leader change, verbatim appends, fetch
// sessions against the leader). A single node is a cluster of one: its
// partitions are leaders whose ISR is the broker alone. It sits on the engine and knows nothing of the network protocol
// beyond the Fetcher's use of kmsg, nor of ZooKeeper: ISR changes leave this
// package as ISRChange proposals that the caller persists (conditionally on
// the partition state's version) and reports back.
//
// # Layers
//
//   - leader.go: Leader, the deterministic leader-side core. Events (leader
//     appends, follower fetches, ISR commits) and an explicit now go in;
//     decisions (new high watermark, ISR shrink/expand proposals, acks=all
//     verdicts) come out. No goroutines, no I/O, no clock.
//   - truncate.go: the follower's truncation rules (KIP-101, KIP-279) and the
//     leader-epoch checks (KIP-320), as pure functions.
//   - partition.go: Partition, one replica of one partition: the role
//     (leader, follower or none), the engine log, the Leader core when
//     leading and the fetch state when following. It does log I/O but runs
//     no goroutines and takes now as an argument, so tests drive whole
//     clusters of real logs step by step.
//   - manager.go: Manager, the partition manager (Kafka's ReplicaManager):
//     hosts the Partitions, runs the group commits the HW waits for (one
//     committer goroutine syncs every partition waiting at once; appends
//     arriving meanwhile share the next commit, and a produce request's
//     partitions go in one commit: HoldCommits), completes acks=all
//     produces with their timeout, and parks fetches short of their
//     minimum bytes until a partition moves, their deadline or shutdown.
//   - fetcher.go: the runner: one goroutine per source broker sending
//     OffsetsForLeaderEpoch and Fetch (replica id and current leader epoch
//     set) over the Kafka protocol, feeding the answers to Partitions;
//     fetch_session.go: its fetches go through an incremental fetch
//     session (KIP-227), naming only the partitions whose position moved.
//
// # Rules (Kafka's, ZooKeeper era)
//
//   - HW = min LEO over the maximal ISR (the leader's own term is its
//     fsynced offset while it is alone and kvlog.fsync.acks.all is on) (the committed ISR plus members
//     being added; members being removed still count until the removal is
//     committed). It never moves down while leading.
//   - A follower is out of sync when its LEO differs from the leader's and
//     it has not been caught up for longer than replica.lag.time.max.ms. It
//     was caught up at a fetch whose offset reached the leader's LEO at that
//     fetch, or at the previous fetch when this fetch reached the leader LEO
//     seen at the previous one (Kafka's Replica.updateFetchState). A fetch
//     of the follower's incremental session that passed over the partition
//     (the follower at the leader's LEO, nothing changed: the leader did not
//     read it) counts as such a fetch (Manager.SessionFollowerFetch).
//   - A follower joins the ISR when its LEO reaches the HW and the current
//     leader epoch's start offset.
//   - acks=all: refused with NOT_ENOUGH_REPLICAS when |ISR| <
//     min.insync.replicas; otherwise done when HW > last offset, with
//     NOT_ENOUGH_REPLICAS_AFTER_APPEND if |ISR| fell below the minimum.
//   - A new leader assigns its epoch at its LEO in the leader-epoch cache
//     before serving, so OffsetsForLeaderEpoch is right before its first
//     append.
//   - A follower truncates to the divergence point found with
//     OffsetsForLeaderEpoch, never to its HW.
//
// # Last replica standing (decision)
//
// KIP-966 and Jepsen's NATS analysis describe the same loss: the ISR shrinks
// to one replica, that replica loses unsynced data in a crash (power loss,
// not a process kill: the page cache survives kill -9), restarts, is elected
// as the only ISR member, and every other replica truncates to it.
// Acknowledged data vanishes everywhere after a single failure.
//
// kvlog chooses "fsync before the last replica stands alone" over refusing
// the election:
//
//  1. When the leader proposes an ISR shrink that leaves only itself, the
//     proposal carries SyncFirst: the log is fsynced before the new ISR is
//     written, so everything committed so far is on its disk when it becomes
//     the only replica that counts.
//  2. A replica that becomes leader with an ISR of only itself fsyncs its log
//     before serving (Partition.MakeLeader).
//  3. While the ISR is the leader alone (a single node always), the high
//     watermark passes only fsynced offsets (kvlog.fsync.acks.all): every
//     append, acks=1 too, schedules an fsync that group-commits whatever
//     arrived meanwhile; acks=all is answered when the HW passed its
//     batch, acks=1 at once. So no consumer ever reads past what a power
//     loss would keep. With the setting off the HW follows the LEO.
//
// So whenever a replica is the sole ISR member, everything it acknowledged is
// durable on it, and electing it after any crash loses nothing acknowledged.
// While the ISR has two or more members, durability comes from replication
// (as in Kafka): losing acknowledged data then needs two replicas to lose
// their page caches. Refusing to elect an uncleanly restarted sole survivor
// (KIP-966's choice) was rejected because kill -9, the common crash, loses
// nothing, and refusing would make every such restart an outage. The rule is
// tested by TestLastReplicaStanding* with a crash-simulating file system.
//
// # Concurrency
//
// Partition methods are safe for concurrent use; each holds Partition.mu
// for its whole body, including the engine calls it makes (engine locks are
// below it), except Flush, whose fsync runs outside it, and Role,
// LeaderEpoch and View, which read the role and epoch stored at each change
// without it: a fetch checking them never waits behind an append or a
// commit holding mu. acks=all
// completions are invoked after mu is released; parked fetches are woken
// under it (Partition.watchMu, a leaf) but answered on other goroutines,
// the Manager's wakers (a few kept waiting, so that a woken fetch does not
// grow a fresh goroutine's stack each time).
// Leader is not safe for concurrent use: Partition owns it under mu.
package replica
