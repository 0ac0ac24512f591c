package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn: v0-4
//
// Commits or aborts the producer's transaction: answered once
// PrepareCommit/PrepareAbort is durable in __transaction_state; the
// markers then go to every partition of the transaction (WriteTxnMarkers)
// and the transaction completes once all took theirs.
//
// Version notes:
//   - v2: PRODUCER_FENCED (before: INVALID_PRODUCER_EPOCH).
//   - v3: flexible.
//   - v4: same as v3 (KIP-890's TRANSACTION_ABORTABLE never applies here).
//   - v5+ (transaction version 2, the epoch bumped at every end) is not
//     served.
func init() { regKey(kmsg.EndTxn, 0, 4, (*Server).handleEndTxn) }

func (s *Server) handleEndTxn(r *request) {
	req := r.kreq.(*kmsg.EndTxnRequest)
	s.txns.EndTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit, func(err error) {
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = txnClientCode(err, req.Version, 2)
		r.reply(resp)
	})
}
