package engine

import (
	"container/heap"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// The manager's periodic maintenance (flush.ms flushes, delayed deletes,
// idle rolls) visits only the logs with something due. Each log managed by
// a Manager is in a deadline queue keyed by the earliest time one of those
// may be due; the once-a-second pass pops the logs whose time has come,
// runs their maintenance and queues them again at their next deadline. An
// idle broker of thousands of partitions then does nothing each second
// instead of locking every log.
//
// A log asks to be visited (scheduleMaintenance) whenever something may
// become due earlier than it is queued for: an append (an unflushed log's
// flush.ms deadline, the active segment's idle-roll deadline), a segment
// renamed .deleted (its file.delete.delay.ms), a settings change, a
// truncation, and its opening. A visit that finds nothing due only
// computes the next deadline. The retention pass
// (log.retention.check.interval.ms) still visits every log, and
// reschedules each one, so a deadline missed by these rules is late by at
// most one retention interval.

// noMaintenance is the deadline of a log with nothing due.
const noMaintenance = int64(math.MaxInt64)

// maintQueue is a min-heap of logs by their maintenance deadline
// (Log.maintAt); a log is in it at most once (Log.maintIdx). Safe for
// concurrent use.
type maintQueue struct {
	mu   sync.Mutex
	logs []*Log
	// configs counts the settings changes of the manager's logs
	// (Log.SetConfig, after the change; see CompactedLogs).
	configs atomic.Uint64
}

func (q *maintQueue) Len() int           { return len(q.logs) }
func (q *maintQueue) Less(i, j int) bool { return q.logs[i].maintAt.Load() < q.logs[j].maintAt.Load() }
func (q *maintQueue) Swap(i, j int) {
	q.logs[i], q.logs[j] = q.logs[j], q.logs[i]
	q.logs[i].maintIdx, q.logs[j].maintIdx = i, j
}
func (q *maintQueue) Push(x any) {
	l := x.(*Log)
	l.maintIdx = len(q.logs)
	q.logs = append(q.logs, l)
}
func (q *maintQueue) Pop() any {
	n := len(q.logs) - 1
	l := q.logs[n]
	q.logs[n] = nil
	q.logs = q.logs[:n]
	l.maintIdx = -1
	return l
}

// schedule queues l to be visited at unix-nano time at, unless it is
// queued for no later already.
func (q *maintQueue) schedule(l *Log, at int64) {
	if l.maintAt.Load() <= at {
		return // (the common case: no lock)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if l.maintAt.Load() <= at {
		return
	}
	l.maintAt.Store(at)
	if l.maintIdx < 0 {
		heap.Push(q, l)
	} else {
		heap.Fix(q, l.maintIdx)
	}
}

// due removes and returns the logs whose deadline is at or before now.
func (q *maintQueue) due(now int64) []*Log {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*Log
	for len(q.logs) > 0 && q.logs[0].maintAt.Load() <= now {
		l := heap.Pop(q).(*Log)
		l.maintAt.Store(noMaintenance)
		out = append(out, l)
	}
	return out
}

// remove takes l out of the queue (its log is deleted or closed).
func (q *maintQueue) remove(l *Log) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if l.maintIdx >= 0 {
		heap.Remove(q, l.maintIdx)
	}
	l.maintAt.Store(noMaintenance)
}

// queued is how many logs are queued.
func (q *maintQueue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.logs)
}

// unixAfter is t+d in unix nanoseconds, saturating at noMaintenance (a
// setting of "never", math.MaxInt64, must not wrap around).
func unixAfter(t time.Time, d time.Duration) int64 {
	n := t.UnixNano()
	if d > 0 && n > noMaintenance-int64(d) {
		return noMaintenance
	}
	return n + int64(d)
}

// scheduleMaintenance asks the manager's maintenance to visit l at at
// (unix nanoseconds) or soon after. A log outside a Manager has none.
func (l *Log) scheduleMaintenance(at int64) {
	if l.maintQ != nil {
		l.maintQ.schedule(l, at)
	}
}

// scheduleMaintenanceNow asks for a visit at the next pass.
func (l *Log) scheduleMaintenanceNow() {
	if l.maintQ != nil {
		l.maintQ.schedule(l, l.clk.Now().UnixNano())
	}
}

// appendDeadline is the maintenance deadline an append may have brought
// forward: the flush.ms flush of the now unflushed log, and the idle roll
// of the (now non-empty) active segment. Caller holds l.mu.
func (l *Log) appendDeadline(cfg Config) int64 {
	at := unixAfter(l.active().created, cfg.rollTime()) + 1 // RollIfIdle: strictly more than the roll time
	if cfg.FlushInterval > 0 {
		at = min(at, unixAfter(l.lastFlushAt, cfg.FlushInterval))
	}
	return at
}

// nextMaintenance is when l next has something for the maintenance pass:
// a flush.ms flush (unflushed records), a delayed delete, an idle roll
// (a non-empty active segment); noMaintenance when nothing.
func (l *Log) nextMaintenance() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return noMaintenance
	}
	cfg := l.Config()
	at := noMaintenance
	if cfg.FlushInterval > 0 && l.recoveryPoint.Load() < l.leo.Load() {
		at = min(at, unixAfter(l.lastFlushAt, cfg.FlushInterval))
	}
	for _, d := range l.pending {
		at = min(at, unixAfter(d.at, cfg.FileDeleteDelay))
	}
	if seg := l.active(); seg.size.Load() > 0 {
		at = min(at, unixAfter(seg.created, cfg.rollTime())+1)
	}
	return at
}

// maintain runs l's flush.ms flush, delayed deletes and idle roll when
// due, and queues it again for the next deadline.
func (m *Manager) maintain(l *Log) {
	m.maintVisits.Add(1)
	if err := l.FlushIfDue(); err != nil {
		m.opts.Logger.Error("flush failed", "partition", l.tp.String(), "err", err)
	}
	l.ProcessDeletes()
	if _, err := l.RollIfIdle(); err != nil {
		m.opts.Logger.Error("idle roll failed", "partition", l.tp.String(), "err", err)
	}
	l.scheduleMaintenance(l.nextMaintenance())
}
