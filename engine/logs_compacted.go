package engine

import (
	"slices"
	"sort"
	"sync"
)

// CompactedLogs is Logs restricted to the logs whose settings say
// compact (cleanup.policy containing compact): what the log cleaner plans
// over each round. Only those are sorted, so a broker of tens of thousands
// of partitions of which a few are compacted pays no sort of every log
// per cleaner round; and the answer is kept until a log comes or goes or
// a log's settings change, so a round of an idle broker (every
// log.cleaner.backoff.ms) looks at no log either.
func (m *Manager) CompactedLogs() []*Log {
	c := &m.compacted
	c.mu.Lock()
	defer c.mu.Unlock()
	// Read before the logs: a settings change after this read moves it.
	configs := m.maint.configs.Load()
	m.mu.Lock()
	key := compactedKey{logs: len(m.logs), deletes: m.logDeletes, configs: configs}
	if c.valid && c.key == key {
		m.mu.Unlock()
		return slices.Clone(c.logs)
	}
	var out []*Log
	for _, l := range m.logs {
		c.looked++
		if l.cfg.Load().Compact {
			out = append(out, l)
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].tp, out[j].tp
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	c.valid, c.key, c.logs = true, key, out
	return slices.Clone(out)
}

// compactedLogs is CompactedLogs' last answer and what it was built
// from. The set of logs changes only by a log added (one more) or deleted
// (DeleteLog counts it), so the number of logs and of deletes together
// say whether it changed.
type compactedLogs struct {
	mu     sync.Mutex
	valid  bool
	key    compactedKey
	logs   []*Log
	looked int // logs looked at (tests)
}

type compactedKey struct {
	logs    int
	deletes int64
	configs uint64
}

// configChanged records a change of l's settings (after it).
func (l *Log) configChanged() {
	if l.maintQ != nil {
		l.maintQ.configs.Add(1)
	}
}
