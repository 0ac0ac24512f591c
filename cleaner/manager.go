package cleaner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Manager.
type Options struct {
	// Engine supplies the logs (and their log dirs). Alternatively Logs.
	Engine *engine.Manager
	// Logs returns the logs to consider when Engine is nil. Each log's
	// cleaner-offset-checkpoint lives in the parent of its directory.
	Logs func() []*engine.Log
	// Config is the initial broker-wide configuration (zero value:
	// DefaultConfig()).
	Config *Config
	// TopicConfig returns per-topic settings engine.Config lacks (nil: the
	// broker defaults from Config).
	TopicConfig TopicConfigFunc
	// FS writes the checkpoint files (nil: the operating system).
	FS     vfs.FS
	Clock  clock.Clock
	Logger *slog.Logger
	// Registry receives the cleaner's metrics (nil: none are registered).
	Registry prometheus.Registerer
	// Sleep waits for the throttle (nil: a timer). Tests inject one.
	Sleep func(ctx context.Context, d time.Duration) error
	// NewMap allocates a thread's offset map (nil: NewOffsetMap). Tests
	// inject failures.
	NewMap func(size int64, loadFactor float64) (*OffsetMap, error)
	// MapIdle is how long a thread keeps its offset map (and its pass
	// buffers) after its last pass before it lets them go (0:
	// DefaultMapIdle; negative: never). A thread allocates its map at the
	// first pass that needs it, not when it starts.
	MapIdle time.Duration
}

// DefaultMapIdle is Options.MapIdle's default: a partition cleaned every
// few backoffs keeps its thread's map; a broker whose compacted topics are
// quiet holds none.
const DefaultMapIdle = time.Minute

