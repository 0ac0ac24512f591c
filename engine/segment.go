package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvlog/kvlog/engine/index"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"golang.org/x/sys/unix"
)

// segment is one .log file with its two indexes. Fields that readers use are
// atomics published by the single writer (holding Log.mu) after the bytes and
// index entries they describe are in place.
type segment struct {
	dir  string
	base Offset
	id   uint64 // key in the handle cache
	fs   vfs.FS
	log  *Log

	size atomic.Int64 // bytes of .log visible to readers
	next atomic.Int64 // offset after the last batch; the segment's end offset (stored before size)
	// maxTs is the largest batch MaxTimestamp (-1 if none), or tsUnknown for
	// a segment loaded from disk whose time index was not read yet; read it
	// through largestTimestamp. offsetOfMaxTs is the last offset of the
	// first batch carrying it. Writers store offsetOfMaxTs before maxTs.
	maxTs         atomic.Int64
	offsetOfMaxTs atomic.Int64
	tsLoad        sync.Mutex // one lazy load of maxTs at a time

	// Writer-only state (Log.mu held). Set while the segment is active.
	firstBatchTs    int64     // MaxTimestamp of the first batch (roll timing), -1 if empty
	created         time.Time // when the segment became active (idle roll)
	bytesSinceIndex int
	flushed         atomic.Int64 // bytes known to be on stable storage
	// indexesUnsynced: a seal (or an eviction of the active segment) left
	// its index files in their final form, which no flush has synced yet.
	// A segment whose .log was already synced when it rolled still needs
	// its indexes flushed once (the largest timestamp, last in the time
	// index, is what time retention and ListOffsets by time read).
	indexesUnsynced atomic.Bool

	// live counts this segment's open handles, current or detached but
	// still held by a reader: truncation waits for it before shrinking the
	// file.
	live sync.WaitGroup

	mu     sync.Mutex // guards h, active, gone, sealedOnDisk, idxDeferred, loaded
	h      *handle
	active bool // appended to: its handle is writable (reopened so after an eviction)
	gone   bool // deleted: no new handles
	// sealedOnDisk: the segment has no open handle and its index files are
	// as a seal leaves them (trimmed, the largest timestamp last in the time
	// index), so sealing it needs no reopen.
	sealedOnDisk bool
	// idxDeferred: the segment has no open handle, and the last one had
	// an index without a file (no entry yet: index.NewOffset).
	idxDeferred bool
	// loaded is false for an active segment found on disk whose tail was
	// not read yet (lazy open): its index-interval count, first timestamp
	// and largest timestamp are learnt on its first open (loadTail).
	loaded bool
	// unborn: the active segment of a log loaded without any segment file
	// (a partition just created, or never written), whose .log is created
	// on its first open (openUnborn): a partition nobody writes to costs
	// no file and no descriptor.
	unborn bool
}

// handle is the set of open resources for a segment: the .log file, both
// indexes and, lazily, a read-only mapping of the .log. It is reference
// counted; the segment itself holds one reference while the handle is its
// current one. Resources are released when the count reaches zero.
type handle struct {
	seg  *segment
	refs atomic.Int32
	file vfs.File
	oidx *index.OffsetIndex
	tidx *index.TimeIndex

	mapMu sync.Mutex
	data  []byte // read-only mmap of .log (for scans), nil until mapped
	// lookupData maps the .log for key lookups (lookupMapped), nil until
	// mapped; lookupNoMap: mapping failed, lookups use pread.
	lookupData  []byte
	lookupNoMap bool
	wg          *sync.WaitGroup
	// tracked: counted in seg.live (every handle of a listed segment).
	tracked bool

	// hc is the budget the handle's mappings are charged to; maps how many.
	hc         *handleCache
	maps       atomic.Int64
	idxCharged bool // the two index mappings are charged (set while opening)
	// CLOCK ring membership (guarded by hc.mu).
	next, prev *handle
	inRing     bool
	inactive   bool
	used       atomic.Bool // referenced since the hand last passed it
}

// track counts h among s's live handles.
func (s *segment) track(h *handle) {
	h.seg = s
	h.hc = s.log.handles
	h.tracked = true
	s.live.Add(1)
}

func (h *handle) release() {
	if n := h.refs.Add(-1); n == 0 {
		h.close()
	} else if n == 1 && h.hc != nil {
		h.hc.notify() // held by its segment alone: it may be closed now
	} else if n < 0 {
		panic("engine: handle released twice")
	}
}

