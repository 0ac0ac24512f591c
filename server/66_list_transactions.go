package server

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/txn"
)

// ListTransactions: v0-1
//
// The transactional ids this broker coordinates (kafka-transactions.sh
// list), filtered by state names (unknown names are echoed in
// UnknownStateFilters and match nothing), producer ids and, from v1
// (KIP-994), a minimum running time of Ongoing transactions. Only ids with
// DESCRIBE on the transactional id are listed. COORDINATOR_LOAD_IN_PROGRESS
// while a partition loads.
//
// Version notes:
//   - v1: DurationFilterMillis.
//   - v2 (TransactionalIdPattern) is not served.
func init() { regKey(kmsg.ListTransactions, 0, 1, (*Server).handleListTransactions) }

func (s *Server) handleListTransactions(r *request) {
	req := r.kreq.(*kmsg.ListTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	var f txn.ListFilter
	unknown := false
	for _, name := range req.StateFilters {
		st, ok := txn.StateFromName(name)
		if !ok {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
			unknown = true
			continue
		}
		f.States = append(f.States, st)
	}
	f.ProducerIDs = req.ProducerIDFilters
	if req.Version >= 1 {
		f.MinDurationMs = req.DurationFilterMillis
	}
	if unknown && len(f.States) == 0 {
		r.reply(resp) // only unknown states asked for: nothing matches
		return
	}
	list, err := s.txns.List(f)
	resp.ErrorCode = errCode(err)
	var names []string
	for _, l := range list {
		names = append(names, l.TransactionalID)
	}
	allowed := r.authorizedNames(opDescribe, resTxnID, names)
	for _, l := range list {
		if !allowed.ok(l.TransactionalID) {
			continue
		}
		ts := kmsg.NewListTransactionsResponseTransactionState()
		ts.TransactionalID, ts.ProducerID, ts.TransactionState = l.TransactionalID, l.ProducerID, l.State.String()
		resp.TransactionStates = append(resp.TransactionStates, ts)
	}
	r.reply(resp)
}
