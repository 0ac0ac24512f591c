package server

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/server/acl"
)

// Each API's authorization, as Apache Kafka's KafkaApis checks it: one
// entry per API key the broker serves (TestAPIAuthzCoverage fails when a
// registered key has none). An entry either names a check the dispatcher
// makes before the handler runs — an operation on the CLUSTER resource,
// or on the one group or transactional id the request names — with the
// response Kafka sends when it fails, or documents the per-resource
// checks the handler makes itself through request.authorizedNames (the
// requests that carry many topics or groups, filtered as Kafka's
// filterByAuthorized does). docs/security.md has the same table.

// apiAuthz is one API's authorization.
type apiAuthz struct {
	// check decides the whole request before the handler; nil when the
	// handler checks per resource (or nothing is checked). It returns
	// the error to refuse with, or nil.
	check func(r *request) *kerr.Error
	// deny builds the refusal response.
	deny func(req kmsg.Request, code int16) kmsg.Response
	// doc describes the checks (for readers and docs/security.md).
	doc string
}

var (
	opRead            = kmsg.ACLOperationRead
	opWrite           = kmsg.ACLOperationWrite
	opCreate          = kmsg.ACLOperationCreate
	opDelete          = kmsg.ACLOperationDelete
	opAlter           = kmsg.ACLOperationAlter
	opDescribe        = kmsg.ACLOperationDescribe
	opClusterAction   = kmsg.ACLOperationClusterAction
	opDescribeConfigs = kmsg.ACLOperationDescribeConfigs
	opAlterConfigs    = kmsg.ACLOperationAlterConfigs
	opIdempotentWrite = kmsg.ACLOperationIdempotentWrite

	resTopic   = kmsg.ACLResourceTypeTopic
	resGroup   = kmsg.ACLResourceTypeGroup
	resCluster = kmsg.ACLResourceTypeCluster
	resTxnID   = kmsg.ACLResourceTypeTransactionalId
)

// onCluster requires op on the cluster: CLUSTER_AUTHORIZATION_FAILED.
func onCluster(op acl.Operation) func(r *request) *kerr.Error {
	return func(r *request) *kerr.Error {
		if !r.authorizeCluster(op) {
			return kerr.ClusterAuthorizationFailed
		}
		return nil
	}
}

// onGroup requires op on the group the request names.
func onGroup(op acl.Operation, group func(kmsg.Request) string) func(r *request) *kerr.Error {
	return func(r *request) *kerr.Error {
		if !r.authorize(op, resGroup, group(r.kreq)) {
			return kerr.GroupAuthorizationFailed
		}
		return nil
	}
}

// onTxnThenGroup requires WRITE on the transactional id, then (group not
// nil) READ on the group.
func onTxnThenGroup(txnID func(kmsg.Request) string, group func(kmsg.Request) string) func(r *request) *kerr.Error {
	return func(r *request) *kerr.Error {
		if !r.authorize(opWrite, resTxnID, txnID(r.kreq)) {
			return kerr.TransactionalIDAuthorizationFailed
		}
		if group != nil && !r.authorize(opRead, resGroup, group(r.kreq)) {
			return kerr.GroupAuthorizationFailed
		}
		return nil
	}
}

// topLevel sets a response's top-level error code.
func topLevel(req kmsg.Request, code int16) kmsg.Response {
	resp := req.ResponseKind()
	switch v := resp.(type) {
	case *kmsg.UpdateMetadataResponse:
		v.ErrorCode = code
	case *kmsg.ControlledShutdownResponse:
		v.ErrorCode = code
	case *kmsg.HeartbeatResponse:
		v.ErrorCode = code
	case *kmsg.LeaveGroupResponse:
		v.ErrorCode = code
	case *kmsg.OffsetDeleteResponse:
		v.ErrorCode = code
	case *kmsg.EndTxnResponse:
		v.ErrorCode = code
	case *kmsg.AddOffsetsToTxnResponse:
		v.ErrorCode = code
	case *kmsg.DescribeLogDirsResponse:
		v.ErrorCode = code
		v.Dirs = []kmsg.DescribeLogDirsResponseDir{}
	default:
		panic("topLevel: no error code in " + kmsg.NameForKey(req.Key()))
	}
	return resp
}