func (h *handle) close() {
	h.mapMu.Lock()
	if h.data != nil {
		_ = unix.Munmap(h.data)
		h.data = nil
	}
	if h.lookupData != nil {
		_ = unix.Munmap(h.lookupData)
		h.lookupData = nil
	}
	h.mapMu.Unlock()
	if h.oidx != nil {
		_ = h.oidx.Close()
	}
	if h.tidx != nil {
		_ = h.tidx.Close()
	}
	if h.file != nil {
		_ = h.file.Close()
	}
	if n := h.maps.Swap(0); n > 0 {
		h.hc.uncharge(0, n)
	}
	if h.wg != nil {
		h.wg.Done()
	}
	if h.tracked {
		h.seg.live.Done()
	}
}

// chargeMaps charges n mappings of h to its segment's budget.
func (h *handle) chargeMaps(n int64) error {
	if h.hc == nil {
		h.hc = h.seg.log.handles
	}
	if err := h.hc.charge(0, n); err != nil {
		return err
	}
	h.maps.Add(n)
	return nil
}

func (h *handle) uncharge(n int64) {
	h.maps.Add(-n)
	h.hc.uncharge(0, n)
}

// mapped returns a read-only mapping of the first n bytes of the .log. The
// mapping lives as long as the handle; callers hold a reference.
func (h *handle) mapped(n int64) ([]byte, error) {
	h.mapMu.Lock()
	defer h.mapMu.Unlock()
	if n == 0 {
		return nil, nil
	}
	if h.data != nil && int64(len(h.data)) >= n {
		return h.data[:n], nil
	}
	if h.data != nil {
		// Only inactive segments are mapped (they do not grow); scans of the
		// active segment use pread.
		return nil, fmt.Errorf("engine: %s grew after it was mapped", h.file.Name())
	}
	if err := h.chargeMaps(1); err != nil {
		return nil, fmt.Errorf("engine: mmap %s: %w", h.file.Name(), err)
	}
	data, err := unix.Mmap(int(h.file.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		h.uncharge(1)
		return nil, fmt.Errorf("engine: mmap %s: %w: %w", h.file.Name(), ErrStorage, err)
	}
	_ = unix.Madvise(data, unix.MADV_SEQUENTIAL)
	h.data = data
	return data, nil
}

// lookupMapped returns a read-only mapping of the .log for key lookups,
// which read one batch at a random position: no syscall and no copy per
// lookup, unlike pread. It covers span bytes (at least n, the segment's
// size now), so that an active segment growing up to span bytes keeps its
// mapping; only bytes below the segment's size may be read (beyond the
// file's end a read faults). Truncations drain every handle before the
// file shrinks, so the bytes below the size stay readable while the
// caller holds its reference. nil when it cannot map (the budget, a file
// system without descriptors, the segment grew past the span): the caller
// uses pread.
func (h *handle) lookupMapped(n, span int64) []byte {
	h.mapMu.Lock()
	defer h.mapMu.Unlock()
	switch {
	case n <= 0:
		return nil
	case h.lookupData != nil && int64(len(h.lookupData)) >= n:
		return h.lookupData
	case h.lookupData != nil || h.lookupNoMap:
		return nil
	}
	if span < n {
		span = n
	}
	// Charged without waiting or evicting: a lookup falls back to pread
	// rather than wait for the budget.
	if h.hc == nil {
		h.hc = h.seg.log.handles
	}
	h.hc.mu.Lock()
	fits := h.hc.maps+1 <= h.hc.maxMaps.Load()
	if fits {
		h.hc.maps++
	}
	h.hc.mu.Unlock()
	if !fits {
		return nil
	}
	h.maps.Add(1)
	data, err := unix.Mmap(int(h.file.Fd()), 0, int(span), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		h.uncharge(1)
		h.lookupNoMap = true
		return nil
	}
	h.lookupData = data
	return data
}

// tsUnknown marks a segment's largest timestamp as not loaded yet.
const tsUnknown = -2

// setMaxTs records the segment's largest timestamp and the offset of the
// batch carrying it. Caller holds Log.mu (or owns the segment alone).
func (s *segment) setMaxTs(ts int64, off Offset) {
	s.offsetOfMaxTs.Store(int64(off))
	s.maxTs.Store(ts)
}

// largestTimestamp returns the segment's largest record timestamp (-1 when
// its batches carry none) and the offset of the batch carrying it. A segment
// loaded from disk learns it on first use, as Kafka's LogSegment does: from
// the last time-index entry, which the roll that sealed the segment wrote
// for exactly this (FORMAT.md §3); when the time index has no entry with a
// positive timestamp (no timestamps, only timestamp 0, or an index lost and
// rebuilt empty) from a scan of the segment's batch headers. An I/O error
// leaves it unknown (the error is returned, the next call tries again).
func (s *segment) largestTimestamp() (int64, Offset, error) {
	if ts := s.maxTs.Load(); ts != tsUnknown {
		return ts, Offset(s.offsetOfMaxTs.Load()), nil
	}
	s.tsLoad.Lock()
	defer s.tsLoad.Unlock()
	if ts := s.maxTs.Load(); ts != tsUnknown {
		return ts, Offset(s.offsetOfMaxTs.Load()), nil
	}
	h, err := s.acquire()
	if err != nil {
		return -1, s.base, err
	}
	defer h.release()
	ts, off, err := s.readLargestTimestamp(h)
	if err != nil {
		return -1, s.base, err
	}
	// Only an unknown value is replaced: a concurrent writer's is newer.
	// (Truncation, the only writer of an inactive segment's value, first
	// waits until this handle is released.)
	s.offsetOfMaxTs.Store(int64(off))
	if !s.maxTs.CompareAndSwap(tsUnknown, ts) {
		return s.maxTs.Load(), Offset(s.offsetOfMaxTs.Load()), nil
	}
	return ts, off, nil
}

// readLargestTimestamp computes what largestTimestamp caches.
func (s *segment) readLargestTimestamp(h *handle) (int64, Offset, error) {
	if h.tidx.Entries() > 0 {
		// An entry (0, base) may be the never-written slot 0 of an
		// untrimmed file: only a positive timestamp is taken on trust.
		ts, off := h.tidx.LastEntry()
		if ts > 0 && Offset(off) >= s.base && (s.next.Load() < 0 || off < s.next.Load()) {
			return ts, Offset(off), nil
		}
	}
	ts, off, err := scanLargestTimestamp(h.file, s.base, s.size.Load())
	if err != nil {
		return -1, s.base, fmt.Errorf("%s: largest timestamp: %w", s, err)
	}
	return ts, off, nil
}

// scanLargestTimestamp walks the batch headers of the first size bytes of a
// .log and returns the largest MaxTimestamp (-1 if none) and the last offset
// of the first batch carrying it (base when none does).
func scanLargestTimestamp(r io.ReaderAt, base Offset, size int64) (int64, Offset, error) {
	sc := newBatchScanner(r, 0, size)
	defer sc.close()
	ts, off := int64(-1), base
	for {
		pos, hdr, err := sc.next()
		if err == io.EOF {
			return ts, off, nil
		}
		if err != nil {
			return -1, base, fmt.Errorf("batch at position %d: %w", pos, err)
		}
		b := record.Batch(hdr)
		if b.MaxTimestamp() > ts {
			ts, off = b.MaxTimestamp(), Offset(b.LastOffset())
		}
	}
}

func newSegmentID() uint64 { return segmentIDs.Add(1) }

var segmentIDs atomic.Uint64

func (s *segment) String() string { return LogFileName(s.dir, s.base) }

// acquire returns the segment's handle with a reference for the caller,
// opening it (and admitting it to the budget's ring) when needed: read-only
// for an inactive segment, writable for the active one (after an eviction,
// or for the first time since the log was loaded).
func (s *segment) acquire() (*handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.h; h != nil {
		h.refs.Add(1)
		h.used.Store(true)
		return h, nil
	}
	if s.gone {
		return nil, fmt.Errorf("%s: %w", s, errSegmentGone)
	}
	var h *handle
	var err error
	if s.active && s.unborn {
		h, err = s.openUnborn()
	} else if s.active {
		h, err = s.openActive()
	} else {
		h, err = s.openReadHandle()
	}
	if err != nil {
		return nil, err
	}
	h.refs.Store(2)
	s.h = h
	h.used.Store(true)
	s.log.handles.admit(h)
	return h, nil
}

var errSegmentGone = errors.New("segment deleted")

// acquireOpen is acquire when the segment has an open handle; nil when it
// has none (nothing is opened).
func (s *segment) acquireOpen() (*handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return nil, fmt.Errorf("%s: %w", s, errSegmentGone)
	}
	h := s.h
	if h != nil {
		h.refs.Add(1)
	}
	return h, nil
}

