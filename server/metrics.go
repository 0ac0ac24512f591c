package server

import (
	"maps"
	"slices"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/metrics"
)

// metricsSource is the broker as package metrics reads it at scrape time
// (metrics.Source).
type metricsSource struct{ s *Server }

func (m metricsSource) LogDirs() []string          { return m.s.cfg.LogDirs }
func (m metricsSource) Budget() engine.BudgetStats { return m.s.mgr.Budget() }
func (m metricsSource) RequestMemory() int64       { return m.s.reqMem.InUse() }

// Topics is every topic with, per partition, whether the metadata view
// gives it a leader and, for the ones this broker leads, the sizes of its
// ISR and replica set.
func (m metricsSource) Topics() []metrics.Topic {
	view := m.s.view()
	ts := m.s.sortedTopics()
	out := make([]metrics.Topic, 0, len(ts))
	for _, t := range ts {
		mt := metrics.Topic{Name: t.name, Internal: t.internal, MinInsync: int(t.settings.MinInsync),
			Partitions: make([]metrics.Partition, len(t.parts))}
		meta, _ := view.partitions(t.name)
		for i, p := range t.parts {
			mp := metrics.Partition{ID: p.tp.Partition, Offline: i < len(meta) && meta[i].leader < 0, Log: p.log}
			if p.log != nil && p.role() == replica.RoleLeader {
				st := p.rep.State()
				mp.Leader, mp.ISR, mp.Replicas = true, len(st.ISR), len(st.Replicas)
			}
			mt.Partitions[i] = mp
		}
		out = append(out, mt)
	}
	return out
}

// Groups is the group coordinator's state: groups by state, rebalances
// and each group's lag over the partitions this broker leads (committed
// offsets against the high watermarks).
func (m metricsSource) Groups() *metrics.Groups {
	s := m.s
	if s.groups == nil {
		return nil
	}
	g := &metrics.Groups{Rebalances: int64(s.groups.Rebalances()), ByState: map[string]int{}, Lags: map[string][]metrics.PartitionLag{}}
	for _, st := range []group.State{group.Empty, group.PreparingRebalance, group.CompletingRebalance, group.Stable} {
		g.ByState[st.String()] = 0
	}
	listing, _ := s.groups.List() // partial while a partition loads
	for _, gl := range listing {
		g.ByState[gl.State.String()]++
		offsets, err := s.groups.FetchOffsets(gl.Group, nil)
		if err != nil {
			continue
		}
		lags := []metrics.PartitionLag{}
		for _, o := range offsets {
			p := s.partition(o.Topic, o.Partition)
			if p.role() != replica.RoleLeader || o.Offset < 0 {
				continue
			}
			lags = append(lags, metrics.PartitionLag{Topic: o.Topic, Partition: o.Partition, Lag: max(int64(p.log.HighWatermark())-o.Offset, 0)})
		}
		g.Lags[gl.Group] = lags
	}
	return g
}

// newMetrics creates the broker's metrics over every served API key.
func newMetrics(s *Server) *metrics.Metrics {
	return metrics.New(metricsSource{s}, slices.Sorted(maps.Keys(handlers)))
}