// Manager runs log compaction for a broker: it tracks every compacted
// partition's dirty section (cleaner-offset-checkpoint), picks the dirtiest
// due partition, and runs clean passes on log.cleaner.threads goroutines,
// each with its own offset map, sharing one I/O throttle. A partition whose
// pass fails unexpectedly is marked uncleanable; the thread carries on.
//
// Lock order: Manager.mu → engine locks (the Manager calls engine methods
// under mu only for in-memory accessors that take Log.mu briefly).
type Manager struct {
	opts     Options
	logger   *slog.Logger
	clk      clock.Clock
	fs       vfs.FS
	cfg      atomic.Pointer[Config]
	throttle *Throttle
	metrics  *metrics
	started  time.Time // monotonic origin for durations

	mu      sync.Mutex
	cond    *sync.Cond // signalled when a pass ends
	parts   map[engine.TopicPartition]*partition
	ckpts   map[string]map[engine.TopicPartition]int64 // per log dir
	firstTs map[uint64]int64                           // segment id → first batch MaxTimestamp
	lastRun time.Time
	workers map[int]bool // running thread indexes
	// threadErrs holds each thread's offset map allocation failure until
	// an allocation succeeds (Status.ThreadErrors).
	threadErrs map[int]ThreadError
	syncW      *worker // RunOnce's worker (syncMu)
	// mapBytes is the offset map memory the threads and RunOnce's worker
	// hold now (Status.MapBytes).
	mapBytes atomic.Int64
	// nextIdleRoll is when, at the last planning round, the earliest idle
	// roll (Config.IdleRoll) would fall due if nothing is appended
	// meanwhile (unix nanoseconds, 0: none): idle threads wake then.
	nextIdleRoll atomic.Int64
	syncMu       sync.Mutex // serialises RunOnce and ScanHorizons
	closed       bool

	ckptMu sync.Mutex // serialises checkpoint file writes
	wake   chan struct{}
	// shrink is closed (and replaced) when the thread count drops, so that
	// every idle thread wakes and the ones above the count exit; one wake
	// signal would reach only one of them. Guarded by mu.
	shrink chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// partition is the cleaner's state of one compacted partition (Manager.mu).
type partition struct {
	tp  engine.TopicPartition
	log *engine.Log
	dir string // log dir holding its checkpoint

	running     bool               // a pass is in progress
	cancel      context.CancelFunc // aborts the running pass
	aborting    bool
	pauses      int // AbortAndPause calls not yet resumed
	uncleanable bool
	lastErr     string
	errAt       time.Time

	assess       Assessment
	lastClean    time.Time
	last         *PassStats
	passes       int
	horizon      int64 // earliest known tombstone delete horizon (ms), MaxInt64 none
	horizonKnown bool
}

func (p *partition) state() string {
	switch {
	case p.running && p.aborting:
		return "aborting"
	case p.running:
		return "in-progress"
	case p.pauses > 0:
		return "paused"
	case p.uncleanable:
		return "uncleanable"
	}
	return "idle"
}

func (p *partition) eligible() bool { return !p.running && p.pauses == 0 && !p.uncleanable }

// New creates a Manager. Start runs its threads; RunOnce cleans
// synchronously (tests, tools).
func New(opts Options) (*Manager, error) {
	if opts.Engine == nil && opts.Logs == nil {
		return nil, errors.New("cleaner: Options needs Engine or Logs")
	}
	cfg := DefaultConfig()
	if opts.Config != nil {
		cfg = *opts.Config
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.NewMap == nil {
		opts.NewMap = NewOffsetMap
	}
	if opts.MapIdle == 0 {
		opts.MapIdle = DefaultMapIdle
	}
	m := &Manager{
		opts: opts, logger: opts.Logger.With("component", "cleaner"), clk: opts.Clock, fs: opts.FS,
		parts:      map[engine.TopicPartition]*partition{},
		ckpts:      map[string]map[engine.TopicPartition]int64{},
		firstTs:    map[uint64]int64{},
		workers:    map[int]bool{},
		wake:       make(chan struct{}, 1),
		shrink:     make(chan struct{}),
		threadErrs: map[int]ThreadError{},
		lastRun:    opts.Clock.Now(),
		started:    time.Now(),
	}
	m.cond = sync.NewCond(&m.mu)
	m.cfg.Store(&cfg)
	m.throttle = NewThrottle(cfg.IOMaxBytesPerSecond, opts.Clock, opts.Sleep)
	m.metrics = newMetrics(m)
	if opts.Registry != nil {
		if err := m.metrics.register(opts.Registry); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Manager) elapsed() time.Duration { return time.Since(m.started) }

// Config returns the current configuration.
func (m *Manager) Config() Config { return *m.cfg.Load() }

// UpdateConfig applies new log.cleaner.* settings without a restart: the
// throttle rate at once, the thread count at once (threads are started or
// finish after their current pass), the dedupe buffer and load factor at
// each thread's next pass, the backoff at the next wait.
func (m *Manager) UpdateConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	old := m.cfg.Swap(&cfg)
	m.throttle.SetRate(cfg.IOMaxBytesPerSecond)
	if cfg.Threads < old.Threads {
		close(m.shrink)
		m.shrink = make(chan struct{})
	}
	if m.ctx != nil && !m.closed {
		m.startWorkersLocked()
	}
	m.mu.Unlock()
	m.signal()
	if changes := configChanges(*old, cfg); len(changes) > 0 {
		m.logger.Info("cleaner config updated", changes...)
	}
	return nil
}

// Start runs the cleaner threads until ctx ends or Close.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx != nil || m.closed {
		return
	}
	m.ctx, m.cancel = context.WithCancel(ctx)
	m.startWorkersLocked()
}

// startWorkersLocked starts threads up to the configured count. Threads
// above it exit on their own. Caller holds mu.
func (m *Manager) startWorkersLocked() {
	n := m.Config().Threads
	for i := 0; i < n; i++ {
		if m.workers[i] {
			continue
		}
		m.workers[i] = true
		m.wg.Add(1)
		go m.run(m.ctx, i)
	}
}

