package engine

import (
	"sync"

	"github.com/kvlog/kvlog/engine/record"
)

// journalCapture keeps the batches appended to a log with a journal since
// the last journal commit took them, so that the commit need not read them
// back from the segment (an index lookup and a pread per partition, which
// at a thousand partitions cost more than the journal's write and sync).
// It is only a cache: whenever it does not hold exactly the batches a
// commit needs (it overflowed, a truncation emptied it, a sync of the log
// made part of it durable), the commit reads them back.
//
// A log captures only once a journal commit took it, and stops when its
// capture overflows or a batch larger than journalCaptureBatchMax arrives:
// a follower's log, or a leader's whose commits go elsewhere (an ISR of
// several replicas), keeps no copy of its appends, and large batches are
// read back by the commit in bounded pieces (journalWriter.readBack) rather
// than copied into a capture that grows by doubling: the read-back costs
// one copy as the capture does, off the appending goroutine, and at most
// journalStageMax bytes of memory per commit instead of every batch's.
type journalCapture struct {
	mu    sync.Mutex // a leaf lock
	on    bool       // a journal commit took the log since the capture last overflowed
	start int64      // the offset data starts at (the log end before its first batch)
	end   int64      // the log end after its last batch
	data  []byte
}

// journalCaptureMax bounds a log's capture; a batch larger than
// journalCaptureBatchMax stops it. Variables for tests.
var (
	journalCaptureMax      = 1 << 20
	journalCaptureBatchMax = 64 << 10
)

// captureForJournal records batch b appended at the log end prevEnd,
// ending at end. Caller holds l.mu.
func (l *Log) captureForJournal(b []byte, prevEnd, end int64) {
	if l.jr == nil {
		return
	}
	c := &l.jcap
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on {
		return
	}
	if len(c.data) == 0 || c.end != prevEnd {
		c.start, c.data = prevEnd, c.data[:0]
	}
	if len(b) > journalCaptureBatchMax || len(c.data)+len(b) > journalCaptureMax {
		c.data, c.on = nil, false
		return
	}
	c.data = append(c.data, b...)
	c.end = end
}

// dropCapture forgets the capture (a truncation). Caller holds l.mu.
func (l *Log) dropCapture() {
	c := &l.jcap
	c.mu.Lock()
	c.data = nil
	c.mu.Unlock()
}

// takeCaptured returns the captured batches from offset from on and the
// offset they end at, and empties the capture; ok is false when it does
// not hold them from exactly from.
func (l *Log) takeCaptured(from int64) (data []byte, end int64, ok bool) {
	c := &l.jcap
	c.mu.Lock()
	data, start, end := c.data, c.start, c.end
	c.data, c.on = nil, true
	c.mu.Unlock()
	if len(data) == 0 || start > from || end <= from {
		return nil, 0, false
	}
	for start < from {
		b, rest, err := record.ReadBatch(data)
		if err != nil {
			return nil, 0, false
		}
		start, data = b.LastOffset()+1, rest
	}
	if start != from || len(data) == 0 {
		return nil, 0, false
	}
	return data, end, true
}
