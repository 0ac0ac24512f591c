package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/config"
)

// aclBroker is a broker with the ACL authorizer: a PLAINTEXT listener
// (User:ANONYMOUS) and a SASL_PLAINTEXT one with PLAIN users admin (a
// super user), alice and bob.
type aclBroker struct {
	*testBroker
	sasl string
}

func startACLBroker(t testing.TB, extra ...string) *aclBroker {
	t.Helper()
	jaas := `org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-pw" user_alice="alice-pw" user_bob="bob-pw";`
	props := append([]string{
		"listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
		"sasl.enabled.mechanisms=PLAIN",
		"listener.name.sasl_plaintext.plain.sasl.jaas.config=" + jaas,
		"authorizer.class.name=kafka.security.authorizer.AclAuthorizer",
		"super.users=User:admin",
	}, extra...)
	b := startBroker(t, props...)
	return &aclBroker{testBroker: b, sasl: b.s.ListenerAddrs()["SASL_PLAINTEXT"].String()}
}

// as is a client authenticated as user (PLAIN).
func (b *aclBroker) as(t testing.TB, user string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.sasl),
		kgo.SASL(plain.Auth{User: user, Pass: user + "-pw"}.AsMechanism()),
		kgo.RequestRetries(0), kgo.RetryTimeout(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// direct sends req to the broker itself (no coordinator or leader routing).
func direct(ctx context.Context, t testing.TB, cl *kgo.Client, nodeID int32, req kmsg.Request) kmsg.Response {
	t.Helper()
	if _, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl); err != nil {
		t.Fatalf("metadata: %v", err)
	}
	resp, err := cl.Broker(int(nodeID)).Request(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

// setACLs replaces every ACL with bs (through the super user).
func setACLs(ctx context.Context, t testing.TB, admin *kgo.Client, bs []acl.Binding) {
	t.Helper()
	del := kmsg.NewPtrDeleteACLsRequest()
	f := kmsg.NewDeleteACLsRequestFilter()
	f.ResourceType, f.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	del.Filters = append(del.Filters, f)
	dresp, err := del.RequestWith(ctx, admin)
	if err != nil || dresp.Results[0].ErrorCode != 0 {
		t.Fatalf("deleting ACLs: %v %+v", err, dresp)
	}
	if len(bs) == 0 {
		return
	}
	cr := kmsg.NewPtrCreateACLsRequest()
	for _, b := range bs {
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName, c.ResourcePatternType = b.Pattern.Type, b.Pattern.Name, b.Pattern.PatternType
		c.Principal, c.Host, c.Operation, c.PermissionType = b.Entry.Principal, b.Entry.Host, b.Entry.Operation, b.Entry.Permission
		cr.Creations = append(cr.Creations, c)
	}
	cresp, err := cr.RequestWith(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range cresp.Results {
		if r.ErrorCode != 0 {
			t.Fatalf("creating ACL %+v: %v", bs[i], kerr.ErrorForCode(r.ErrorCode))
		}
	}
}

// need is one ACL a request needs: an operation on a resource.
type need struct {
	typ  acl.ResourceType
	name string
	op   acl.Operation
}

func allowFor(principal string, n need, pt acl.PatternType) acl.Binding {
	name := n.name
	if pt == kmsg.ACLResourcePatternTypePrefixed && n.typ != kmsg.ACLResourceTypeCluster {
		name = "mx-"
	}
	return acl.Binding{Pattern: acl.Pattern{Type: n.typ, Name: name, PatternType: pt},
		Entry: acl.Entry{Principal: principal, Host: "*", Operation: n.op, Permission: kmsg.ACLPermissionTypeAllow}}
}

// authzCase is one API (or one check of it) in the matrix.
type authzCase struct {
	name  string
	needs need   // the ACL the scenario grants or denies
	base  []need // granted to alice in every scenario
	// req builds the request for a scenario (names may depend on it).
	req     func(scenario string) kmsg.Request
	code    func(kmsg.Response) int16
	allowed int16 // the code when authorized (notAuth: anything but denied)
	denied  int16
	// txn: the allowed outcome needs a transaction coordinator (checked
	// only when the broker serves EndTxn).
	txn bool
}

// notAuth: the allowed outcome is anything but the denial (it depends on
// state the matrix does not set up, e.g. a member id).
const notAuth int16 = -1000

// absent/present map listing results to codes.
const absent int16 = -1

// TestAuthorizationMatrix: every API kvlog serves, under each relevant ACL
// situation — no ACL, an ALLOW of the operation, a DENY of it beside an
// ALLOW ALL for everyone, a PREFIXED ALLOW, a super user — answers the
// error code Apache Kafka answers (KafkaApis with AclAuthorizer or
// StandardAuthorizer; docs/security.md lists the expectations). The
// allowed outcome is the API's normal answer for this single node.
func TestAuthorizationMatrix(t *testing.T) {
	b := startACLBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := b.as(t, "admin")
	node := b.s.cfg.NodeID
	adm := kadm.NewClient(admin)
	for _, topic := range []string{"mx-topic", "mx-del-allow", "mx-del-prefixed", "mx-del-super", "mx-del-none", "mx-del-deny"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	// A group with a committed offset (for ListGroups and OffsetFetch).
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.Generation = "mx-group", -1
	ct := kmsg.NewOffsetCommitRequestTopic()
	ct.Topic = "mx-topic"
	cp := kmsg.NewOffsetCommitRequestTopicPartition()
	cp.Offset = 0
	ct.Partitions = append(ct.Partitions, cp)
	commit.Topics = append(commit.Topics, ct)
	if resp := direct(ctx, t, admin, node, commit).(*kmsg.OffsetCommitResponse); resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("commit: %v", kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode))
	}

	// A transactional id the coordinator knows (DescribeTransactions,
	// ListTransactions).
	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.TransactionalID, ip.TransactionTimeoutMillis = kmsg.StringPtr("mx-txn"), 10000
	if resp := direct(ctx, t, admin, node, ip).(*kmsg.InitProducerIDResponse); resp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v", kerr.ErrorForCode(resp.ErrorCode))
	}

	topicN := func(op acl.Operation) need { return need{kmsg.ACLResourceTypeTopic, "mx-topic", op} }
	groupN := func(op acl.Operation) need { return need{kmsg.ACLResourceTypeGroup, "mx-group", op} }
	txnN := func(op acl.Operation) need { return need{kmsg.ACLResourceTypeTransactionalId, "mx-txn", op} }
	clusterN := func(op acl.Operation) need { return need{kmsg.ACLResourceTypeCluster, acl.ClusterName, op} }
	TAF, GAF, CAF, XAF := kerr.TopicAuthorizationFailed.Code, kerr.GroupAuthorizationFailed.Code, kerr.ClusterAuthorizationFailed.Code, kerr.TransactionalIDAuthorizationFailed.Code

	cases := []authzCase{
		{name: "Produce", needs: topicN(kmsg.ACLOperationWrite), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request { return produceReq(9, 1, "mx-topic", 0, testBatch(t, 1)) },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "Fetch", needs: topicN(kmsg.ACLOperationRead), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request { return fetchReq("mx-topic", -1) },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "Fetch (follower)", needs: clusterN(kmsg.ACLOperationClusterAction), allowed: notAuth, denied: TAF,
			req: func(string) kmsg.Request { return fetchReq("mx-topic", 7) },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "ListOffsets", needs: topicN(kmsg.ACLOperationDescribe), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrListOffsetsRequest()
				q.ReplicaID = -1
				rt := kmsg.NewListOffsetsRequestTopic()
				rt.Topic = "mx-topic"
				rp := kmsg.NewListOffsetsRequestTopicPartition()
				rp.Timestamp = -1
				rt.Partitions = append(rt.Partitions, rp)
				q.Topics = append(q.Topics, rt)
				return q
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "Metadata (named topic)", needs: topicN(kmsg.ACLOperationDescribe), allowed: 0, denied: TAF,
			req:  func(string) kmsg.Request { return metadataReq(false, "mx-topic") },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.MetadataResponse).Topics[0].ErrorCode }},
		{name: "Metadata (all topics, filtered)", needs: topicN(kmsg.ACLOperationDescribe), allowed: 0, denied: absent,
			req: func(string) kmsg.Request { return metadataReq(false) },
			code: func(r kmsg.Response) int16 {
				for _, mt := range r.(*kmsg.MetadataResponse).Topics {
					if *mt.Topic == "mx-topic" {
						return 0
					}
				}
				return absent
			}},
		{name: "Metadata (auto-creation needs CREATE)", needs: need{kmsg.ACLResourceTypeTopic, "mx-auto-", kmsg.ACLOperationCreate},
			base: []need{{kmsg.ACLResourceTypeTopic, "mx-auto-", kmsg.ACLOperationDescribe}}, allowed: 0, denied: TAF,
			req:  func(sc string) kmsg.Request { return metadataReq(true, "mx-auto-"+sc) },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.MetadataResponse).Topics[0].ErrorCode }},
		{name: "OffsetCommit (group)", needs: groupN(kmsg.ACLOperationRead), base: []need{topicN(kmsg.ACLOperationRead)}, allowed: 0, denied: GAF,
			req: func(string) kmsg.Request { return commit },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "OffsetCommit (topic)", needs: topicN(kmsg.ACLOperationRead), base: []need{groupN(kmsg.ACLOperationRead)}, allowed: 0, denied: TAF,
			req: func(string) kmsg.Request { return commit },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "OffsetFetch (group)", needs: groupN(kmsg.ACLOperationDescribe), base: []need{topicN(kmsg.ACLOperationDescribe)}, allowed: 0, denied: GAF,
			req:  func(string) kmsg.Request { return offsetFetchReq("mx-group", "mx-topic") },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.OffsetFetchResponse).ErrorCode }},
		{name: "OffsetFetch (topic)", needs: topicN(kmsg.ACLOperationDescribe), base: []need{groupN(kmsg.ACLOperationDescribe)}, allowed: 0, denied: TAF,
			req: func(string) kmsg.Request { return offsetFetchReq("mx-group", "mx-topic") },
			code: func(r kmsg.Response) int16 {
				resp := r.(*kmsg.OffsetFetchResponse)
				if len(resp.Topics) == 0 {
					return resp.ErrorCode
				}
				return resp.Topics[0].Partitions[0].ErrorCode
			}},
		{name: "FindCoordinator (group)", needs: groupN(kmsg.ACLOperationDescribe), allowed: 0, denied: GAF,
			req:  func(string) kmsg.Request { return findCoordReq(0, "mx-group") },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.FindCoordinatorResponse).Coordinators[0].ErrorCode }},
		{name: "FindCoordinator (transaction)", needs: txnN(kmsg.ACLOperationDescribe), allowed: notAuth, denied: XAF,
			req:  func(string) kmsg.Request { return findCoordReq(1, "mx-txn") },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.FindCoordinatorResponse).Coordinators[0].ErrorCode }},
		{name: "JoinGroup", needs: groupN(kmsg.ACLOperationRead), allowed: kerr.MemberIDRequired.Code, denied: GAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrJoinGroupRequest()
				q.Group, q.ProtocolType, q.SessionTimeoutMillis, q.RebalanceTimeoutMillis = "mx-group", "consumer", 10000, 10000
				p := kmsg.NewJoinGroupRequestProtocol()
				p.Name, p.Metadata = "range", []byte{0}
				q.Protocols = append(q.Protocols, p)
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.JoinGroupResponse).ErrorCode }},
		{name: "SyncGroup", needs: groupN(kmsg.ACLOperationRead), allowed: notAuth, denied: GAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrSyncGroupRequest()
				q.Group, q.MemberID, q.Generation = "mx-group", "nobody", 1
				q.ProtocolType, q.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.SyncGroupResponse).ErrorCode }},
		{name: "Heartbeat", needs: groupN(kmsg.ACLOperationRead), allowed: notAuth, denied: GAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrHeartbeatRequest()
				q.Group, q.MemberID, q.Generation = "mx-group", "nobody", 1
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.HeartbeatResponse).ErrorCode }},
		{name: "LeaveGroup", needs: groupN(kmsg.ACLOperationRead), allowed: notAuth, denied: GAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrLeaveGroupRequest()
				q.Group = "mx-group"
				m := kmsg.NewLeaveGroupRequestMember()
				m.MemberID = "nobody"
				q.Members = append(q.Members, m)
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.LeaveGroupResponse).ErrorCode }},
		{name: "DescribeGroups", needs: groupN(kmsg.ACLOperationDescribe), allowed: 0, denied: GAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDescribeGroupsRequest()
				q.Groups = []string{"mx-group"}
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DescribeGroupsResponse).Groups[0].ErrorCode }},
		{name: "ListGroups (filtered)", needs: groupN(kmsg.ACLOperationDescribe), allowed: 0, denied: absent,
			req: func(string) kmsg.Request { return kmsg.NewPtrListGroupsRequest() },
			code: func(r kmsg.Response) int16 {
				for _, g := range r.(*kmsg.ListGroupsResponse).Groups {
					if g.Group == "mx-group" {
						return 0
					}
				}
				return absent
			}},
		{name: "ListGroups (DESCRIBE on the cluster)", needs: clusterN(kmsg.ACLOperationDescribe), allowed: 0, denied: absent,
			req: func(string) kmsg.Request { return kmsg.NewPtrListGroupsRequest() },
			code: func(r kmsg.Response) int16 {
				for _, g := range r.(*kmsg.ListGroupsResponse).Groups {
					if g.Group == "mx-group" {
						return 0
					}
				}
				return absent
			}},
		{name: "CreateTopics (CREATE on the topic)", needs: need{kmsg.ACLResourceTypeTopic, "mx-new", kmsg.ACLOperationCreate}, allowed: 0, denied: TAF,
			req:  func(string) kmsg.Request { return createTopicsReq("mx-new") },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode }},
		{name: "CreateTopics (CREATE on the cluster)", needs: clusterN(kmsg.ACLOperationCreate), allowed: 0, denied: TAF,
			req:  func(string) kmsg.Request { return createTopicsReq("mx-new") },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode }},
		{name: "DeleteTopics", needs: need{kmsg.ACLResourceTypeTopic, "mx-del-", kmsg.ACLOperationDelete}, allowed: 0, denied: TAF,
			req: func(sc string) kmsg.Request {
				q := kmsg.NewPtrDeleteTopicsRequest()
				dt := kmsg.NewDeleteTopicsRequestTopic()
				dt.Topic = kmsg.StringPtr("mx-del-" + sc)
				q.Topics = append(q.Topics, dt)
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DeleteTopicsResponse).Topics[0].ErrorCode }},
		{name: "DeleteRecords", needs: topicN(kmsg.ACLOperationDelete), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDeleteRecordsRequest()
				rt := kmsg.NewDeleteRecordsRequestTopic()
				rt.Topic = "mx-topic"
				rp := kmsg.NewDeleteRecordsRequestTopicPartition()
				rp.Offset = 0
				rt.Partitions = append(rt.Partitions, rp)
				q.Topics = append(q.Topics, rt)
				return q
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "InitProducerId (idempotent)", needs: clusterN(kmsg.ACLOperationIdempotentWrite), allowed: 0, denied: CAF,
			req:  func(string) kmsg.Request { return kmsg.NewPtrInitProducerIDRequest() },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.InitProducerIDResponse).ErrorCode }},
		{name: "InitProducerId (idempotent, WRITE on a topic)", needs: topicN(kmsg.ACLOperationWrite), allowed: 0, denied: CAF,
			req:  func(string) kmsg.Request { return kmsg.NewPtrInitProducerIDRequest() },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.InitProducerIDResponse).ErrorCode }},
		{name: "InitProducerId (transactional)", needs: txnN(kmsg.ACLOperationWrite), allowed: notAuth, denied: XAF, txn: true,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrInitProducerIDRequest()
				q.TransactionalID, q.TransactionTimeoutMillis = kmsg.StringPtr("mx-txn"), 10000
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.InitProducerIDResponse).ErrorCode }},
		{name: "AddPartitionsToTxn (transactional id)", needs: txnN(kmsg.ACLOperationWrite), base: []need{topicN(kmsg.ACLOperationWrite)}, allowed: notAuth, denied: XAF,
			req: func(string) kmsg.Request { return addPartitionsReq() },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.AddPartitionsToTxnResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "AddPartitionsToTxn (topic)", needs: topicN(kmsg.ACLOperationWrite), base: []need{txnN(kmsg.ACLOperationWrite)}, allowed: notAuth, denied: TAF,
			req: func(string) kmsg.Request { return addPartitionsReq() },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.AddPartitionsToTxnResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "AddOffsetsToTxn (transactional id)", needs: txnN(kmsg.ACLOperationWrite), base: []need{groupN(kmsg.ACLOperationRead)}, allowed: notAuth, denied: XAF,
			req:  func(string) kmsg.Request { return addOffsetsReq() },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.AddOffsetsToTxnResponse).ErrorCode }},
		{name: "AddOffsetsToTxn (group)", needs: groupN(kmsg.ACLOperationRead), base: []need{txnN(kmsg.ACLOperationWrite)}, allowed: notAuth, denied: GAF,
			req:  func(string) kmsg.Request { return addOffsetsReq() },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.AddOffsetsToTxnResponse).ErrorCode }},
		{name: "EndTxn", needs: txnN(kmsg.ACLOperationWrite), allowed: notAuth, denied: XAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrEndTxnRequest()
				q.TransactionalID, q.ProducerID, q.ProducerEpoch = "mx-txn", 1<<40, 0
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.EndTxnResponse).ErrorCode }},
		{name: "TxnOffsetCommit (transactional id)", needs: txnN(kmsg.ACLOperationWrite), base: []need{groupN(kmsg.ACLOperationRead), topicN(kmsg.ACLOperationRead)}, allowed: notAuth, denied: XAF,
			req: func(string) kmsg.Request { return txnOffsetCommitReq() },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "TxnOffsetCommit (group)", needs: groupN(kmsg.ACLOperationRead), base: []need{txnN(kmsg.ACLOperationWrite), topicN(kmsg.ACLOperationRead)}, allowed: notAuth, denied: GAF,
			req: func(string) kmsg.Request { return txnOffsetCommitReq() },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "TxnOffsetCommit (topic)", needs: topicN(kmsg.ACLOperationRead), base: []need{txnN(kmsg.ACLOperationWrite), groupN(kmsg.ACLOperationRead)}, allowed: notAuth, denied: TAF,
			req: func(string) kmsg.Request { return txnOffsetCommitReq() },
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.TxnOffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "WriteTxnMarkers", needs: clusterN(kmsg.ACLOperationClusterAction), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrWriteTxnMarkersRequest()
				m := kmsg.NewWriteTxnMarkersRequestMarker()
				m.ProducerID, m.ProducerEpoch, m.Committed = 1<<40, 0, false
				mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
				mt.Topic, mt.Partitions = "mx-topic", []int32{0}
				m.Topics = append(m.Topics, mt)
				q.Markers = append(q.Markers, m)
				return q
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.WriteTxnMarkersResponse).Markers[0].Topics[0].Partitions[0].ErrorCode
			}},
		{name: "DescribeTransactions", needs: txnN(kmsg.ACLOperationDescribe), allowed: 0, denied: XAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDescribeTransactionsRequest()
				q.TransactionalIDs = []string{"mx-txn"}
				return q
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.DescribeTransactionsResponse).TransactionStates[0].ErrorCode
			}},
		{name: "ListTransactions (filtered)", needs: txnN(kmsg.ACLOperationDescribe), allowed: 0, denied: absent,
			req: func(string) kmsg.Request { return kmsg.NewPtrListTransactionsRequest() },
			code: func(r kmsg.Response) int16 {
				for _, ts := range r.(*kmsg.ListTransactionsResponse).TransactionStates {
					if ts.TransactionalID == "mx-txn" {
						return 0
					}
				}
				return absent
			}},
		{name: "DescribeProducers", needs: topicN(kmsg.ACLOperationRead), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDescribeProducersRequest()
				rt := kmsg.NewDescribeProducersRequestTopic()
				rt.Topic, rt.Partitions = "mx-topic", []int32{0}
				q.Topics = append(q.Topics, rt)
				return q
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.DescribeProducersResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "OffsetForLeaderEpoch", needs: topicN(kmsg.ACLOperationDescribe), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrOffsetForLeaderEpochRequest()
				q.ReplicaID = -1
				rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
				rt.Topic = "mx-topic"
				rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
				rp.CurrentLeaderEpoch, rp.LeaderEpoch = -1, 0
				rt.Partitions = append(rt.Partitions, rp)
				q.Topics = append(q.Topics, rt)
				return q
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0].ErrorCode
			}},
		{name: "DescribeConfigs (topic)", needs: topicN(kmsg.ACLOperationDescribeConfigs), allowed: 0, denied: TAF,
			req:  func(string) kmsg.Request { return describeConfigsReq(kmsg.ConfigResourceTypeTopic, "mx-topic") },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DescribeConfigsResponse).Resources[0].ErrorCode }},
		{name: "DescribeConfigs (broker)", needs: clusterN(kmsg.ACLOperationDescribeConfigs), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				return describeConfigsReq(kmsg.ConfigResourceTypeBroker, fmt.Sprint(node))
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DescribeConfigsResponse).Resources[0].ErrorCode }},
		{name: "AlterConfigs (topic)", needs: topicN(kmsg.ACLOperationAlterConfigs), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request {
				return alterConfigsReq(kmsg.ConfigResourceTypeTopic, "mx-topic", "retention.ms")
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.AlterConfigsResponse).Resources[0].ErrorCode }},
		{name: "AlterConfigs (broker)", needs: clusterN(kmsg.ACLOperationAlterConfigs), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				return alterConfigsReq(kmsg.ConfigResourceTypeBroker, "", "log.retention.ms")
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.AlterConfigsResponse).Resources[0].ErrorCode }},
		{name: "IncrementalAlterConfigs (topic)", needs: topicN(kmsg.ACLOperationAlterConfigs), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request {
				return incAlterConfigsReq(kmsg.ConfigResourceTypeTopic, "mx-topic", "retention.ms")
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.IncrementalAlterConfigsResponse).Resources[0].ErrorCode
			}},
		{name: "IncrementalAlterConfigs (broker)", needs: clusterN(kmsg.ACLOperationAlterConfigs), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				return incAlterConfigsReq(kmsg.ConfigResourceTypeBroker, "", "log.retention.ms")
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.IncrementalAlterConfigsResponse).Resources[0].ErrorCode
			}},
		{name: "DescribeLogDirs", needs: clusterN(kmsg.ACLOperationDescribe), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDescribeLogDirsRequest()
				q.Version = 4
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DescribeLogDirsResponse).ErrorCode }},
		{name: "CreatePartitions", needs: topicN(kmsg.ACLOperationAlter), allowed: 0, denied: TAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrCreatePartitionsRequest()
				q.ValidateOnly = true
				rt := kmsg.NewCreatePartitionsRequestTopic()
				rt.Topic, rt.Count = "mx-topic", 2
				q.Topics = append(q.Topics, rt)
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.CreatePartitionsResponse).Topics[0].ErrorCode }},
		{name: "DeleteGroups", needs: need{kmsg.ACLResourceTypeGroup, "mx-gone", kmsg.ACLOperationDelete}, allowed: notAuth, denied: GAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDeleteGroupsRequest()
				q.Groups = []string{"mx-gone"}
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DeleteGroupsResponse).Groups[0].ErrorCode }},
		{name: "OffsetDelete (group)", needs: need{kmsg.ACLResourceTypeGroup, "mx-gone", kmsg.ACLOperationDelete}, allowed: notAuth, denied: GAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrOffsetDeleteRequest()
				q.Group = "mx-gone"
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.OffsetDeleteResponse).ErrorCode }},
		{name: "DescribeUserScramCredentials", needs: clusterN(kmsg.ACLOperationDescribe), allowed: 0, denied: CAF,
			req:  func(string) kmsg.Request { return kmsg.NewPtrDescribeUserSCRAMCredentialsRequest() },
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DescribeUserSCRAMCredentialsResponse).ErrorCode }},
		{name: "AlterUserScramCredentials", needs: clusterN(kmsg.ACLOperationAlter), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
				u := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
				u.Name, u.Mechanism, u.Iterations = "mx-user", 2, 4096
				u.Salt, u.SaltedPassword = []byte("salt"), make([]byte, 64)
				q.Upsertions = append(q.Upsertions, u)
				return q
			},
			code: func(r kmsg.Response) int16 {
				return r.(*kmsg.AlterUserSCRAMCredentialsResponse).Results[0].ErrorCode
			}},
		{name: "DescribeCluster (authorized operations)", needs: clusterN(kmsg.ACLOperationDescribe), allowed: 0, denied: absent,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDescribeClusterRequest()
				q.IncludeClusterAuthorizedOperations = true
				return q
			},
			code: func(r kmsg.Response) int16 {
				if r.(*kmsg.DescribeClusterResponse).ClusterAuthorizedOperations&(1<<uint(kmsg.ACLOperationDescribe)) != 0 {
					return 0
				}
				return absent
			}},
		{name: "DescribeAcls", needs: clusterN(kmsg.ACLOperationDescribe), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDescribeACLsRequest()
				q.ResourceType, q.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
				q.Operation, q.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DescribeACLsResponse).ErrorCode }},
		{name: "CreateAcls", needs: clusterN(kmsg.ACLOperationAlter), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrCreateACLsRequest()
				c := kmsg.NewCreateACLsRequestCreation()
				c.ResourceType, c.ResourceName, c.ResourcePatternType = kmsg.ACLResourceTypeTopic, "mx-harmless", kmsg.ACLResourcePatternTypeLiteral
				c.Principal, c.Host, c.Operation, c.PermissionType = "User:nobody", "*", kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow
				q.Creations = append(q.Creations, c)
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.CreateACLsResponse).Results[0].ErrorCode }},
		{name: "DeleteAcls", needs: clusterN(kmsg.ACLOperationAlter), allowed: 0, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrDeleteACLsRequest()
				f := kmsg.NewDeleteACLsRequestFilter()
				f.ResourceType, f.ResourceName, f.ResourcePatternType = kmsg.ACLResourceTypeTopic, kmsg.StringPtr("mx-harmless"), kmsg.ACLResourcePatternTypeLiteral
				f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
				q.Filters = append(q.Filters, f)
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.DeleteACLsResponse).Results[0].ErrorCode }},
		{name: "LeaderAndIsr", needs: clusterN(kmsg.ACLOperationClusterAction), allowed: kerr.InvalidRequest.Code, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrLeaderAndISRRequest()
				q.Version, q.ControllerID, q.BrokerEpoch = 4, 0, 1
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.LeaderAndISRResponse).ErrorCode }},
		{name: "StopReplica", needs: clusterN(kmsg.ACLOperationClusterAction), allowed: kerr.InvalidRequest.Code, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrStopReplicaRequest()
				q.Version, q.BrokerEpoch = 3, 1
				st := kmsg.NewStopReplicaRequestTopic()
				st.Topic = "mx-topic"
				ps := kmsg.NewStopReplicaRequestTopicPartitionState()
				ps.Delete = true
				st.PartitionStates = append(st.PartitionStates, ps)
				q.Topics = append(q.Topics, st)
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.StopReplicaResponse).ErrorCode }},
		{name: "UpdateMetadata", needs: clusterN(kmsg.ACLOperationClusterAction), allowed: kerr.InvalidRequest.Code, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrUpdateMetadataRequest()
				q.Version, q.BrokerEpoch = 6, 1
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.UpdateMetadataResponse).ErrorCode }},
		{name: "ControlledShutdown", needs: clusterN(kmsg.ACLOperationClusterAction), allowed: kerr.NotController.Code, denied: CAF,
			req: func(string) kmsg.Request {
				q := kmsg.NewPtrControlledShutdownRequest()
				q.Version, q.BrokerID, q.BrokerEpoch = 3, 0, 1
				return q
			},
			code: func(r kmsg.Response) int16 { return r.(*kmsg.ControlledShutdownResponse).ErrorCode }},
	}
	cases = append(cases, quotaAuthzCases(CAF)...)

	alice := "User:alice"
	lit, pre := kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed
	type scenario struct {
		name  string
		user  string
		acls  func(n need) []acl.Binding
		allow bool
	}
	scenarios := []scenario{
		{"none", "alice", func(need) []acl.Binding { return nil }, false},
		{"allow", "alice", func(n need) []acl.Binding { return []acl.Binding{allowFor(alice, n, lit)} }, true},
		{"deny", "alice", func(n need) []acl.Binding {
			everyone := allowFor(acl.WildcardPrincipal, n, lit)
			everyone.Entry.Operation = kmsg.ACLOperationAll
			d := allowFor(alice, n, lit)
			d.Entry.Permission = kmsg.ACLPermissionTypeDeny
			return []acl.Binding{everyone, d}
		}, false},
		{"prefixed", "alice", func(n need) []acl.Binding { return []acl.Binding{allowFor(alice, n, pre)} }, true},
		{"super", "admin", func(need) []acl.Binding { return nil }, true},
	}
	clients := map[string]*kgo.Client{"alice": b.as(t, "alice"), "admin": admin}
	// Ordered scenario by scenario, so the ACLs are set once per case.
	for _, c := range cases {
		for _, sc := range scenarios {
			n := c.needs
			if strings.HasSuffix(n.name, "-") { // per-scenario resources
				n.name += sc.name
			}
			var bs []acl.Binding
			for _, bn := range c.base {
				if strings.HasSuffix(bn.name, "-") {
					bn.name += sc.name
				}
				bs = append(bs, allowFor(alice, bn, lit))
			}
			bs = append(bs, sc.acls(n)...)
			setACLs(ctx, t, admin, bs)
			resp := direct(ctx, t, clients[sc.user], node, c.req(sc.name))
			got := c.code(resp)
			if sc.allow && c.txn && handlers[kmsg.EndTxn.Int16()] == nil {
				continue // no transaction coordinator to answer
			}
			switch {
			case !sc.allow && got != c.denied:
				t.Errorf("%s, %s: %v, want %v", c.name, sc.name, codeName(got), codeName(c.denied))
			case sc.allow && c.allowed == notAuth && got == c.denied:
				t.Errorf("%s, %s: %v, want anything but that", c.name, sc.name, codeName(got))
			case sc.allow && c.allowed != notAuth && got != c.allowed:
				t.Errorf("%s, %s: %v, want %v", c.name, sc.name, codeName(got), codeName(c.allowed))
			}
		}
	}
	internalUndeletable(ctx, t, admin, node)
}

