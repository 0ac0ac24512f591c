package checkpoint

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/kvlog/kvlog/engine/vfs"
)

// Kafka's OffsetsForLeaderEpoch "undefined" values, returned by
// EpochCache.EndOffsetFor when it knows no answer.
const (
	UndefinedEpoch       int32 = -1
	UndefinedEpochOffset int64 = -1
)

// EpochEntry says that leader epoch Epoch wrote its first record at
// StartOffset.
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// EpochCache is a partition's leader epoch cache (Kafka's
// LeaderEpochFileCache) backed by its leader-epoch-checkpoint file.
//
// Invariant: entries strictly increase in both Epoch and StartOffset.
//
// Every method is safe for concurrent use. Mutations other than
// AssignDeferred hold the write lock while they persist the file (Kafka
// flushes truncations asynchronously; kvlog writes them before returning),
// and change the in-memory state only once the file is written: if
// persisting fails, the cache is unchanged and the error is returned (the
// file then holds the old or, if only the directory sync failed, the new
// entries).
type EpochCache struct {
	fs   vfs.FS
	path string

	mu      sync.RWMutex
	entries []EpochEntry // never modified in place: mutations build a new slice
	// disk is what the file holds (as loaded or last written); dirty:
	// entries differ from it, changed by a deferred mutation.
	disk  []EpochEntry
	dirty bool
}

// OpenEpochCache loads the cache from path (a missing or empty file gives an
// empty cache; the file is not created until the first mutation). As in
// Kafka, the loaded entries are replayed through Assign's rules, so a file
// with non-monotonic entries loads as the entries Assign would have kept;
// the file is not rewritten until the next mutation. A file that does not
// parse, or holds a negative epoch or offset, returns an error matching
// ErrMalformed.
func OpenEpochCache(fsys vfs.FS, path string) (*EpochCache, error) {
	data, err := readFile(fsys, path)
	if err != nil {
		return nil, err
	}
	raw, err := parseEpochs(path, data)
	if err != nil {
		return nil, err
	}
	var es []EpochEntry
	for _, e := range raw {
		es, _ = assignEntry(es, e)
	}
	return &EpochCache{fs: fsys, path: path, entries: es, disk: es}, nil
}

// NewEpochCache is an empty cache for path, where no file exists (the file
// is not created until the first mutation): what OpenEpochCache returns
// for a missing file, without looking.
func NewEpochCache(fsys vfs.FS, path string) *EpochCache {
	return &EpochCache{fs: fsys, path: path}
}

// LoadedEpochCache is the cache OpenEpochCache returns for a file holding
// entries, built without reading the file: the caller knows its content
// (the log dir's start-up manifest recorded it at the last clean
// shutdown). entries must be as OpenEpochCache keeps them (strictly
// increasing in both epoch and start offset).
func LoadedEpochCache(fsys vfs.FS, path string, entries []EpochEntry) *EpochCache {
	if len(entries) == 0 {
		entries = nil
	}
	return &EpochCache{fs: fsys, path: path, entries: entries, disk: entries}
}

// Path returns the checkpoint file's path.
func (c *EpochCache) Path() string { return c.path }

// Entries returns a copy of the entries, oldest first.
func (c *EpochCache) Entries() []EpochEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.entries)
}

