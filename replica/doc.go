// Package replica owns partition replication: the leader's view of its
// followers (log end offsets, last caught-up times, the in-sync replica set
// and the high watermark), acks=all completion, and the follower's side
// (truncation on leader change, verbatim appends, fetch sessions against the
// leader). It sits on the engine and knows nothing of the network protocol
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
//   - fetcher.go: the runner: one goroutine per source broker sending
//     OffsetsForLeaderEpoch and Fetch (replica id and current leader epoch
//     set) over the Kafka protocol, feeding the answers to Partitions.
//
// # Rules (Kafka's, ZooKeeper era)
//
//   - HW = min LEO over the maximal ISR (the committed ISR plus members
//     being added; members being removed still count until the removal is
//     committed). It never moves down while leading.
//   - A follower is out of sync when its LEO differs from the leader's and
//     it has not been caught up for longer than replica.lag.time.max.ms. It
//     was caught up at a fetch whose offset reached the leader's LEO at that
//     fetch, or at the previous fetch when this fetch reached the leader LEO
//     seen at the previous one (Kafka's Replica.updateFetchState).
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
//  3. While the ISR is the leader alone, acks=all produce requests are
//     fsynced (group commit) before they are acknowledged (the single-node
//     kvlog.fsync.acks.all behaviour).
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
// below it). Callbacks (acks=all completions, HW listeners) are invoked
// after mu is released. Leader is not safe for concurrent use: Partition
// owns it under mu.
package replica