// internalUndeletable: even a super user cannot delete an internal topic
// (INVALID_TOPIC_EXCEPTION, as Kafka's ZooKeeper mode).
func internalUndeletable(ctx context.Context, t *testing.T, admin *kgo.Client, node int32) {
	q := kmsg.NewPtrDeleteTopicsRequest()
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.Topic = kmsg.StringPtr("__consumer_offsets")
	q.Topics = append(q.Topics, dt)
	if got := direct(ctx, t, admin, node, q).(*kmsg.DeleteTopicsResponse).Topics[0].ErrorCode; got != kerr.InvalidTopicException.Code {
		t.Errorf("super user deleting __consumer_offsets: %v, want INVALID_TOPIC_EXCEPTION", codeName(got))
	}
}

func codeName(c int16) string {
	switch c {
	case absent:
		return "absent"
	case 0:
		return "NONE"
	}
	if e := kerr.ErrorForCode(c); e != nil {
		return e.Error()
	}
	return fmt.Sprint(c)
}

func fetchReq(topic string, replica int32) *kmsg.FetchRequest {
	q := kmsg.NewPtrFetchRequest()
	q.Version, q.ReplicaID, q.MaxBytes, q.MinBytes, q.MaxWaitMillis = 11, replica, 1<<20, 0, 0
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	q.Topics = append(q.Topics, rt)
	return q
}