// acquireErr is the error of a failed acquire as a read sees it: a segment
// deleted under the reader is an offset out of range; anything else
// (ErrResourceLimit, an I/O error) is a storage error.
func acquireErr(err error) error {
	if errors.Is(err, errSegmentGone) {
		return fmt.Errorf("%w: %w", ErrOffsetOutOfRange, err)
	}
	if errors.Is(err, ErrStorage) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrStorage, err)
}

// openActive opens the active segment's handle: the .log read-write and
// both indexes writable. The first open after the log was loaded checks the
// indexes and reads the tail (loadTail); a reopen after an eviction trusts
// the files the eviction left. Caller holds s.mu.
func (s *segment) openActive() (*handle, error) {
	first := !s.loaded
	h, err := s.openWritable(first)
	if err != nil {
		return nil, err
	}
	if first {
		s.log.handles.activeOpens.Add(1)
		if err := s.loadTail(h); err != nil {
			h.close()
			return nil, err
		}
		s.loaded = true
		l := s.log
		if segs := l.segments(); len(segs) > 0 && segs[len(segs)-1] == s && l.leo.Load() != s.next.Load() {
			// The checkpoint the lazy load took the end from disagrees
			// with the segment (possible only if it was damaged): the
			// segment wins, before any append or read uses the end.
			l.logger.Warn("log end offset from the checkpoint differs from the active segment; using the segment's", "partition", l.tp.String(), "checkpoint", l.leo.Load(), "segment_end", s.next.Load())
			l.leo.Store(s.next.Load())
			if l.hw.Load() > s.next.Load() {
				l.hw.Store(s.next.Load())
			}
			if l.recoveryPoint.Load() > s.next.Load() {
				l.recoveryPoint.Store(s.next.Load())
			}
		}
	} else {
		s.log.handles.reopens.Add(1)
	}
	s.sealedOnDisk = false
	return h, nil
}

