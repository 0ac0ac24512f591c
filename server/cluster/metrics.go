package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the replication and controller metrics (the
// partition-health gauges are the broker's, exported in both modes).
type metrics struct {
	isrShrinks prometheus.Counter
	isrExpands prometheus.Counter
	collectors []prometheus.Collector
}

func newMetrics(m *Member) *metrics {
	x := &metrics{
		isrShrinks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kvlog", Name: "isr_shrinks_total", Help: "ISR shrinks written by this broker as leader."}),
		isrExpands: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "kvlog", Name: "isr_expands_total", Help: "ISR expansions written by this broker as leader."}),
	}
	followerLag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvlog", Name: "follower_lag_messages",
		Help: "Sum over partitions this broker follows of (leader high watermark seen - local log end)."}, func() float64 {
		if m.cfg.FollowerLag == nil {
			return 0
		}
		return float64(m.cfg.FollowerLag())
	})
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvlog", Name: "controller_active",
		Help: "1 when this broker is the controller."}, func() float64 {
		if m.ControllerStatus().Active {
			return 1
		}
		return 0
	})
	epoch := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kvlog", Name: "controller_epoch",
		Help: "The controller epoch in ZooKeeper as this broker last read it."}, func() float64 { return float64(m.ctrlEpoch.Load()) })
	x.collectors = []prometheus.Collector{x.isrShrinks, x.isrExpands, followerLag, active, epoch}
	return x
}

func (x *metrics) register(r *prometheus.Registry) error {
	for _, c := range x.collectors {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