func metadataReq(autoCreate bool, topics ...string) *kmsg.MetadataRequest {
	q := kmsg.NewPtrMetadataRequest()
	q.Version, q.AllowAutoTopicCreation = 9, autoCreate
	for _, t := range topics {
		mt := kmsg.NewMetadataRequestTopic()
		mt.Topic = kmsg.StringPtr(t)
		q.Topics = append(q.Topics, mt)
	}
	return q
}

func offsetFetchReq(group, topic string) *kmsg.OffsetFetchRequest {
	q := kmsg.NewPtrOffsetFetchRequest()
	q.Version, q.Group = 7, group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{0}
	q.Topics = append(q.Topics, rt)
	return q
}

func findCoordReq(typ int8, key string) *kmsg.FindCoordinatorRequest {
	q := kmsg.NewPtrFindCoordinatorRequest()
	q.Version, q.CoordinatorType, q.CoordinatorKeys = 4, typ, []string{key}
	return q
}

func createTopicsReq(name string) *kmsg.CreateTopicsRequest {
	q := kmsg.NewPtrCreateTopicsRequest()
	q.ValidateOnly = true
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 1, 1
	q.Topics = append(q.Topics, rt)
	return q
}

func describeConfigsReq(typ kmsg.ConfigResourceType, name string) *kmsg.DescribeConfigsRequest {
	q := kmsg.NewPtrDescribeConfigsRequest()
	r := kmsg.NewDescribeConfigsRequestResource()
	r.ResourceType, r.ResourceName = typ, name
	q.Resources = append(q.Resources, r)
	return q
}

