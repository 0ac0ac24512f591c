package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-6 (Kafka 4.x's range)
//
// Group keys: the broker leading the group's __consumer_offsets
// partition (groupCoordinator: this broker on a single node). Transaction
// keys: the broker leading the transactional id's __transaction_state
// partition (txnCoordinator). Each topic is created on the first lookup,
// as Kafka does.
//
// Version notes:
//   - v1: CoordinatorType; ErrorMessage.
//   - v2: same as v1.
//   - v3: flexible.
//   - v4: batched CoordinatorKeys, answered per key.
//   - v5: same as v4; the client understands TRANSACTION_ABORTABLE
//     (KIP-890), which this API never returns.
//   - v6: key type SHARE (2, share groups, KIP-932). kvlog has no share
//     groups: such a key gets INVALID_REQUEST, as from a Kafka broker
//     with share groups disabled.
func init() { regKey(kmsg.FindCoordinator, 0, 6, (*Server).handleFindCoordinator) }

const (
	coordinatorTypeGroup       int8 = 0
	coordinatorTypeTransaction int8 = 1
	coordinatorTypeShare       int8 = 2
)

func (s *Server) handleFindCoordinator(r *request) {
	req := r.kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)

	find := func(key string) kmsg.FindCoordinatorResponseCoordinator {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key = key
		c.NodeID, c.Port = -1, -1
		var err error
		// DESCRIBE on the group or transactional id (authz_apis.go).
		switch {
		case req.CoordinatorType == coordinatorTypeGroup && !r.authorize(opDescribe, resGroup, key):
			err = kerr.GroupAuthorizationFailed
		case req.CoordinatorType == coordinatorTypeTransaction && !r.authorize(opDescribe, resTxnID, key):
			err = kerr.TransactionalIDAuthorizationFailed
		}
		if err != nil {
			c.ErrorCode, c.ErrorMessage = errCode(err), errMessage(err)
			return c
		}
		switch req.CoordinatorType {
		case coordinatorTypeGroup:
			c.NodeID, c.Host, c.Port, err = s.groupCoordinator(r, key)
		case coordinatorTypeTransaction:
			c.NodeID, c.Host, c.Port, err = s.txnCoordinator(r, key)
		case coordinatorTypeShare:
			err = topicErrf(kerr.InvalidRequest, "share groups are not supported")
		default:
			err = topicErrf(kerr.InvalidRequest, "unknown coordinator type %d", req.CoordinatorType)
		}
		c.ErrorCode = errCode(err)
		c.ErrorMessage = errMessage(err)
		return c
	}
	if req.Version >= 4 {
		for _, k := range req.CoordinatorKeys {
			resp.Coordinators = append(resp.Coordinators, find(k))
		}
		r.reply(resp)
		return
	}
	c := find(req.CoordinatorKey)
	resp.ErrorCode, resp.ErrorMessage = c.ErrorCode, c.ErrorMessage
	resp.NodeID, resp.Host, resp.Port = c.NodeID, c.Host, c.Port
	r.reply(resp)
}
