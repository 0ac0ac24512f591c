// Package cleaner owns log compaction for kvlog's compacted topics: deciding
// which partition to clean and when (the dirty-ratio scheduler with Kafka's
// min.cleanable.dirty.ratio, min/max.compaction.lag.ms and last-stable-offset
// rules, plus kvlog's bounded tombstone lifetime), the per-partition cleaning
// states (in progress, aborting, paused, uncleanable) and the
// cleaner-offset-checkpoint of each log dir, the bounded offset map (24-byte
// entries: a 16-byte digest of two differently seeded xxhash64 and an 8-byte
// offset, one buffer per thread, allocated at the thread's first pass and
// released after Options.MapIdle without one), the clean pass itself (its
// record walk, its per-offset keep/tombstone bits, the mapping of a dirty
// section in key ranges when it holds more keys than the map, from an array
// of its records' digests kept by the first scan, the re-encoding of thinned
// batches), the cleaner threads with their shared I/O throttle and backoff,
// live tuning of log.cleaner.* settings, Prometheus metrics and a JSON
// status.
//
// It does not own files: the engine reads segments for it (SegmentView),
// writes cleaned segments (CleanedSegment) and swaps them in crash-safely
// (Log.ReplaceSegments). See engine/log_clean.go.
//
// # A pass
//
// For a partition with first dirty offset D and first uncleanable offset U (a
// segment boundary: the active segment, the segment holding the last stable
// offset, or the first segment newer than min.compaction.lag.ms), a pass
// cleans [log start, E), E = U unless noted below, in two halves (scan.go,
// clean.go). Nothing is written in the first, so a pass abandoned or a
// crash before the second leaves the log as it was.
//
//  1. Decide. Scan [D, E) and put every keyed record in the offset map. Each
//     put sets the record's keep bit (one bit per offset of [D, E)) and
//     clears that of the key's previous offset, which the map returns; a tomb
//     bit marks tombstones. When the dirty section holds more distinct keys
//     than the map, the pass maps it one key range at a time (an interval of
//     a digest's low 32 bits): the first scan evicts the upper half of its
//     range from the map (OffsetMap.retain) each time the map fills and goes
//     on with the lower half; what it holds at the end tells how many keys
//     there are, and the deferred ranges are cut to fit the map. From its
//     first split on, the first scan keeps in an array (20 bytes an entry,
//     at most the map's size or 32 MiB) the digest and offset of each
//     record outside its range and, for each key a split evicts, the key's
//     latest record so far: each deferred range is mapped from that array,
//     in offset order, without reading, parsing or digesting the records
//     again. An array out of budget ends at a batch boundary with the map's
//     entries; the records past it are read from the log again for each
//     range. Before each next range, a scan of the clean section marks the
//     clean records whose key the map holds (superseded); the first such
//     scan keeps the digest and ordinal of each clean record outside the
//     map's range in a second array (what the first left of the budget), and
//     the later ones check that array instead of reading the log.
//     A pass takes at most maxScans (8) ranges' worth of keys: beyond that
//     (as seen from the first scan) it ends right after the record that
//     crossed the limit, E < U, as a pass whose map filled always did in
//     Kafka (the next pass goes on from E); and at most a span of offsets
//     whose bits take a quarter of the map's size (2 MiB for small maps). The
//     first scan verifies every dirty batch's CRC (Kafka's cleaner verifies
//     none; kvlog reads each batch's bytes once per pass anyway); later
//     ranges do not verify them again.
//  2. Recopy every segment below E, from the log start, in groups whose
//     cleaned segment fits one segment (segment.bytes and index size, for
//     dirty segments estimated from the batch headers and keep bits: a log
//     of mostly superseded records becomes few segments, not as many as it
//     had), spanning at most int32 offsets and reading at most 4 ×
//     segment.bytes. A record is
//     kept iff its offset is at or past E, or else it is keyed, no later
//     record of its key was mapped (dirty records: the keep bit; clean ones:
//     the clean-section marks and a lookup of the last range still in the
//     map), and — for a tombstone — the batch's delete horizon (KIP-534) has
//     not passed. Keyless records are dropped. A dirty batch all of whose
//     records are dropped, or kept with no tombstone to stamp or expire, is
//     decided from the bits alone, without reading (or decompressing) its
//     records; clean batches are verified (CRC) and read. Unchanged batches
//     are copied byte for byte; changed ones are re-encoded with the same
//     codec, keeping base and last offset, producer id/epoch/base sequence,
//     leader epoch, attributes and timestamps (retained records' bytes are
//     copied as they are, their timestamp delta re-based when BaseTimestamp
//     moves). A batch that first retains a tombstone gets its horizon (pass
//     time + delete.retention.ms) stamped. A batch emptied of records is kept
//     as an empty batch when it holds an active producer's last sequence or
//     ends the group (so a crash recovery of the swap knows the group's
//     range). A single-segment group with nothing to change is not
//     rewritten;
//  3. each group is swapped in by the engine; after the last, the checkpoint
//     becomes E. Compacted logs then run retention.
//
// Transactions (txn.go): records of aborted transactions are never mapped
// and are removed by the recopy (from the partition's .txnindex). A
// transaction marker stays while a batch of its transaction is in the log;
// the first pass to find none stamps it with a delete horizon (and drops an
// abort's .txnindex entry: each cleaned segment gets the index of the
// aborted transactions it still holds data of), and a pass after the
// horizon removes it, as Kafka's cleaner does.
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
// Idle active segments. Kafka never cleans the active segment and rolls it
// only on append, so a changelog smaller than a segment, written and then
// left quiet, is never compacted. Each planning round (gather) therefore
// rolls the active segment of a compacted log whose segment is older than
// its roll time (segment.ms, capped by max.compaction.lag.ms:
// engine.Log.RollIfIdle) and, with Config.IdleRoll
// (kvlog.cleaner.idle.roll.ms), of one that has had no append for that
// long when the log, rolled, would be due by its dirty ratio with the whole
// rolled segment cleanable (IdleRollDue: past min.compaction.lag.ms, below
// the last stable offset), and that the threads may clean (not paused,
// running or uncleanable). engine.Log.RollIdle rolls only if nothing was
// appended since the round looked, so an append racing with the decision
// wins. The round then assesses the rolled log and cleans it as usual. The
// ratio rule keeps a partition written now and then from getting a
// segment per write: after a pass, the next roll waits until more was
// written than the clean section holds, and the pass merges the rolled
// segment into the clean one. Idle threads wake when the earliest idle roll
// falls due (Manager.nextIdleRoll), not only after log.cleaner.backoff.ms.
// docs/cleaner.md ("Idle active segments") has the operator's view.
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
// offset map, bitsets and buffers); only the Throttle and the
// Manager's state (Manager.mu) are shared. Lock order: Manager.mu, then engine
// locks (only short in-memory engine accessors run under Manager.mu).
package cleaner
