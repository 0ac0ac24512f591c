package engine

// A partition deleted and created anew under the same name (a topic
// re-created, a replica moved away and back) must not inherit the deleted
// log's entries in the log dir's checkpoints: after a power loss, a stale
// log start offset or recovery point would be applied to the new log
// (records below it dropped, or unsynced bytes trusted). So the
// checkpoints are rewritten, without the deleted log, before such a
// partition is created again. Kafka rewrites them after every deletion;
// only re-creations pay for it here.

// noteDeleted records that tp's log was deleted. Caller holds createMu.
func (m *Manager) noteDeleted(tp TopicPartition) {
	if m.deleted == nil {
		m.deleted = map[TopicPartition]bool{}
	}
	m.deleted[tp] = true
}

// checkpointIfRecreated rewrites the checkpoints when one of tps was
// deleted since they were last rewritten for that reason. A failure is
// logged: the creation goes on, as it would have before. Caller holds
// createMu, not mu.
func (m *Manager) checkpointIfRecreated(tps ...TopicPartition) {
	again := false
	for _, tp := range tps {
		if m.deleted[tp] {
			again = true
			break
		}
	}
	if !again {
		return
	}
	if err := m.WriteCheckpoints(); err != nil {
		m.opts.Logger.Error("checkpoints before re-creating a deleted partition failed", "err", err)
		return
	}
	clear(m.deleted)
}