func alterConfigsReq(typ kmsg.ConfigResourceType, name, key string) *kmsg.AlterConfigsRequest {
	q := kmsg.NewPtrAlterConfigsRequest()
	q.ValidateOnly = true
	r := kmsg.NewAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = typ, name
	c := kmsg.NewAlterConfigsRequestResourceConfig()
	c.Name, c.Value = key, kmsg.StringPtr("3600000")
	r.Configs = append(r.Configs, c)
	q.Resources = append(q.Resources, r)
	return q
}

func incAlterConfigsReq(typ kmsg.ConfigResourceType, name, key string) *kmsg.IncrementalAlterConfigsRequest {
	q := kmsg.NewPtrIncrementalAlterConfigsRequest()
	q.ValidateOnly = true
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = typ, name
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = key, kmsg.StringPtr("3600000")
	r.Configs = append(r.Configs, c)
	q.Resources = append(q.Resources, r)
	return q
}

// TestAPIAuthzCoverage: every API key the broker serves declares its
// authorization in apiAuthzTable, so a new API cannot skip it.
func TestAPIAuthzCoverage(t *testing.T) {
	for k := range handlers {
		az, ok := apiAuthzTable[kmsg.Key(k)]
		if !ok || az.doc == "" {
			t.Errorf("API %s (key %d) has no entry in apiAuthzTable", apiName(k), k)
		}
		if (az.check == nil) != (az.deny == nil) {
			t.Errorf("API %s: check and deny go together", apiName(k))
		}
	}
}

