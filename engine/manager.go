package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// ManagerOptions configure a Manager.
type ManagerOptions struct {
	Dirs []string // log.dirs; made absolute and cleaned by OpenManager
	// Locks, when set, are the dirs' locks already taken with LockDirs
	// (its Dirs replace Dirs). OpenManager takes them over: they are
	// released by Close, or at once when OpenManager fails. When nil,
	// OpenManager takes the locks itself before reading anything.
	Locks  *DirLocks
	FS     vfs.FS // nil: the operating system
	Clock  clock.Clock
	Logger *slog.Logger
	// MaxOpenSegments bounds how many inactive segments keep descriptors and
	// mappings open (0: 1024).
	MaxOpenSegments int
	// MaxOpenFiles bounds the file descriptors the engine holds open at
	// once (0: RLIMIT_NOFILE less ReservedFiles, re-read while running).
	// Segments closed to stay under it reopen on demand; an operation that
	// needs a descriptor when every open one is in use fails with
	// ErrResourceLimit.
	MaxOpenFiles int
	// ReservedFiles is what a derived MaxOpenFiles leaves to the rest of
	// the process: sockets, the metadata store (0: 1024; at most half the
	// limit).
	ReservedFiles int
	// MaxMappings bounds the engine's memory mappings, as MaxOpenFiles
	// does descriptors (0: vm.max_map_count less a reserve for the Go
	// runtime, re-read while running).
	MaxMappings int
	// ConfigFor returns the settings of a partition found on disk at start-up
	// (nil: DefaultConfig). Settings are a topic's, as in Kafka: it is
	// called once per topic and log dir, with the topic's first partition
	// found there.
	ConfigFor func(tp TopicPartition) Config
	// RecoveryThreads opens and recovers logs in parallel (0: 2; loading
	// uses at least 16, closing at least 32).
	RecoveryThreads int
	// RetentionCheckInterval is log.retention.check.interval.ms (0: 5 min).
	RetentionCheckInterval time.Duration
	// CheckpointInterval is how often recovery points and log start offsets
	// are checkpointed (0: 60 s, Kafka's log.flush.offset.checkpoint.interval.ms).
	CheckpointInterval time.Duration
	// Journal gives each log dir a group-commit journal (journal.go):
	// SyncLogs of many logs appends their new batches to it and syncs it
	// once instead of syncing each log. JournalMaxBytes is the size at
	// which it is trimmed (0: DefaultJournalMaxBytes).
	Journal         bool
	JournalMaxBytes int64

	// noManifest ignores the log dirs' start-up manifests (tests: the
	// full listing a manifest stands in for).
	noManifest bool
}

