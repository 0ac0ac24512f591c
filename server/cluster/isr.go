package cluster

import (
	"errors"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/zkstore"
)

type isrWork struct {
	p  *replica.Partition
	ch *replica.ISRChange
}

// ProposeISR queues a leader's ISR change to be written to ZooKeeper (the
// partition manager's replica.ManagerConfig.OnISRChange).
func (m *Member) ProposeISR(p *replica.Partition, ch *replica.ISRChange) {
	select {
	case m.isrCh <- isrWork{p, ch}:
	default:
		p.ISRChangeDone(ch, 0, errors.New("ISR writer queue full"), nil)
	}
}

// isrWriter persists leaders' ISR changes one at a time.
func (m *Member) isrWriter() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case w := <-m.isrCh:
			m.writeISR(w)
		}
	}
}

// writeISR writes one ISR change conditionally on the partition state's
// version; on a conflict the partition gets the newer state.
func (m *Member) writeISR(w isrWork) {
	tp := w.p.Log().TopicPartition()
	st := w.p.State()
	ps := zkstore.PartitionState{Leader: m.cfg.Broker.NodeID, LeaderEpoch: w.ch.LeaderEpoch, ISR: w.ch.ISR,
		ControllerEpoch: st.ControllerEpoch, ZkVersion: w.ch.ZkVersion}
	v, err := m.zk.UpdateISR(tp.Topic, tp.Partition, ps)
	if err == nil {
		kind := "expand"
		if w.ch.Shrink {
			kind = "shrink"
			m.metrics.isrShrinks.Inc()
		} else {
			m.metrics.isrExpands.Inc()
		}
		m.log.Info("ISR changed", "topic", tp.Topic, "partition", tp.Partition, "change", kind, "isr", w.ch.ISR, "leader_epoch", w.ch.LeaderEpoch)
		w.p.ISRChangeDone(w.ch, v, nil, nil)
		return
	}
	var cur *replica.State
	if errors.Is(err, zkstore.ErrBadVersion) {
		if zs, ok, rerr := m.zk.PartitionState(tp.Topic, tp.Partition); rerr == nil && ok {
			cur = &replica.State{Leader: zs.Leader, LeaderEpoch: zs.LeaderEpoch, ISR: zs.ISR, ZkVersion: zs.ZkVersion, ControllerEpoch: zs.ControllerEpoch}
		}
		m.log.Info("ISR change conflicted with a newer partition state", "topic", tp.Topic, "partition", tp.Partition, "proposed", w.ch.ISR)
	} else {
		m.log.Warn("ISR change failed", "topic", tp.Topic, "partition", tp.Partition, "err", err)
	}
	w.p.ISRChangeDone(w.ch, 0, err, cur)
}

// shrinkTicker asks the partition manager to check every led partition
// for out-of-sync followers, every replica.lag.time.max.ms / 4 (at least
// every 50 ms).
func (m *Member) shrinkTicker() {
	every := max(m.cfg.Broker.ReplicaLagTimeMax/4, 50*time.Millisecond)
	for clock.Sleep(m.ctx, m.clk, every) {
		m.replicas.Tick()
	}
}