// unbornSegment is the active segment, at base, of a log loaded without
// any segment file (see segment.unborn). Its indexes count as deferred
// (index.NewOffset): a close leaves it unsealed, as it leaves a new
// segment whose indexes have no entry, instead of creating its files.
func (l *Log) unbornSegment(base Offset) *segment {
	s := l.newSegment(base)
	s.setMaxTs(-1, base)
	s.active = true
	s.unborn = true
	s.idxDeferred = true
	return s
}

// openUnborn creates an unborn segment's .log (emptying a stale file of
// that name) and returns its handle. The log's directory is marked dirty
// after the file exists, so the flush that makes the first records durable
// syncs the directory entry too. Caller holds s.mu.
func (s *segment) openUnborn() (*handle, error) {
	h, err := s.createWritable(s.log.Config(), os.O_TRUNC)
	if err != nil {
		return nil, fmt.Errorf("engine: create segment %s: %w", s, storageErr(err))
	}
	s.log.dirDirty.Store(true)
	s.unborn = false
	s.idxDeferred = false
	s.sealedOnDisk = false
	return h, nil
}

// isUnborn reports whether the segment's .log was never created.
func (s *segment) isUnborn() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unborn
}

// createWritable creates the segment's .log (flag adds os.O_EXCL or
// os.O_TRUNC) and returns a handle on it whose indexes are created with
// their first entry (index.NewOffset): a new segment costs one descriptor
// and no mapping until then. Caller holds s.mu or owns s alone.
func (s *segment) createWritable(cfg Config, flag int) (*handle, error) {
	f, err := s.fs.OpenFile(LogFileName(s.dir, s.base), os.O_RDWR|os.O_CREATE|flag, 0o644)
	if err != nil {
		return nil, err
	}
	h := &handle{file: f}
	s.track(h)
	if err = h.chargeIndexMaps(); err == nil {
		h.oidx, err = index.NewOffset(s.fs, IndexFileName(s.dir, s.base), int64(s.base), cfg.indexBytes())
	}
	if err == nil {
		h.tidx, err = index.NewTime(s.fs, TimeIndexFileName(s.dir, s.base), int64(s.base), timeIndexBytes(cfg))
	}
	if err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// openWritable opens the .log read-write and both indexes writable
// (preallocated again). verify checks every index entry (rebuilding a bad
// index); otherwise the files are trusted (the engine trimmed them itself).
func (s *segment) openWritable(verify bool) (*handle, error) {
	f, err := s.fs.OpenFile(LogFileName(s.dir, s.base), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("engine: open segment %s: %w", s, storageErr(err))
	}
	h := &handle{file: f}
	s.track(h)
	if err := s.openIndexes(h, s.log.Config(), true, !verify); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// storageErr wraps err in ErrStorage unless it already is one.
func storageErr(err error) error {
	if errors.Is(err, ErrStorage) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrStorage, err)
}

// retire detaches the handle and marks the segment gone; the resources close
// when the last reader releases them. The returned WaitGroup completes then.
func (s *segment) retire() *sync.WaitGroup {
	s.mu.Lock()
	h := s.h
	s.h = nil
	s.gone = true
	s.active = false
	var wg sync.WaitGroup
	if h != nil {
		wg.Add(1)
		h.wg = &wg
		s.log.handles.forget(h)
	}
	s.mu.Unlock()
	if h != nil {
		h.release()
	}
	return &wg
}

func (s *segment) openReadHandle() (*handle, error) {
	f, err := s.fs.OpenFile(LogFileName(s.dir, s.base), os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("engine: open segment %s: %w", s, storageErr(err))
	}
	h := &handle{file: f}
	s.track(h)
	cfg := s.log.Config()
	if err := s.openIndexes(h, cfg, false, false); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// chargeIndexMaps charges the two index mappings of h once.
func (h *handle) chargeIndexMaps() error {
	if h.idxCharged {
		return nil
	}
	if err := h.chargeMaps(2); err != nil {
		return err
	}
	h.idxCharged = true
	return nil
}

// openIndexes opens both indexes, rebuilding them from the .log when missing
// or failing the sanity check (indexes are caches). trusted (writable only)
// skips the check of every entry: for files the engine itself left trimmed.
func (s *segment) openIndexes(h *handle, cfg Config, writable, trusted bool) error {
	if err := h.chargeIndexMaps(); err != nil {
		return fmt.Errorf("engine: open indexes of %s: %w", s, err)
	}
	oPath, tPath := IndexFileName(s.dir, s.base), TimeIndexFileName(s.dir, s.base)
	_, oErr := s.fs.Stat(oPath)
	_, tErr := s.fs.Stat(tPath)
	if writable && trusted && (errors.Is(oErr, fs.ErrNotExist) || errors.Is(tErr, fs.ErrNotExist)) {
		// The engine left the active segment so: an index without a file
		// had no entry (its file is created by the first one).
		return s.openTrustedIndexes(h, cfg, oErr, tErr)
	}
	if writable && errors.Is(oErr, fs.ErrNotExist) && errors.Is(tErr, fs.ErrNotExist) && s.size.Load() <= int64(cfg.IndexIntervalBytes) {
		// Neither file (a close leaves a segment whose indexes have no
		// entry so): a rebuild would find no entry to write either, as a
		// segment's first entry goes at a batch more than
		// index.interval.bytes from its start. Both start empty without
		// reading the .log.
		return s.openTrustedIndexes(h, cfg, oErr, tErr)
	}
	if oErr == nil && tErr == nil {
		oi, err1 := index.OpenOffset(s.fs, oPath, int64(s.base), cfg.indexBytes(), writable)
		var ti *index.TimeIndex
		var err2 error
		if err1 == nil {
			ti, err2 = index.OpenTime(s.fs, tPath, int64(s.base), timeIndexBytes(cfg), writable)
		}
		// The active segment's indexes are appended to: check every entry
		// (Verify). Inactive ones get Kafka's cheap sanity check on each lazy
		// open; a wrong entry there only costs a longer scan.
		check := func() bool { return oi.SanityCheck() == nil && ti.SanityCheck() == nil }
		if writable && trusted {
			check = func() bool { return true }
		} else if writable {
			check = func() bool { return oi.Verify() == nil && ti.Verify() == nil }
		}
		if err1 == nil && err2 == nil && check() && s.indexWithinLog(oi) {
			h.oidx, h.tidx = oi, ti
			return nil
		}
		if oi != nil {
			_ = oi.Close()
		}
		if ti != nil {
			_ = ti.Close()
		}
		s.log.logger.Warn("rebuilding corrupt index", "segment", s.String())
	}
	return s.rebuildIndexes(h, cfg, writable)
}

// openTrustedIndexes opens the active segment's indexes as the engine left
// them, an index whose file is missing (oErr, tErr) as an empty deferred
// one.
func (s *segment) openTrustedIndexes(h *handle, cfg Config, oErr, tErr error) error {
	oPath, tPath := IndexFileName(s.dir, s.base), TimeIndexFileName(s.dir, s.base)
	var err error
	if oErr != nil {
		h.oidx, err = index.NewOffset(s.fs, oPath, int64(s.base), cfg.indexBytes())
	} else {
		h.oidx, err = index.OpenOffset(s.fs, oPath, int64(s.base), cfg.indexBytes(), true)
	}
	if err != nil {
		return fmt.Errorf("engine: open index of %s: %w", s, storageErr(err))
	}
	if tErr != nil {
		h.tidx, err = index.NewTime(s.fs, tPath, int64(s.base), timeIndexBytes(cfg))
	} else {
		h.tidx, err = index.OpenTime(s.fs, tPath, int64(s.base), timeIndexBytes(cfg), true)
	}
	if err != nil {
		return fmt.Errorf("engine: open time index of %s: %w", s, storageErr(err))
	}
	return nil
}

// indexDeferred reports whether one of the segment's indexes has no file
// yet (its current handle's, or its last one's when it has none).
func (s *segment) indexDeferred() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.h; h != nil {
		return h.oidx.Deferred() || h.tidx.Deferred()
	}
	return s.idxDeferred
}

// indexWithinLog checks the last offset index entry points inside the .log.
func (s *segment) indexWithinLog(oi *index.OffsetIndex) bool {
	n := oi.Entries()
	if n == 0 {
		return true
	}
	_, pos := oi.Entry(n - 1)
	return int64(pos) < s.size.Load() || (int64(pos) == 0 && s.size.Load() == 0)
}

// rebuildIndexes recreates both index files by scanning the .log.
func (s *segment) rebuildIndexes(h *handle, cfg Config, writable bool) error {
	s.log.handles.rebuilds.Add(1)
	if err := h.chargeIndexMaps(); err != nil {
		return fmt.Errorf("engine: rebuild indexes of %s: %w", s, err)
	}
	oPath, tPath := IndexFileName(s.dir, s.base), TimeIndexFileName(s.dir, s.base)
	_ = s.fs.Remove(oPath)
	_ = s.fs.Remove(tPath)
	// Deferred: an index that gets no entry (a segment of less than
	// index.interval.bytes) creates no file while the segment is active.
	oi, err := index.NewOffset(s.fs, oPath, int64(s.base), cfg.indexBytes())
	if err != nil {
		return fmt.Errorf("engine: rebuild index %s: %w", oPath, err)
	}
	ti, err := index.NewTime(s.fs, tPath, int64(s.base), timeIndexBytes(cfg))
	if err != nil {
		_ = oi.Close()
		return fmt.Errorf("engine: rebuild index %s: %w", tPath, err)
	}
	// Nobody reads the new files before h is returned: write their entries
	// in one pwrite each instead of one per entry.
	oi.BeginBulk()
	ti.BeginBulk()
	var (
		since         int
		maxTs         int64 = -1
		offsetOfMaxTs       = int64(s.base)
	)
	sc := newBatchScanner(h.file, 0, s.size.Load())
	defer sc.close()
	for {
		pos, hdr, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			_ = oi.Close()
			_ = ti.Close()
			return fmt.Errorf("engine: rebuild index of %s at %d: %w", s, pos, err)
		}
		b := record.Batch(hdr)
		if b.MaxTimestamp() > maxTs {
			maxTs, offsetOfMaxTs = b.MaxTimestamp(), b.LastOffset()
		}
		if since > cfg.IndexIntervalBytes {
			_ = oi.Append(b.LastOffset(), uint32(pos))
			_ = ti.MaybeAppend(maxTs, offsetOfMaxTs, false)
			since = 0
		}
		since += int(b.Length()) + record.LogOverhead
	}
	if maxTs >= 0 && !writable {
		// A sealed segment's last time-index entry is its largest
		// timestamp. An active one's is learnt from its tail (loadTail)
		// and written when it is sealed.
		_ = ti.MaybeAppend(maxTs, offsetOfMaxTs, true)
	}
	// A failed write (a full file system) leaves an index sparser or empty,
	// which costs longer scans, never a wrong read.
	if err := errors.Join(oi.EndBulk(), ti.EndBulk()); err != nil {
		s.log.logger.Warn("rebuilt index incomplete", "segment", s.String(), "err", err)
	}
	if !writable {
		if err := oi.TrimToValidSize(); err == nil {
			err = ti.TrimToValidSize()
		}
	}
	_ = oi.Flush()
	_ = ti.Flush()
	h.oidx, h.tidx = oi, ti
	return nil
}

