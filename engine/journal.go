package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// journalStageMax bounds what a commit holds in memory besides the logs'
// captures: small entries are gathered into a buffer of about this size
// before they are written, and batches a commit reads back from a segment
// (a log whose capture does not hold them) are read this much at a time,
// each piece its own entry; a batch larger than this is read whole. So a
// commit never holds all the data it journals at once: with a slow sync
// and a fast producer that was hundreds of megabytes per commit (every
// batch since the log's last commit), copied into one growing buffer. A
// variable for tests.
var journalStageMax = 1 << 20

// journalStages recycles commits' stage buffers (a sync.Pool: an idle
// broker gives them back to the garbage collector).
var journalStages sync.Pool

// journalWriter writes a commit's entries at the journal's end: small ones
// gathered in stage, large captured payloads straight from the capture.
type journalWriter struct {
	f     vfs.File
	at    int64  // file offset of stage[0]
	stage []byte // encoded, not yet written
	hi    int64  // end of the furthest byte written
	err   error  // the first write error; nothing is written after it
}

func (w *journalWriter) writeAt(b []byte, at int64) {
	if w.err != nil || len(b) == 0 {
		return
	}
	n, err := w.f.WriteAt(b, at)
	w.hi = max(w.hi, at+int64(n))
	w.err = err
}

// flush writes the stage.
func (w *journalWriter) flush() {
	w.writeAt(w.stage, w.at)
	w.at += int64(len(w.stage))
	w.stage = w.stage[:0]
}

// end is the file offset after everything added so far.
func (w *journalWriter) end() int64 { return w.at + int64(len(w.stage)) }

// captured adds an entry whose payload is in memory (a log's capture):
// copied into the stage when it fits, written from where it is otherwise.
func (w *journalWriter) captured(e journalEntry, payload []byte) {
	if len(w.stage) > 0 && len(w.stage)+journalEntryFixed+len(e.TP.Topic)+len(payload) > journalStageMax {
		w.flush()
	}
	start := len(w.stage)
	w.stage = appendJournalEntryHead(w.stage, e)
	if len(w.stage)+len(payload) <= journalStageMax {
		w.stage = append(w.stage, payload...)
		sealJournalEntry(w.stage[start:], nil)
		return
	}
	sealJournalEntry(w.stage[start:], payload)
	w.flush()
	w.writeAt(payload, w.at)
	w.at += int64(len(payload))
}

// readBack adds entries holding l's batches from e.Offset up to upTo, read
// from its segments at most about journalStageMax bytes at a time, each
// piece an entry of its own. An error reading them drops what of them is
// still in the stage; flushed reports whether some were written already
// (valid entries of l: the journal then holds entries of its partition).
func (w *journalWriter) readBack(l *Log, e journalEntry, upTo Offset) (flushed bool, err error) {
	mark := len(w.stage)
	head := journalEntryFixed + len(e.TP.Topic)
	for from := e.Offset; from < upTo; {
		room := journalStageMax - len(w.stage) - head
		if room < journalStageMax/4 {
			flushed = flushed || len(w.stage) > mark
			w.flush()
			mark, room = 0, journalStageMax-head
		}
		r, err := l.Read(from, room, upTo)
		if err != nil {
			w.stage = w.stage[:mark]
			return flushed, err
		}
		start := len(w.stage)
		w.stage = appendJournalEntryHead(w.stage, journalEntry{Gen: e.Gen, Kind: e.Kind, TP: e.TP, Offset: from})
		w.stage, err = r.appendTo(w.stage)
		r.Release()
		if err == nil && len(w.stage) == start+head {
			err = fmt.Errorf("no batch at offset %d below %d", from, upTo)
		}
		for rest := w.stage[start+head:]; err == nil && len(rest) > 0; {
			var b record.Batch
			if b, rest, err = record.ReadBatch(rest); err == nil {
				from = Offset(b.LastOffset()) + 1
			}
		}
		if err != nil {
			w.stage = w.stage[:mark]
			return flushed, err
		}
		sealJournalEntry(w.stage[start:], nil)
		if len(w.stage) >= journalStageMax {
			w.flush()
			flushed, mark = true, 0
		}
	}
	return flushed, nil
}

