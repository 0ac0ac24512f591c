package server

import (
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
)

// DescribeCluster: v0-2
//
// KIP-700, the admin counterpart of Metadata's broker list: the cluster id,
// the controller (this broker) and this broker's endpoint as advertised on
// the listener the request arrived on, as Metadata reports it.
//
// Behaviour:
//   - ClusterAuthorizedOperations: INT32_MIN unless requested; when
//     requested, the operations the principal may perform on the CLUSTER
//     resource if it may DESCRIBE it (else 0), as Kafka; without an
//     authorizer every operation Kafka supports on it.
//   - EndpointType 2 (controllers) is UNSUPPORTED_ENDPOINT_TYPE, as from a
//     Kafka broker: kvlog has no separate controller quorum.
//
// Version notes:
//   - v0: flexible from the start.
//   - v1: EndpointType.
//   - v2: IncludeFencedBrokers (no broker is ever fenced), IsFenced.
func init() { regKey(kmsg.DescribeCluster, 0, 2, (*Server).handleDescribeCluster) }

func (s *Server) handleDescribeCluster(r *request) {
	req := r.kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.EndpointType = req.EndpointType
	if req.Version >= 1 && req.EndpointType != 1 {
		err := topicErrf(kerr.UnsupportedEndpointType, "endpoint type %d is not supported by a broker (only 1, brokers)", req.EndpointType)
		resp.ErrorCode = errCode(err)
		resp.ErrorMessage = errMessage(err)
		r.reply(resp)
		return
	}
	resp.ClusterID = s.ClusterID()
	resp.ControllerID = s.cfg.NodeID
	b := kmsg.NewDescribeClusterResponseBroker()
	b.NodeID = s.cfg.NodeID
	b.Host = r.c.l.advHost
	b.Port = r.c.l.advPort
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{b}
	resp.ClusterAuthorizedOperations = math.MinInt32
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = 0
		if r.authorizeCluster(opDescribe) {
			resp.ClusterAuthorizedOperations = r.authorizedOperations(resCluster, acl.ClusterName)
		}
	}
	r.reply(resp)
}