// batchScanner walks batch headers of a .log through pread with a reused
// buffer: one system call per chunk, never a copy of record bytes the caller
// does not ask for.
type batchScanner struct {
	r        io.ReaderAt
	pos, end int64
	buf      []byte
	bufStart int64
	bufLen   int
	// data, when set, is a mapping of the file: headers are sliced from it
	// instead of read (newMappedScanner).
	data []byte
}

// scanChunk is how much one pread fetches: a few small batches' headers, or
// the header of one large batch without reading much of its body.
const scanChunk = 4 << 10

var scanBufs = sync.Pool{New: func() any { b := make([]byte, scanChunk); return &b }}

// newBatchScanner scans [pos, end) of r; call close when done.
func newBatchScanner(r io.ReaderAt, pos, end int64) *batchScanner {
	return &batchScanner{r: r, pos: pos, end: end, buf: *scanBufs.Get().(*[]byte)}
}

// newMappedScanner scans [0, end) of a read-only mapping of a .log.
func newMappedScanner(data []byte, end int64) *batchScanner {
	return &batchScanner{pos: 0, end: end, data: data[:end]}
}

// close returns the scanner's buffer to the pool.
func (sc *batchScanner) close() {
	if sc.buf != nil {
		b := sc.buf
		sc.buf = nil
		scanBufs.Put(&b)
	}
}