// Manager owns every partition log in a broker's log dirs, their log-dir
// checkpoints and the clean-shutdown marker, and runs background retention,
// flushing, idle rolls and delayed deletes.
type Manager struct {
	opts    ManagerOptions
	handles *handleCache

	locks *DirLocks // held from OpenManager until Close

	// createMu serializes the creation and deletion of logs (CreateLog,
	// CreateLogs, DeleteLog), so that CreateLogs can open logs without mu.
	createMu sync.Mutex

	mu     sync.Mutex
	logs   map[TopicPartition]*Log
	perDir map[string]int // logs per log dir (CreateLog's placement)
	// failed are the partitions whose logs could not be opened at start-up
	// (an I/O error, a file where a directory belongs, no descriptors
	// left): the broker serves every other partition and reports these
	// offline. Their directories are left exactly as found, CreateLog
	// refuses them (an empty log in their place would hide the data), and
	// their checkpoint entries are carried over unchanged.
	failed map[TopicPartition]failedLog
	// journals: each log dir's group-commit journal (Journal; nil map otherwise).
	journals map[string]*journal
	deleted  map[TopicPartition]bool // logs deleted (createMu), see checkpointIfRecreated

	checkpointMu    sync.Mutex                 // one checkpoint writer at a time (periodic, truncation, close)
	checkpointed    map[string]*dirCheckpoints // what each log dir's checkpoints hold (checkpointMu; checkpoint_skip.go)
	checkpointSkips atomic.Int64               // log dirs a periodic checkpoint left alone (tests)
	// checkpointSeen is each log's entries as the checkpoints last
	// received them (checkpointMu; checkpoint_skip.go), and
	// checkpointBuilt counts the entries passes put into maps (tests).
	checkpointSeen  map[*Log]logCheckpoint
	checkpointBuilt atomic.Int64
	// logDeletes counts the logs DeleteLog took out of logs (mu), and
	// compacted is CompactedLogs' last answer (logs_compacted.go).
	logDeletes int64
	compacted  compactedLogs

	// maint queues the logs by when the maintenance pass must next visit
	// them (maintenance.go).
	maint       maintQueue
	maintVisits atomic.Int64 // logs the maintenance pass visited (tests)
	// manifestLoads counts the logs OpenManager loaded from a start-up
	// manifest instead of listing their directory (tests).
	manifestLoads atomic.Int64

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

// OpenManager locks every dir of opts.Dirs (see LockDirs; a dir locked by
// another process fails with ErrDirLocked before anything in it is read or
// written), then loads and (after an unclean stop) recovers every
// partition in them.
func OpenManager(opts ManagerOptions) (*Manager, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	locks := opts.Locks
	if locks == nil {
		var err error
		if locks, err = LockDirs(opts.FS, opts.Dirs); err != nil {
			return nil, err
		}
	}
	opts.Locks = nil
	opts.Dirs = locks.Dirs()
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxOpenSegments == 0 {
		opts.MaxOpenSegments = 1024
	}
	if opts.ConfigFor == nil {
		opts.ConfigFor = func(TopicPartition) Config { return DefaultConfig() }
	}
	if opts.RecoveryThreads <= 0 {
		opts.RecoveryThreads = 2
	}
	if opts.RetentionCheckInterval <= 0 {
		opts.RetentionCheckInterval = 5 * time.Minute
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Minute
	}
	hc := newHandleCache(deriveLimits(opts.MaxOpenFiles, opts.MaxMappings, opts.ReservedFiles), opts.MaxOpenSegments, opts.Clock)
	opts.FS = hc.wrapFS(opts.FS)
	m := &Manager{opts: opts, locks: locks, handles: hc, logs: map[TopicPartition]*Log{}, perDir: map[string]int{}, failed: map[TopicPartition]failedLog{}}
	for _, dir := range opts.Dirs {
		if err := m.loadDir(dir); err != nil {
			// No clean-shutdown marker is written: a dir that did not
			// load completely keeps whatever state it was found in.
			m.closeLogs(&closeTimes{}, false)
			m.closeJournals()
			hc.close()
			locks.Release()
			return nil, err
		}
	}
	return m, nil
}

// loadThreads is how many logs open at once at least at start-up.
const loadThreads = 16

type loadJob struct {
	dir string
	tp  TopicPartition
}

// failedLog is a partition that did not open at start-up.
type failedLog struct {
	dir           string // its log dir
	err           error
	recoveryPoint int64 // checkpointed values, -1 when none
	logStart      int64
}

func (m *Manager) loadDir(dir string) error {
	fs := m.opts.FS
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("engine: log dir %s: %w: %w", dir, ErrStorage, err)
	}
	marker := filepath.Join(dir, CleanShutdownFile)
	_, statErr := fs.Stat(marker)
	clean := statErr == nil
	rps, err := checkpoint.ReadOffsets(fs, filepath.Join(dir, RecoveryPointCheckpointFile))
	if err != nil {
		// Treated as missing, as Kafka does. After a clean shutdown that
		// changes nothing (every log was flushed: its recovery point is its
		// end); after an unclean one every segment is rescanned.
		if clean {
			m.opts.Logger.Warn("recovery point checkpoint unreadable; clean shutdown, so every log is taken as flushed to its end", "dir", dir, "err", err)
		} else {
			m.opts.Logger.Warn("recovery point checkpoint unreadable; recovering every segment", "dir", dir, "err", err)
		}
		rps = nil
	}
	starts, err := checkpoint.ReadOffsets(fs, filepath.Join(dir, LogStartCheckpointFile))
	if err != nil {
		m.opts.Logger.Warn("log start checkpoint unreadable", "dir", dir, "err", err)
		starts = nil
	}
	var tails map[TopicPartition]checkpoint.Tail
	if !clean && rps != nil {
		// After an unclean stop, the logs it describes are trusted up to
		// their recovery point without reading their active segment.
		if tails, err = checkpoint.ReadTails(fs, filepath.Join(dir, SyncedTailCheckpointFile)); err != nil {
			m.opts.Logger.Warn("synced-tail checkpoint unreadable; reading every active segment's tail", "dir", dir, "err", err)
			tails = nil
		}
	}
	var man *manifest
	if clean && !m.opts.noManifest {
		// The partition directories as the last clean close left them
		// (manifest.go): those unchanged since are not listed.
		man = m.readManifest(dir)
	}
	jr, jents, err := m.openJournal(dir)
	if err != nil {
		return err
	}
	ents, err := fs.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("engine: log dir %s: %w: %w", dir, ErrStorage, err)
	}
	var jobs []loadJob
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if strings.HasSuffix(e.Name(), DeleteDirSuffix) {
			_ = fs.RemoveAll(filepath.Join(dir, e.Name()))
			continue
		}
		if tp, ok := ParsePartitionDirName(e.Name()); ok {
			jobs = append(jobs, loadJob{dir: filepath.Join(dir, e.Name()), tp: tp})
		}
	}
	start := m.opts.Clock.Now()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
		ch = make(chan loadJob)
		// recovered sums the logs' recovery (under mu).
		recovered struct {
			partitions, segments, deleted, tailsRead int
			bytes                                    int64
		}
		fromManifest atomic.Int64
	)
	// The settings of each topic, computed once (ConfigFor).
	configs := map[string]Config{}
	for _, j := range jobs {
		if _, ok := configs[j.tp.Topic]; !ok {
			configs[j.tp.Topic] = m.opts.ConfigFor(j.tp)
		}
	}
	// At least loadThreads loaders: a log opened lazily costs a few system
	// calls, which overlap (and wait on the disk when its metadata is not
	// cached).
	for range max(m.opts.RecoveryThreads, loadThreads) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				rp, ls := Offset(-1), Offset(-1)
				if v, ok := rps[j.tp]; ok {
					rp = Offset(v)
				}
				if v, ok := starts[j.tp]; ok {
					ls = Offset(v)
				}
				var tail *checkpoint.Tail
				if t, ok := tails[j.tp]; ok {
					tail = &t
				}
				listing := man.listing(fs, j.tp, j.dir, rp)
				if listing != nil {
					fromManifest.Add(1)
				}
				l, err := OpenLog(j.dir, j.tp, configs[j.tp.Topic], LogOptions{
					FS: fs, Clock: m.opts.Clock, Logger: m.opts.Logger, syncedTail: tail, listing: listing,
					CleanShutdown: clean, RecoveryPoint: rp, LogStartOffset: ls, handles: m.handles,
					RecoveryPointLowered: m.WriteCheckpoints, listed: true, maintenance: &m.maint, journal: jr,
				})
				mu.Lock()
				if err != nil {
					m.opts.Logger.Error("partition log failed to open; serving the others, this one is offline", "partition", j.tp.String(), "dir", j.dir, "err", err)
					m.mu.Lock()
					m.failed[j.tp] = failedLog{dir: dir, err: err, recoveryPoint: int64(rp), logStart: int64(ls)}
					m.mu.Unlock()
				} else {
					r := l.Recovered()
					if r.Segments > 0 {
						recovered.partitions++
						recovered.segments += r.Segments
						recovered.bytes += r.BytesTruncated
						recovered.deleted += r.SegmentsDeleted
					}
					if r.TailRead {
						recovered.tailsRead++
					}
					m.mu.Lock()
					m.logs[j.tp] = l
					m.perDir[dir]++
					m.mu.Unlock()
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	if err := m.replayJournal(dir, jr, jents); err != nil {
		return err
	}
	m.manifestLoads.Add(fromManifest.Load())
	// The manifest goes before the marker: from here on the dir changes,
	// and only the next clean close describes it again.
	if err := m.removeManifest(dir); err != nil {
		return err
	}
	if clean {
		// From here on a crash is unclean until Close writes the marker again.
		if err := fs.Remove(marker); err != nil {
			return fmt.Errorf("engine: remove %s: %w: %w", marker, ErrStorage, err)
		}
		_ = fs.SyncDir(dir)
	}
	if clean {
		m.opts.Logger.Info("log dir loaded", "dir", dir, "partitions", len(jobs), "clean_shutdown", true,
			"listed_from_manifest", fromManifest.Load(), "took", m.opts.Clock.Now().Sub(start))
	} else {
		// What an unclean start cost: the partitions whose tail was
		// rescanned (the others were trusted up to their recovery
		// point), those whose tail was read to find out, and what was
		// cut off.
		m.opts.Logger.Info("log dir loaded", "dir", dir, "partitions", len(jobs), "clean_shutdown", false,
			"recovered_partitions", recovered.partitions, "rescanned_segments", recovered.segments, "tails_read", recovered.tailsRead,
			"truncated_bytes", recovered.bytes, "deleted_segments", recovered.deleted,
			"took", m.opts.Clock.Now().Sub(start))
	}
	return nil
}

