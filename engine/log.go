package engine

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

// Log is one partition's log: an ordered list of segments, the last of which
// is active (appended to). See the package comment for its concurrency rules.
type Log struct {
	dir        string
	tp         TopicPartition
	fs         vfs.FS
	clk        clock.Clock
	logger     *slog.Logger
	handles    *handleCache
	ownHandles bool // handles is private to this log (closed with it)
	rpLowered  func() error

	mu  sync.Mutex // writer: append, roll, truncate, retention, close
	cfg atomic.Pointer[Config]

	segs          atomic.Pointer[[]*segment] // immutable snapshot, sorted by base
	leo           atomic.Int64               // log end offset (next offset to assign)
	hw            atomic.Int64               // high watermark
	logStart      atomic.Int64               // log start offset
	recoveryPoint atomic.Int64               // every offset below is on stable storage
	// jr is the log dir's group-commit journal (nil: none); journaled is
	// the log end its last journal commit covered (0 after a trim).
	jr        *journal
	journaled atomic.Int64
	jcap      journalCapture
	// appendedBytes counts the bytes of every batch appended (added after
	// the log end moved); durableBytes is what it was, read before the log
	// end was, when a group commit last made the log durable (its own sync,
	// a file-system sync or a journal commit). Their difference is what a
	// group commit has to make durable (pendingBytes): whether the journal
	// pays depends on it (SyncLogsWith).
	appendedBytes atomic.Int64
	durableBytes  atomic.Int64
	// lastAppend is when a batch was last appended (unix nanoseconds on
	// clk), the log's opening before any: the cleaner rolls a compacted
	// log's active segment that has had no append for a while (RollIdle).
	lastAppend atomic.Int64

	syncMu      sync.Mutex  // serialises flushes (group commit)
	dirDirty    atomic.Bool // directory entries changed since the last directory sync
	unflushed   int64       // messages appended since the last flush (mu)
	lastFlushAt time.Time   // (mu)

	// producers is the idempotent-producer state (mu); nil until loaded
	// (ensureLoaded). snapshots lists the snapshot files found at open, for
	// that load; snapAt is the offset of a snapshot on disk equal to the
	// current state (-1: none).
	producers *producerState
	snapshots []Offset
	snapAt    Offset
	epochs    *checkpoint.EpochCache
	// fresh: the log was opened on a directory CreateLogs had just made
	// (empty): until its first segment file exists, it holds no
	// transaction index to list (loadTxnIndexes).
	fresh bool

	// Transaction state for readers (txn.go), guarded by txnMu (taken
	// after mu by writers): the first offset of the earliest ongoing
	// transaction (-1: none), transactions ended by a marker not yet below
	// the high watermark, and every aborted transaction of the log in
	// marker order. txnReady is set once loaded with the producer state.
	txnMu        sync.Mutex
	firstOngoing Offset
	unreplicated []completedTxn
	aborted      []AbortedTxn
	txnReady     atomic.Bool

	// kidx is the key index (keyindex.go) once loaded, nil before and
	// when the log keeps none; replaced under mu. kidxFileMu orders its
	// checkpoint writes against truncations removing the file (after mu).
	kidx       atomic.Pointer[keyIndex]
	kidxFileMu sync.Mutex
	kcache     lookupCache // batches lookups read (keyindex.go)
	kidxLoads  atomic.Int64
	// kidxPurge lists the offset ranges cleaner swaps replaced since the
	// key index last dropped the entries of removed tombstones in them
	// (keyindex_purge.go), guarded by kidxPurgeMu (a leaf lock).
	kidxPurgeMu sync.Mutex
	kidxPurge   []offsetRange

	closed  atomic.Bool
	pending []*deletedSegment // (mu) files renamed .deleted awaiting unlink
	wg      sync.WaitGroup    // background flushes
	// recovered is what OpenLog's recovery did; set before the log is
	// shared, read-only after.
	recovered RecoveryStats

	// The manager's maintenance queue (maintenance.go): maintAt is when
	// the log is queued for (noMaintenance: not queued), maintIdx its
	// place in the queue (guarded by maintQ.mu).
	maintQ   *maintQueue
	maintAt  atomic.Int64
	maintIdx int

	// startMoved is called after the log start offset moved
	// (OnLogStartMoved).
	startMoved atomic.Pointer[func()]
}

// OnLogStartMoved makes f be called after each move of the log start
// offset (retention, DeleteRecordsBefore, a truncation starting the log
// over), with the log's lock held: f must not call back into the log. A
// later call replaces f.
func (l *Log) OnLogStartMoved(f func()) { l.startMoved.Store(&f) }