func (m *Manager) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Wake makes an idle thread look for work now (e.g. after a topic config
// change) instead of at the end of its backoff.
func (m *Manager) Wake() { m.signal() }

// run is one cleaner thread.
func (m *Manager) run(ctx context.Context, idx int) {
	defer m.wg.Done()
	// A fault while reading a mapped segment (a file shrunk under the
	// mapping) panics instead of killing the process; runPass recovers it.
	debug.SetPanicOnFault(true)
	w := newWorker(idx, m.throttle, m.elapsed)
	defer m.releaseMap(w)
	m.metrics.threads.Inc()
	defer m.metrics.threads.Dec()
	for {
		if ctx.Err() != nil {
			m.exitWorker(idx)
			return
		}
		cfg := m.Config()
		if idx >= cfg.Threads {
			m.mu.Lock()
			if idx >= m.Config().Threads {
				delete(m.workers, idx)
				delete(m.threadErrs, idx)
				m.mu.Unlock()
				return
			}
			m.mu.Unlock()
			continue
		}
		if cfg.Enable {
			// The map is allocated once a pass is planned (an allocation
			// failure is reported in Status, logged once, and retried after
			// the backoff); the horizon scan needs none.
			alloc := func() error { return m.allocMap(w, idx, m.Config()) }
			if m.safely(func() bool { _, did := m.cleanOne(ctx, w, true, alloc); return did }) {
				continue
			} else if m.safely(func() bool { return m.scanOne(ctx, w) }) {
				continue
			}
		}
		m.releaseIdle(w)
		m.mu.Lock()
		shrink := m.shrink
		m.mu.Unlock()
		if idx >= m.Config().Threads {
			continue // the count dropped since this pass began
		}
		t := clock.NewTimer(m.clk, m.idleWait(cfg))
		select {
		case <-ctx.Done():
		case <-m.wake:
		case <-shrink:
		case <-t.C:
		}
		t.Stop()
	}
}

// idleWait is how long a thread with nothing to do waits for its next
// round: log.cleaner.backoff.ms, or less when an idle roll falls due
// sooner (Manager.nextIdleRoll), so that a quiet log is rolled and cleaned
// idle.roll.ms after its last append rather than up to a backoff later.
// A deadline already past is ignored: every round sets a future one or
// none, so a past one was left by the last round before the threads
// stopped planning (log.cleaner.enable=false), and must not make them spin.
func (m *Manager) idleWait(cfg Config) time.Duration {
	d := max(cfg.Backoff, time.Millisecond)
	if at := m.nextIdleRoll.Load(); at != 0 {
		if until := time.Duration(at - m.clk.Now().UnixNano()); until > 0 {
			d = min(d, until)
		}
	}
	return d
}

// allocMap (re)allocates thread idx's offset map for cfg inside the
// thread's failure isolation: an allocation that fails or panics (memory
// not there) leaves the thread alive, without a map, with the error in
// Status until an allocation succeeds.
func (m *Manager) allocMap(w *worker, idx int, cfg Config) (err error) {
	func() {
		defer func() {
			if r := recover(); r != nil {
				w.m = nil
				err = fmt.Errorf("cleaner: allocating a %d-byte offset map: %v", cfg.mapBytes(), r)
			}
		}()
		err = m.ensureMap(w, cfg)
	}()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.threadErrs, idx)
		return nil
	}
	if prev, ok := m.threadErrs[idx]; !ok || prev.Error != err.Error() {
		m.threadErrs[idx] = ThreadError{Thread: idx, Error: err.Error(), Since: m.clk.Now()}
		m.logger.Error("offset map allocation failed; the thread retries after log.cleaner.backoff.ms", "thread", idx, "err", err)
	}
	return err
}

// ensureMap gives w an offset map of cfg's size, keeping the memory
// account (Status.MapBytes) and the time of use (releaseIdle) up to date.
func (m *Manager) ensureMap(w *worker, cfg Config) error {
	before := w.mapBytes()
	err := w.ensureMap(cfg.mapBytes(), cfg.LoadFactor, m.opts.NewMap)
	m.mapBytes.Add(w.mapBytes() - before)
	w.used = m.clk.Now()
	return err
}

// releaseIdle lets w's offset map and pass buffers go when its last pass
// ended Options.MapIdle ago or more.
func (m *Manager) releaseIdle(w *worker) {
	if m.opts.MapIdle < 0 || w.m == nil || m.clk.Now().Sub(w.used) < m.opts.MapIdle {
		return
	}
	n := m.releaseMap(w)
	m.logger.Debug("offset map released after an idle period", "thread", w.id, "bytes", n, "idle", m.opts.MapIdle)
	// A map is one large allocation: hand its pages back to the operating
	// system now rather than at the runtime's scavenging pace.
	debug.FreeOSMemory()
}

// releaseMap drops w's offset map and pass buffers and returns the map's
// size.
func (m *Manager) releaseMap(w *worker) int64 {
	n := w.mapBytes()
	w.release()
	m.mapBytes.Add(-n)
	return n
}

// safely runs one unit of a thread's work, turning a panic outside a pass
// (planning, a TopicConfig callback) into a logged error: threads never die.
func (m *Manager) safely(f func() bool) (did bool) {
	defer func() {
		if r := recover(); r != nil {
			m.logger.Error("cleaner thread recovered from a panic", "panic", r, "stack", string(debug.Stack()))
			did = false
		}
	}()
	return f()
}

func (m *Manager) exitWorker(idx int) {
	m.mu.Lock()
	delete(m.workers, idx)
	delete(m.threadErrs, idx)
	m.mu.Unlock()
}