// Log returns the log of tp.
func (m *Manager) Log(tp TopicPartition) (*Log, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.logs[tp]
	return l, ok
}

// Logs returns every log, ordered by topic and partition.
func (m *Manager) Logs() []*Log {
	m.mu.Lock()
	out := make([]*Log, 0, len(m.logs))
	for _, l := range m.logs {
		out = append(out, l)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].tp, out[j].tp
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return out
}

// unorderedLogs is Logs without the sort.
func (m *Manager) unorderedLogs() []*Log {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Log, 0, len(m.logs))
	for _, l := range m.logs {
		out = append(out, l)
	}
	return out
}

// CreateLog returns tp's log, creating it in the log dir holding the fewest
// partitions when it does not exist.
func (m *Manager) CreateLog(tp TopicPartition, cfg Config) (*Log, error) {
	m.createMu.Lock()
	defer m.createMu.Unlock()
	m.checkpointIfRecreated(tp)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("engine: create %s: %w", tp, ErrClosed)
	}
	if l, ok := m.logs[tp]; ok {
		return l, nil
	}
	if f, ok := m.failed[tp]; ok {
		return nil, fmt.Errorf("engine: create %s: the partition's log failed to open at start-up and is left as found: %w: %w", tp, ErrStorage, f.err)
	}
	dir := m.opts.Dirs[0]
	for _, d := range m.opts.Dirs[1:] {
		if m.perDir[d] < m.perDir[dir] {
			dir = d
		}
	}
	l, err := OpenLog(filepath.Join(dir, PartitionDirName(tp)), tp, cfg, LogOptions{
		FS: m.opts.FS, Clock: m.opts.Clock, Logger: m.opts.Logger,
		CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1, handles: m.handles,
		RecoveryPointLowered: m.WriteCheckpoints, maintenance: &m.maint, journal: m.journals[dir],
	})
	if err == nil {
		err = l.journalCreated()
	}
	if err != nil {
		return nil, err
	}
	m.logs[tp] = l
	m.perDir[dir]++
	return l, nil
}

