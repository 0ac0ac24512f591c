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
