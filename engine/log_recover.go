package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/index"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// LogOptions are how a Log is opened.
type LogOptions struct {
	FS     vfs.FS
	Clock  clock.Clock
	Logger *slog.Logger
	// CleanShutdown says the log dir's clean-shutdown marker was present:
	// indexes are trusted and nothing is rescanned.
	CleanShutdown bool
	// RecoveryPoint and LogStartOffset come from the log dir's checkpoints
	// (-1 when absent).
	RecoveryPoint  Offset
	LogStartOffset Offset
	// RecoveryPointLowered, when set, persists the log dir's
	// recovery-point checkpoint. A truncation below the checkpointed
	// recovery point calls it before returning (Kafka's LogManager.truncateTo
	// does the same): otherwise a crash after the truncated range was
	// rewritten could make recovery trust unsynced bytes below the stale
	// checkpoint. The log's lock is not held during the call.
	RecoveryPointLowered func() error
	// syncedTail is the log's entry in the log dir's synced-tail
	// checkpoint (nil: none): after an unclean stop, an active segment
	// it describes exactly is trusted without being read.
	syncedTail *checkpoint.Tail
	// listing, when set, is the partition directory's content as the
	// log dir's start-up manifest recorded it at the last clean shutdown
	// (manifest.go): the directory is not listed.
	listing     *dirListing
	handles     *handleCache
	listed      bool        // the directory exists (the manager just listed it)
	empty       bool        // the directory was just made (CreateLogs): nothing to list
	maintenance *maintQueue // the manager's maintenance queue (maintenance.go); nil: none
	journal     *journal    // the log dir's group-commit journal, if any
}

