package server

import (
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerId: v0-4
//
// Idempotent producers only (no transactional id): a fresh producer id
// from the metadata store (never reused, even across restarts) with epoch
// 0. From v3 (KIP-360) a producer passing its current id and epoch gets
// the same id with the epoch bumped, or a new id when the epoch would
// overflow. Per-partition sequence state lives in the engine.
//
// Version notes:
//   - v2: flexible.
//   - v3: ProducerID / ProducerEpoch in the request (epoch bump).
//   - v4: same as v3 (PRODUCER_FENCED only with transactions).
func init() { regKey(kmsg.InitProducerID, 0, 4, (*Server).handleInitProducerID) }

func (s *Server) handleInitProducerID(r *request) {
	req := r.kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID = -1
	resp.ProducerEpoch = -1
	if req.TransactionalID != nil {
		// No transaction coordinator yet (FindCoordinator is not served).
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		r.reply(resp)
		return
	}
	if req.Version >= 3 && req.ProducerID >= 0 && req.ProducerEpoch >= 0 && req.ProducerEpoch < math.MaxInt16-1 {
		resp.ProducerID = req.ProducerID
		resp.ProducerEpoch = req.ProducerEpoch + 1
		r.reply(resp)
		return
	}
	id, err := s.meta.NextProducerID()
	if err != nil {
		r.log().Error("allocating a producer id failed", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		r.reply(resp)
		return
	}
	resp.ProducerID = id
	resp.ProducerEpoch = 0
	r.reply(resp)
}
