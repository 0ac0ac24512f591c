// Package index owns a log segment's two sparse, memory-mapped index files,
// byte-compatible with Apache Kafka:
//
//   - the offset index (<base>.index): 8-byte entries, relative offset (4 bytes)
//     and file position (4 bytes) in the segment's .log, both big-endian;
//   - the time index (<base>.timeindex): 12-byte entries, timestamp (8 bytes) and
//     relative offset (4 bytes), both big-endian.
//
// The package owns the file layout (see FORMAT.md), preallocation to
// segment.index.bytes, the read-write or read-only mapping, appends, Kafka's
// warm-section binary search, truncation, trimming on roll/close, resizing,
// detection of the all-zero tail that an unclean shutdown leaves in a
// preallocated file, and cheap corruption checks. It does not decide when an
// entry is added (the segment does, every index.interval.bytes) and it does not
// rebuild an index from the log (recovery does, through Reset and Append):
// indexes are caches, never checksummed, always rebuildable.
//
// Files are opened through a vfs.FS; the mapping is made from File.Fd() and
// is read-only: entries are written with File.WriteAt (pwrite), so a full
// file system is an error from Append, never a SIGBUS from a store into a
// mapped hole. A read-only index closes its file once it is mapped: it holds
// a mapping and no descriptor. A writable one keeps its descriptor for the
// writes.
//
// # Concurrency
//
// Each index has one writer and any number of readers.
//
//   - Readers (Lookup, Entry, Entries, LastOffset, LastEntry, IsFull, MaxEntries,
//     SizeInBytes, BaseOffset, Path, SanityCheck, Verify) take no lock. The
//     writer stores an entry's bytes before it publishes the new entry count
//     with an atomic store, and readers load the count atomically before they
//     read bytes, so a reader sees every entry it counts completely.
//   - Writer operations (Append/MaybeAppend, TruncateTo, Reset, Flush, Resize,
//     TrimToValidSize, Rename, Close, Delete) are serialised by a mutex, so a
//     background Flush may run alongside appends.
//   - TrimToValidSize cuts the file to its entries but keeps the mapping, so
//     it may run alongside readers (the engine seals the active segment while
//     fetches read it); readers only touch published entries, all inside the
//     file. Resize, Close and Delete replace or remove the mapping: they
//     require that no reader is using the index (the engine holds reference
//     counts above this package). A mapping is never shrunk or unmapped under
//     a reader by any other operation.
//   - TruncateTo and Reset may run alongside readers. A reader that loaded the
//     old entry count may observe dropped slots being zeroed or rewritten by
//     later appends; results for targets below the truncation point are
//     unaffected, and results at or above it refer to data being truncated,
//     which the engine must not serve.
//
// No method panics on a corrupt, short or garbage file: problems are reported
// as errors wrapping ErrCorruptIndex that name the file.
package index