// DeleteLog closes tp's log and removes its directory. A partition that
// failed to open at start-up has its directory removed as found.
func (m *Manager) DeleteLog(tp TopicPartition) error {
	m.createMu.Lock()
	defer m.createMu.Unlock()
	m.mu.Lock()
	l, ok := m.logs[tp]
	if ok {
		delete(m.logs, tp)
		m.logDeletes++
		m.perDir[filepath.Dir(l.dir)]--
	}
	f, failed := m.failed[tp]
	delete(m.failed, tp)
	m.mu.Unlock()
	if failed {
		if err := m.opts.FS.RemoveAll(filepath.Join(f.dir, PartitionDirName(tp))); err != nil {
			return fmt.Errorf("engine: delete %s: %w: %w", tp, ErrStorage, err)
		}
		return nil
	}
	if !ok {
		return nil
	}
	m.noteDeleted(tp)
	err := l.Delete()
	m.maint.remove(l)
	return err
}

// Failed reports the partitions whose logs failed to open at start-up,
// with the error each one gave.
func (m *Manager) Failed() map[TopicPartition]error {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[TopicPartition]error, len(m.failed))
	for tp, f := range m.failed {
		out[tp] = f.err
	}
	return out
}

// maintenanceTick is how often the background maintenance looks for due
// work (Start).
const maintenanceTick = time.Second