// Close stops the threads (aborting running passes between I/O chunks) and
// waits for them. Logs are not closed: they belong to the engine.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	if m.cancel != nil {
		m.cancel()
	}
	for _, p := range m.parts {
		if p.running && p.cancel != nil {
			p.aborting = true
			p.cancel()
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.syncMu.Lock()
	if m.syncW != nil {
		m.releaseMap(m.syncW)
	}
	m.syncMu.Unlock()
	if m.opts.Registry != nil {
		m.metrics.unregister(m.opts.Registry)
	}
	return nil
}

// Result reports one pass of RunOnce.
type Result struct {
	TP     engine.TopicPartition
	Stats  PassStats
	Reason Reason
	Err    error // nil, or why the pass failed or was abandoned
}

// RunOnce plans and, when a partition is due, runs one clean pass on the
// calling goroutine with its own offset map of the configured per-thread
// size. It reports whether a pass ran. Tests and tools use it instead of
// threads; concurrent calls run one after the other.
func (m *Manager) RunOnce(ctx context.Context) (Result, bool) {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	cfg := m.Config()
	m.mu.Lock()
	if m.syncW == nil {
		m.syncW = newWorker(-1, m.throttle, m.elapsed)
	}
	w := m.syncW
	m.mu.Unlock()
	var allocErr error
	prev := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(prev)
	res, ok := m.cleanOne(ctx, w, false, func() error {
		allocErr = m.ensureMap(w, cfg)
		return allocErr
	})
	if allocErr != nil {
		return Result{TP: res.TP, Err: allocErr}, false
	}
	return res, ok
}

// ScanHorizons runs, on the calling goroutine, the header scan that finds
// the tombstone delete horizons of partitions the cleaner has not cleaned
// since it started; it reports how many partitions it scanned.
func (m *Manager) ScanHorizons(ctx context.Context) int {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	m.mu.Lock()
	if m.syncW == nil {
		m.syncW = newWorker(-1, m.throttle, m.elapsed)
	}
	w := m.syncW
	m.mu.Unlock()
	m.plan()
	n := 0
	for m.scanOne(ctx, w) {
		n++
	}
	return n
}

// logs lists the logs to consider: with an Engine, only its compacted
// ones (Engine.CompactedLogs: every round of an idle cleaner otherwise
// sorted and walked every log of the broker); everything below skips the
// others anyway, and forgets a partition no longer listed or compacted
// alike.
func (m *Manager) logs() []*engine.Log {
	if m.opts.Engine != nil {
		return m.opts.Engine.CompactedLogs()
	}
	return m.opts.Logs()
}

func (m *Manager) topicConfig(tp engine.TopicPartition, cfg engine.Config) TopicConfig {
	if m.opts.TopicConfig != nil {
		return m.opts.TopicConfig(tp, cfg)
	}
	return m.Config().defaults()
}

// gather builds the planning input of every compacted log. It reads first
// batch timestamps of dirty segments it has not seen yet (one header each).
func (m *Manager) gather() []LogInfo {
	logs := m.logs()
	// An idle active segment older than its roll time (segment.ms capped by
	// max.compaction.lag.ms) is rolled so that it becomes cleanable: Kafka
	// only rolls on append, leaving quiet partitions uncompacted.
	for _, l := range logs {
		if l.Config().Compact {
			if _, err := l.RollIfIdle(); err != nil {
				m.logger.Warn("idle roll failed", "partition", l.TopicPartition().String(), "err", err)
			}
		}
	}
	infos := m.snapshotLogs(logs)
	byTP := make(map[engine.TopicPartition]*engine.Log, len(logs))
	for _, l := range logs {
		byTP[l.TopicPartition()] = l
	}
	for i := range infos {
		infos[i].Topic = m.topicConfig(infos[i].TP, infos[i].Config)
	}
	if m.rollIdle(infos, byTP) {
		infos = m.snapshotLogs(logs)
		for i := range infos {
			infos[i].Topic = m.topicConfig(infos[i].TP, infos[i].Config)
		}
	}

	// Missing first batch timestamps of dirty inactive segments, outside mu.
	for i := range infos {
		li := &infos[i]
		l := byTP[li.TP]
		first := li.Checkpoint
		if first < li.LogStart || first > li.LogEnd {
			first = li.LogStart
		}
		for k, s := range li.Segments {
			if s.Active || s.NextOffset <= first || li.FirstBatchTimestamps[k] >= 0 || s.Size == 0 {
				continue
			}
			ts := readFirstBatchTimestamp(l, s)
			li.FirstBatchTimestamps[k] = ts
			m.mu.Lock()
			m.firstTs[s.ID] = ts
			m.mu.Unlock()
		}
	}
	return infos
}

// rollIdle rolls the active segment of every compacted log that
// IdleRollDue says is due for an idle roll (Config.IdleRoll) and that the
// threads may clean (not paused, in progress or uncleanable: a roll that
// no pass follows would only leave a segment behind), and notes when the
// next one falls due (nextIdleRoll). It reports whether it rolled any.
func (m *Manager) rollIdle(infos []LogInfo, byTP map[engine.TopicPartition]*engine.Log) bool {
	cfg := m.Config()
	now := m.clk.Now()
	var next int64
	rolled := false
	for i := range infos {
		li := &infos[i]
		roll, at := IdleRollDue(*li, now, cfg.IdleRoll, cfg.BoundedTombstones)
		if !at.IsZero() && (next == 0 || at.UnixNano() < next) {
			next = at.UnixNano()
		}
		l := byTP[li.TP]
		if !roll || l == nil {
			continue
		}
		m.mu.Lock()
		p := m.parts[li.TP]
		ok := p != nil && p.log == l && p.eligible()
		m.mu.Unlock()
		if !ok {
			continue
		}
		active := li.Segments[len(li.Segments)-1]
		did, err := l.RollIdle(active.ID, li.LastAppend)
		switch {
		case err != nil:
			m.logger.Warn("idle roll failed", "partition", li.TP.String(), "err", err)
		case did:
			rolled = true
			m.metrics.idleRolls.Inc()
			m.logger.Debug("rolled an idle active segment", "partition", li.TP.String(), "base", active.BaseOffset,
				"end", li.LogEnd, "bytes", active.Size, "idle", now.Sub(li.LastAppend))
		}
	}
	m.nextIdleRoll.Store(next)
	return rolled
}

// snapshotLogs records the compacted logs' planning inputs known in memory
// and forgets partitions that are gone or no longer compacted.
func (m *Manager) snapshotLogs(logs []*engine.Log) []LogInfo {
	infos := make([]LogInfo, 0, len(logs))
	m.mu.Lock()
	defer m.mu.Unlock()
	live := make(map[engine.TopicPartition]bool, len(logs))
	seen := make(map[uint64]bool)
	for _, l := range logs {
		cfg := l.Config()
		tp := l.TopicPartition()
		live[tp] = true
		if !cfg.Compact {
			continue
		}
		p := m.partLocked(l)
		lastAppend := l.LastAppend() // before the segments: an append between is then seen by RollIdle
		segs := l.CleanerSegments()
		li := LogInfo{
			TP: tp, Config: cfg, Segments: segs,
			FirstBatchTimestamps: make([]int64, len(segs)),
			LogStart:             l.LogStartOffset(), LogEnd: l.LogEndOffset(), LastStable: l.LastStableOffset(),
			Checkpoint:       -1,
			TombstoneHorizon: p.horizon, HorizonKnown: p.horizonKnown,
			LastAppend: lastAppend,
		}
		if off, ok := m.checkpointsLocked(p.dir)[tp]; ok {
			li.Checkpoint = engine.Offset(off)
		}
		for i, s := range segs {
			li.FirstBatchTimestamps[i] = -1
			seen[s.ID] = true
			if ts, ok := m.firstTs[s.ID]; ok {
				li.FirstBatchTimestamps[i] = ts
			}
		}
		infos = append(infos, li)
	}
	for tp, p := range m.parts {
		if !p.running && p.pauses == 0 && (!live[tp] || p.log == nil || !p.log.Config().Compact) {
			delete(m.parts, tp)
		}
	}
	for id := range m.firstTs {
		if !seen[id] {
			delete(m.firstTs, id)
		}
	}
	return infos
}

// readFirstBatchTimestamp returns the MaxTimestamp of the first batch of s
// (-1 when it cannot be read).
func readFirstBatchTimestamp(l *engine.Log, s engine.SegmentRef) int64 {
	if l == nil {
		return -1
	}
	v, err := l.ViewSegment(s)
	if err != nil {
		return -1
	}
	defer v.Release()
	if len(v.Data) < record.HeaderSize {
		return -1
	}
	return record.Batch(v.Data[:record.HeaderSize]).MaxTimestamp()
}

// partLocked returns (creating) the state of l's partition. Caller holds mu.
func (m *Manager) partLocked(l *engine.Log) *partition {
	tp := l.TopicPartition()
	p := m.parts[tp]
	if p == nil || (p.log != l && p.log != nil && !p.running) {
		pauses := 0
		if p != nil {
			pauses = p.pauses
		}
		p = &partition{tp: tp, horizon: math.MaxInt64, pauses: pauses}
		m.parts[tp] = p
	}
	if p.log == nil || !p.running {
		p.log = l
		p.dir = filepath.Dir(l.Dir())
	}
	return p
}

// checkpointsLocked returns the cleaner checkpoint of dir, reading the file
// the first time. Caller holds mu.
func (m *Manager) checkpointsLocked(dir string) map[engine.TopicPartition]int64 {
	c, ok := m.ckpts[dir]
	if ok {
		return c
	}
	c, err := checkpoint.ReadOffsets(m.fs, filepath.Join(dir, engine.CleanerCheckpointFile))
	if err != nil {
		m.logger.Warn("cleaner-offset-checkpoint unreadable; cleaning from log starts", "dir", dir, "err", err)
		c = map[engine.TopicPartition]int64{}
	}
	m.ckpts[dir] = c
	return c
}

// writeCheckpoint rewrites dir's cleaner-offset-checkpoint from memory,
// keeping only partitions that still exist.
func (m *Manager) writeCheckpoint(dir string) error {
	m.ckptMu.Lock()
	defer m.ckptMu.Unlock()
	m.mu.Lock()
	snap := make(map[engine.TopicPartition]int64, len(m.ckpts[dir]))
	for tp, off := range m.ckpts[dir] {
		if _, ok := m.parts[tp]; ok {
			snap[tp] = off
		}
	}
	m.mu.Unlock()
	if err := checkpoint.WriteOffsets(m.fs, filepath.Join(dir, engine.CleanerCheckpointFile), snap); err != nil {
		m.logger.Error("writing cleaner-offset-checkpoint failed", "dir", dir, "err", err)
		return err
	}
	return nil
}

// job is a pass the planner handed to a thread.
type job struct {
	p     *partition
	a     Assessment
	topic TopicConfig
	ctx   context.Context
	now   time.Time
}

// assessAll gathers and assesses every compacted log.
func (m *Manager) assessAll() ([]LogInfo, []Assessment, time.Time) {
	infos := m.gather()
	cfg := m.Config()
	now := m.clk.Now()
	as := make([]Assessment, len(infos))
	for i, li := range infos {
		as[i] = Assess(li, now, cfg.BoundedTombstones)
	}
	return infos, as, now
}

// plan refreshes every partition's assessment without starting a pass.
func (m *Manager) plan() {
	_, as, _ := m.assessAll()
	m.mu.Lock()
	for _, a := range as {
		if p := m.parts[a.TP]; p != nil {
			p.assess = a
		}
	}
	m.mu.Unlock()
}

// grab plans: assesses every compacted log, picks the dirtiest due one that
// is not busy, paused or uncleanable, and marks it in progress.
func (m *Manager) grab(ctx context.Context, thread bool) (job, bool) {
	infos, as, now := m.assessAll()
	var resets []string
	m.mu.Lock()
	defer func() {
		m.mu.Unlock()
		for _, d := range resets {
			_ = m.writeCheckpoint(d)
		}
	}()
	if thread && !m.Config().Enable || m.closed {
		return job{}, false // disabled meanwhile: checked under mu, so UpdateConfig's caller sees no new pass start
	}
	m.lastRun = now
	var maxRatio float64
	var maxDelay time.Duration
	cands := make([]Assessment, 0, len(as))
	for i, a := range as {
		p := m.parts[a.TP]
		if p == nil {
			continue
		}
		p.assess = a
		maxRatio = max(maxRatio, a.Ratio)
		maxDelay = max(maxDelay, a.CompactionDelay)
		if a.ResetCheckpoint && p.eligible() {
			m.logger.Warn("resetting cleaner checkpoint to the log start", "partition", a.TP.String(), "checkpoint", infos[i].Checkpoint, "log_start", a.FirstDirty)
			m.checkpointsLocked(p.dir)[a.TP] = int64(a.FirstDirty)
			resets = append(resets, p.dir)
		}
		if p.eligible() {
			cands = append(cands, a)
		}
	}
	m.metrics.maxDirtyRatio.Store(maxRatio)
	m.metrics.maxCompactionDelay.Store(int64(maxDelay))
	k := Pick(cands)
	if k < 0 {
		return job{}, false
	}
	a := cands[k]
	p := m.parts[a.TP]
	jctx, cancel := context.WithCancel(ctx)
	p.running, p.aborting, p.cancel = true, false, cancel
	var topic TopicConfig
	for _, li := range infos {
		if li.TP == a.TP {
			topic = li.Topic
		}
	}
	return job{p: p, a: a, topic: topic, ctx: jctx, now: now}, true
}

// cleanOne plans and runs at most one pass with w. Threads (thread set)
// honour log.cleaner.enable; RunOnce does not.
//
// The offset map is allocated (alloc) only once a pass is planned: a
// broker whose compacted partitions are all clean holds none. When alloc
// fails, the planned pass is dropped and cleanOne reports none ran.
func (m *Manager) cleanOne(ctx context.Context, w *worker, thread bool, alloc func() error) (Result, bool) {
	j, ok := m.grab(ctx, thread)
	if !ok {
		return Result{}, false
	}
	if err := alloc(); err != nil {
		m.mu.Lock()
		j.p.cancel()
		j.p.running, j.p.aborting, j.p.cancel = false, false, nil
		m.cond.Broadcast()
		m.mu.Unlock()
		return Result{TP: j.p.tp, Reason: j.a.Reason}, false
	}
	res := m.runPass(w, j)
	w.used = m.clk.Now()
	return res, true
}

// runPass runs a planned pass and records its outcome. Any error other than
// an abort or a concurrent change of the log marks the partition
// uncleanable; a panic is turned into such an error.
func (m *Manager) runPass(w *worker, j job) (res Result) {
	p := j.p
	res = Result{TP: p.tp, Reason: j.a.Reason}
	defer func() {
		if r := recover(); r != nil {
			res.Err = fmt.Errorf("cleaner: panic cleaning %s: %v\n%s", p.tp, r, debug.Stack())
		}
		m.finishPass(w, j, &res)
	}()
	m.logger.Debug("cleaning", "partition", p.tp.String(), "reason", j.a.Reason, "ratio", j.a.Ratio, "first_dirty", j.a.FirstDirty, "first_uncleanable", j.a.FirstUncleanable)
	res.Stats, res.Err = w.clean(j.ctx, passInput{
		log: p.log, firstDirty: j.a.FirstDirty, firstUncleanable: j.a.FirstUncleanable,
		now: j.now, deleteRetention: j.topic.DeleteRetention, reason: j.a.Reason,
	})
	return res
}

func (m *Manager) finishPass(w *worker, j job, res *Result) {
	p := j.p
	st := res.Stats
	err := res.Err
	aborted := err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, engine.ErrSegmentsChanged) || errors.Is(err, engine.ErrClosed))
	m.mu.Lock()
	p.cancel()
	p.running, p.aborting, p.cancel = false, false, nil
	now := m.clk.Now()
	switch {
	case err == nil:
		m.checkpointsLocked(p.dir)[p.tp] = int64(st.EndOffset)
		p.horizon, p.horizonKnown = st.TombstoneHorizon, true
		p.lastClean = now
		p.last = &st
		p.passes++
		p.lastErr = ""
	case aborted:
		p.lastErr = "aborted: " + err.Error()
	default:
		p.uncleanable, p.lastErr, p.errAt = true, err.Error(), now
	}
	m.cond.Broadcast()
	m.mu.Unlock()

	m.metrics.pass(st, err, aborted)
	switch {
	case err == nil:
		_ = m.writeCheckpoint(p.dir)
		m.logger.Info("cleaned", "partition", p.tp.String(), "reason", st.Reason,
			"first_dirty", st.FirstDirty, "end", st.EndOffset, "map_full", st.MapFull, "map_scans", st.MapScans,
			"read", st.BytesRead, "written", st.BytesWritten, "records", st.RecordsRead, "retained", st.RecordsRetained,
			"tombstones_dropped", st.TombstonesDropped, "took", st.Duration)
		// Compacted logs also run retention: segments below the log start
		// and, with cleanup.policy=compact,delete, time and size limits.
		p.log.EnforceRetention()
	case aborted:
		m.logger.Info("clean pass abandoned", "partition", p.tp.String(), "err", err)
	default:
		m.logger.Error("partition marked uncleanable", "partition", p.tp.String(), "err", err)
	}
}

