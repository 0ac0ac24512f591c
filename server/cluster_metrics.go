package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvlog/kvlog/replica"
)

// clusterMetrics are the replication and controller metrics (cluster mode;
// the partition-health gauges are in opMetrics, exported in both modes).
type clusterMetrics struct {
	isrShrinks prometheus.Counter
	isrExpands prometheus.Counter
	collectors []prometheus.Collector
}

func newClusterMetrics(c *cluster) *clusterMetrics {
	m := &clusterMetrics{
		isrShrinks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kvlog", Name: "isr_shrinks_total", Help: "ISR shrinks written by this broker as leader."}),
		isrExpands: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kvlog", Name: "isr_expands_total", Help: "ISR expansions written by this broker as leader."}),
	}
	followerLag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvlog", Name: "follower_lag_messages",
		Help: "Sum over partitions this broker follows of (leader high watermark seen - local log end)."}, func() float64 {
		var lag int64
		for _, t := range c.s.topics.Load().byName {
			for _, p := range t.parts {
				if p.rep == nil || p.rep.Role() != replica.RoleFollower {
					continue
				}
				if d := int64(p.log.HighWatermark()) - int64(p.log.LogEndOffset()); d > 0 {
					lag += d
				}
			}
		}
		return float64(lag)
	})
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvlog", Name: "controller_active",
		Help: "1 when this broker is the controller."}, func() float64 {
		if c.controllerStatus().Active {
			return 1
		}
		return 0
	})
	epoch := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvlog", Name: "controller_epoch",
		Help: "The controller epoch in ZooKeeper as this broker last read it."}, func() float64 { return float64(c.ctrlEpoch.Load()) })
	m.collectors = []prometheus.Collector{m.isrShrinks, m.isrExpands, followerLag, active, epoch}
	return m
}

func (m *clusterMetrics) register(r *prometheus.Registry) error {
	for _, c := range m.collectors {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
