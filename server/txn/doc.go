// Package txn is kvlog's transaction coordinator, Apache Kafka's
// TransactionCoordinator: transactional ids, their producer ids and
// epochs, the state of their current transaction, and its persistence in
// the internal compacted topic __transaction_state, from which a broker
// that becomes leader of a partition rebuilds everything by replay. It
// knows nothing of the network or of wire versions: the broker's handlers
// (package server) translate requests into the types of api.go and map
// the errors of errors.go to Kafka codes; the broker writes the markers
// (MarkerWriter) and the records (Store).
//
// # Files
//
//   - core.go: the deterministic core of one __transaction_state
//     partition: InitProducerId, AddPartitionsToTxn/AddOffsetsToTxn,
//     EndTxn, markers, timeouts and expiration (tick). No goroutines,
//     locks, clock or timers: every call takes now.
//   - meta.go, state.go: one transactional id's state (Kafka's
//     TransactionMetadata) and the transitions between states.
//   - records.go: Kafka's TransactionLogKey v0 / TransactionLogValue v0
//     (v1 read) schemas, via kmsg.
//   - coordinator.go: the runner — one shard (core + mutex + timer) per
//     partition, the Store and MarkerWriter seams, the public API.
//
// # Behaviour (Apache Kafka's, transaction version 1)
//
//   - A transactional id maps to partition abs(javaHashCode(id)) mod
//     partitions. A shard serves its ids only once loaded, at a
//     coordinator epoch (the partition's leader epoch; 0 on a single
//     node) that every marker request carries.
//   - States: Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit,
//     CompleteAbort, Dead, PrepareEpochFence (state.go has the
//     transitions). A change is prepared as pending — every other request
//     for the id meanwhile gets CONCURRENT_TRANSACTIONS — written to the
//     log, and applied (answered, acted on) only once the write is
//     durable. A failed write leaves the state as it was and the client
//     gets COORDINATOR_NOT_AVAILABLE (or NOT_COORDINATOR).
//   - InitProducerId: a new id gets a fresh producer id at epoch 0; an
//     idle one gets its epoch bumped. With the producer's current id and
//     epoch (KIP-360) the same bump lets a producer recover from an
//     aborted or timed-out transaction; a retry of a bump whose answer was
//     lost (the previous epoch) gets the same epoch again; anything else
//     is PRODUCER_FENCED. The previous epoch is not in the log, so such a
//     retry across a coordinator restart is fenced, as in Kafka. At an
//     exhausted epoch (32766) the id gets a new producer id. Over an
//     Ongoing transaction it fences: the epoch is bumped in memory at once
//     (the old producer's requests fail from then on), the transaction is
//     aborted under the new epoch (PrepareAbort written, abort markers
//     sent) and the client gets CONCURRENT_TRANSACTIONS; its retry bumps
//     again once the abort completed.
//   - AddPartitionsToTxn/AddOffsetsToTxn move to Ongoing (AddOffsets adds
//     the group's __consumer_offsets partition); EndTxn moves to
//     PrepareCommit/PrepareAbort and answers once that is durable; the
//     markers go to every partition of the transaction, and when all have
//     taken theirs (or no longer exist) CompleteCommit/CompleteAbort is
//     written with no partitions. Markers a partition did not take are
//     sent again after MarkerRetryBackoff; a marker fenced by a newer
//     coordinator stops this one.
//   - An AddPartitionsToTxn/AddOffsetsToTxn that comes while the previous
//     transaction's markers or completion record are being written (the
//     client began its next transaction as soon as EndTxn answered) waits
//     for the completion, at most completionWait, and then runs; Kafka
//     answers CONCURRENT_TRANSACTIONS at once, and the client's retry
//     backoff (20 ms) then bounds a producer to one short transaction per
//     backoff. A wait that runs out gets CONCURRENT_TRANSACTIONS, an
//     unload NOT_COORDINATOR.
//   - Every AbortTimedOutInterval, Ongoing transactions older than their
//     timeout are fenced and aborted as above. Every RemoveExpiredInterval,
//     idle ids not updated for IDExpiration get a tombstone and are gone.
//   - Loading replays the partition (latest record per id wins, a
//     tombstone removes it) and resumes transactions found in
//     PrepareCommit/PrepareAbort by sending their markers again (to all
//     their partitions: a marker for a transaction a partition already
//     ended is harmless).
//
// # Concurrency
//
// Each shard serialises its core with a mutex. A call runs the deadlines
// due and the operation under the lock, appending records; then, with the
// lock released, the runner calls Store.Sync; then, locked again, runs the
// continuations of those records (completing the transitions, or dropping
// them on failure), repeating while continuations write more. Answers are
// delivered and markers sent only after that, unlocked, so callbacks never
// run under a coordinator lock. A shard unloaded meanwhile fails its
// continuations with NOT_COORDINATOR and sends nothing.
//
// Lock order: shard.mu → (Store) the broker's topic lock → engine locks.
//
// # Non-obvious invariants
//
//   - Every request is answered exactly once.
//   - The in-memory state changes only after its record is durable, with
//     one exception copied from Kafka: a fence bumps the epoch in memory
//     before its PrepareAbort is durable (failedFence then keeps a later
//     fence from bumping again, so an epoch never handed out is not
//     skipped twice).
//   - Dead is only ever pending: the id is removed once its tombstone is
//     durable. PrepareEpochFence is never written.
package txn
