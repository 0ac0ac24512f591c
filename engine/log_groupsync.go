package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// GroupSyncMin is the fewest logs of one log dir with something to flush
// for which SyncLogs may sync the whole file system once (syncfs(2))
// rather than each log's files (fdatasync, in parallel): below it one
// fdatasync per log is less work than a file-system sync, which also
// writes back (and waits for) whatever unrelated writers left dirty.
// Above it, the cheaper of the two is measured per log dir (syncChooser).
const GroupSyncMin = 4

// groupSyncThreads bounds the file writes and syncs of single logs a
// group commit runs at once (leader-epoch checkpoints; each log's files
// where there is no syncfs).
const groupSyncThreads = 64

// parallel runs fn(0) … fn(n-1) on at most groupSyncThreads goroutines
// (fn(0) on the caller's when n is 1).
func parallel(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(groupSyncThreads, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// SyncLogs makes everything appended so far to each of logs durable and
// advances their recovery points, as Sync does for one log. Per log dir,
// it either syncs each dirty log's files (fdatasync, in parallel) or the
// whole file system once (syncfs: a group commit across partitions, one
// journal commit instead of one per partition), whichever the log dir's
// syncChooser expects to be faster for that many dirty logs (never
// syncfs below GroupSyncMin). It returns one error per log (nil: the
// log is durable up to the log end it had when SyncLogs was called). A
// failed file-system sync fails every log of its dir: which file lost its
// write-back is not known. Safe for concurrent use with every other Log
// method and other SyncLogs calls.
func SyncLogs(logs []*Log) []error { return SyncLogsWith(logs, SyncAuto) }

// SyncStrategy is how SyncLogsWith makes a log dir's dirty logs durable.
type SyncStrategy int

const (
	// SyncAuto: the strategy the log dir's syncChooser expects to be
	// faster for that many dirty logs (SyncLogs).
	SyncAuto SyncStrategy = iota
	// SyncEachLog: each log's own files (fdatasync), in parallel.
	SyncEachLog
	// SyncFileSystem: one syncfs of the log dir's file system (each log's
	// files where the file system has no syncfs).
	SyncFileSystem
	// SyncJournal: the logs' new batches appended to the log dir's
	// group-commit journal and one sync of it (journal.go); SyncAuto where
	// the log dir has no journal.
	SyncJournal
)

// SyncLogsWith is SyncLogs with the strategy given (tests, and a broker
// configured to one strategy).
func SyncLogsWith(logs []*Log, how SyncStrategy) []error {
	errs := make([]error, len(logs))
	type member struct {
		i int
		l *Log
	}
	byDir := map[string][]member{}
	for i, l := range logs {
		if l.recoveryPoint.Load() >= l.leo.Load() {
			continue // nothing to flush (a racing append is the caller's next round)
		}
		root := filepath.Dir(l.dir)
		byDir[root] = append(byDir[root], member{i, l})
	}
	// Log dirs are independent file systems (usually): synced in parallel
	// (one log dir, the common case: on the caller's goroutine).
	var wg sync.WaitGroup
	for root, ms := range byDir {
		wg.Add(1)
		commit := func() {
			defer wg.Done()
			// With a journal, a commit of journalMin or more logs of
			// small batches (or any commit, asked for) is one journal
			// write and sync.
			if j := ms[0].l.jr; j != nil && (how == SyncJournal || how == SyncAuto && journalPays(ms, func(m member) *Log { return m.l })) {
				group := make([]*Log, len(ms))
				for k, m := range ms {
					group[k] = m.l
				}
				start := time.Now()
				jerrs := j.commit(group)
				observeFlush(start)
				for k, m := range ms {
					errs[m.i] = jerrs[k]
				}
				return
			}
			var ch *syncChooser
			use := how
			if how == SyncAuto || how == SyncJournal {
				ch = chooserFor(root)
				use = ch.pick(len(ms))
			}
			start := time.Now()
			if use == SyncFileSystem {
				group := make([]*Log, len(ms))
				for k, m := range ms {
					group[k] = m.l
				}
				gerrs := syncGroup(root, group)
				for k, m := range ms {
					errs[m.i] = gerrs[k]
				}
			} else {
				parallel(len(ms), func(k int) {
					errs[ms[k].i] = ms[k].l.Sync()
				})
			}
			if ch != nil {
				ch.record(len(ms), use, time.Since(start))
			}
		}
		if len(byDir) == 1 {
			commit()
		} else {
			go commit()
		}
	}
	wg.Wait()
	return errs
}

// journalMaxBytesPerLog is the most a commit's logs may have to make
// durable on average for SyncLogs to use the journal: the journal writes
// every byte twice (journal, then segment), so it pays only while the
// syncs it saves cost more than the bytes. Measured on ext4 over a
// virtual disk (BenchmarkJournalCeiling, 1,000 partitions): with 1 KiB per
// partition the journal's commit allowed 0.68× of the no-fsync rate where
// the fdatasyncs allowed 0.14×; with 16 KiB all were about 0.3-0.4×; with
// 64 KiB the journal (0.18×) lost to the fdatasyncs (0.51×). A producer
// filling batches of hundreds of KiB to a few partitions spent half its
// CPU on copying them into the journal and ran at a sixth of its rate
// with the fdatasyncs.
const journalMaxBytesPerLog = 16 << 10

// journalPays reports whether a group commit of ms (all of one log dir)
// should go through the journal: journalMin or more logs, with at most
// journalMaxBytesPerLog each to make durable on average.
func journalPays[M any](ms []M, log func(M) *Log) bool {
	if len(ms) < journalMin {
		return false
	}
	var pending int64
	for _, m := range ms {
		pending += log(m).pendingBytes()
	}
	return pending <= int64(len(ms))*journalMaxBytesPerLog
}

// groupSyncSeg is a segment a group commit syncs: the size it covers, and
// whether it took the segment's indexes-unsynced flag.
type groupSyncSeg struct {
	s      *segment
	size   int64
	sealed bool
}

// groupSyncLog is what a group commit captured of one log under its syncMu.
type groupSyncLog struct {
	upTo  int64
	bytes int64 // appendedBytes, read before upTo
	segs  []groupSyncSeg
	dirty bool // took the directory-dirty flag
}

// undo gives back the flags p took, for a sync that did not happen.
func (p *groupSyncLog) undo(l *Log) {
	if p.dirty {
		l.dirDirty.Store(true)
	}
	for _, ps := range p.segs {
		if ps.sealed {
			ps.s.indexesUnsynced.Store(true)
		}
	}
}

// syncGroup flushes logs, all in the log dir root, with one SyncFS of root.
// Each log's syncMu is held from the capture of its log end to the
// publication of its recovery point, as a single log's flush holds it;
// the mutexes are taken in the order of the logs' directories, so
// concurrent groups cannot deadlock.
func syncGroup(root string, logs []*Log) []error {
	errs := make([]error, len(logs))
	order := make([]int, len(logs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return logs[order[a]].dir < logs[order[b]].dir })
	preps := make([]*groupSyncLog, len(logs))
	fsys := logs[0].fs
	for _, i := range order {
		l := logs[i]
		l.syncMu.Lock()
		defer l.syncMu.Unlock()
		if l.closed.Load() {
			errs[i] = l.errorf("flush", -1, -1, ErrClosed)
			continue
		}
		bytes := l.appendedBytes.Load() // before the log end: never ahead of it
		upTo := l.leo.Load()
		if upTo <= l.recoveryPoint.Load() {
			continue
		}
		p := &groupSyncLog{upTo: upTo, bytes: bytes}
		for _, s := range l.segments() {
			if int64(s.base) >= upTo {
				break
			}
			size := s.size.Load()
			// A sealed segment's indexes not synced yet are written back
			// by the file-system sync too (mapped pages included).
			sealed := !s.isActive() && s.indexesUnsynced.Swap(false)
			if s.flushed.Load() < size || sealed {
				p.segs = append(p.segs, groupSyncSeg{s, size, sealed})
			}
		}
		p.dirty = l.dirDirty.Swap(false)
		preps[i] = p
	}
	// The leader-epoch checkpoints are atomic file writes of their own,
	// only for logs that gained an epoch since their last one (the first
	// appends after a leadership change): written in parallel, so the
	// file system overlaps their syncs.
	parallel(len(logs), func(i int) {
		if preps[i] == nil {
			return
		}
		if err := logs[i].epochs.Flush(); err != nil {
			l := logs[i]
			errs[i] = l.errorf("flush", -1, -1, fmt.Errorf("%w: leader-epoch-checkpoint: %w", ErrStorage, err))
			preps[i].undo(l)
			preps[i] = nil
		}
	})
	start := time.Now()
	err := fsys.SyncFS(root)
	observeFlush(start)
	if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) {
		// No syncfs here: each log syncs its own files.
		parallel(len(logs), func(i int) {
			if p := preps[i]; p != nil {
				p.undo(logs[i])                   // flushTo takes the flags again
				errs[i] = logs[i].flushTo(p.upTo) // syncMu is held
			}
		})
		return errs
	}
	for i, p := range preps {
		if p == nil {
			continue
		}
		l := logs[i]
		if err != nil {
			p.undo(l)
			errs[i] = l.errorf("flush", -1, -1, fmt.Errorf("%w: group sync of %s: %w", ErrStorage, root, err))
			continue
		}
		leo := l.leo.Load()
		if leo >= p.upTo {
			for _, ps := range p.segs {
				ps.s.flushed.Store(ps.size)
			}
		}
		// A truncation since upTo was captured lowered the log end: never
		// record a recovery point past it (nor mark its segments flushed:
		// the next flush syncs them again).
		l.recoveryPoint.Store(min(p.upTo, leo))
		l.markDurableBytes(p.bytes)
	}
	return errs
}
