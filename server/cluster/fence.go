package cluster

import (
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/zkstore"
)

// Refusal is why a request from the controller was refused: the error to
// answer with, the reason to log and its attributes.
type Refusal struct {
	Err    *kerr.Error
	Reason string
	Attrs  []any
}

// Admit decides whether to apply an inter-broker request the controller
// sends (LeaderAndIsr, StopReplica, UpdateMetadata): nil, or why not. They
// can delete partitions and move leadership, and any client can send
// them, so a broker takes nothing in them on trust: a request is applied
// only when
//
//   - its BrokerEpoch is this broker's current registration, the czxid of
//     /brokers/ids/<id> (Kafka's broker epoch in ZooKeeper mode, KIP-380).
//     An older one is for an earlier incarnation of this broker; -1 ("no
//     epoch") is refused too. A newer one can be real for a moment after a
//     re-registration (the controller saw the new znode before this broker
//     stored its epoch): the registration is read back before deciding.
//     Refused with STALE_BROKER_EPOCH.
//   - its ControllerID and ControllerEpoch are the controller ZooKeeper
//     names: the broker id in /controller and the value of
//     /controller_epoch, which the broker watches. A request naming another
//     controller or a newer epoch makes the broker read both again (after a
//     sync) before deciding; an epoch the store has not reached is never
//     adopted. Refused with STALE_CONTROLLER_EPOCH.
//
// A refusal changes nothing. Kafka itself adopts any newer controller
// epoch a request carries (it trusts the network); kvlog checks against
// the store so that a forged request cannot delete data or lock out the
// real controller.
func (m *Member) Admit(controllerID, controllerEpoch int32, brokerEpoch int64) *Refusal {
	if err := m.checkBrokerEpoch(brokerEpoch); err != nil {
		return &Refusal{Err: kerr.StaleBrokerEpoch, Reason: "not this broker's registration",
			Attrs: []any{"registered_epoch", m.brokerEpoch.Load(), "cause", err}}
	}
	if v, err := m.checkController(controllerID, controllerEpoch); err != nil {
		return &Refusal{Err: kerr.StaleControllerEpoch, Reason: "not the current controller",
			Attrs: []any{"current_controller", v.ID, "current_epoch", v.Epoch, "cause", err}}
	}
	return nil
}

// checkBrokerEpoch reports whether epoch is this broker's current
// registration (nil) or why not.
func (m *Member) checkBrokerEpoch(epoch int64) error {
	cur := m.brokerEpoch.Load()
	if epoch == cur && cur > 0 {
		return nil
	}
	if epoch < cur || epoch <= 0 {
		return kerr.StaleBrokerEpoch
	}
	// Newer than the stored one: the registration may have just changed.
	reg, exists, own, err := m.zk.BrokerRegistration(m.cfg.Broker.NodeID)
	if err != nil {
		return err
	}
	if !exists || !own || reg != epoch {
		return kerr.StaleBrokerEpoch
	}
	return nil
}

// checkController reports whether (id, epoch) is the current controller
// (nil) or why not, with the controller as the broker knows it.
func (m *Member) checkController(id, epoch int32) (zkstore.ControllerView, error) {
	v := m.controllerView()
	if v.ID == id && v.Epoch == epoch && id >= 0 {
		return v, nil
	}
	if epoch < v.Epoch {
		return v, kerr.StaleControllerEpoch
	}
	// Another controller, or an epoch not seen yet: ask the store.
	v, err := m.refreshControllerView()
	if err != nil {
		return v, err
	}
	if v.ID == id && v.Epoch == epoch && id >= 0 {
		return v, nil
	}
	return v, kerr.StaleControllerEpoch
}

// controllerView is the controller as last read from ZooKeeper.
func (m *Member) controllerView() zkstore.ControllerView {
	if v := m.ctrlView.Load(); v != nil {
		return *v
	}
	return zkstore.ControllerView{ID: -1, Epoch: -1}
}

// refreshControllerView reads the controller from ZooKeeper and stores it
// (never going back to an older epoch).
func (m *Member) refreshControllerView() (zkstore.ControllerView, error) {
	v, err := m.zk.CurrentController()
	if err != nil {
		return m.controllerView(), err
	}
	for {
		cur := m.ctrlView.Load()
		if cur != nil && cur.Epoch > v.Epoch {
			return *cur, nil
		}
		if m.ctrlView.CompareAndSwap(cur, &v) {
			m.ctrlEpoch.Store(v.Epoch)
			return v, nil
		}
	}
}

// controllerWatcher keeps the controller view current: it re-reads
// /controller and /controller_epoch whenever /controller changes, and
// retryWait after a failed read.
func (m *Member) controllerWatcher() {
	for m.ctx.Err() == nil {
		_, ch, err := m.zk.ControllerID() // sets the watch
		if err == nil {
			_, err = m.refreshControllerView()
		}
		if err != nil || ch == nil {
			m.log.Debug("reading the controller failed; retrying", "err", err)
			clock.Sleep(m.ctx, m.clk, retryWait)
			continue
		}
		select {
		case <-ch:
		case <-m.ctx.Done():
		}
	}
}