// Assign records that epoch starts at startOffset, with Kafka's rules:
//   - it is ignored when epoch equals the latest epoch and startOffset is
//     not below that epoch's start offset (an epoch's start never moves
//     forward);
//   - otherwise every entry, newest first, whose epoch is >= epoch or whose
//     start offset is >= startOffset is removed, and the new entry is
//     appended. So assigning a lower epoch or an earlier offset truncates
//     the conflicting later entries.
//
// Negative arguments return ErrInvalidEntry. The file is rewritten only
// when the entries change.
func (c *EpochCache) Assign(epoch int32, startOffset int64) error {
	if epoch < 0 || startOffset < 0 {
		return fmt.Errorf("%w: leader epoch %d start offset %d", ErrInvalidEntry, epoch, startOffset)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	es, changed := assignEntry(c.entries, EpochEntry{Epoch: epoch, StartOffset: startOffset})
	return c.commit(es, changed)
}

// AssignDeferred is Assign without writing the file: the change is kept in
// memory and written by the next Flush or persisting mutation. A log assigns
// an epoch on the append path this way and flushes the cache with its data
// (as Kafka does; docs/storage.md#flushing-and-durability): an fsync per new epoch on the produce
// path stalled every first append to a partition behind the disk. Entries
// lost to a crash before that flush cover only offsets past the recovery
// point, which recovery rebuilds from the batches' leader epochs.
func (c *EpochCache) AssignDeferred(epoch int32, startOffset int64) error {
	if epoch < 0 || startOffset < 0 {
		return fmt.Errorf("%w: leader epoch %d start offset %d", ErrInvalidEntry, epoch, startOffset)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if es, changed := assignEntry(c.entries, EpochEntry{Epoch: epoch, StartOffset: startOffset}); changed {
		c.deferLocked(es)
	}
	return nil
}

// TruncateFromEndDeferred is TruncateFromEnd without writing the file, as
// AssignDeferred assigns. A log loading truncates its cache to its end this
// way: entries past the end are harmless on disk, where every load
// truncates them again, and are written away with the next flush; writing
// them at once cost a synced file per partition at every start-up where an
// epoch began at the end of a log (an empty partition's, for one), and a
// leader then assigning the same epoch there again changed nothing.
func (c *EpochCache) TruncateFromEndDeferred(endOffset int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if es, changed := truncateFromEnd(c.entries, endOffset); changed {
		c.deferLocked(es)
	}
}

// deferLocked installs es, to be written by the next Flush, Stage or
// persisting mutation unless it is what the file holds. Caller holds c.mu.
func (c *EpochCache) deferLocked(es []EpochEntry) {
	c.entries = es
	c.dirty = !slices.Equal(es, c.disk)
}

// Flush writes the file if a deferred mutation left the entries other than
// the file holds.
func (c *EpochCache) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return nil
	}
	return c.commit(c.entries, true)
}

// Stage writes the file's new content with WriteFileStaged when
// a deferred mutation left the entries other than the file holds, and
// returns its path ("" when nothing changed); after InstallStaged and the
// file-system sync that follows, Installed records it as written.
func (c *EpochCache) Stage() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return "", nil
	}
	if err := WriteFileStaged(c.fs, c.path, formatEpochs(c.entries)); err != nil {
		return "", err
	}
	return c.path, nil
}

// Installed records that the content Stage wrote is installed and durable
// (no later change: the caller keeps the cache unchanged meanwhile).
func (c *EpochCache) Installed() {
	c.mu.Lock()
	c.disk = c.entries
	c.dirty = false
	c.mu.Unlock()
}

// LatestEpoch returns the newest epoch, if any.
func (c *EpochCache) LatestEpoch() (int32, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.entries) == 0 {
		return UndefinedEpoch, false
	}
	return c.entries[len(c.entries)-1].Epoch, true
}

// EndOffsetFor answers OffsetsForLeaderEpoch for requestedEpoch, as Kafka's
// endOffsetFor:
//   - requestedEpoch is UndefinedEpoch: (UndefinedEpoch, UndefinedEpochOffset);
//   - requestedEpoch is the latest epoch: (requestedEpoch, logEndOffset);
//   - no epoch above requestedEpoch is known (this includes an empty cache):
//     (UndefinedEpoch, UndefinedEpochOffset);
//   - requestedEpoch is below every known epoch: (requestedEpoch, start
//     offset of the first epoch);
//   - otherwise: (the largest known epoch <= requestedEpoch, start offset of
//     the first known epoch > requestedEpoch).
func (c *EpochCache) EndOffsetFor(requestedEpoch int32, logEndOffset int64) (epoch int32, endOffset int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return endOffsetFor(c.entries, requestedEpoch, logEndOffset)
}

// EpochForOffset returns the epoch that wrote offset: the epoch of the last
// entry starting at or before offset. It reports false when offset is
// before the first entry or the cache is empty.
func (c *EpochCache) EpochForOffset(offset int64) (int32, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	i := sort.Search(len(c.entries), func(i int) bool { return c.entries[i].StartOffset > offset })
	if i == 0 {
		return UndefinedEpoch, false
	}
	return c.entries[i-1].Epoch, true
}

// TruncateFromEnd removes the entries whose start offset is >= endOffset
// (the log was truncated to endOffset). A negative endOffset does nothing.
func (c *EpochCache) TruncateFromEnd(endOffset int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	es, changed := truncateFromEnd(c.entries, endOffset)
	return c.commit(es, changed)
}

