// Package group is kvlog's classic consumer-group coordinator. It owns
// group membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), the
// group state machine (Empty, PreparingRebalance, CompletingRebalance,
// Stable, Dead), rebalance and session timeouts, protocol selection, static
// membership, and committed offsets — and their persistence in the
// internal compacted topic __consumer_offsets, from which it rebuilds
// everything by replay at start-up. It knows nothing of the network or of
// wire versions: the broker's handlers (package server) translate requests
// into the types of api.go, and map the errors of errors.go to Kafka codes.
//
// # Files
//
//   - core.go: the deterministic core of one __consumer_offsets partition:
//     join/sync/heartbeat/leave and the deadlines (tick). No goroutines,
//     locks, clock or timers: every call takes now.
//   - offsets.go: commit, fetch, delete groups/offsets, describe, list,
//     the retention sweep.
//   - group.go, member.go, state.go: the group and member records,
//     protocol selection, the state transitions.
//   - records.go, load.go: Kafka's key/value schemas (OffsetCommitKey v1 /
//     OffsetCommitValue v3, GroupMetadataKey v2 / GroupMetadataValue v3,
//     via kmsg) and the replay that rebuilds a partition's groups.
//   - coordinator.go: the runner — one shard (core + mutex + timer) per
//     partition, the Store seam, the public API.
//
// # Behaviour (Apache Kafka's GroupCoordinator)
//
//   - A group maps to partition abs(javaHashCode(group)) mod partitions.
//     A shard serves its groups only once loaded (Load replays the
//     partition); otherwise NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS
//     while loading. On a single node every partition is loaded; in
//     cluster mode a broker Loads/Unloads partitions as it gains or loses
//     their leadership (package server, cluster_groups.go).
//   - JoinGroup v4+ of a new dynamic member is the two-step join: the
//     member gets MEMBER_ID_REQUIRED with its id and must come back with
//     it within its session timeout.
//   - The join phase ends when every member (and every handed-out id) has
//     joined, or at the largest rebalance timeout, when dynamic members
//     that did not rejoin are dropped. An empty group's first join phase
//     lasts group.initial.rebalance.delay.ms, extended while members keep
//     arriving (never past the rebalance timeout).
//   - The protocol: of the protocols every member supports, the one most
//     members prefer (ties: the earliest-joined voter's). A member whose
//     protocol type differs, or that shares no protocol with all current
//     members, gets INCONSISTENT_GROUP_PROTOCOL.
//   - After the join phase every member must SyncGroup within the
//     rebalance timeout; the leader's assignment is written to
//     __consumer_offsets before anyone gets it.
//   - Sessions: a member that neither heartbeats nor waits in JoinGroup or
//     SyncGroup for its session timeout is removed; a new member waiting
//     for its first join phase has NewMemberJoinTimeout (5 minutes).
//   - Static members (group.instance.id) survive join phases they miss,
//     take over their slot with a new member id when they restart (a
//     stable group keeps its assignment), and fence stale instances
//     (FENCED_INSTANCE_ID).
//   - Offsets: members of the current generation commit (also while a
//     rebalance is being prepared); generation -1 without a member commits
//     to an empty group or creates an offsets-only group. Retention:
//     offsets.retention.minutes after a group became empty (or after the
//     commit for offsets-only groups and unsubscribed topics).
//   - A commit is visible to OffsetFetch only once its records are durable
//     (the runner's Store.Sync after the append succeeded), and before its
//     answer is delivered; a commit whose Sync fails is never served (its
//     record may surface at the next load). In cluster mode Sync waits for
//     the high watermark, so a coordinator cut off from its followers never
//     serves a commit the next coordinator may not have.
//
// # Concurrency
//
// Each shard serialises its core with a mutex. A call runs the deadlines
// due, the operation, and the deadlines due again, under the lock; records
// are appended to the store under the lock (so the log order is the state
// order). Then, unlocked, the runner calls Store.Sync and only after it
// delivers the responses the call produced (its own and others': e.g. the
// JoinGroup answers of a whole group). Callbacks therefore run on the
// caller's goroutine or a timer's, never under a coordinator lock.
//
// Lock order: shard.mu → (Store) the broker's topic lock → engine locks.
//
// # Non-obvious invariants
//
//   - Every parked JoinGroup and SyncGroup is answered exactly once: a
//     member replaced, removed, fenced or unloaded gets an error answer
//     first (answerJoin/answerSync), so no connection waits forever.
//   - core.wake is never later than any pending deadline; deadlines only
//     move later on heartbeats, so a heartbeat never rescans the groups.
//   - The in-memory state changes only after its records were appended;
//     a failed append leaves the state as it was (or, for an assignment,
//     fails the generation and rebalances).
package group