// appendTo appends the bytes of the ranges (or Data) to buf.
func (r *ReadResult) appendTo(buf []byte) ([]byte, error) {
	if r.Data != nil {
		return append(buf, r.Data...), nil
	}
	buf = slices.Grow(buf, int(r.Size))
	for _, fr := range r.Ranges {
		n := len(buf)
		buf = buf[:n+int(fr.Length)]
		if _, err := fr.File.ReadAt(buf[n:], fr.Position); err != nil {
			return buf[:n], err
		}
	}
	return buf, nil
}

// commit makes everything appended to logs (all of this log dir) durable
// with one journal sync, and returns one error per log. The entries are
// written as they are encoded (journalWriter): what the commit holds in
// memory is bounded by journalStageMax, not by what it journals.
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
	w := journalWriter{f: j.f, at: j.size, hi: j.size}
	if p, ok := journalStages.Get().(*[]byte); ok {
		w.stage = (*p)[:0]
	}
	defer func() {
		if cap(w.stage) <= 4*journalStageMax {
			b := w.stage[:0]
			journalStages.Put(&b)
		}
	}()
	for _, i := range order {
		l := logs[i]
		if l.closed.Load() {
			errs[i] = l.errorf("journal commit", -1, -1, ErrClosed)
			continue
		}
		from := max(l.recoveryPoint.Load(), l.journaled.Load(), l.logStart.Load())
		bytes := l.appendedBytes.Load()
		e := journalEntry{Gen: j.gen, Kind: journalData, TP: l.tp, Offset: Offset(from)}
		if data, upTo, ok := l.takeCaptured(from); ok {
			w.captured(e, data)
			got = append(got, taken{i, upTo, bytes})
		} else if upTo := l.leo.Load(); upTo > from {
			flushed, err := w.readBack(l, e, Offset(upTo))
			if err != nil {
				errs[i] = l.errorf("journal commit", -1, Offset(from), storageErr(err))
				if flushed {
					// Part of its batches is in the journal, not
					// acknowledged: a later truncation must void them.
					j.tps[l.tp] = struct{}{}
				}
				continue
			}
			got = append(got, taken{i, upTo, bytes})
		}
		if w.err != nil {
			break
		}
	}
	w.flush()
	if w.hi <= j.size && w.err == nil {
		return errs // nothing to commit
	}
	if err := j.finishLocked(&w); err != nil {
		for _, g := range got {
			errs[g.i] = logs[g.i].errorf("journal commit", -1, -1, err)
		}
		if w.err != nil {
			// The logs after the failed write were not looked at: those
			// with anything to commit fail too.
			for _, i := range order {
				l := logs[i]
				if errs[i] == nil && l.leo.Load() > max(l.recoveryPoint.Load(), l.journaled.Load(), l.logStart.Load()) {
					errs[i] = l.errorf("journal commit", -1, -1, err)
				}
			}
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

// finishLocked ends a commit's writes: after a failed write, the journal is
// cut back to where the commit started (shrinking needs no space) and goes
// on as it was; otherwise it is synced and grows by what w wrote. A failed
// sync, or a write that cannot be cut off, breaks it (what the file holds is
// no longer known). Caller holds mu.
func (j *journal) finishLocked(w *journalWriter) error {
	if w.err != nil {
		if w.hi > j.size {
			if terr := j.f.Truncate(j.size); terr != nil {
				j.broken = errors.Join(w.err, terr)
			}
		}
		return fmt.Errorf("%w: journal %s: %w", ErrStorage, j.path, w.err)
	}
	if err := j.f.Sync(); err != nil {
		j.broken = err
		return fmt.Errorf("%w: journal %s: %w", ErrStorage, j.path, err)
	}
	j.size = w.at
	return nil
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