var apiAuthzTable = map[kmsg.Key]apiAuthz{
	kmsg.Produce: {check: produceTxnCheck, deny: denyProduce,
		doc: "WRITE on TRANSACTIONAL_ID when the batches are transactional (else every partition TRANSACTIONAL_ID_AUTHORIZATION_FAILED); WRITE on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition, before the topic's existence is checked)"},
	kmsg.Fetch:       {doc: "consumers: READ on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition); followers (replica id >= 0): CLUSTER_ACTION on CLUSTER, else every partition TOPIC_AUTHORIZATION_FAILED"},
	kmsg.ListOffsets: {doc: "DESCRIBE on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition)"},
	kmsg.Metadata:    {doc: "DESCRIBE on each TOPIC: named topics TOPIC_AUTHORIZATION_FAILED (by id: the id with the error), all topics filtered; auto-creation needs CREATE on CLUSTER or on the TOPIC (else TOPIC_AUTHORIZATION_FAILED); authorized operations computed"},
	kmsg.LeaderAndISR: {check: onCluster(opClusterAction), deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.LeaderAndISRRequest)
		resp := q.ResponseKind().(*kmsg.LeaderAndISRResponse)
		resp.ErrorCode = code
		for _, ts := range q.TopicStates {
			for _, ps := range ts.PartitionStates {
				p := kmsg.NewLeaderAndISRResponseTopicPartition()
				p.Topic, p.Partition, p.ErrorCode = ts.Topic, ps.Partition, code
				resp.Partitions = append(resp.Partitions, p)
			}
		}
		return resp
	}, doc: "CLUSTER_ACTION on CLUSTER (CLUSTER_AUTHORIZATION_FAILED, every partition too)"},
	kmsg.StopReplica: {check: onCluster(opClusterAction), deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.StopReplicaRequest)
		resp := q.ResponseKind().(*kmsg.StopReplicaResponse)
		resp.ErrorCode = code
		for _, t := range q.Topics {
			for _, ps := range t.PartitionStates {
				p := kmsg.NewStopReplicaResponsePartition()
				p.Topic, p.Partition, p.ErrorCode = t.Topic, ps.Partition, code
				resp.Partitions = append(resp.Partitions, p)
			}
		}
		return resp
	}, doc: "CLUSTER_ACTION on CLUSTER (CLUSTER_AUTHORIZATION_FAILED, every partition too)"},
	kmsg.UpdateMetadata:     {check: onCluster(opClusterAction), deny: topLevel, doc: "CLUSTER_ACTION on CLUSTER (CLUSTER_AUTHORIZATION_FAILED)"},
	kmsg.ControlledShutdown: {check: onCluster(opClusterAction), deny: topLevel, doc: "CLUSTER_ACTION on CLUSTER (CLUSTER_AUTHORIZATION_FAILED)"},
	kmsg.OffsetCommit: {check: onGroup(opRead, func(q kmsg.Request) string { return q.(*kmsg.OffsetCommitRequest).Group }),
		deny: func(req kmsg.Request, code int16) kmsg.Response {
			q := req.(*kmsg.OffsetCommitRequest)
			resp := q.ResponseKind().(*kmsg.OffsetCommitResponse)
			for _, t := range q.Topics {
				rt := kmsg.NewOffsetCommitResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetCommitResponseTopicPartition()
					rp.Partition, rp.ErrorCode = p.Partition, code
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp
		}, doc: "READ on GROUP (every partition GROUP_AUTHORIZATION_FAILED); READ on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition)"},
	kmsg.OffsetFetch: {check: onGroup(opDescribe, func(q kmsg.Request) string { return q.(*kmsg.OffsetFetchRequest).Group }),
		deny: func(req kmsg.Request, code int16) kmsg.Response {
			q := req.(*kmsg.OffsetFetchRequest)
			resp := q.ResponseKind().(*kmsg.OffsetFetchResponse)
			resp.Topics = []kmsg.OffsetFetchResponseTopic{}
			if q.Version >= 2 {
				resp.ErrorCode = code
				return resp
			}
			for _, t := range q.Topics {
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.ErrorCode = p, -1, code
					rp.Metadata = kmsg.StringPtr("")
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp
		}, doc: "DESCRIBE on GROUP (GROUP_AUTHORIZATION_FAILED: top level from v2, per partition before); DESCRIBE on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition, unauthorized topics left out of an all-topics fetch)"},
	kmsg.FindCoordinator: {doc: "DESCRIBE on GROUP (GROUP_AUTHORIZATION_FAILED) or on TRANSACTIONAL_ID (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), per key"},
	kmsg.JoinGroup: {check: onGroup(opRead, func(q kmsg.Request) string { return q.(*kmsg.JoinGroupRequest).Group }),
		deny: func(req kmsg.Request, code int16) kmsg.Response {
			resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
			resp.ErrorCode, resp.Generation, resp.MemberID = code, -1, ""
			if req.GetVersion() < 7 {
				resp.Protocol = kmsg.StringPtr("")
			}
			resp.Members = []kmsg.JoinGroupResponseMember{}
			return resp
		}, doc: "READ on GROUP (GROUP_AUTHORIZATION_FAILED)"},
	kmsg.Heartbeat: {check: onGroup(opRead, func(q kmsg.Request) string { return q.(*kmsg.HeartbeatRequest).Group }),
		deny: topLevel, doc: "READ on GROUP (GROUP_AUTHORIZATION_FAILED)"},
	kmsg.LeaveGroup: {check: onGroup(opRead, func(q kmsg.Request) string { return q.(*kmsg.LeaveGroupRequest).Group }),
		deny: topLevel, doc: "READ on GROUP (GROUP_AUTHORIZATION_FAILED)"},
	kmsg.SyncGroup: {check: onGroup(opRead, func(q kmsg.Request) string { return q.(*kmsg.SyncGroupRequest).Group }),
		deny: func(req kmsg.Request, code int16) kmsg.Response {
			resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
			resp.ErrorCode, resp.MemberAssignment = code, []byte{}
			return resp
		}, doc: "READ on GROUP (GROUP_AUTHORIZATION_FAILED)"},
	kmsg.DescribeGroups:       {doc: "DESCRIBE on each GROUP (GROUP_AUTHORIZATION_FAILED per group); authorized operations computed"},
	kmsg.ListGroups:           {doc: "DESCRIBE on CLUSTER lists every group; otherwise the groups with DESCRIBE on GROUP"},
	kmsg.SASLHandshake:        {doc: "none (authentication)"},
	kmsg.ApiVersions:          {doc: "none"},
	kmsg.CreateTopics:         {doc: "CREATE on CLUSTER, or CREATE on each TOPIC (TOPIC_AUTHORIZATION_FAILED per topic); the configs returned need DESCRIBE_CONFIGS on the TOPIC"},
	kmsg.DeleteTopics:         {doc: "DELETE on each TOPIC (TOPIC_AUTHORIZATION_FAILED per topic; by id: DESCRIBE too, else the name is not returned); internal topics are never deleted"},
	kmsg.DeleteRecords:        {doc: "DELETE on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition)"},
	kmsg.InitProducerID:       {check: initProducerIDCheck, deny: denyInitProducerID, doc: "transactional: WRITE on TRANSACTIONAL_ID (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); idempotent: IDEMPOTENT_WRITE on CLUSTER or WRITE on any TOPIC (CLUSTER_AUTHORIZATION_FAILED)"},
	kmsg.OffsetForLeaderEpoch: {doc: "CLUSTER_ACTION on CLUSTER, or DESCRIBE on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition)"},
	kmsg.AddPartitionsToTxn: {check: func(r *request) *kerr.Error {
		q := r.kreq.(*kmsg.AddPartitionsToTxnRequest)
		if q.Version >= 4 {
			return nil // batched (v4+): the handler checks per transaction
		}
		return onTxnThenGroup(func(kmsg.Request) string { return q.TransactionalID }, nil)(r)
	}, deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.AddPartitionsToTxnRequest)
		resp := q.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
		for _, t := range q.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}, doc: "WRITE on TRANSACTIONAL_ID (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); WRITE on each TOPIC (TOPIC_AUTHORIZATION_FAILED, the others OPERATION_NOT_ATTEMPTED)"},
	kmsg.AddOffsetsToTxn: {check: onTxnThenGroup(func(q kmsg.Request) string { return q.(*kmsg.AddOffsetsToTxnRequest).TransactionalID },
		func(q kmsg.Request) string { return q.(*kmsg.AddOffsetsToTxnRequest).Group }),
		deny: topLevel, doc: "WRITE on TRANSACTIONAL_ID (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), READ on GROUP (GROUP_AUTHORIZATION_FAILED)"},
	kmsg.EndTxn: {check: onTxnThenGroup(func(q kmsg.Request) string { return q.(*kmsg.EndTxnRequest).TransactionalID }, nil),
		deny: topLevel, doc: "WRITE on TRANSACTIONAL_ID (TRANSACTIONAL_ID_AUTHORIZATION_FAILED)"},
	kmsg.WriteTxnMarkers: {check: onCluster(opClusterAction), deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.WriteTxnMarkersRequest)
		resp := q.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
		for _, m := range q.Markers {
			rm := kmsg.NewWriteTxnMarkersResponseMarker()
			rm.ProducerID = m.ProducerID
			for _, t := range m.Topics {
				rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewWriteTxnMarkersResponseMarkerTopicPartition()
					rp.Partition, rp.ErrorCode = p, code
					rt.Partitions = append(rt.Partitions, rp)
				}
				rm.Topics = append(rm.Topics, rt)
			}
			resp.Markers = append(resp.Markers, rm)
		}
		return resp
	}, doc: "CLUSTER_ACTION on CLUSTER (CLUSTER_AUTHORIZATION_FAILED per partition)"},
	kmsg.TxnOffsetCommit: {check: onTxnThenGroup(func(q kmsg.Request) string { return q.(*kmsg.TxnOffsetCommitRequest).TransactionalID },
		func(q kmsg.Request) string { return q.(*kmsg.TxnOffsetCommitRequest).Group }),
		deny: func(req kmsg.Request, code int16) kmsg.Response {
			q := req.(*kmsg.TxnOffsetCommitRequest)
			resp := q.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
			for _, t := range q.Topics {
				rt := kmsg.NewTxnOffsetCommitResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
					rp.Partition, rp.ErrorCode = p.Partition, code
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp
		}, doc: "WRITE on TRANSACTIONAL_ID (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), READ on GROUP (GROUP_AUTHORIZATION_FAILED), READ on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition)"},
	kmsg.DescribeACLs: {check: onCluster(opDescribe), deny: func(req kmsg.Request, code int16) kmsg.Response {
		resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
		resp.ErrorCode, resp.ErrorMessage = code, kmsg.StringPtr(kerr.ErrorForCode(code).Error())
		return resp
	}, doc: "DESCRIBE on CLUSTER (CLUSTER_AUTHORIZATION_FAILED)"},
	kmsg.CreateACLs: {check: onCluster(opAlter), deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.CreateACLsRequest)
		resp := q.ResponseKind().(*kmsg.CreateACLsResponse)
		for range q.Creations {
			res := kmsg.NewCreateACLsResponseResult()
			res.ErrorCode, res.ErrorMessage = code, kmsg.StringPtr(kerr.ErrorForCode(code).Error())
			resp.Results = append(resp.Results, res)
		}
		return resp
	}, doc: "ALTER on CLUSTER (CLUSTER_AUTHORIZATION_FAILED per creation)"},
	kmsg.DeleteACLs: {check: onCluster(opAlter), deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.DeleteACLsRequest)
		resp := q.ResponseKind().(*kmsg.DeleteACLsResponse)
		for range q.Filters {
			res := kmsg.NewDeleteACLsResponseResult()
			res.ErrorCode, res.ErrorMessage = code, kmsg.StringPtr(kerr.ErrorForCode(code).Error())
			resp.Results = append(resp.Results, res)
		}
		return resp
	}, doc: "ALTER on CLUSTER (CLUSTER_AUTHORIZATION_FAILED per filter)"},
	kmsg.DescribeConfigs:         {doc: "DESCRIBE_CONFIGS on the TOPIC (TOPIC_AUTHORIZATION_FAILED) or, for brokers, on CLUSTER (CLUSTER_AUTHORIZATION_FAILED), per resource"},
	kmsg.AlterConfigs:            {doc: "ALTER_CONFIGS on the TOPIC (TOPIC_AUTHORIZATION_FAILED) or, for brokers, on CLUSTER (CLUSTER_AUTHORIZATION_FAILED), per resource"},
	kmsg.IncrementalAlterConfigs: {doc: "ALTER_CONFIGS on the TOPIC (TOPIC_AUTHORIZATION_FAILED) or, for brokers, on CLUSTER (CLUSTER_AUTHORIZATION_FAILED), per resource"},
	kmsg.DescribeLogDirs:         {check: onCluster(opDescribe), deny: topLevel, doc: "DESCRIBE on CLUSTER (no directories; CLUSTER_AUTHORIZATION_FAILED from v3)"},
	kmsg.SASLAuthenticate:        {doc: "none (authentication)"},
	kmsg.CreatePartitions:        {doc: "ALTER on each TOPIC (TOPIC_AUTHORIZATION_FAILED per topic)"},
	kmsg.DeleteGroups:            {doc: "DELETE on each GROUP (GROUP_AUTHORIZATION_FAILED per group)"},
	kmsg.OffsetDelete: {check: onGroup(opDelete, func(q kmsg.Request) string { return q.(*kmsg.OffsetDeleteRequest).Group }),
		deny: topLevel, doc: "DELETE on GROUP (GROUP_AUTHORIZATION_FAILED); READ on each TOPIC (TOPIC_AUTHORIZATION_FAILED per partition)"},
	kmsg.DescribeClientQuotas: {check: onCluster(opDescribeConfigs), deny: func(req kmsg.Request, code int16) kmsg.Response {
		resp := req.ResponseKind().(*kmsg.DescribeClientQuotasResponse)
		resp.ErrorCode, resp.ErrorMessage = code, kmsg.StringPtr(kerr.ErrorForCode(code).Error())
		return resp
	}, doc: "DESCRIBE_CONFIGS on CLUSTER (CLUSTER_AUTHORIZATION_FAILED)"},
	kmsg.AlterClientQuotas: {check: onCluster(opAlterConfigs), deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.AlterClientQuotasRequest)
		resp := q.ResponseKind().(*kmsg.AlterClientQuotasResponse)
		for _, e := range q.Entries {
			re := kmsg.NewAlterClientQuotasResponseEntry()
			re.ErrorCode, re.ErrorMessage = code, kmsg.StringPtr(kerr.ErrorForCode(code).Error())
			for _, c := range e.Entity {
				ec := kmsg.NewAlterClientQuotasResponseEntryEntity()
				ec.Type, ec.Name = c.Type, c.Name
				re.Entity = append(re.Entity, ec)
			}
			resp.Entries = append(resp.Entries, re)
		}
		return resp
	}, doc: "ALTER_CONFIGS on CLUSTER (CLUSTER_AUTHORIZATION_FAILED per entry)"},
	kmsg.DescribeUserSCRAMCredentials: {check: onCluster(opDescribe), deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.DescribeUserSCRAMCredentialsRequest)
		resp := q.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
		msg := kmsg.StringPtr(kerr.ErrorForCode(code).Error())
		resp.ErrorCode, resp.ErrorMessage = code, msg
		for _, u := range q.Users {
			res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
			res.User, res.ErrorCode, res.ErrorMessage = u.Name, code, msg
			resp.Results = append(resp.Results, res)
		}
		return resp
	}, doc: "DESCRIBE on CLUSTER (CLUSTER_AUTHORIZATION_FAILED)"},
	kmsg.AlterUserSCRAMCredentials: {check: onCluster(opAlter), deny: func(req kmsg.Request, code int16) kmsg.Response {
		q := req.(*kmsg.AlterUserSCRAMCredentialsRequest)
		resp := q.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
		msg := kmsg.StringPtr(kerr.ErrorForCode(code).Error())
		seen := map[string]bool{}
		add := func(user string) {
			if seen[user] {
				return
			}
			seen[user] = true
			res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
			res.User, res.ErrorCode, res.ErrorMessage = user, code, msg
			resp.Results = append(resp.Results, res)
		}
		for _, d := range q.Deletions {
			add(d.Name)
		}
		for _, u := range q.Upsertions {
			add(u.Name)
		}
		return resp
	}, doc: "ALTER on CLUSTER (CLUSTER_AUTHORIZATION_FAILED per user)"},
	kmsg.DescribeCluster:      {doc: "none; the cluster's authorized operations need DESCRIBE on CLUSTER (else 0)"},
	kmsg.DescribeProducers:    {doc: "READ on each TOPIC (TOPIC_AUTHORIZATION_FAILED)"},
	kmsg.DescribeTransactions: {doc: "DESCRIBE on each TRANSACTIONAL_ID (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); topics without DESCRIBE left out"},
	kmsg.ListTransactions:     {doc: "the transactional ids with DESCRIBE on TRANSACTIONAL_ID"},
}

