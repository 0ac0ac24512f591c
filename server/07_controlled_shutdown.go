package server

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ControlledShutdown: v1-3 (inter-broker, to the controller; cluster mode only)
//
// A broker about to stop asks the controller to move the leadership of its
// partitions to other ISR members and drop it from the ISRs. The response
// lists the partitions it still leads (sole ISR member); the broker retries
// (controlled.shutdown.max.retries). A broker that is not the controller
// answers NOT_CONTROLLER. The request must carry the named broker's current
// broker epoch (the czxid of its registration in ZooKeeper): any other
// epoch, or none (v1), gets STALE_BROKER_EPOCH and changes nothing, so a
// client cannot drain a live broker by naming it.
//
// Version notes:
//   - v2: BrokerEpoch (KIP-380).
//   - v3: flexible.
func init() { regKey(kmsg.ControlledShutdown, 1, 3, (*Server).handleControlledShutdown) }

func (s *Server) handleControlledShutdown(r *request) {
	req := r.kreq.(*kmsg.ControlledShutdownRequest)
	resp := req.ResponseKind().(*kmsg.ControlledShutdownResponse)
	ctrl := s.mode.controllerCandidate()
	if ctrl == nil {
		resp.ErrorCode = kerr.NotController.Code
		r.reply(resp)
		return
	}
	epoch := int64(-1)
	if req.Version >= 2 {
		epoch = req.BrokerEpoch
	}
	// Answer on another goroutine: the controller loop may need this
	// connection's broker to answer LeaderAndIsr meanwhile.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		remaining, err := ctrl.ControlledShutdown(ctx, req.BrokerID, epoch)
		if err != nil {
			resp.ErrorCode = errCode(err)
		}
		for _, tp := range remaining {
			pr := kmsg.NewControlledShutdownResponsePartitionsRemaining()
			pr.Topic, pr.Partition = tp.Topic, tp.Partition
			resp.PartitionsRemaining = append(resp.PartitionsRemaining, pr)
		}
		r.reply(resp)
	}()
}
