package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AddOffsetsToTxn: v0-4
//
// The group's __consumer_offsets partition joins the transaction, so the
// transaction's markers reach it and its TxnOffsetCommit offsets are
// applied at commit (dropped at abort).
//
// Version notes:
//   - v2: PRODUCER_FENCED (before: INVALID_PRODUCER_EPOCH).
//   - v3: flexible.
//   - v4: same as v3 (KIP-890's TRANSACTION_ABORTABLE never applies here).
func init() { regKey(kmsg.AddOffsetsToTxn, 0, 4, (*Server).handleAddOffsetsToTxn) }

func (s *Server) handleAddOffsetsToTxn(r *request) {
	req := r.kreq.(*kmsg.AddOffsetsToTxnRequest)
	if _, err := s.ensureOffsetsTopic(); err != nil {
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = errCode(err)
		r.reply(resp)
		return
	}
	s.txns.AddOffsets(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group, func(err error) {
		resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = txnClientCode(err, req.Version, 2)
		r.reply(resp)
	})
}
