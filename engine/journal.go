package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// The group-commit journal (one per log dir, ManagerOptions.Journal) makes
// the records of many partitions durable with one fsync: a group commit
// appends each dirty log's new batches to the journal file and syncs that
// one file, then the high watermarks may move (Log.Durable). The segment
// files are written as without a journal (page cache) and synced lazily:
// by flush.ms/flush.messages, rolls, Close, and by the journal's trim,
// which syncs every log the journal covers (one syncfs) and then starts
// an empty journal. After an unclean stop, the journal's entries are
// replayed into the recovered logs before anything else runs
// (replayJournal); the on-disk partition format stays Kafka's.
//
// Invariants (FORMAT.md §9):
//   - every record the journal reported durable is, until the segments
//     holding it are synced, in a journal entry of the current generation,
//     in log order per partition;
//   - a truncation of a log (follower divergence, a full truncation) is
//     synced before the log takes another append, and when the journal
//     holds entries of the partition a void entry follows them: replay
//     never applies an entry written before a truncation (it would
//     resurrect cut records) nor before a partition was created anew (a
//     deleted and re-created topic, a partition moved away and back);
//   - replay appends an entry's batches only above the recovered log end
//     and skips those below it, so replaying twice equals replaying once.
//
// A journal whose write or sync failed is broken: it refuses every later
// commit, truncation and creation in its log dir (storage errors) rather
// than acknowledge anything it cannot replay.

// JournalFile is the journal's name in a log dir (FORMAT.md §1).
const JournalFile = "kvlog-journal"

// DefaultJournalMaxBytes is the journal size at which a group commit first
// trims it (syncs the logs it covers, starts an empty one).
const DefaultJournalMaxBytes = 64 << 20

// journalMin is the fewest dirty logs of a log dir for which SyncLogs uses
// the journal (when the dir has one): below it the logs' own fdatasyncs
// cost no more than the journal's one and write the data once.
const journalMin = GroupSyncMin

type journal struct {
	mu       sync.Mutex
	fs       vfs.FS
	root     string
	path     string
	logger   *slog.Logger
	maxBytes int64

	f    vfs.File
	gen  uint64
	size int64
	// tps: partitions with an entry in this generation; logs: the logs
	// whose data entries a trim must sync first.
	tps    map[TopicPartition]struct{}
	logs   map[*Log]struct{}
	buf    []byte
	broken error
}

// openJournal opens root's journal and returns the entries a crash left in
// it, to be replayed (replayJournal) before start() begins a new
// generation. A missing journal, or one shorter than a header (a crash
// while it was first created), has no entries.
func openJournal(fs vfs.FS, root string, maxBytes int64, logger *slog.Logger) (*journal, []journalEntry, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultJournalMaxBytes
	}
	j := &journal{fs: fs, root: root, path: filepath.Join(root, JournalFile), logger: logger, maxBytes: maxBytes}
	f, err := fs.OpenFile(j.path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return j, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("engine: journal %s: %w: %w", j.path, ErrStorage, err)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("engine: journal %s: %w: %w", j.path, ErrStorage, err)
	}
	if len(data) <= journalHeaderSize {
		// Created, crash before its header was synced: no entry can
		// have been written yet (entries follow a synced header).
		return j, nil, nil
	}
	gen, ents, end, err := decodeJournal(data)
	if err != nil {
		return nil, nil, fmt.Errorf("engine: journal %s: %w: %w", j.path, ErrStorage, err)
	}
	j.gen = gen
	if end.Reason != "" {
		// A torn tail is the last commit, not acknowledged; anything else
		// means the file was damaged and what follows is not replayed.
		lvl := slog.LevelWarn
		if int64(len(data))-end.At > 0 && end.Reason != "torn entry" && end.Reason != "torn entry header" {
			lvl = slog.LevelError
		}
		logger.Log(nil, lvl, "journal ends early; the rest is not replayed", "file", j.path,
			"at", end.At, "reason", end.Reason, "bytes_left", int64(len(data))-end.At, "entries", len(ents))
	}
	return j, ents, nil
}