// Start runs background maintenance until ctx ends or Close: a pass every
// maintenanceTick on the Manager's clock (Maintain; the retention pass
// every RetentionCheckInterval, checkpoints every CheckpointInterval,
// rewritten only when they changed).
func (m *Manager) Start(ctx context.Context) {
	ctx, m.cancel = context.WithCancel(ctx)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		lastRetention, lastCheckpoint := m.opts.Clock.Now(), m.opts.Clock.Now()
		for {
			// A pass a second after the last one ended, on the
			// Manager's clock.
			tick := clock.NewTimer(m.opts.Clock, maintenanceTick)
			select {
			case <-ctx.Done():
				tick.Stop()
				return
			case <-tick.C:
			}
			now := m.opts.Clock.Now()
			retention := now.Sub(lastRetention) >= m.opts.RetentionCheckInterval
			if retention {
				lastRetention = now
			}
			m.Maintain(retention)
			if now.Sub(lastCheckpoint) >= m.opts.CheckpointInterval {
				lastCheckpoint = now
				if err := m.writeCheckpoints(true); err != nil {
					m.opts.Logger.Error("checkpoint failed", "err", err)
				}
			}
		}
	}()
}

// Maintain runs one round of background work: due flushes, delayed deletes
// and idle rolls of the logs queued as due (maintenance.go) and, when
// retention is set, retention, producer expiry and the same work on every
// log (each one queued again for its next deadline).
func (m *Manager) Maintain(retention bool) {
	m.handles.refresh(m.opts.ReservedFiles)
	if retention {
		// In no particular order: sorting every log each pass was a
		// tenth of an idle broker's CPU at 30,000 partitions.
		for _, l := range m.unorderedLogs() {
			m.maintain(l)
			l.EnforceRetention()
			l.ExpireProducers()
		}
		return
	}
	for _, l := range m.maint.due(m.opts.Clock.Now().UnixNano()) {
		m.maintain(l)
	}
}

// WriteCheckpoints writes recovery-point-offset-checkpoint,
// log-start-offset-checkpoint and the synced-tail checkpoint in every log
// dir.
func (m *Manager) WriteCheckpoints() error { return m.writeCheckpoints(false) }