// seek moves the scanner to pos (buffered bytes stay usable).
func (sc *batchScanner) seek(pos int64) { sc.pos = pos }

// next returns the position and the 61-byte header of the next batch, and
// advances past it. io.EOF at the end; a batch that runs past end or has an
// invalid length is reported as an error wrapping record.ErrTruncated or
// record.ErrInvalid.
func (sc *batchScanner) next() (int64, []byte, error) {
	pos := sc.pos
	if pos >= sc.end {
		return pos, nil, io.EOF
	}
	if sc.end-pos < record.HeaderSize {
		if sc.end-pos < record.LogOverhead {
			return pos, nil, fmt.Errorf("%w: %d bytes left at %d", record.ErrTruncated, sc.end-pos, pos)
		}
	}
	hdr, err := sc.window(pos, record.HeaderSize)
	if err != nil {
		return pos, nil, err
	}
	length := int64(int32(binary.BigEndian.Uint32(hdr[8:12])))
	if length < record.MinLengthField {
		return pos, nil, fmt.Errorf("%w: batch length %d at %d", record.ErrInvalid, length, pos)
	}
	if len(hdr) < record.HeaderSize {
		return pos, nil, fmt.Errorf("%w: header cut at %d", record.ErrTruncated, pos)
	}
	if hdr[record.OffMagic] != 2 {
		return pos, nil, fmt.Errorf("%w: magic %d at %d", record.ErrInvalid, hdr[record.OffMagic], pos)
	}
	total := record.LogOverhead + length
	if pos+total > sc.end {
		return pos, nil, fmt.Errorf("%w: batch of %d bytes at %d runs past %d", record.ErrTruncated, total, pos, sc.end)
	}
	sc.pos = pos + total
	return pos, hdr, nil
}

