package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/txn"
)

// InitProducerId: v0-5
//
// With a transactional id the transaction coordinator (package txn)
// answers: a new id gets a fresh producer id at epoch 0, a known one its
// epoch bumped (an ongoing transaction of the previous instance is
// aborted first: CONCURRENT_TRANSACTIONS until then), and from v3
// (KIP-360) a producer passing its current id and epoch recovers with a
// bump; a stale one is PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before
// v4, as Kafka answers older clients). The coordinator is found with
// FindCoordinator TRANSACTION; another broker answers NOT_COORDINATOR.
//
// Without a transactional id (idempotent producers) every call gets a
// fresh producer id from the metadata store (never reused, even across
// restarts) at epoch 0, as Kafka does: an idempotent producer's id and
// epoch (v3+) are only checked for form and never bumped here, so no
// client can bump another producer's epoch and fence it.
//
// Version notes:
//   - v2: flexible.
//   - v3: ProducerID / ProducerEpoch in the request (KIP-360 recovery for
//     transactional ids; both -1 or both set, else INVALID_REQUEST).
//   - v4: PRODUCER_FENCED.
//   - v5: same as v4 (KIP-890's TRANSACTION_ABORTABLE never applies here).
func init() { regKey(kmsg.InitProducerID, 0, 5, (*Server).handleInitProducerID) }

func (s *Server) handleInitProducerID(r *request) {
	req := r.kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID = -1
	resp.ProducerEpoch = -1
	var expected *txn.ProducerIDEpoch
	if req.Version >= 3 {
		switch {
		case req.ProducerID == -1 && req.ProducerEpoch == -1:
		case req.ProducerID < 0 || req.ProducerEpoch < 0:
			resp.ErrorCode = kerr.InvalidRequest.Code
			r.reply(resp)
			return
		default:
			expected = &txn.ProducerIDEpoch{ProducerID: req.ProducerID, Epoch: req.ProducerEpoch}
		}
	}
	if req.TransactionalID != nil { // "" is INVALID_REQUEST, as in Kafka
		s.txns.InitProducerID(txn.InitRequest{TransactionalID: *req.TransactionalID, TimeoutMs: req.TransactionTimeoutMillis, Expected: expected}, func(res txn.InitResult) {
			resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
			resp.ProducerID, resp.ProducerEpoch = res.ProducerID, res.Epoch
			resp.ErrorCode = txnClientCode(res.Err, req.Version, 4)
			if res.Err != nil {
				resp.ProducerID, resp.ProducerEpoch = -1, -1
			}
			r.reply(resp)
		})
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

// txnClientCode is the code of a transaction coordinator error for a
// client: PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH for requests
// below fencedFrom (the version that brought PRODUCER_FENCED), as Kafka
// answers older clients.
func txnClientCode(err error, version, fencedFrom int16) int16 {
	code := errCode(err)
	if code == kerr.ProducerFenced.Code && version < fencedFrom {
		return kerr.InvalidProducerEpoch.Code
	}
	return code
}