// start begins a new, empty generation: a new journal file written beside
// the old one, synced, renamed over it, and the directory synced. Every
// entry of the old generation must be covered by synced segments.
func (j *journal) start() error {
	tmp := j.path + ".new"
	gen := j.gen + 1
	f, err := j.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("engine: journal %s: %w: %w", tmp, ErrStorage, err)
	}
	hdr := appendJournalHeader(nil, gen)
	if _, err = f.WriteAt(hdr, 0); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = j.fs.Rename(tmp, j.path)
	}
	if err != nil {
		// Nothing replaced: the journal in place stays valid.
		f.Close()
		_ = j.fs.Remove(tmp)
		return fmt.Errorf("engine: journal %s: starting generation %d: %w: %w", j.path, gen, ErrStorage, err)
	}
	if err = j.fs.SyncDir(j.root); err != nil {
		f.Close()
		j.broken = err // which journal the directory holds is not known
		return fmt.Errorf("engine: journal %s: starting generation %d: %w: %w", j.path, gen, ErrStorage, err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.gen, j.size = f, gen, int64(len(hdr))
	j.tps = map[TopicPartition]struct{}{}
	j.logs = map[*Log]struct{}{}
	return nil
}

func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	if j.broken == nil {
		j.broken = ErrClosed
	}
}

// brokenErr is the error of a journal that refuses work. Caller holds mu.
func (j *journal) brokenErr() error {
	if j.broken == nil {
		return nil
	}
	if errors.Is(j.broken, ErrClosed) {
		return j.broken
	}
	return fmt.Errorf("%w: journal %s failed earlier: %w", ErrStorage, j.path, j.broken)
}

// writeLocked appends buf to the journal and syncs it. A failed write (a
// full file system) is cut off again, shrinking needs no space, and the
// journal goes on as it was; a failed sync, or a write that cannot be cut
// off, breaks it (what the file holds is no longer known). Caller holds mu.
func (j *journal) writeLocked(buf []byte) error {
	if n, err := j.f.WriteAt(buf, j.size); err != nil {
		if n > 0 {
			if terr := j.f.Truncate(j.size); terr != nil {
				j.broken = errors.Join(err, terr)
			}
		}
		return fmt.Errorf("%w: journal %s: %w", ErrStorage, j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		j.broken = err
		return fmt.Errorf("%w: journal %s: %w", ErrStorage, j.path, err)
	}
	j.size += int64(len(buf))
	return nil
}

// commit makes everything appended to logs (all of this log dir) durable
// with one journal write and sync, and returns one error per log.
func (j *journal) commit(logs []*Log) []error {
	errs := make([]error, len(logs))
	j.mu.Lock()
	defer j.mu.Unlock()
	fail := func(err error) []error {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = logs[i].errorf("journal commit", -1, -1, err)
			}
		}
		return errs
	}
	if err := j.brokenErr(); err != nil {
		return fail(err)
	}
	if j.size >= j.maxBytes {
		if err := j.trimLocked(); err != nil {
			return fail(err)
		}
	}
	order := make([]int, len(logs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return logs[order[a]].dir < logs[order[b]].dir })
	type taken struct {
		i     int
		upTo  int64
		bytes int64 // the log's appendedBytes, read before upTo
	}
	var got []taken
	buf := j.buf[:0]
	for _, i := range order {
		l := logs[i]
		if l.closed.Load() {
			errs[i] = l.errorf("journal commit", -1, -1, ErrClosed)
			continue
		}
		from := max(l.recoveryPoint.Load(), l.journaled.Load(), l.logStart.Load())
		bytes := l.appendedBytes.Load()
		data, upTo, ok := l.takeCaptured(from)
		if !ok {
			upTo = l.leo.Load()
			if upTo <= from {
				continue
			}
			var err error
			if data, err = l.batchBytes(Offset(from), Offset(upTo)); err != nil {
				errs[i] = l.errorf("journal commit", -1, Offset(from), storageErr(err))
				continue
			}
		}
		buf = appendJournalEntry(buf, journalEntry{Gen: j.gen, Kind: journalData, TP: l.tp, Offset: Offset(from), Payload: data})
		got = append(got, taken{i, upTo, bytes})
	}
	if len(buf) <= 4<<20 {
		j.buf = buf
	} else {
		j.buf = nil
	}
	if len(got) == 0 {
		return errs
	}
	if err := j.writeLocked(buf); err != nil {
		for _, g := range got {
			errs[g.i] = logs[g.i].errorf("journal commit", -1, -1, err)
		}
		return errs
	}
	for _, g := range got {
		l := logs[g.i]
		l.journaled.Store(g.upTo)
		l.markDurableBytes(g.bytes)
		j.tps[l.tp] = struct{}{}
		j.logs[l] = struct{}{}
	}
	return errs
}