// window returns up to n bytes at pos (fewer only at end).
func (sc *batchScanner) window(pos int64, n int) ([]byte, error) {
	if sc.data != nil {
		return sc.data[pos:min(pos+int64(n), sc.end)], nil
	}
	if pos >= sc.bufStart && pos+int64(n) <= sc.bufStart+int64(sc.bufLen) {
		off := pos - sc.bufStart
		return sc.buf[off : off+int64(n)], nil
	}
	want := int64(len(sc.buf))
	if pos+want > sc.end {
		want = sc.end - pos
	}
	m, err := sc.r.ReadAt(sc.buf[:want], pos)
	if err != nil && !(err == io.EOF && int64(m) == want) {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: read at %d", record.ErrTruncated, pos)
		}
		return nil, err
	}
	sc.bufStart, sc.bufLen = pos, m
	if m < n {
		return sc.buf[:m], nil
	}
	return sc.buf[:n], nil
}

// CorruptBatchError reports a batch in a segment whose framing or offsets
// cannot be right: the bytes Kafka's CRC does not cover (base offset,
// length) or the batch's place among its neighbours are damaged. Such a
// batch is never served; the error unwraps to ErrCorruptRecord, which the
// server answers as CORRUPT_MESSAGE (as Kafka answers a fetch that meets a
// corrupt batch).
type CorruptBatchError struct {
	Segment  string // the .log file
	Position int64  // byte position of the batch
	Reason   string
}

func (e *CorruptBatchError) Error() string {
	return fmt.Sprintf("corrupt batch in %s at position %d: %s", e.Segment, e.Position, e.Reason)
}

// Unwrap makes the error an ErrCorruptRecord.
func (e *CorruptBatchError) Unwrap() error { return ErrCorruptRecord }