// scanOne runs the tombstone-horizon header scan of one partition that
// needs it; it reports whether it scanned one.
func (m *Manager) scanOne(ctx context.Context, w *worker) bool {
	if !m.Config().BoundedTombstones {
		return false
	}
	m.mu.Lock()
	var p *partition
	var first engine.Offset
	for _, q := range m.parts {
		if q.assess.NeedsHorizonScan && !q.horizonKnown && q.eligible() && q.log != nil {
			if p == nil || q.tp.Topic < p.tp.Topic || (q.tp.Topic == p.tp.Topic && q.tp.Partition < p.tp.Partition) {
				p, first = q, q.assess.FirstDirty
			}
		}
	}
	if p == nil {
		m.mu.Unlock()
		return false
	}
	jctx, cancel := context.WithCancel(ctx)
	p.running, p.cancel = true, cancel
	m.mu.Unlock()
	h, err := func() (h int64, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("cleaner: panic scanning %s: %v", p.tp, r)
			}
		}()
		return w.scanHorizons(jctx, p.log, first)
	}()
	m.mu.Lock()
	cancel()
	p.running, p.aborting, p.cancel = false, false, nil
	if err == nil {
		p.horizon, p.horizonKnown = h, true
	} else {
		// Not worth marking the partition uncleanable: its next pass will
		// read the same bytes and decide.
		p.horizon, p.horizonKnown = math.MaxInt64, true
		m.logger.Warn("tombstone horizon scan failed", "partition", p.tp.String(), "err", err)
	}
	m.cond.Broadcast()
	m.mu.Unlock()
	return true
}

