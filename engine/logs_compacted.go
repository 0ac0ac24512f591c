package engine

import "sort"

// CompactedLogs is Logs restricted to the logs whose settings say
// compact (cleanup.policy containing compact): what the log cleaner plans
// over each round. Only those are sorted, so a broker of tens of thousands
// of partitions of which a few are compacted pays a pass over the map, not
// a sort of every log, per cleaner round.
func (m *Manager) CompactedLogs() []*Log {
	m.mu.Lock()
	var out []*Log
	for _, l := range m.logs {
		if l.cfg.Load().Compact {
			out = append(out, l)
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].tp, out[j].tp
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return out
}