// batchHeaderProblem says why a batch header found at pos of a segment
// cannot be right, or returns "" when it can. hdr holds at least the
// batch's first 61 bytes when they exist (fewer only at the end of the
// file); fileEnd is the end of the segment's valid bytes; segBase the
// segment's base offset; prevLast the last offset of the batch before it
// (segBase-1 for the first batch of the segment); limit the offset every
// batch of the segment lies below (the next segment's base, or the log end
// for the active segment; -1 when unknown).
//
// The checks: the length field is at least 49 (a whole header) and the
// batch ends inside the file; the magic is 2; the last offset delta is not
// negative; the base offset is at or above the segment's base and above the
// previous batch's last offset; the last offset is below limit and within
// 2³¹−1 of the segment's base. Together they catch a damaged base offset
// (backwards, or forward past its successor or past the segment's end) and
// a damaged length (past the end, too small, or landing inside a batch,
// which makes the next "header" fail them), none of which the batch CRC
// covers. Recovery and the read path share them.
func batchHeaderProblem(hdr []byte, pos, fileEnd int64, segBase, prevLast, limit Offset) string {
	if fileEnd-pos < record.LogOverhead || len(hdr) < record.LogOverhead {
		return fmt.Sprintf("%d bytes left, less than a batch's offset and length", fileEnd-pos)
	}
	length := int64(int32(binary.BigEndian.Uint32(hdr[8:12])))
	switch {
	case length < record.MinLengthField:
		return fmt.Sprintf("length %d is below the smallest batch (%d)", length, record.MinLengthField)
	case pos+record.LogOverhead+length > fileEnd:
		return fmt.Sprintf("length %d runs past the end of the segment's %d bytes", length, fileEnd)
	case len(hdr) < record.HeaderSize:
		return fmt.Sprintf("header cut after %d bytes", len(hdr))
	case hdr[record.OffMagic] != 2:
		return fmt.Sprintf("magic %d", hdr[record.OffMagic])
	}
	b := record.Batch(hdr)
	base, delta := Offset(b.BaseOffset()), b.LastOffsetDelta()
	if delta < 0 {
		return fmt.Sprintf("last offset delta %d is negative", delta)
	}
	if int64(base) > math.MaxInt64-int64(delta) {
		return fmt.Sprintf("base offset %d overflows with last offset delta %d", base, delta)
	}
	last := base + Offset(delta)
	switch {
	case base < segBase:
		return fmt.Sprintf("base offset %d is below the segment's base offset %d", base, segBase)
	case base <= prevLast:
		return fmt.Sprintf("base offset %d is not above the previous batch's last offset %d", base, prevLast)
	case int64(last)-int64(segBase) > int64(^uint32(0)>>1):
		return fmt.Sprintf("last offset %d is beyond what the segment (base %d) can hold", last, segBase)
	case limit >= 0 && last >= limit:
		return fmt.Sprintf("last offset %d is at or past the segment's end offset %d", last, limit)
	}
	return ""
}

// translate finds the first batch whose last offset is >= target, starting
// from the index's hint. It returns the batch's position, or (end, false)
// when no such batch exists in the segment's first `end` bytes.
func (s *segment) translate(h *handle, target Offset, end int64) (int64, bool, error) {
	sc := newBatchScanner(h.file, 0, end)
	defer sc.close()
	return s.translateWith(h, sc, target)
}

// translateWith is translate using (and advancing) the caller's scanner.
//
// An index entry that does not point at a batch boundary (a damaged index
// that passed the cheap sanity check) makes the scan fail; the scan is then
// repeated from the start of the segment, so a bad index costs time, never a
// wrong or failed read.
func (s *segment) translateWith(h *handle, sc *batchScanner, target Offset) (int64, bool, error) {
	_, startPos := h.oidx.Lookup(int64(target))
	pos, found, err := scanTo(sc, int64(startPos), target)
	if err != nil && startPos > 0 {
		s.log.logger.Warn("offset index points inside a batch; scanning the segment from its start", "segment", s.String(), "target", target, "err", err)
		pos, found, err = scanTo(sc, 0, target)
	}
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", s, err)
	}
	return pos, found, nil
}

// scanTo scans batch headers from pos to the first batch whose last offset
// is >= target.
func scanTo(sc *batchScanner, pos int64, target Offset) (int64, bool, error) {
	sc.seek(pos)
	for {
		pos, hdr, err := sc.next()
		if err == io.EOF {
			return sc.end, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if Offset(record.Batch(hdr).LastOffset()) >= target {
			return pos, true, nil
		}
	}
}