// AbortAndPause aborts a running pass of tp (between I/O chunks), waits for
// it to end, and keeps tp from being cleaned until a matching Resume. Call it
// before truncating, deleting or moving a log (Kafka's
// LogCleanerManager.abortAndPauseCleaning). Pauses nest.
func (m *Manager) AbortAndPause(tp engine.TopicPartition) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.parts[tp]
	if p == nil {
		p = &partition{tp: tp, horizon: math.MaxInt64}
		m.parts[tp] = p
	}
	p.pauses++
	if p.running && p.cancel != nil {
		p.aborting = true
		p.cancel()
	}
	for p.running {
		m.cond.Wait()
	}
}

// Resume undoes one AbortAndPause.
func (m *Manager) Resume(tp engine.TopicPartition) {
	m.mu.Lock()
	if p := m.parts[tp]; p != nil && p.pauses > 0 {
		p.pauses--
	}
	m.mu.Unlock()
	m.signal()
}

// Abort aborts a running pass of tp and waits for it to end; tp stays
// cleanable.
func (m *Manager) Abort(tp engine.TopicPartition) {
	m.AbortAndPause(tp)
	m.Resume(tp)
}

// AfterTruncate lowers tp's checkpoint to offset after its log was truncated
// there (Kafka's maybeTruncateCheckpoint), so records appended again are
// treated as dirty.
func (m *Manager) AfterTruncate(tp engine.TopicPartition, offset engine.Offset) {
	m.mu.Lock()
	var dir string
	if p := m.parts[tp]; p != nil {
		if off, ok := m.checkpointsLocked(p.dir)[tp]; ok && engine.Offset(off) > offset {
			m.ckpts[p.dir][tp] = int64(offset)
			dir = p.dir
		}
		p.horizonKnown = false
	}
	m.mu.Unlock()
	if dir != "" {
		_ = m.writeCheckpoint(dir)
	}
}

