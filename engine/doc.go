// Package engine owns kvlog's partition logs on disk: Kafka-format segments
// (.log record batches, mmapped sparse .index and .timeindex files), appends,
// zero-copy reads as file ranges, rolling, time- and size-based retention,
// truncation for replication, flushing and group commit, crash recovery,
// idempotent-producer state, the leader-epoch cache and the log-dir level
// checkpoints, and for compacted logs a key index answering a key's latest
// committed value (keyindex.go, FORMAT.md §8). It knows nothing of the
// cleaner, replication or the network.
//
// The byte layout of every file the engine writes is in FORMAT.md.
//
// Concurrency: each Log has one appender at a time (Append, roll, truncate and
// retention serialise on Log.mu) and any number of concurrent readers. Readers
// load an immutable snapshot of the segment list and the published end offset
// atomically; bytes and index entries are in place before the end is
// published. Segments referenced by a reader are reference counted so that
// deletion and truncation never close, unmap or shrink a file under it.
//
// Open files and memory mappings are budgeted (handles.go): every file the
// engine opens is charged while open, and segment handles nobody holds —
// active segments' too — are closed to make room and reopened on demand.
// When everything open is in use, work needing more waits for a handle up
// to 2 s, then is refused with ErrResourceLimit (a storage error). Logs
// load lazily: the active segment's tail and the producer state are read
// on first use. After a clean shutdown, a log dir's start-up manifest
// (manifest.go, FORMAT.md §10) stands in for listing each partition
// directory unchanged since.
//
// Time: every time decision and every wait (the background maintenance
// pass, the wait for a file handle, flush.ms, segment.ms, retention.ms,
// file.delete.delay.ms) reads the Manager's or the Log's clock
// (ManagerOptions.Clock, LogOptions.Clock), so tests move a manual clock
// instead of sleeping; fsync and other durations measured for metrics are
// real time.
//
// With ManagerOptions.Journal, a group commit of many logs of a log dir is
// one write and fsync of the dir's journal (journal.go, FORMAT.md §9),
// replayed into the logs after an unclean stop.
//
// Lock order: Manager.mu → Log.mu → journal.mu → Log.syncMu → segment.mu →
// the budget's mutex (the budget only TryLocks a segment it wants to
// close); and Log.mu → Log.kidxFileMu, Log.mu → keyIndex.mu → Log.txnMu,
// Log.mu → the Manager's maintenance queue (maintenance.go);
// journalCapture.mu is a leaf.
package engine

// Offset is a Kafka offset: the permanent position of a record in a partition.
type Offset int64

// Position is a byte position inside a segment's .log file.
type Position int64
