package cleaner

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
)

// Status is the cleaner's state for operators (the broker's HTTP status
// endpoint, `kvlog cleaner status`): the status document, defined by
// package cleanerstatus.
type Status = cleanerstatus.Status

// ThreadError is a cleaner thread's failure to allocate its offset map.
type ThreadError = cleanerstatus.ThreadError

// PartitionStatus describes one compacted partition.
type PartitionStatus = cleanerstatus.PartitionStatus

// Status returns a snapshot of the cleaner's state, partitions ordered by
// topic and partition. Ratios and offsets are from the last planning round.
func (m *Manager) Status() Status {
	cfg := m.Config()
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clk.Now()
	st := Status{
		Enabled: cfg.Enable, Threads: len(m.workers), Config: cfg.status(),
		LastRun: m.lastRun, TimeSinceLastRunMs: now.Sub(m.lastRun).Milliseconds(),
		MaxDirtyRatio: m.metrics.maxDirtyRatio.Load(),
		MapBytes:      m.mapBytes.Load(),
		Partitions:    []PartitionStatus{},
	}
	for _, e := range m.threadErrs {
		st.ThreadErrors = append(st.ThreadErrors, e)
	}
	sort.Slice(st.ThreadErrors, func(i, j int) bool { return st.ThreadErrors[i].Thread < st.ThreadErrors[j].Thread })
	for _, p := range m.sortedParts() {
		ps := PartitionStatus{
			Topic: p.tp.Topic, Partition: p.tp.Partition, State: p.state(),
			DirtyRatio: p.assess.Ratio, FirstDirtyOffset: int64(p.assess.FirstDirty),
			FirstUncleanableOffset: int64(p.assess.FirstUncleanable),
			CleanBytes:             p.assess.CleanBytes, CleanableBytes: p.assess.CleanableBytes,
			Due: string(p.assess.Reason), Passes: p.passes,
			Uncleanable: p.uncleanable, Error: p.lastErr,
		}
		if p.last != nil {
			ps.LastPass = p.last.status()
		}
		if !p.lastClean.IsZero() {
			t := p.lastClean
			ps.LastCleanTime = &t
		}
		if p.horizonKnown && p.horizon != math.MaxInt64 {
			t := time.UnixMilli(p.horizon).UTC()
			ps.TombstoneHorizon = &t
		}
		if p.uncleanable {
			st.UncleanablePartitions++
		}
		st.Partitions = append(st.Partitions, ps)
	}
	return st
}

// Handler serves Status as JSON (GET), at cleanerstatus.Path on the
// broker's HTTP listener.
func (m *Manager) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(m.Status())
	})
}