// writeCheckpoints is WriteCheckpoints; with changedOnly, a log dir whose
// checkpoints would be written as they were last written is left alone
// (checkpoint_skip.go).
func (m *Manager) writeCheckpoints(changedOnly bool) error {
	m.checkpointMu.Lock()
	defer m.checkpointMu.Unlock()
	logs := m.unorderedLogs()
	if changedOnly && m.checkpointsCurrent(logs) {
		m.checkpointSkips.Add(int64(len(m.opts.Dirs)))
		return nil
	}
	rps := map[string]map[TopicPartition]int64{}
	starts := map[string]map[TopicPartition]int64{}
	tails := map[string]map[TopicPartition]checkpoint.Tail{}
	for _, d := range m.opts.Dirs {
		rps[d], starts[d], tails[d] = map[TopicPartition]int64{}, map[TopicPartition]int64{}, map[TopicPartition]checkpoint.Tail{}
	}
	seen := make(map[*Log]logCheckpoint, len(logs))
	for _, l := range logs {
		e := m.logCheckpoint(l)
		seen[l] = e
		d := filepath.Dir(l.dir)
		if rps[d] == nil {
			continue
		}
		m.checkpointBuilt.Add(1)
		rps[d][l.tp] = e.rp
		if e.hasTail {
			tails[d][l.tp] = e.tail
		}
		starts[d][l.tp] = e.start
	}
	m.mu.Lock()
	for tp, f := range m.failed {
		if rps[f.dir] == nil {
			continue
		}
		if f.recoveryPoint >= 0 {
			rps[f.dir][tp] = f.recoveryPoint
		}
		if f.logStart >= 0 {
			starts[f.dir][tp] = f.logStart
		}
	}
	m.mu.Unlock()
	var first error
	for _, d := range m.opts.Dirs {
		c := &dirCheckpoints{rps: rps[d], starts: starts[d], tails: tails[d]}
		if changedOnly && c.equal(m.checkpointed[d]) {
			m.checkpointSkips.Add(1)
			continue
		}
		if err := m.writeDirCheckpoints(d, c); err != nil && first == nil {
			first = err
		}
	}
	// (A dir whose write failed is forgotten: the next pass builds and
	// writes it again whatever seen says.)
	m.checkpointSeen = seen
	return first
}

// keyIndexCheckpointEvery is how many offsets a key index must have
// applied since its last checkpoint for the periodic checkpoint to write
// it again (a clean close always does).
const keyIndexCheckpointEvery = 1 << 16

// Close stops maintenance, closes (flushing) every log, writes the
// checkpoints and, when all of that succeeded, the clean-shutdown marker.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	// Each phase's duration is logged (real time, as the syncs it
	// measures): what a slow shutdown spent its time on.
	var took closeTimes
	closed, entries, err := m.closeLogs(&took, !m.opts.noManifest)
	m.closeJournals()
	at := time.Now()
	if cerr := m.WriteCheckpoints(); cerr != nil && err == nil {
		err = cerr
	}
	took.checkpoints = time.Since(at)
	if err == nil {
		at = time.Now()
		if !m.opts.noManifest {
			m.writeManifests(closed, entries)
		}
		for _, d := range m.opts.Dirs {
			if werr := checkpoint.WriteFileAtomic(m.opts.FS, filepath.Join(d, CleanShutdownFile), nil); werr != nil && err == nil {
				err = werr
			}
		}
		took.manifest = time.Since(at)
	}
	m.handles.close()
	m.locks.Release()
	m.opts.Logger.Info("logs closed", "partitions", len(closed), "clean", err == nil,
		"close", took.close, "sync", took.sync, "install", took.install, "resync", took.resync,
		"checkpoints", took.checkpoints, "manifest_and_marker", took.manifest)
	return err
}

// closeTimes are the durations of Close's phases.
type closeTimes struct {
	close, sync, install, resync, checkpoints, manifest time.Duration
}

// closeThreads is how many logs close at once at least: a close writes a
// producer snapshot and trims the active segment's indexes.
const closeThreads = 32