func (l *Log) logStartMoved() {
	if f := l.startMoved.Load(); f != nil {
		(*f)()
	}
}

type deletedSegment struct {
	seg *segment
	at  time.Time
	wg  *sync.WaitGroup
}

// TopicPartition returns the partition this log stores.
func (l *Log) TopicPartition() TopicPartition { return l.tp }

// Dir returns the partition directory.
func (l *Log) Dir() string { return l.dir }

// Config returns the log's current settings.
func (l *Log) Config() Config { return *l.cfg.Load() }

// SetConfig replaces the log's settings; later appends, rolls and retention
// passes use them.
func (l *Log) SetConfig(cfg Config) {
	l.cfg.Store(&cfg)
	l.configChanged()
	if !cfg.keyIndexed() {
		l.keyIndexOff()
	}
	l.scheduleMaintenanceNow() // (its deadlines may have moved)
}

// LogEndOffset is the offset the next appended record will get.
func (l *Log) LogEndOffset() Offset { return Offset(l.leo.Load()) }

// LogStartOffset is the first offset a reader may fetch.
func (l *Log) LogStartOffset() Offset { return Offset(l.logStart.Load()) }

// HighWatermark is the offset up to which records are committed (visible).
func (l *Log) HighWatermark() Offset { return Offset(l.hw.Load()) }

// RecoveryPoint is the offset below which everything is flushed.
func (l *Log) RecoveryPoint() Offset {
	return Offset(min(l.recoveryPoint.Load(), l.leo.Load()))
}

// Durable is the offset below which everything is on stable storage: in
// synced segments (RecoveryPoint) or in the log dir's group-commit journal
// (the log start counts as durable: nothing below it is kept).
func (l *Log) Durable() Offset {
	return Offset(min(max(l.recoveryPoint.Load(), l.journaled.Load(), l.logStart.Load()), l.leo.Load()))
}

// SetHighWatermark moves the high watermark, clamped to [log start, LEO].
func (l *Log) SetHighWatermark(o Offset) {
	if leo := l.LogEndOffset(); o > leo {
		o = leo
	}
	if ls := l.LogStartOffset(); o < ls {
		o = ls
	}
	l.hw.Store(int64(o))
}

// Epochs returns the leader-epoch cache.
func (l *Log) Epochs() *checkpoint.EpochCache { return l.epochs }

// privateHandles bounds the open inactive segments of a log opened without
// a Manager.
const privateHandles = 64

func (l *Log) segments() []*segment { return *l.segs.Load() }

func (l *Log) active() *segment {
	s := l.segments()
	return s[len(s)-1]
}

func (l *Log) setSegments(s []*segment) {
	sort.Slice(s, func(i, j int) bool { return s[i].base < s[j].base })
	l.segs.Store(&s)
}

// floorSegment returns the segment holding offset o (largest base <= o).
func floorSegment(segs []*segment, o Offset) (int, bool) {
	i := sort.Search(len(segs), func(i int) bool { return segs[i].base > o }) - 1
	return i, i >= 0
}

// Size is the total bytes of all segments.
func (l *Log) Size() int64 {
	var n int64
	for _, s := range l.segments() {
		n += s.size.Load()
	}
	return n
}

// SegmentInfo describes one segment for the cleaner, retention and tools.
type SegmentInfo struct {
	BaseOffset       Offset
	NextOffset       Offset // offset after the segment's last batch
	Size             int64
	LargestTimestamp int64 // -1 when the segment holds no timestamps
	Active           bool
	Path             string
}

// SegmentCount is the number of segments, without opening any (Segments
// reads each segment's largest timestamp).
func (l *Log) SegmentCount() int { return len(l.segments()) }

// Segments describes every segment, oldest first.
func (l *Log) Segments() []SegmentInfo {
	segs := l.segments()
	out := make([]SegmentInfo, len(segs))
	for i, s := range segs {
		ts, _, _ := s.largestTimestamp() // -1 when unreadable
		out[i] = SegmentInfo{
			BaseOffset:       s.base,
			NextOffset:       Offset(s.next.Load()),
			Size:             s.size.Load(),
			LargestTimestamp: ts,
			Active:           i == len(segs)-1,
			Path:             LogFileName(s.dir, s.base),
		}
	}
	return out
}

func (l *Log) String() string { return fmt.Sprintf("log %s", l.tp) }