// batchBytes returns the whole batches holding offsets from from up to upTo.
func (l *Log) batchBytes(from, upTo Offset) ([]byte, error) {
	var out []byte
	for from < upTo {
		r, err := l.Read(from, 8<<20, upTo)
		if err != nil {
			return nil, err
		}
		data, err := r.Bytes()
		r.Release()
		if err != nil {
			return nil, err
		}
		if len(data) == 0 {
			return nil, fmt.Errorf("no batch at offset %d below %d", from, upTo)
		}
		for rest := data; len(rest) > 0; {
			b, next, err := record.ReadBatch(rest)
			if err != nil {
				return nil, err
			}
			from = Offset(b.LastOffset()) + 1
			rest = next
		}
		out = append(out, data...)
	}
	return out, nil
}

// trimLocked syncs every log with entries in this generation, then starts
// a new one. Caller holds mu.
func (j *journal) trimLocked() error {
	logs := make([]*Log, 0, len(j.logs))
	for l := range j.logs {
		if !l.closed.Load() {
			logs = append(logs, l)
		}
	}
	for i, err := range SyncLogsWith(logs, SyncFileSystem) {
		if err != nil && !errors.Is(err, ErrClosed) {
			return fmt.Errorf("journal %s: syncing %s before a trim: %w", j.path, logs[i].tp, err)
		}
	}
	for _, l := range logs {
		if !l.closed.Load() && l.recoveryPoint.Load() < min(l.journaled.Load(), l.leo.Load()) {
			return fmt.Errorf("%w: journal %s: %s not synced to %d before a trim", ErrStorage, j.path, l.tp, l.journaled.Load())
		}
	}
	if err := j.start(); err != nil {
		return err
	}
	for _, l := range logs {
		l.journaled.Store(0)
	}
	return nil
}

// truncated is called after a truncation of l (synced, under l.mu): the
// journal forgets what it held of l above the new end and, when it holds
// entries of the partition, voids them durably.
func (j *journal) truncated(l *Log) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	leo := l.leo.Load()
	if l.journaled.Load() > leo {
		l.journaled.Store(leo)
	}
	return j.voidLocked(l.tp, Offset(leo))
}

// created is called when a log is created in the journal's dir: entries of
// an earlier log of the same partition are voided durably.
func (j *journal) created(l *Log) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.voidLocked(l.tp, l.LogEndOffset())
}

func (j *journal) voidLocked(tp TopicPartition, end Offset) error {
	if err := j.brokenErr(); err != nil {
		return err
	}
	if _, ok := j.tps[tp]; !ok {
		return nil
	}
	if err := j.writeLocked(appendJournalEntry(nil, journalEntry{Gen: j.gen, Kind: journalVoid, TP: tp, Offset: end})); err != nil {
		return err
	}
	for l := range j.logs {
		if l.tp == tp && l.closed.Load() {
			delete(j.logs, l)
		}
	}
	return nil
}