// closeLogs closes every log, RecoveryThreads (at least closeThreads) at a
// time, without an fsync of its own: the leader-epoch checkpoints are
// staged (checkpoint.WriteFileStaged) and the producer snapshots written
// in place (their CRC tells a torn one), one file-system sync per log dir
// makes the data, the trimmed indexes, the snapshots and the staged files
// durable, the staged files are renamed into place and a
// second sync makes the renames durable (on a file system without syncfs,
// each closed log's files are synced one by one instead). A shutdown
// costs two syncs, not several per partition; the clean-shutdown marker
// is written only after all of it succeeded (Close). It returns the logs
// it closed and made durable and, with manifest, each one's start-up
// manifest entry (nil: none), recorded once its staged files are in place.
func (m *Manager) closeLogs(took *closeTimes, manifest bool) ([]*Log, []*manifestEntry, error) {
	at := time.Now()
	phase := func(d *time.Duration) {
		now := time.Now()
		*d, at = now.Sub(at), now
	}
	logs := m.Logs()
	var (
		mu     sync.Mutex
		first  error
		closed = make([]bool, len(logs))
		staged = make([][]string, len(logs))
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	m.eachLog(logs, func(i int, l *Log) {
		ok, files, err := l.close(false)
		closed[i], staged[i] = ok, files
		if err != nil {
			fail(err)
		}
	})
	phase(&took.close)
	entries := make([]*manifestEntry, len(logs))
	record := func(i int, l *Log) {
		if manifest && closed[i] {
			entries[i], _ = l.manifestEntryOf()
		}
	}
	synced := func() ([]*Log, []*manifestEntry) {
		var out []*Log
		var es []*manifestEntry
		for i, l := range logs {
			if closed[i] {
				l.markSynced()
				out = append(out, l)
				es = append(es, entries[i])
			}
		}
		return out, es
	}
	syncAll := func() error {
		for _, d := range m.opts.Dirs {
			if err := m.opts.FS.SyncFS(d); err != nil {
				return fmt.Errorf("engine: close: syncing the file system of %s: %w", d, err)
			}
		}
		return nil
	}
	err := syncAll()
	phase(&took.sync)
	if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) {
		// No syncfs here: every closed log's files are synced one by one.
		m.eachLog(logs, func(i int, l *Log) {
			if closed[i] {
				if err := l.syncClosedFiles(staged[i]); err != nil {
					fail(err)
					closed[i] = false
				}
				record(i, l)
			}
		})
		phase(&took.resync)
		out, es := synced()
		return out, es, first
	} else if err != nil {
		fail(err)
		return nil, nil, first
	}
	// The renames in parallel too (each waits on its directory and the
	// file system's journal), each log's manifest entry recorded after
	// its own.
	var installed atomic.Bool
	m.eachLog(logs, func(i int, l *Log) {
		for _, path := range staged[i] {
			if err := checkpoint.InstallStaged(m.opts.FS, path); err != nil {
				fail(fmt.Errorf("engine: close %s: %w", l.tp, err))
				staged[i] = nil
				closed[i] = false
				return
			}
			installed.Store(true)
		}
		record(i, l)
	})
	phase(&took.install)
	if installed.Load() {
		if err := syncAll(); err != nil {
			fail(err)
			return nil, nil, first
		}
	}
	phase(&took.resync)
	out, es := synced()
	return out, es, first
}

// eachLog calls f for every log, RecoveryThreads (at least closeThreads)
// at a time, and returns when every call has.
func (m *Manager) eachLog(logs []*Log, f func(i int, l *Log)) {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range min(max(m.opts.RecoveryThreads, closeThreads), max(len(logs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(logs) {
					return
				}
				f(i, logs[i])
			}
		}()
	}
	wg.Wait()
}

// Budget reports the engine's use of its open-file and mapping budget.
func (m *Manager) Budget() BudgetStats { return m.handles.stats() }

// Dirs returns the log dirs, absolute and cleaned.
func (m *Manager) Dirs() []string { return m.opts.Dirs }