// OpenLog opens (creating if needed) the partition directory dir. Without a
// clean shutdown it rescans every segment from the one holding the recovery
// point, truncating at the first torn or corrupt batch.
func OpenLog(dir string, tp TopicPartition, cfg Config, opts LogOptions) (*Log, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Log{dir: dir, tp: tp, clk: opts.Clock, logger: opts.Logger, handles: opts.handles, rpLowered: opts.RecoveryPointLowered, snapAt: -1, firstOngoing: -1, jr: opts.journal,
		maintQ: opts.maintenance, maintIdx: -1, fresh: opts.empty}
	l.maintAt.Store(noMaintenance)
	if l.handles == nil {
		// A log opened on its own (tools, tests) gets a private budget;
		// logs of a Manager share the Manager's.
		l.handles, l.ownHandles = newHandleCache(deriveLimits(0, 0, 0), privateHandles, opts.Clock), true
	}
	l.fs = l.handles.wrapFS(opts.FS)
	l.cfg.Store(&cfg)
	l.lastFlushAt = l.clk.Now()
	l.lastAppend.Store(l.lastFlushAt.UnixNano())
	if !opts.listed {
		if _, err := l.fs.Stat(dir); errors.Is(err, os.ErrNotExist) {
			// A new partition directory must itself be durable before
			// anything synced inside it can be.
			if err := l.fs.MkdirAll(dir, 0o755); err != nil {
				return nil, l.errorf("open", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
			}
			if err := l.fs.SyncDir(filepath.Dir(dir)); err != nil {
				return nil, l.errorf("open", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
			}
		}
	}
	if err := l.load(opts); err != nil {
		l.closeSegments()
		if l.ownHandles {
			l.handles.close()
		}
		return nil, err
	}
	l.scheduleMaintenanceNow() // the first pass computes its deadlines
	return l, nil
}

// load lists the directory, completes or rolls back interrupted swaps,
// opens segments and recovers the unflushed tail.
func (l *Log) load(opts LogOptions) error {
	ls := opts.listing
	if ls == nil {
		var err error
		if opts.empty {
			// A directory CreateLogs just made: nothing to list.
			ls, err = scanListing(nil)
		} else {
			ls, err = l.listDir()
		}
		if err != nil {
			return err
		}
	}
	segs := make([]*segment, 0, len(ls.segs))
	for _, f := range ls.segs {
		s := l.newSegment(f.base)
		s.size.Store(f.size)
		s.flushed.Store(f.size)
		s.next.Store(-1) // unknown until read
		segs = append(segs, s)
	}
	snapshots := append([]Offset{}, ls.snapshots...) // non-nil: listed
	epochPath := filepath.Join(l.dir, LeaderEpochCheckpointFile)
	epochs, err := checkpoint.NewEpochCache(l.fs, epochPath), error(nil)
	switch {
	case ls.epochsKnown:
		epochs = checkpoint.LoadedEpochCache(l.fs, epochPath, ls.epochs)
	case ls.hasEpochs:
		// Read only when listed: a failed open per partition is a
		// system call per partition at start-up.
		epochs, err = checkpoint.OpenEpochCache(l.fs, epochPath)
	}
	if err != nil {
		l.logger.Warn("leader-epoch-checkpoint unreadable, starting empty", "partition", l.tp.String(), "err", err)
		_ = l.fs.Remove(epochPath)
		if epochs, err = checkpoint.OpenEpochCache(l.fs, epochPath); err != nil {
			return l.errorf("open", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	l.epochs = epochs

	rp := opts.RecoveryPoint
	// lazy: the active segment is not opened now; its end is the
	// checkpointed recovery point, and its tail is read on its first open
	// (loadTail). After a clean shutdown the recovery point is the log end
	// and the files are sealed; after an unclean one only when the
	// segment ends exactly at it (nothing unflushed): as the synced-tail
	// checkpoint recorded it (same base, same length, its end the
	// recovery point), else as read from the file (endsAt).
	lazy, sealed := false, false
	if len(segs) > 0 {
		last := segs[len(segs)-1]
		switch {
		case opts.CleanShutdown:
			lazy = rp >= last.base && (rp == last.base) == (last.size.Load() == 0)
		default:
			empty := last.size.Load() == 0
			lazy = rp >= last.base && (rp == last.base) == empty
			described := opts.syncedTail.Describes(int64(last.base), last.size.Load(), int64(rp))
			if lazy && !empty && !described {
				l.recovered.TailRead = true
				lazy = last.endsAt(rp)
			}
			// The synced-tail entry also vouches for the index files when
			// the last clean close left them sealed and durable and no one
			// reopened the segment since: a close or a roll then needs no
			// reopen to seal it (as after a clean shutdown).
			sealed = lazy && !empty && described && opts.syncedTail.Sealed
			if !lazy {
				if segs, err = l.recover(segs, rp); err != nil {
					return err
				}
			}
		}
	}
	if len(segs) == 0 {
		start := opts.LogStartOffset
		if start < 0 {
			start = 0
		}
		// Its .log is created on first use: a partition created, or never
		// written, costs no file (segment.unborn).
		segs = []*segment{l.unbornSegment(start)}
	} else if last := segs[len(segs)-1]; lazy {
		last.next.Store(int64(rp))
		last.loaded = false
		last.active = true
		last.sealedOnDisk = opts.CleanShutdown || sealed
	} else if err := l.reopenActive(last); err != nil {
		return err
	}
	// An inactive segment's end offset is taken as the next segment's base
	// (exact unless compaction emptied its tail; only used as an upper bound).
	for i := 0; i < len(segs)-1; i++ {
		if segs[i].next.Load() < 0 {
			segs[i].next.Store(int64(segs[i+1].base))
		}
	}
	l.setSegments(segs)
	active := segs[len(segs)-1]
	leo := Offset(active.next.Load())
	l.leo.Store(int64(leo))
	start := segs[0].base
	if opts.LogStartOffset > start && opts.LogStartOffset <= leo {
		start = opts.LogStartOffset
	}
	l.logStart.Store(int64(start))
	if rp < 0 || rp > leo || !opts.CleanShutdown {
		rp = leo // after recovery (or a clean shutdown) everything present was checked
	}
	l.recoveryPoint.Store(int64(rp))
	l.hw.Store(int64(leo))
	// A key-index checkpoint covering records recovery cut off must go
	// before anything is appended at those offsets again (FORMAT.md §8).
	if !ls.hasKeyIndex {
		// nothing to check
	} else if c, err := ls.keyIndexCovers(l.fs, l.dir); err == nil && c > leo {
		if err := l.fs.Remove(KeyIndexFileName(l.dir)); err != nil {
			return l.errorf("open", -1, leo, fmt.Errorf("%w: removing a key-index checkpoint beyond the log end: %w", ErrStorage, err))
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return l.errorf("open", -1, leo, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	l.epochs.TruncateFromEndDeferred(int64(leo))
	if l.recovered.Segments > 0 {
		// The epochs recovery rebuilt are written now: the recovery point
		// is now leo, and the next recovery will not rebuild them.
		if err := l.epochs.Flush(); err != nil {
			return l.errorf("open", -1, -1, fmt.Errorf("%w: leader-epoch-checkpoint: %w", ErrStorage, err))
		}
	}
	// Producer state is loaded on first use (ensureLoaded).
	l.snapshots = snapshots
	return nil
}

// needsSwapCompletion reports files an interrupted swap or delete left.
func needsSwapCompletion(ents []os.DirEntry) bool {
	for _, e := range ents {
		n := e.Name()
		if strings.HasSuffix(n, DeletedSuffix) || strings.HasSuffix(n, CleanedSuffix) || strings.HasSuffix(n, SwapSuffix) || strings.HasSuffix(n, ".tmp") {
			return true
		}
	}
	return false
}

// endsAt reports whether the segment's batches end exactly at offset end,
// the end of its last batch being the end of the file: read from the last
// offset-index entry on, framing and offsets checked. After an unclean stop
// with the recovery point at end, nothing was appended past the last flush,
// so the segment needs no recovery (everything below the recovery point
// was synced). Any doubt (an index entry past the file, a framing error)
// answers false: the segment is recovered.
func (s *segment) endsAt(end Offset) bool {
	f, err := s.fs.OpenFile(LogFileName(s.dir, s.base), os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	size := s.size.Load()
	pos := int64(0)
	if oi, err := index.OpenOffset(s.fs, IndexFileName(s.dir, s.base), int64(s.base), s.log.Config().indexBytes(), false); err == nil {
		if n := oi.Entries(); n > 0 {
			_, p := oi.Entry(n - 1)
			pos = int64(p)
		}
		_ = oi.Close()
	}
	if pos > size {
		return false
	}
	sc := newBatchScanner(f, pos, size)
	defer sc.close()
	next := s.base
	for {
		_, hdr, err := sc.next()
		if err == io.EOF {
			return next == end
		}
		if err != nil {
			return false
		}
		b := record.Batch(hdr)
		if Offset(b.BaseOffset()) < s.base || Offset(b.LastOffset()) >= end || (next > s.base && Offset(b.BaseOffset()) < next) {
			return false
		}
		next = Offset(b.LastOffset()) + 1
	}
}

// recover rescans every segment from the one containing rp: batches are
// CRC-checked (except, in that first segment, the flushed ones below rp:
// see recoverSegment), their offsets checked against each other and
// against the next segment's base, and indexes rebuilt; at the first torn
// or corrupt batch all later segments are deleted (durably) and the
// segment is truncated.
func (l *Log) recover(segs []*segment, rp Offset) ([]*segment, error) {
	from, ok := floorSegment(segs, rp)
	if !ok || rp < 0 {
		from = 0
	}
	for i := from; i < len(segs); i++ {
		s := segs[i]
		limit := Offset(math.MaxInt64)
		if i+1 < len(segs) {
			limit = segs[i+1].base
		}
		valid, err := s.recoverSegment(rp, limit)
		if err != nil {
			return nil, err
		}
		// Its bytes were read as the page cache holds them: not known to
		// be on stable storage (a kill leaves them unsynced) until a flush
		// syncs the segment, so no synced-tail entry vouches for it before
		// (truncateFile syncs the part it keeps).
		s.flushed.Store(0)
		l.recovered.Segments++
		if valid < s.size.Load() || (valid == 0 && i < len(segs)-1 && s.size.Load() > 0) {
			l.recovered.BytesTruncated += s.size.Load() - valid
			l.recovered.SegmentsDeleted += len(segs) - i - 1
			l.logger.Warn("truncating corrupt or torn tail", "segment", s.String(), "valid_bytes", valid, "size", s.size.Load())
			// The later segments go for good before the cut is made: a
			// power loss bringing them back next to the shortened
			// segment would leave a gap the next recovery accepts
			// (FORMAT.md §7, Recovery).
			for _, later := range segs[i+1:] {
				l.logger.Warn("deleting segment after the recovered tail", "segment", later.String())
				later.removeFiles()
			}
			if i+1 < len(segs) {
				if err := l.fs.SyncDir(l.dir); err != nil {
					return nil, l.errorf("recover", s.base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
				}
			}
			if err := s.truncateFile(valid); err != nil {
				return nil, err
			}
			return segs[:i+1], nil
		}
	}
	return segs, nil
}

// recoverSegment validates every batch of the segment (through a read-only
// mapping), rebuilds both indexes, and returns the byte length of the valid
// prefix. It sets the segment's end offset and largest timestamp.
//
// Batches ending below trustedBelow (the checkpointed recovery point) were
// fsynced before that checkpoint was written, and a truncation below it
// rewrites the checkpoint before anything is appended again
// (LogOptions.RecoveryPointLowered): their framing and offsets are checked
// but not their CRCs, so a restart after a clean flush reads only the batch
// headers of the segment holding the recovery point instead of all its
// bytes. (Kafka rescans that segment whole.)
//
// Every offset of the segment must be below limit, the next segment's base.
func (s *segment) recoverSegment(trustedBelow, limit Offset) (int64, error) {
	f, err := s.fs.OpenFile(LogFileName(s.dir, s.base), os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("engine: recover %s: %w: %w", s, ErrStorage, err)
	}
	h := &handle{seg: s, file: f}
	defer h.close()
	size := s.size.Load()
	data, err := h.mapped(size)
	if err != nil {
		return 0, err
	}
	valid, next, epochs, consistent := s.scanValid(data, trustedBelow, limit)
	if !consistent {
		// The trusted prefix did not end exactly at the recovery point (a
		// checkpoint beyond the data, or not at a batch boundary): trust
		// nothing and check every batch.
		s.log.logger.Warn("recovery point not at a batch boundary of its segment; checking every batch", "segment", s.String(), "recovery_point", int64(trustedBelow))
		valid, next, epochs, _ = s.scanValid(data, -1, limit)
	}
	s.next.Store(next)
	// Epochs assigned after the last flush were not written: rebuild them
	// from the batches (Kafka's LogSegment.recover does the same).
	for _, e := range epochs {
		if latest, ok := s.log.epochs.LatestEpoch(); !ok || e.Epoch > latest {
			_ = s.log.epochs.AssignDeferred(e.Epoch, e.StartOffset)
		}
	}
	s.size.Store(valid)
	// Rebuild indexes over the valid prefix through the ordinary scanner.
	if err := s.rebuildIndexes(h, s.log.Config(), false); err != nil {
		return 0, err
	}
	s.setTimesFromIndex(h)
	_ = h.oidx.Close()
	_ = h.tidx.Close()
	h.oidx, h.tidx = nil, nil
	s.size.Store(size) // the caller truncates to valid
	return valid, nil
}

// scanValid walks data's batches and returns the byte length of the valid
// prefix, the offset after it (the segment's base when nothing is valid),
// the leader epochs its batches start, and whether the batches ending below
// trustedBelow, which are not CRC-checked, ended exactly at trustedBelow.
//
// A batch is valid when it is framed, its CRC matches (unless trusted), it
// starts at or above the segment's base and above the previous batch's last
// offset, its relative offsets fit the indexes, and it ends below limit.
// Offsets may jump forward (compaction leaves gaps), but the base offset is
// outside the CRC: a corrupted one that jumps forward is caught by the next
// batch, which then starts inside the jumped batch's range while continuing
// from the batch before it (in a log without gaps it always does). The
// jumped batch is then the corrupt one and the valid prefix ends before it,
// so its bogus offsets never become the log end; a jump past the next
// segment's base is caught by limit.
func (s *segment) scanValid(data []byte, trustedBelow, limit Offset) (valid int64, next int64, epochs []checkpoint.EpochEntry, consistent bool) {
	next = int64(s.base)
	consistent = true
	anyTrusted, reached := false, trustedBelow <= s.base
	// The scan's state before the last accepted batch, and whether that
	// batch started beyond the offset following its predecessor.
	type scanState struct {
		valid, next         int64
		epochs              int
		anyTrusted, reached bool
	}
	var before scanState
	lastJumped := false
	buf := data
	for len(buf) > 0 {
		b, rest, err := record.ReadBatch(buf)
		if err != nil {
			break
		}
		trusted := Offset(b.LastOffset()) < trustedBelow
		if !trusted && !reached && Offset(b.BaseOffset()) < trustedBelow {
			consistent = false // a batch straddles the recovery point
			return
		}
		if b.BaseOffset() < next && lastJumped && b.BaseOffset() >= before.next && (trusted || b.VerifyCRC() == nil) {
			// This sound batch continues from the one before the jump.
			valid, next, epochs = before.valid, before.next, epochs[:before.epochs]
			anyTrusted, reached = before.anyTrusted, before.reached
			break
		}
		if (!trusted && b.VerifyCRC() != nil) || Offset(b.BaseOffset()) < s.base || b.BaseOffset() < next {
			break
		}
		if int64(b.LastOffset())-int64(s.base) > int64(^uint32(0)>>1) || Offset(b.LastOffset()) >= limit {
			break
		}
		before = scanState{valid: valid, next: next, epochs: len(epochs), anyTrusted: anyTrusted, reached: reached}
		lastJumped = b.BaseOffset() > next
		if trusted {
			anyTrusted = true
			reached = reached || Offset(b.LastOffset())+1 == trustedBelow
		}
		valid += int64(len(b))
		next = b.LastOffset() + 1
		if e := b.PartitionLeaderEpoch(); e >= 0 && (len(epochs) == 0 || e > epochs[len(epochs)-1].Epoch) {
			epochs = append(epochs, checkpoint.EpochEntry{Epoch: e, StartOffset: b.BaseOffset()})
		}
		buf = rest
	}
	if anyTrusted && !reached {
		consistent = false
	}
	return
}

// truncateFile shrinks the .log to n bytes (no handle may be open).
func (s *segment) truncateFile(n int64) error {
	f, err := s.fs.OpenFile(LogFileName(s.dir, s.base), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("engine: truncate %s: %w: %w", s, ErrStorage, err)
	}
	defer f.Close()
	if err := f.Truncate(n); err != nil {
		return fmt.Errorf("engine: truncate %s: %w: %w", s, ErrStorage, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("engine: truncate %s: %w: %w", s, ErrStorage, err)
	}
	s.size.Store(n)
	s.flushed.Store(n)
	return nil
}

// removeFiles deletes a segment's files immediately (recovery only).
func (s *segment) removeFiles() {
	for _, p := range []string{LogFileName(s.dir, s.base), IndexFileName(s.dir, s.base), TimeIndexFileName(s.dir, s.base)} {
		_ = s.fs.Remove(p)
	}
}

func (s *segment) setTimesFromIndex(h *handle) {
	// A lone (0, base) entry is the unwritten slot 0 of a preallocated
	// file, not a timestamp.
	if ts, off := h.tidx.LastEntry(); ts > 0 {
		s.setMaxTs(ts, Offset(off))
	}
}

// reopenActive opens the last segment for appending: the .log read-write and
// both indexes writable (checked, preallocated again), and learns its end
// offset and largest timestamp by scanning from the last index entry.
func (l *Log) reopenActive(s *segment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.openWritable(true)
	if err != nil {
		return l.errorf("open", s.base, -1, err)
	}
	if err := s.loadTail(h); err != nil {
		h.close()
		return err
	}
	s.loaded = true
	s.activateLocked(h)
	return nil
}

// loadTail learns what the writer keeps about the active segment from its
// files: the largest timestamp (time index, then the batches after the last
// offset-index entry), the end offset, the first batch's timestamp and the
// bytes since the last index entry. An unreadable tail is cut off.
func (s *segment) loadTail(h *handle) error {
	l := s.log
	s.setTimesFromIndex(h)
	_, pos := h.oidx.Lookup(int64(^uint64(0) >> 1))
	sc := newBatchScanner(h.file, int64(pos), s.size.Load())
	defer sc.close()
	next := s.base
	var since int64
	s.firstBatchTs = -1
	for {
		p, hdr, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// A clean-shutdown log with a bad tail: treat as the end.
			l.logger.Warn("unreadable tail in active segment, truncating", "segment", s.String(), "position", p, "err", err)
			if terr := h.file.Truncate(p); terr != nil {
				return l.errorf("open", s.base, -1, fmt.Errorf("%w: %w", ErrStorage, terr))
			}
			s.size.Store(p)
			if s.flushed.Load() > p {
				s.flushed.Store(p)
			}
			break
		}
		b := record.Batch(hdr)
		next = Offset(b.LastOffset()) + 1
		if s.firstBatchTs < 0 && p == 0 {
			s.firstBatchTs = b.MaxTimestamp()
		}
		if b.MaxTimestamp() > s.maxTs.Load() {
			s.setMaxTs(b.MaxTimestamp(), Offset(b.LastOffset()))
		}
		since += sc.pos - p
	}
	if s.firstBatchTs < 0 && s.size.Load() > 0 {
		if first, err := readHeaderAt(h.file, 0); err == nil {
			s.firstBatchTs = record.Batch(first).MaxTimestamp()
		}
	}
	s.next.Store(int64(next))
	s.bytesSinceIndex = int(since)
	if s.maxTs.Load() == tsUnknown {
		// Nothing learnt from the time index or the tail: the writer keeps
		// maxTs current from here on, so settle it now.
		ts, off, err := scanLargestTimestamp(h.file, s.base, s.size.Load())
		if err != nil {
			ts, off = -1, s.base // the tail was cut above
		}
		s.setMaxTs(ts, off)
	}
	return nil
}

func readHeaderAt(f io.ReaderAt, pos int64) ([]byte, error) {
	hdr := make([]byte, record.HeaderSize)
	if _, err := f.ReadAt(hdr, pos); err != nil {
		return nil, err
	}
	return hdr, nil
}

// ensureLoaded completes a log loaded lazily, before its first append,
// truncation or roll: the active segment's tail (its end offset is what
// appends assign from) and the idempotent-producer state. Caller holds l.mu.
func (l *Log) ensureLoaded() error {
	s := l.active()
	s.mu.Lock()
	loaded := s.loaded
	s.mu.Unlock()
	if !loaded {
		h, err := s.acquire()
		if err != nil {
			return l.errorf("open", s.base, l.LogEndOffset(), storageErr(err))
		}
		h.release()
	}
	if l.producers == nil {
		return l.loadProducers()
	}
	return nil
}

// loadProducers restores idempotent-producer state from the newest snapshot
// and replays batches after it (data batch headers; control batches whole,
// for their type), together with the transaction state: the .txnindex
// entries below the log end, and those of abort markers replayed that the
// indexes lack (recovery rebuilds them). A corrupt .txnindex makes the
// load start from the log start with no snapshot, rebuilding every index.
func (l *Log) loadProducers() error {
	leo := l.LogEndOffset()
	aborted, ok := l.loadTxnIndexes(leo)
	var p *producerState
	var at Offset
	if ok {
		p, at = loadProducerState(l.fs, l.dir, leo, l.snapshots)
	} else {
		l.removeTxnIndexes()
		aborted = nil
		p, at = newProducerState(), -1
	}
	from := at
	if from < l.LogStartOffset() {
		from = l.LogStartOffset()
	}
	indexedTo := Offset(-1) // markers at or below are in the indexes
	if n := len(aborted); n > 0 {
		indexedTo = aborted[n-1].LastOffset
	}
	l.producers = p
	l.txnMu.Lock()
	l.firstOngoing, l.unreplicated, l.aborted = p.firstOngoing(), nil, aborted
	l.txnMu.Unlock()
	if from < leo {
		err := l.scanHeaders(from, leo, func(b record.Batch, body func() (record.Batch, error)) error {
			switch {
			case b.ProducerID() < 0:
			case !b.IsControl():
				p.update(b, b.MaxTimestamp())
			case b.NumRecords() == 0:
				// An emptied control batch (Kafka's cleaner keeps one after
				// its transaction is gone): nothing to apply.
			default:
				full, err := body()
				if err != nil {
					return err
				}
				typ, err := ControlType(full)
				if err != nil {
					return err
				}
				known := Offset(full.BaseOffset()) <= indexedTo
				if known && typ == ControlAbort {
					// Already in the aborted list: end the transaction only.
					p.endTxn(full.ProducerID(), full.ProducerEpoch(), markerCoordEpoch(full), Offset(full.BaseOffset()), true, full.MaxTimestamp())
					return nil
				}
				return l.applyMarker(full, typ == ControlAbort, true, full.MaxTimestamp())
			}
			return nil
		})
		if err != nil {
			l.resetTxnState()
			return err
		}
	}
	expired := p.expire(l.clk.Now().UnixMilli(), l.Config().ProducerIDExpiration)
	l.publishOngoing()
	l.snapshots = nil
	l.snapAt = -1
	if at == leo && expired == 0 {
		l.snapAt = leo // Close need not write it again
	}
	l.txnReady.Store(true)
	return nil
}

// scanHeaders calls fn with the header of every batch holding offsets in
// [from, to), and a function reading the whole batch. The header slice is
// only valid during fn.
func (l *Log) scanHeaders(from, to Offset, fn func(b record.Batch, body func() (record.Batch, error)) error) error {
	for _, s := range l.segments() {
		if Offset(s.next.Load()) >= 0 && Offset(s.next.Load()) <= from && !s.isActive() {
			continue
		}
		if s.base >= to {
			break
		}
		h, err := s.acquire()
		if err != nil {
			return l.errorf("scan", s.base, from, storageErr(err))
		}
		_, pos := h.oidx.Lookup(int64(from))
		sc := newBatchScanner(h.file, int64(pos), s.size.Load())
		for {
			at, hdr, err := sc.next()
			if err == io.EOF {
				break
			}
			if err == nil {
				b := record.Batch(hdr)
				if Offset(b.LastOffset()) >= from && Offset(b.BaseOffset()) < to {
					err = fn(b, func() (record.Batch, error) { return readBatchAt(h.file, at, hdr) })
				}
			}
			if err != nil {
				sc.close()
				h.release()
				return l.errorf("scan", s.base, from, err)
			}
		}
		sc.close()
		h.release()
	}
	return nil
}

// finishInterruptedSwaps applies Kafka's rules to files left by a cleaner
// swap or an async delete (docs/storage.md#cleaner-swap): *.deleted files are removed;
// *.cleaned files are removed together with any .swap at or above the
// smallest .cleaned offset; each remaining .swap replaces the ordinary
// segment files in its offset range and is renamed to its final name.
func (l *Log) finishInterruptedSwaps() error {
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return l.errorf("open", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	minCleaned := Offset(-1)
	var swaps []string
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(l.dir, name)
		switch {
		case strings.HasSuffix(name, DeletedSuffix):
			_ = l.fs.Remove(path)
		case strings.HasSuffix(name, CleanedSuffix):
			if base, _, ok := parseOffsetFileName(name); ok && (minCleaned < 0 || base < minCleaned) {
				minCleaned = base
			}
			_ = l.fs.Remove(path)
		case strings.HasSuffix(name, SwapSuffix):
			swaps = append(swaps, name)
		case strings.HasSuffix(name, ".tmp"):
			_ = l.fs.Remove(path)
		}
	}
	var logSwaps []Offset
	for _, name := range swaps {
		base, _, ok := parseOffsetFileName(name)
		if !ok {
			continue
		}
		if minCleaned >= 0 && base >= minCleaned {
			_ = l.fs.Remove(filepath.Join(l.dir, name))
			continue
		}
		if strings.HasSuffix(name, LogSuffix+SwapSuffix) {
			logSwaps = append(logSwaps, base)
		}
	}
	sort.Slice(logSwaps, func(i, j int) bool { return logSwaps[i] < logSwaps[j] })
	for _, base := range logSwaps {
		end, err := swapEndOffset(l.fs, LogFileName(l.dir, base)+SwapSuffix, base)
		if err != nil {
			return l.errorf("finish swap", base, -1, err)
		}
		// Delete ordinary segments whose base lies in [base, end).
		cur, _ := l.fs.ReadDir(l.dir)
		for _, e := range cur {
			b, suffix, ok := parseOffsetFileName(e.Name())
			if !ok || b < base || b >= end {
				continue
			}
			if suffix == LogSuffix || suffix == IndexSuffix || suffix == TimeIndexSuffix || suffix == TxnIndexSuffix {
				_ = l.fs.Remove(filepath.Join(l.dir, e.Name()))
			}
		}
		for _, suf := range []string{LogSuffix, IndexSuffix, TimeIndexSuffix, TxnIndexSuffix} {
			p := filepath.Join(l.dir, offsetFileName(base)+suf)
			if _, err := l.fs.Stat(p + SwapSuffix); err == nil {
				if err := l.fs.Rename(p+SwapSuffix, p); err != nil {
					return l.errorf("finish swap", base, -1, fmt.Errorf("%w: %w", ErrStorage, err))
				}
			}
		}
	}
	// Index swaps without a log swap are stale.
	cur, _ := l.fs.ReadDir(l.dir)
	for _, e := range cur {
		if strings.HasSuffix(e.Name(), SwapSuffix) {
			_ = l.fs.Remove(filepath.Join(l.dir, e.Name()))
		}
	}
	if len(logSwaps) > 0 {
		return l.fs.SyncDir(l.dir)
	}
	return nil
}

// swapEndOffset scans a .swap log's batch headers and returns the offset
// after its last valid batch (its base when empty).
func swapEndOffset(fs vfs.FS, path string, base Offset) (Offset, error) {
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	sc := newBatchScanner(f, 0, fi.Size())
	defer sc.close()
	end := base
	for {
		_, hdr, err := sc.next()
		if err != nil {
			return end, nil // io.EOF, or a torn tail: the end is the last whole batch
		}
		end = Offset(record.Batch(hdr).LastOffset()) + 1
	}
}

// syncedTail returns the log's synced-tail checkpoint entry (FORMAT.md
// §5): its active segment's base, length and end offset, when every byte
// of the segment is on stable storage and the recovery point is the log
// end; false otherwise, or when an appender holds the log (the entry is
// then left out: the restart reads the tail instead).
func (l *Log) syncedTail() (checkpoint.Tail, bool) {
	if l.recoveryPoint.Load() < l.leo.Load() {
		return checkpoint.Tail{}, false
	}
	if !l.mu.TryLock() {
		return checkpoint.Tail{}, false
	}
	defer l.mu.Unlock()
	// No append, roll or truncation runs (mu). A flush may: it marks the
	// segment flushed before it raises the recovery point, so a recovery
	// point seen at the end means the segment's bytes were synced.
	leo := l.leo.Load()
	if l.recoveryPoint.Load() < leo {
		return checkpoint.Tail{}, false
	}
	s := l.active()
	size := s.size.Load()
	if s.flushed.Load() < size || s.next.Load() != leo {
		return checkpoint.Tail{}, false
	}
	return checkpoint.Tail{Base: int64(s.base), Bytes: size, End: leo, Sealed: s.sealedSinceLoad()}, true
}

// sealedSinceLoad reports whether the segment's index files are still as
// the load found them sealed and durable: loaded lazily after a clean
// shutdown (whose close sealed and synced them), or after an unclean stop
// with a synced-tail entry saying so, and not opened since (an open makes
// them writable again: preallocated, the largest timestamp not last). An
// eviction's seal does not count: the files it leaves are not synced.
func (s *segment) sealedSinceLoad() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active && !s.loaded && !s.unborn && s.h == nil && s.sealedOnDisk
}
