package server

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/server/zkstore"
)

// Admission of the inter-broker requests the controller sends
// (LeaderAndIsr, StopReplica, UpdateMetadata). They can delete partitions
// and move leadership, and any client can send them, so a broker takes
// nothing in them on trust: a request is applied only when
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
// A refusal changes nothing and is logged at WARN. Kafka itself adopts any
// newer controller epoch a request carries (it trusts the network); kvlog
// checks against the store so that a forged request cannot delete data or
// lock out the real controller.

// fromController admits a request the controller sends to the brokers: it
// returns the cluster, or the error to answer with: INVALID_REQUEST on a
// single node (no controller), STALE_BROKER_EPOCH or
// STALE_CONTROLLER_EPOCH as described above.
func (s *Server) fromController(r *request, controllerID, controllerEpoch int32, brokerEpoch int64) (*cluster, *kerr.Error) {
	c := s.cluster
	if c == nil {
		return nil, kerr.InvalidRequest
	}
	refuse := func(ke *kerr.Error, why string, args ...any) (*cluster, *kerr.Error) {
		r.log().Warn("refused inter-broker request: "+why, append([]any{"controller", controllerID,
			"controller_epoch", controllerEpoch, "broker_epoch", brokerEpoch, "err", ke}, args...)...)
		return nil, ke
	}
	if err := c.checkBrokerEpoch(brokerEpoch); err != nil {
		return refuse(kerr.StaleBrokerEpoch, "not this broker's registration", "registered_epoch", c.brokerEpoch.Load(), "cause", err)
	}
	if v, err := c.checkController(controllerID, controllerEpoch); err != nil {
		return refuse(kerr.StaleControllerEpoch, "not the current controller", "current_controller", v.ID, "current_epoch", v.Epoch, "cause", err)
	}
	return c, nil
}

// checkBrokerEpoch reports whether epoch is this broker's current
// registration (nil) or why not.
func (c *cluster) checkBrokerEpoch(epoch int64) error {
	cur := c.brokerEpoch.Load()
	if epoch == cur && cur > 0 {
		return nil
	}
	if epoch < cur || epoch <= 0 {
		return kerr.StaleBrokerEpoch
	}
	// Newer than the stored one: the registration may have just changed.
	reg, exists, own, err := c.zk.BrokerRegistration(c.s.cfg.NodeID)
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
func (c *cluster) checkController(id, epoch int32) (zkstore.ControllerView, error) {
	v := c.controllerView()
	if v.ID == id && v.Epoch == epoch && id >= 0 {
		return v, nil
	}
	if epoch < v.Epoch {
		return v, kerr.StaleControllerEpoch
	}
	// Another controller, or an epoch not seen yet: ask the store.
	v, err := c.refreshControllerView()
	if err != nil {
		return v, err
	}
	if v.ID == id && v.Epoch == epoch && id >= 0 {
		return v, nil
	}
	return v, kerr.StaleControllerEpoch
}

// controllerView is the controller as last read from ZooKeeper.
func (c *cluster) controllerView() zkstore.ControllerView {
	if v := c.ctrlView.Load(); v != nil {
		return *v
	}
	return zkstore.ControllerView{ID: -1, Epoch: -1}
}

// refreshControllerView reads the controller from ZooKeeper and stores it
// (never going back to an older epoch).
func (c *cluster) refreshControllerView() (zkstore.ControllerView, error) {
	v, err := c.zk.CurrentController()
	if err != nil {
		return c.controllerView(), err
	}
	for {
		cur := c.ctrlView.Load()
		if cur != nil && cur.Epoch > v.Epoch {
			return *cur, nil
		}
		if c.ctrlView.CompareAndSwap(cur, &v) {
			c.ctrlEpoch.Store(v.Epoch)
			return v, nil
		}
	}
}

// controllerWatcher keeps the controller view current: it re-reads
// /controller and /controller_epoch whenever /controller changes.
func (c *cluster) controllerWatcher() {
	defer c.wg.Done()
	for c.ctx.Err() == nil {
		_, ch, err := c.zk.ControllerID() // sets the watch
		if err == nil {
			_, err = c.refreshControllerView()
		}
		if err != nil || ch == nil {
			c.log.Debug("reading the controller failed; retrying", "err", err)
			select {
			case <-time.After(time.Second):
			case <-c.ctx.Done():
			}
			continue
		}
		select {
		case <-ch:
		case <-c.ctx.Done():
		}
	}
}
