package engine

import (
	"maps"
	"path/filepath"

	"github.com/kvlog/kvlog/engine/checkpoint"
)

// The periodic checkpoints (log.flush.offset.checkpoint.interval.ms) of
// an idle broker would write the same three files in every log dir, each
// an fsynced rewrite of an entry per partition, every interval. The
// periodic pass compares what it would write with what the dir's files
// last received from this Manager and leaves a dir whose entries are all
// the same alone: its files already say exactly that. Every other writer
// of the checkpoints (WriteCheckpoints: shutdown, a lowered recovery
// point, a deleted partition created again) writes them whatever they
// hold. A write that fails forgets what the dir holds, so the next pass
// writes it again.
//
// Building those maps (three entries per partition) and comparing them
// was itself the cost of an idle broker's pass at tens of thousands of
// partitions. So the pass first reads each log's entries (a few atomic
// loads) and compares them with what it last put into the checkpoints
// (Manager.checkpointSeen): when no entry changed, no log was added or
// removed, no failed log's entries are carried over and every dir's
// files are known, the files already hold exactly what the pass would
// write, and it builds nothing.

// dirCheckpoints are the entries of a log dir's recovery-point, log-start
// and synced-tail checkpoints.
type dirCheckpoints struct {
	rps, starts map[TopicPartition]int64
	tails       map[TopicPartition]checkpoint.Tail
}

// equal reports whether c and o (nil: unknown) hold the same entries.
func (c *dirCheckpoints) equal(o *dirCheckpoints) bool {
	return o != nil && maps.Equal(c.rps, o.rps) && maps.Equal(c.starts, o.starts) && maps.Equal(c.tails, o.tails)
}

// writeDirCheckpoints writes c into dir's three checkpoint files (each
// one even when an earlier one failed) and returns the first error.
// Caller holds checkpointMu.
func (m *Manager) writeDirCheckpoints(dir string, c *dirCheckpoints) error {
	delete(m.checkpointed, dir) // unknown until all three are written
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	note(checkpoint.WriteOffsets(m.opts.FS, filepath.Join(dir, RecoveryPointCheckpointFile), c.rps))
	note(checkpoint.WriteOffsets(m.opts.FS, filepath.Join(dir, LogStartCheckpointFile), c.starts))
	// After the recovery points: each of its entries must agree with the
	// recovery point checkpointed with it.
	note(checkpoint.WriteTails(m.opts.FS, filepath.Join(dir, SyncedTailCheckpointFile), c.tails))
	if first == nil {
		if m.checkpointed == nil {
			m.checkpointed = map[string]*dirCheckpoints{}
		}
		m.checkpointed[dir] = c
	}
	return first
}

// logCheckpoint is one log's entries in its dir's checkpoints.
type logCheckpoint struct {
	rp, start int64
	tail      checkpoint.Tail
	hasTail   bool
}

// logCheckpoint reads l's checkpoint entries now. The key index, when l
// has one, is checkpointed as well when due (CheckpointKeyIndex).
func (m *Manager) logCheckpoint(l *Log) logCheckpoint {
	// The tail is taken first: a recovery point read after it is at
	// least its end, and the restart trusts the entry only when the two
	// agree.
	t, synced := l.syncedTail()
	e := logCheckpoint{rp: int64(l.RecoveryPoint()), start: int64(l.LogStartOffset())}
	if synced && t.End == e.rp {
		e.tail, e.hasTail = t, true
	}
	if err := l.CheckpointKeyIndex(keyIndexCheckpointEvery); err != nil {
		m.opts.Logger.Error("key index checkpoint failed", "partition", l.tp.String(), "err", err)
	}
	return e
}

// checkpointsCurrent reports whether every log dir's checkpoint files
// already hold what a pass over logs would write: every dir's content is
// known, no failed log's entries are carried over, logs are the logs the
// last pass saw, and none of their entries changed since. Caller holds
// checkpointMu.
func (m *Manager) checkpointsCurrent(logs []*Log) bool {
	for _, d := range m.opts.Dirs {
		if m.checkpointed[d] == nil {
			return false
		}
	}
	m.mu.Lock()
	failed := len(m.failed)
	m.mu.Unlock()
	if failed > 0 || len(logs) != len(m.checkpointSeen) {
		return false
	}
	for _, l := range logs {
		// (At the first change the pass goes on building every entry,
		// which checkpoints the rest of the key indexes when due.)
		was, ok := m.checkpointSeen[l]
		if e := m.logCheckpoint(l); !ok || e != was {
			return false
		}
	}
	return true
}
