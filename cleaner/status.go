package cleaner

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"time"
)

// Status is the cleaner's state for operators (the broker's HTTP status
// endpoint, `kvlog cleaner status`). It marshals to JSON.
type Status struct {
	Enabled               bool      `json:"enabled"`
	Threads               int       `json:"threads"`
	Config                Config    `json:"config"`
	LastRun               time.Time `json:"last_run"`
	TimeSinceLastRunMs    int64     `json:"time_since_last_run_ms"`
	MaxDirtyRatio         float64   `json:"max_dirty_ratio"`
	UncleanablePartitions int       `json:"uncleanable_partitions"`
	// MapBytes is the offset map memory held now: allocated at a thread's
	// first pass, let go after Options.MapIdle without one.
	MapBytes int64 `json:"map_bytes"`
	// ThreadErrors lists threads that could not allocate their offset map
	// (they clean nothing until an allocation succeeds).
	ThreadErrors []ThreadError     `json:"thread_errors,omitempty"`
	Partitions   []PartitionStatus `json:"partitions"`
}

// ThreadError is a cleaner thread's failure to allocate its offset map.
type ThreadError struct {
	Thread int       `json:"thread"`
	Error  string    `json:"error"`
	Since  time.Time `json:"since"`
}

// PartitionStatus describes one compacted partition.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// State is idle, in-progress, aborting, paused or uncleanable.
	State                  string     `json:"state"`
	DirtyRatio             float64    `json:"dirty_ratio"`
	FirstDirtyOffset       int64      `json:"first_dirty_offset"`
	FirstUncleanableOffset int64      `json:"first_uncleanable_offset"`
	CleanBytes             int64      `json:"clean_bytes"`
	CleanableBytes         int64      `json:"cleanable_bytes"`
	Due                    string     `json:"due,omitempty"` // why it would be cleaned now
	Passes                 int        `json:"passes"`
	LastCleanTime          *time.Time `json:"last_clean_time,omitempty"`
	LastPass               *PassStats `json:"last_pass,omitempty"`
	TombstoneHorizon       *time.Time `json:"tombstone_horizon,omitempty"` // earliest known tombstone expiry
	Uncleanable            bool       `json:"uncleanable"`
	Error                  string     `json:"error,omitempty"`
}

// Status returns a snapshot of the cleaner's state, partitions ordered by
// topic and partition. Ratios and offsets are from the last planning round.
func (m *Manager) Status() Status {
	cfg := m.Config()
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clk.Now()
	st := Status{
		Enabled: cfg.Enable, Threads: len(m.workers), Config: cfg,
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
			Due: string(p.assess.Reason), Passes: p.passes, LastPass: p.last,
			Uncleanable: p.uncleanable, Error: p.lastErr,
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

// Handler serves Status as JSON (GET).
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