// TruncateFromStart drops the history before startOffset (the log start
// moved to startOffset): the entries starting at or before startOffset are
// removed except the last of them, whose start becomes startOffset. An
// entry starting exactly at startOffset is therefore kept as it is.
func (c *EpochCache) TruncateFromStart(startOffset int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	es, changed := truncateFromStart(c.entries, startOffset)
	return c.commit(es, changed)
}

// Clear removes every entry and rewrites the file (empty).
func (c *EpochCache) Clear() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commit(nil, true)
}

// commit persists es and installs it. Caller holds c.mu for writing.
func (c *EpochCache) commit(es []EpochEntry, changed bool) error {
	if !changed {
		return nil
	}
	if err := WriteFileAtomic(c.fs, c.path, formatEpochs(es)); err != nil {
		return err
	}
	c.entries = es
	c.disk = es
	c.dirty = false
	return nil
}

// assignEntry returns es with e assigned (Kafka's assign), and whether that
// changed anything. es is not modified.
func assignEntry(es []EpochEntry, e EpochEntry) ([]EpochEntry, bool) {
	if n := len(es); n > 0 && es[n-1].Epoch == e.Epoch && e.StartOffset >= es[n-1].StartOffset {
		return es, false
	}
	i := len(es)
	for i > 0 && (es[i-1].Epoch >= e.Epoch || es[i-1].StartOffset >= e.StartOffset) {
		i--
	}
	out := make([]EpochEntry, i+1)
	copy(out, es[:i])
	out[i] = e
	return out, true
}

func truncateFromEnd(es []EpochEntry, endOffset int64) ([]EpochEntry, bool) {
	if endOffset < 0 || len(es) == 0 || es[len(es)-1].StartOffset < endOffset {
		return es, false
	}
	i := len(es)
	for i > 0 && es[i-1].StartOffset >= endOffset {
		i--
	}
	return slices.Clone(es[:i]), true
}

func truncateFromStart(es []EpochEntry, startOffset int64) ([]EpochEntry, bool) {
	i := 0
	for i < len(es) && es[i].StartOffset <= startOffset {
		i++
	}
	if i == 0 || (i == 1 && es[0].StartOffset == startOffset) {
		return es, false
	}
	out := make([]EpochEntry, 0, len(es)-i+1)
	out = append(out, EpochEntry{Epoch: es[i-1].Epoch, StartOffset: startOffset})
	return append(out, es[i:]...), true
}

func endOffsetFor(es []EpochEntry, requested int32, logEndOffset int64) (int32, int64) {
	if requested == UndefinedEpoch {
		return UndefinedEpoch, UndefinedEpochOffset
	}
	if n := len(es); n > 0 && es[n-1].Epoch == requested {
		return requested, logEndOffset
	}
	higher := sort.Search(len(es), func(i int) bool { return es[i].Epoch > requested })
	switch {
	case higher == len(es):
		return UndefinedEpoch, UndefinedEpochOffset
	case higher == 0:
		return requested, es[0].StartOffset
	default:
		return es[higher-1].Epoch, es[higher].StartOffset
	}
}

// parseEpochs parses a leader-epoch-checkpoint: header, then "epoch
// startOffset" lines with a non-negative int32 epoch and int64 offset.
// Entries are returned as written, not sanitised.
func parseEpochs(path string, data []byte) ([]EpochEntry, error) {
	var es []EpochEntry
	err := parseFile(path, data, func(line int, text string, f []string) error {
		if len(f) != 2 {
			return malformed(path, line, text, "want 2 fields: epoch startOffset")
		}
		ep, err := strconv.ParseInt(f[0], 10, 32)
		if err != nil || ep < 0 {
			return malformed(path, line, text, "epoch is not a non-negative int32")
		}
		off, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || off < 0 {
			return malformed(path, line, text, "start offset is not a non-negative int64")
		}
		es = append(es, EpochEntry{Epoch: int32(ep), StartOffset: off})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return es, nil
}

func formatEpochs(es []EpochEntry) []byte {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = strconv.FormatInt(int64(e.Epoch), 10) + " " + strconv.FormatInt(e.StartOffset, 10)
	}
	return formatFile(lines)
}
