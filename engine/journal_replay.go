package engine

import (
	"errors"
	"fmt"

	"github.com/kvlog/kvlog/engine/record"
)

// openJournal opens dir's journal when the manager keeps one (nil, nil, nil
// otherwise).
func (m *Manager) openJournal(dir string) (*journal, []journalEntry, error) {
	if !m.opts.Journal {
		return nil, nil, nil
	}
	j, ents, err := openJournal(m.opts.FS, dir, m.opts.JournalMaxBytes, m.opts.Logger)
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	if m.journals == nil {
		m.journals = map[string]*journal{}
	}
	m.journals[dir] = j
	m.mu.Unlock()
	return j, ents, nil
}

// replayJournal applies what dir's journal held to the logs just loaded
// from dir, syncs the logs it changed, and starts the journal's next
// generation. Nothing runs on the logs meanwhile (start-up).
func (m *Manager) replayJournal(dir string, j *journal, ents []journalEntry) error {
	if j == nil {
		return nil
	}
	m.mu.Lock()
	logs := make(map[TopicPartition]*Log, len(m.logs))
	for tp, l := range m.logs {
		if l.jr == j {
			logs[tp] = l
		}
	}
	var offline []string
	for _, e := range ents {
		if f, ok := m.failed[e.TP]; ok && f.dir == dir && e.Kind == journalData {
			offline = append(offline, e.TP.String())
		}
	}
	m.mu.Unlock()
	if len(offline) > 0 {
		// Partitions left offline (they failed to open) have records in
		// the journal: it is kept aside for them, not replaced.
		kept := fmt.Sprintf("%s.kept-%d", j.path, j.gen)
		if err := m.opts.FS.Rename(j.path, kept); err != nil {
			return fmt.Errorf("engine: journal %s: keeping it for offline partitions: %w: %w", j.path, ErrStorage, err)
		}
		m.opts.Logger.Error("journal holds records of partitions that failed to open; kept aside", "file", kept, "partitions", offline)
	}
	changed, err := replayEntries(ents, func(tp TopicPartition) *Log { return logs[tp] })
	if err != nil {
		return fmt.Errorf("engine: replaying journal %s: %w", j.path, err)
	}
	if len(changed) > 0 {
		m.opts.Logger.Info("journal replayed", "file", j.path, "entries", len(ents), "partitions", len(changed))
	}
	for i, err := range SyncLogsWith(changed, SyncEachLog) {
		if err != nil {
			return fmt.Errorf("engine: journal %s: syncing %s after replay: %w", j.path, changed[i].tp, err)
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.start()
}

// replayEntries applies the data entries of ents, in order, to the log
// logFor returns for their partition (entries of a partition without a log
// are skipped), except those a later void entry of the same partition
// voids. Each batch is appended when it lies above the log end, skipped
// when below it; one straddling the log end (the log holds another
// history there) replaces the log from its base offset on. It returns the
// logs it appended to. Applying the same entries again changes nothing.
func replayEntries(ents []journalEntry, logFor func(TopicPartition) *Log) ([]*Log, error) {
	lastVoid := map[TopicPartition]int{}
	for i, e := range ents {
		if e.Kind == journalVoid {
			lastVoid[e.TP] = i
		}
	}
	seen := map[*Log]bool{}
	var changed []*Log
	for i, e := range ents {
		if e.Kind != journalData {
			continue
		}
		if v, ok := lastVoid[e.TP]; ok && i < v {
			continue
		}
		l := logFor(e.TP)
		if l == nil {
			continue
		}
		n, err := l.replayBatches(e.Payload)
		if err != nil {
			return changed, err
		}
		if n > 0 && !seen[l] {
			seen[l] = true
			changed = append(changed, l)
		}
	}
	return changed, nil
}

// replayBatches appends the batches of one journal entry above the log end.
func (l *Log) replayBatches(payload []byte) (int, error) {
	n := 0
	for rest := payload; len(rest) > 0; {
		b, next, err := record.ReadBatch(rest)
		if err != nil {
			return n, l.errorf("journal replay", -1, l.LogEndOffset(), fmt.Errorf("%w: %w", ErrCorruptRecord, err))
		}
		rest = next
		leo := l.LogEndOffset()
		if Offset(b.LastOffset()) < leo {
			continue
		}
		if base := Offset(b.BaseOffset()); base < leo {
			if err := l.TruncateTo(base); err != nil {
				return n, err
			}
		}
		if _, err := l.AppendReplicated(b); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// closeJournals closes every log dir's journal (after the logs).
func (m *Manager) closeJournals() {
	for _, j := range m.journals {
		j.close()
	}
}

// journalCreated voids the journal entries of an earlier log of l's
// partition (a new log: nothing of it is in the journal).
func (l *Log) journalCreated() error {
	if l.jr == nil {
		return nil
	}
	if err := l.jr.created(l); err != nil {
		_ = l.Close()
		return l.errorf("create", -1, -1, err)
	}
	return nil
}

// journalTruncated makes a truncation that cut records durable and tells
// the journal (journal.truncated). Caller holds l.mu.
func (l *Log) journalTruncated() error {
	if l.jr == nil {
		return nil
	}
	l.dropCapture()
	// The active segment's file was cut and synced, and removed segments'
	// renames are synced, by the truncation itself; a full truncation's
	// renames and new segment are not yet.
	if l.dirDirty.Swap(false) {
		if err := l.fs.SyncDir(l.dir); err != nil {
			l.dirDirty.Store(true)
			return l.errorf("truncate", -1, l.LogEndOffset(), fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	if err := l.jr.truncated(l); err != nil {
		if errors.Is(err, ErrStorage) || errors.Is(err, ErrClosed) {
			return l.errorf("truncate", -1, l.LogEndOffset(), err)
		}
		return l.errorf("truncate", -1, l.LogEndOffset(), storageErr(err))
	}
	return nil
}