// Forget drops tp (its partition was deleted): a running pass is aborted,
// its state and checkpoint entry removed.
func (m *Manager) Forget(tp engine.TopicPartition) {
	m.AbortAndPause(tp)
	m.mu.Lock()
	p := m.parts[tp]
	delete(m.parts, tp)
	var dir string
	if p != nil && p.dir != "" {
		dir = p.dir
		delete(m.checkpointsLocked(dir), tp)
	}
	m.mu.Unlock()
	if dir != "" {
		_ = m.writeCheckpoint(dir)
	}
}

// ResetUncleanable makes an uncleanable partition cleanable again (after an
// operator fixed the cause).
func (m *Manager) ResetUncleanable(tp engine.TopicPartition) {
	m.mu.Lock()
	if p := m.parts[tp]; p != nil {
		p.uncleanable, p.lastErr = false, ""
	}
	m.mu.Unlock()
	m.signal()
}

// Checkpoint returns tp's first dirty offset from the cleaner checkpoint.
func (m *Manager) Checkpoint(tp engine.TopicPartition) (engine.Offset, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.parts[tp]
	if p == nil || p.dir == "" {
		return -1, false
	}
	off, ok := m.checkpointsLocked(p.dir)[tp]
	return engine.Offset(off), ok
}

// sortedParts returns the partitions ordered by topic and partition.
// Caller holds mu.
func (m *Manager) sortedParts() []*partition {
	ps := make([]*partition, 0, len(m.parts))
	for _, p := range m.parts {
		if p.log != nil {
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i].tp, ps[j].tp
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return ps
}