// authorizeAPI makes the dispatcher's check of r (apiAuthzTable); false
// when r was refused and answered.
func (s *Server) authorizeAPI(r *request) bool {
	if s.authz == nil {
		return true
	}
	az, ok := apiAuthzTable[kmsg.Key(r.hdr.key)]
	if !ok || az.check == nil {
		return true
	}
	ke := az.check(r)
	if ke == nil {
		return true
	}
	if pr, ok := r.kreq.(*kmsg.ProduceRequest); ok && pr.Acks == 0 {
		r.fail(ke) // no response: close the connection, as for other acks=0 errors
		return false
	}
	resp := az.deny(r.kreq, ke.Code)
	r.reply(resp)
	return false
}

// produceTxnCheck: a produce with transactional batches needs WRITE on
// its transactional id (Kafka checks this first).
func produceTxnCheck(r *request) *kerr.Error {
	q := r.kreq.(*kmsg.ProduceRequest)
	if !hasTransactionalBatch(q) {
		return nil
	}
	if q.TransactionID == nil || !r.authorize(opWrite, resTxnID, *q.TransactionID) {
		return kerr.TransactionalIDAuthorizationFailed
	}
	return nil
}

func hasTransactionalBatch(q *kmsg.ProduceRequest) bool {
	for _, t := range q.Topics {
		for _, p := range t.Partitions {
			b := p.Records
			if len(b) >= record.HeaderSize && int16(binary.BigEndian.Uint16(b[record.OffAttributes:]))&record.AttrTransactional != 0 {
				return true
			}
		}
	}
	return false
}

func denyProduce(req kmsg.Request, code int16) kmsg.Response {
	q := req.(*kmsg.ProduceRequest)
	resp := q.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range q.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = -1, -1, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// initProducerIDCheck: Kafka's InitProducerId rule.
func initProducerIDCheck(r *request) *kerr.Error {
	q := r.kreq.(*kmsg.InitProducerIDRequest)
	if q.TransactionalID != nil {
		if !r.authorize(opWrite, resTxnID, *q.TransactionalID) {
			return kerr.TransactionalIDAuthorizationFailed
		}
		return nil
	}
	if r.authorizeLog(opIdempotentWrite, resCluster, acl.ClusterName, false) {
		return nil
	}
	if r.s.authz.a.AuthorizeByResourceType(r.aclRequest(), opWrite, resTopic) {
		return nil
	}
	r.auditDenied(opIdempotentWrite, resCluster, acl.ClusterName, "no IDEMPOTENT_WRITE on the cluster and no WRITE on any topic")
	return kerr.ClusterAuthorizationFailed
}

func denyInitProducerID(req kmsg.Request, code int16) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = code, -1, -1
	return resp
}