// TestAclAPIs: CreateAcls validates as Kafka (INVALID_REQUEST for a
// DELEGATION_TOKEN resource, a cluster name other than kafka-cluster, a
// bad principal), DescribeAcls filters (MATCH included) and groups by
// pattern, DeleteAcls reports what each filter matched; the ACLs survive a
// restart (local store); without an authorizer the three APIs answer
// SECURITY_DISABLED.
func TestAclAPIs(t *testing.T) {
	b := startACLBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := b.as(t, "admin")
	mk := func(rt kmsg.ACLResourceType, name string, pt kmsg.ACLResourcePatternType, principal string, op kmsg.ACLOperation) kmsg.CreateACLsRequestCreation {
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName, c.ResourcePatternType = rt, name, pt
		c.Principal, c.Host, c.Operation, c.PermissionType = principal, "*", op, kmsg.ACLPermissionTypeAllow
		return c
	}
	cr := kmsg.NewPtrCreateACLsRequest()
	cr.Creations = []kmsg.CreateACLsRequestCreation{
		mk(kmsg.ACLResourceTypeTopic, "orders", kmsg.ACLResourcePatternTypeLiteral, "User:alice", kmsg.ACLOperationRead),
		mk(kmsg.ACLResourceTypeTopic, "ord", kmsg.ACLResourcePatternTypePrefixed, "User:bob", kmsg.ACLOperationWrite),
		mk(kmsg.ACLResourceTypeTopic, "*", kmsg.ACLResourcePatternTypeLiteral, "User:*", kmsg.ACLOperationDescribe),
		mk(kmsg.ACLResourceTypeGroup, "g", kmsg.ACLResourcePatternTypeLiteral, "User:alice", kmsg.ACLOperationRead),
		mk(kmsg.ACLResourceTypeDelegationToken, "tok", kmsg.ACLResourcePatternTypeLiteral, "User:alice", kmsg.ACLOperationDescribe),
		mk(kmsg.ACLResourceTypeCluster, "other", kmsg.ACLResourcePatternTypeLiteral, "User:alice", kmsg.ACLOperationAlter),
		mk(kmsg.ACLResourceTypeTopic, "t", kmsg.ACLResourcePatternTypeLiteral, "alice", kmsg.ACLOperationRead),
		mk(kmsg.ACLResourceTypeTopic, "orders", kmsg.ACLResourcePatternTypeLiteral, "User:alice", kmsg.ACLOperationRead), // again
	}
	cresp, err := cr.RequestWith(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	want := []int16{0, 0, 0, 0, kerr.InvalidRequest.Code, kerr.InvalidRequest.Code, kerr.InvalidRequest.Code, 0}
	for i, r := range cresp.Results {
		if r.ErrorCode != want[i] {
			t.Errorf("creation %d: %v, want %v", i, codeName(r.ErrorCode), codeName(want[i]))
		}
	}
	describe := func(cl *kgo.Client, rt kmsg.ACLResourceType, name *string, pt kmsg.ACLResourcePatternType) *kmsg.DescribeACLsResponse {
		q := kmsg.NewPtrDescribeACLsRequest()
		q.ResourceType, q.ResourceName, q.ResourcePatternType = rt, name, pt
		q.Operation, q.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
		resp, err := q.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	count := func(resp *kmsg.DescribeACLsResponse) int {
		n := 0
		for _, r := range resp.Resources {
			n += len(r.ACLs)
		}
		return n
	}
	if n := count(describe(admin, kmsg.ACLResourceTypeAny, nil, kmsg.ACLResourcePatternTypeAny)); n != 4 {
		t.Errorf("all ACLs: %d, want 4 (the repeated one once)", n)
	}
	if n := count(describe(admin, kmsg.ACLResourceTypeTopic, kmsg.StringPtr("orders"), kmsg.ACLResourcePatternTypeMatch)); n != 3 {
		t.Errorf("ACLs matching topic orders: %d, want 3", n)
	}
	// Restart: the local store kept them.
	b.stop(t)
	b2 := &aclBroker{testBroker: startBrokerIn(t, b.dir, "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
		"sasl.enabled.mechanisms=PLAIN",
		`listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-pw";`,
		"authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users=User:admin")}
	b2.sasl = b2.s.ListenerAddrs()["SASL_PLAINTEXT"].String()
	admin = b2.as(t, "admin")
	if n := count(describe(admin, kmsg.ACLResourceTypeAny, nil, kmsg.ACLResourcePatternTypeAny)); n != 4 {
		t.Errorf("after a restart: %d ACLs, want 4", n)
	}
	del := kmsg.NewPtrDeleteACLsRequest()
	f := kmsg.NewDeleteACLsRequestFilter()
	f.ResourceType, f.ResourcePatternType = kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypeAny
	f.Principal = kmsg.StringPtr("User:alice")
	f.Operation, f.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	del.Filters = append(del.Filters, f)
	dresp, err := del.RequestWith(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if r := dresp.Results[0]; r.ErrorCode != 0 || len(r.MatchingACLs) != 1 || r.MatchingACLs[0].ResourceName != "orders" {
		t.Errorf("delete: %+v", r)
	}
	if n := count(describe(admin, kmsg.ACLResourceTypeAny, nil, kmsg.ACLResourcePatternTypeAny)); n != 3 {
		t.Errorf("after the deletion: %d ACLs, want 3", n)
	}

	plain := startBroker(t)
	cl := plain.client(t)
	if resp := describe(cl, kmsg.ACLResourceTypeAny, nil, kmsg.ACLResourcePatternTypeAny); resp.ErrorCode != kerr.SecurityDisabled.Code {
		t.Errorf("without an authorizer: %v, want SECURITY_DISABLED", codeName(resp.ErrorCode))
	}
}

// TestAnonymousOnPlaintext: a PLAINTEXT connection is User:ANONYMOUS, which
// ACLs name like any principal; with allow.everyone.if.no.acl.found a
// resource without ACLs is open, one with ACLs is not.
func TestAnonymousOnPlaintext(t *testing.T) {
	b := startACLBroker(t, "allow.everyone.if.no.acl.found=true")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := b.as(t, "admin")
	adm := kadm.NewClient(admin)
	for _, topic := range []string{"open", "closed"} {
		if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	setACLs(ctx, t, admin, []acl.Binding{{Pattern: acl.Pattern{Type: kmsg.ACLResourceTypeTopic, Name: "closed", PatternType: kmsg.ACLResourcePatternTypeLiteral},
		Entry: acl.Entry{Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationAll, Permission: kmsg.ACLPermissionTypeAllow}}})
	anon := b.client(t, kgo.RequestRetries(0))
	resp := direct(ctx, t, anon, b.s.cfg.NodeID, metadataReq(false, "open", "closed")).(*kmsg.MetadataResponse)
	got := map[string]int16{}
	for _, mt := range resp.Topics {
		got[*mt.Topic] = mt.ErrorCode
	}
	if got["open"] != 0 || got["closed"] != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("ANONYMOUS: %v", got)
	}
	setACLs(ctx, t, admin, []acl.Binding{{Pattern: acl.Pattern{Type: kmsg.ACLResourceTypeTopic, Name: "closed", PatternType: kmsg.ACLResourcePatternTypeLiteral},
		Entry: acl.Entry{Principal: "User:ANONYMOUS", Host: "127.0.0.1", Operation: kmsg.ACLOperationDescribe, Permission: kmsg.ACLPermissionTypeAllow}}})
	resp = direct(ctx, t, anon, b.s.cfg.NodeID, metadataReq(false, "closed")).(*kmsg.MetadataResponse)
	if resp.Topics[0].ErrorCode != 0 {
		t.Errorf("ANONYMOUS from 127.0.0.1 with DESCRIBE: %v", codeName(resp.Topics[0].ErrorCode))
	}
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAuditLog: a denied request, an ACL creation and deletion, a SCRAM
// credential change and a client quota change each write an audit line
// naming the principal.
func TestAuditLog(t *testing.T) {
	var logs lockedBuffer
	jaas := `org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-pw" user_alice="alice-pw";`
	props := "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0\nlog.dirs=" + t.TempDir() +
		"\nlog.cleaner.dedupe.buffer.size=4194304\nsasl.enabled.mechanisms=PLAIN\nlistener.name.sasl_plaintext.plain.sasl.jaas.config=" + jaas +
		"\nauthorizer.class.name=kafka.security.authorizer.AclAuthorizer\nsuper.users=User:admin\n"
	pp, err := config.ParseProperties(strings.NewReader(props))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	cfg, err := config.Parse(pp, logger)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := &aclBroker{testBroker: &testBroker{s: s, addr: s.ListenerAddrs()["PLAINTEXT"].String()}, sasl: s.ListenerAddrs()["SASL_PLAINTEXT"].String()}
	t.Cleanup(func() { b.stop(t) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, alice := b.as(t, "admin"), b.as(t, "alice")
	direct(ctx, t, alice, s.cfg.NodeID, metadataReq(false, "secret-topic"))
	setACLs(ctx, t, admin, []acl.Binding{{Pattern: acl.Pattern{Type: kmsg.ACLResourceTypeTopic, Name: "t", PatternType: kmsg.ACLResourcePatternTypeLiteral},
		Entry: acl.Entry{Principal: "User:alice", Host: "*", Operation: kmsg.ACLOperationRead, Permission: kmsg.ACLPermissionTypeAllow}}})
	setACLs(ctx, t, admin, nil)
	if _, err := kadm.NewClient(admin).AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "pw"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := alterQuotaReq(false, "user", kmsg.StringPtr("carol"), "producer_byte_rate", 1024, false).RequestWith(ctx, admin); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{
		`msg="authorization denied" component=audit principal=User:alice`,
		`operation=Describe resource=Topic:LITERAL:secret-topic api=Metadata`,
		`msg="ACL created" component=audit principal=User:admin`,
		`msg="ACL deleted" component=audit principal=User:admin`,
		`msg="SCRAM credentials altered" component=audit principal=User:admin`,
		`msg="client quotas altered" component=audit principal=User:admin`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no audit line with %s", want)
		}
	}
}

func addPartitionsReq() kmsg.Request {
	q := kmsg.NewPtrAddPartitionsToTxnRequest()
	q.TransactionalID, q.ProducerID, q.ProducerEpoch = "mx-txn", 1<<40, 0
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = "mx-topic", []int32{0}
	q.Topics = append(q.Topics, rt)
	return q
}

func addOffsetsReq() kmsg.Request {
	q := kmsg.NewPtrAddOffsetsToTxnRequest()
	q.TransactionalID, q.ProducerID, q.ProducerEpoch, q.Group = "mx-txn", 1<<40, 0, "mx-group"
	return q
}

func txnOffsetCommitReq() kmsg.Request {
	q := kmsg.NewPtrTxnOffsetCommitRequest()
	q.TransactionalID, q.Group, q.ProducerID, q.ProducerEpoch, q.Generation = "mx-txn", "mx-group", 1<<40, 0, -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = "mx-topic"
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Offset, rp.LeaderEpoch = 0, -1
	rt.Partitions = append(rt.Partitions, rp)
	q.Topics = append(q.Topics, rt)
	return q
}
