// Package cleaner owns log compaction for kvlog's compacted topics: deciding
// which partition to clean and when (the dirty-ratio scheduler with Kafka's
// min.cleanable.dirty.ratio, min/max.compaction.lag.ms and last-stable-offset
// rules, plus kvlog's bounded tombstone lifetime), the per-partition cleaning
// states (in progress, aborting, paused, uncleanable) and the
// cleaner-offset-checkpoint of each log dir, the bounded offset map (24-byte
// entries: a 16-byte digest of two differently seeded xxhash64 and an 8-byte
// offset, one preallocated buffer per thread), the clean pass itself, the
// cleaner threads with their shared I/O throttle and backoff, live tuning of
// log.cleaner.* settings, Prometheus metrics and a JSON status.
//
// It does not own files: the engine reads segments for it (SegmentView),
// writes cleaned segments (CleanedSegment) and swaps them in crash-safely
// (Log.ReplaceSegments). See engine/log_clean.go.
//
// # A pass
//
// For a partition with first dirty offset D and first uncleanable offset U (a
// segment boundary: the active segment, the segment holding the last stable
// offset, or the first segment newer than min.compaction.lag.ms):
//
//  1. map every keyed record in [D, U) to its offset; when the map fills, the
//     pass ends at the last mapped offset E (otherwise E = U);
//  2. recopy every segment below E, from the log start, in groups that fit
//     one segment (segment.bytes, index size, int32 offset span). A record is
//     kept iff its offset is past the mapped range or at least the map's
//     offset for its key, and — for a tombstone — the batch's delete horizon
//     (KIP-534) has not passed. Keyless records are dropped. Unchanged
//     batches are copied byte for byte; changed ones are re-encoded with the
//     same codec, keeping base and last offset, producer id/epoch/base
//     sequence, leader epoch, attributes and timestamps. A batch that first
//     retains a tombstone gets its horizon (pass time + delete.retention.ms)
//     stamped. A batch emptied of records is kept as an empty batch when it
//     holds an active producer's last sequence or ends the group (so a crash
//     recovery of the swap knows the group's range). A single-segment group
//     with nothing to change is not rewritten;
//  3. each group is swapped in by the engine; after the last, the checkpoint
//     becomes E. Compacted logs then run retention.
//
// # Scheduling
//
// Kafka's rules pick the due partition with the highest dirty ratio
// cleanable / (clean + cleanable): due when the ratio exceeds
// min.cleanable.dirty.ratio, or a dirty record is older than
// max.compaction.lag.ms. With Config.BoundedTombstones (default), a partition
// is also due when a tombstone it holds has passed its horizon, or when its
// cleanable dirty section holds records older than delete.retention.ms — so
// tombstones of quiet partitions do not live forever. Planning is a pure
// function (Assess, Pick) of what is known of the logs and the time.
//
// # Failures
//
// A pass abandoned because the log changed under it (ErrSegmentsChanged),
// was aborted, or the log closed, is simply retried later. Any other error or
// panic (including a fault reading a mapped segment) marks the partition
// uncleanable: logged with its cause, shown in metrics and Status, skipped by
// the threads, which carry on with other partitions. Truncation, deletion and
// moves of a log should be bracketed by AbortAndPause / Resume.
//
// # Concurrency
//
// Manager methods are safe for concurrent use. Each thread owns a worker (its
// offset map, decoder, builder and buffers); only the Throttle and the
// Manager's state (Manager.mu) are shared. Lock order: Manager.mu, then engine
// locks (only short in-memory engine accessors run under Manager.mu).
package cleaner
