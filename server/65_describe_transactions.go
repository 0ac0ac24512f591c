package server

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/txn"
)

// DescribeTransactions: v0
//
// The coordinator's state of each transactional id (kafka-transactions.sh
// describe): state, producer id and epoch, timeout, start time (-1: no
// transaction) and partitions. DESCRIBE on the transactional id is
// required (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); topics without
// DESCRIBE are left out of the partitions, as in Kafka. An id this broker
// does not coordinate is NOT_COORDINATOR, an unknown one
// TRANSACTIONAL_ID_NOT_FOUND.
func init() { regKey(kmsg.DescribeTransactions, 0, 0, (*Server).handleDescribeTransactions) }

func (s *Server) handleDescribeTransactions(r *request) {
	req := r.kreq.(*kmsg.DescribeTransactionsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		ts := kmsg.NewDescribeTransactionsResponseTransactionState()
		ts.TransactionalID = id
		ts.ProducerID, ts.ProducerEpoch, ts.StartTimestamp = -1, -1, -1
		if !r.authorize(opDescribe, resTxnID, id) {
			ts.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			resp.TransactionStates = append(resp.TransactionStates, ts)
			continue
		}
		d, err := s.txns.Describe(id)
		if err != nil {
			if errors.Is(err, txn.ErrInvalidRequest) {
				err = kerr.TransactionalIDNotFound
			}
			ts.ErrorCode = errCode(err)
			resp.TransactionStates = append(resp.TransactionStates, ts)
			continue
		}
		ts.State = d.State.String()
		ts.ProducerID, ts.ProducerEpoch = d.ProducerID, d.ProducerEpoch
		ts.TimeoutMillis, ts.StartTimestamp = d.TimeoutMs, d.StartMs
		var names []string
		for _, tp := range d.Partitions {
			names = append(names, tp.Topic)
		}
		allowed := r.authorizedNames(opDescribe, resTopic, names)
		index := map[string]int{}
		for _, tp := range d.Partitions {
			if !allowed.ok(tp.Topic) {
				continue
			}
			i, ok := index[tp.Topic]
			if !ok {
				i = len(ts.Topics)
				index[tp.Topic] = i
				tt := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				tt.Topic = tp.Topic
				ts.Topics = append(ts.Topics, tt)
			}
			ts.Topics[i].Partitions = append(ts.Topics[i].Partitions, tp.Partition)
		}
		resp.TransactionStates = append(resp.TransactionStates, ts)
	}
	r.reply(resp)
}
