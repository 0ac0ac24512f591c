package server

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/quota"
	"github.com/kvlog/kvlog/server/security"
)

// Client quotas (package quota has the model): producer and consumer byte
// rates and request percentages per user / client id, set with
// AlterClientQuotas and kept in the metadata store; connection creation
// rates per IP address (AlterClientQuotas on ip entities) and for the
// whole broker (max.connection.creation.rate).
//
// Throttling follows KIP-219: a request that takes its sensor over the
// quota is answered with throttle_time_ms set and the connection is muted
// — nothing more is read from it — for that time. Clients of API versions
// from before KIP-219 do not back off by themselves: their response is
// held back for the throttle time instead. A throttled Fetch is answered
// empty, its bytes not counted, as Kafka does. Produce bytes are counted
// as the request's size, Fetch bytes as the record data returned, request
// time as the handler's time on the connection's goroutine as a
// percentage of one thread. Inter-broker requests, follower fetches,
// ApiVersions and SASL are exempt; so is the request quota for acks=0.

// quotaManager is package quota's Manager (the configuration and the
// sensors) with the broker's side: the metadata store the quotas are kept
// in, and the request's user and client id each use is accounted to.
type quotaManager struct {
	*quota.Manager
	s     *Server
	store metastore.QuotaStore // nil: the store keeps no quotas
}

func (s *Server) initQuotas() error {
	l := s.layers.Load()
	q := &quotaManager{
		Manager: quota.NewManager(int(l.Int("quota.window.num")), l.Duration("quota.window.size.seconds"), s.clock.Now),
		s:       s,
	}
	if st, ok := s.meta.(metastore.QuotaStore); ok {
		q.store = st
		if err := q.reload(); err != nil {
			return err
		}
	}
	s.quotas = q
	return nil
}

// reload reads every quota from the store.
func (q *quotaManager) reload() error {
	all, err := q.store.ClientQuotas()
	if err != nil {
		return fmt.Errorf("loading client quotas: %w", err)
	}
	q.SetConfig(quota.Config(all))
	return nil
}

// quotaUser is the user a request's quotas are looked up by: its
// principal's name (ANONYMOUS without authentication).
func (r *request) quotaUser() string {
	p := r.c.principal()
	if name, ok := strings.CutPrefix(p, security.UserType+":"); ok {
		return name
	}
	return p
}

// record records v on r's sensor for key and returns the throttle time
// (0 without a quota).
func (q *quotaManager) record(key string, r *request, v float64) time.Duration {
	return q.Record(key, r.quotaUser(), r.hdr.clientID, v)
}

// unrecord takes back v (a throttled fetch answered empty).
func (q *quotaManager) unrecord(key string, r *request, v float64) {
	q.Unrecord(key, r.quotaUser(), r.hdr.clientID, v)
}

// maxFetchBytes caps a consumer fetch at what its quota allows
// (quota.Manager.MaxFetchBytes).
func (q *quotaManager) maxFetchBytes(r *request) (int32, bool) {
	return q.MaxFetchBytes(r.quotaUser(), r.hdr.clientID)
}

// quotaExempt are the requests no client quota applies to.
func quotaExempt(r *request) bool {
	switch kmsg.Key(r.hdr.key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate, kmsg.LeaderAndISR, kmsg.StopReplica,
		kmsg.UpdateMetadata, kmsg.ControlledShutdown, kmsg.WriteTxnMarkers:
		return true
	case kmsg.Fetch:
		return r.kreq.(*kmsg.FetchRequest).ReplicaID >= 0
	}
	return false
}

// beforeHandle records a Produce's bytes; it returns the throttle.
func (q *quotaManager) beforeHandle(r *request) time.Duration {
	if r.hdr.key != kmsg.Produce.Int16() {
		return 0
	}
	return q.record(quota.ProducerByteRate, r, float64(r.pending.Held()))
}

// afterHandle records the handler's time (request_percentage).
func (q *quotaManager) afterHandle(r *request, took time.Duration) time.Duration {
	if pr, ok := r.kreq.(*kmsg.ProduceRequest); ok && pr.Acks == 0 {
		return 0
	}
	return q.record(quota.RequestPercentage, r, float64(took.Nanoseconds())*100/1e9)
}

// throttle sets r's throttle to at least d.
func (r *request) throttle(d time.Duration) {
	ms := int32(min(d.Milliseconds(), math.MaxInt32))
	for {
		cur := r.throttleMs.Load()
		if ms <= cur || r.throttleMs.CompareAndSwap(cur, ms) {
			return
		}
	}
}

// kip219 is the first version of each API whose clients back off by
// themselves on a throttle_time_ms (KIP-219); older ones get their
// response delayed instead.
var kip219 = map[kmsg.Key]int16{
	kmsg.Produce: 6, kmsg.Fetch: 8, kmsg.ListOffsets: 3, kmsg.Metadata: 6, kmsg.OffsetCommit: 4, kmsg.OffsetFetch: 4,
	kmsg.FindCoordinator: 2, kmsg.JoinGroup: 3, kmsg.Heartbeat: 2, kmsg.LeaveGroup: 2, kmsg.SyncGroup: 2,
	kmsg.DescribeGroups: 2, kmsg.ListGroups: 2, kmsg.CreateTopics: 3, kmsg.DeleteTopics: 2, kmsg.DeleteRecords: 1,
	kmsg.InitProducerID: 1, kmsg.OffsetForLeaderEpoch: 1, kmsg.DescribeACLs: 1, kmsg.CreateACLs: 1, kmsg.DeleteACLs: 1,
	kmsg.DescribeConfigs: 1, kmsg.AlterConfigs: 1, kmsg.DescribeLogDirs: 1, kmsg.CreatePartitions: 1, kmsg.DeleteGroups: 1,
}

// clientThrottles reports whether the client of r backs off by itself.
func clientThrottles(r *request) bool {
	return r.hdr.version >= kip219[kmsg.Key(r.hdr.key)]
}

// setThrottle puts r's throttle time into resp.
func setThrottle(r *request, resp kmsg.Response) {
	ms := r.throttleMs.Load()
	if ms <= 0 {
		return
	}
	if tr, ok := resp.(kmsg.SetThrottleResponse); ok {
		if cur, _ := resp.(kmsg.ThrottleResponse).Throttle(); cur < ms {
			tr.SetThrottle(ms)
		}
	}
}

// mute stops reading from c until d has passed on the broker's clock (or
// the connection stops).
func (c *conn) mute(d time.Duration) {
	t := clock.NewTimer(c.s.clock, d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.stop:
	}
}

// acceptThrottle applies the connection creation rates to a new
// connection from ip: it returns how long accepting must pause
// (max.connection.creation.rate) and whether the IP's
// connection_creation_rate quota refuses this connection.
func (q *quotaManager) acceptThrottle(ip string) (time.Duration, bool) {
	return q.AcceptThrottle(ip, q.s.brokerInt("max.connection.creation.rate"))
}

// The controller mutation quota (KIP-599): controller_mutation_rate, set
// with AlterClientQuotas on the same user / client-id entities and with
// the same precedence as the other client quotas, limits the partitions a
// client creates (CreateTopics: each new topic's partition count;
// CreatePartitions: the partitions added) and deletes (DeleteTopics: the
// deleted topic's partition count) per second, as Kafka's
// ControllerMutationQuotaManager does. Each broker measures the requests
// it receives with a token bucket (quota.Bucket) of limit ×
// quota.window.num × quota.window.size.seconds tokens.
//
// Clients that know the quota — CreateTopics v6+, CreatePartitions v3+,
// DeleteTopics v5+ — get strict treatment: a topic whose turn comes while
// the bucket is below zero fails with THROTTLING_QUOTA_EXCEEDED ("The
// throttling quota has been exceeded."), the others of the request are
// done, and the response's throttle_time_ms says how long to wait (the
// connection is muted that long, KIP-219); the mutation that empties the
// bucket is itself allowed. Older clients are never refused: their
// mutations are recorded and the response throttled (held back, for
// versions before KIP-219) while the bucket is below zero. ValidateOnly
// requests, and topics failing for other reasons, take nothing.

// mutationQuota is one request's controller mutation quota.
type mutationQuota struct {
	q            *quotaManager
	bucket       *quota.Bucket // nil: no quota applies
	limit, burst float64
	strict       bool
	throttle     time.Duration
}

// strictMutations is the first version of each API with strict
// controller mutation quotas.
var strictMutations = map[int16]int16{19: 6, 37: 3, 20: 5} // CreateTopics, CreatePartitions, DeleteTopics

// mutations returns r's controller mutation quota.
func (q *quotaManager) mutations(r *request) *mutationQuota {
	m := &mutationQuota{q: q, strict: r.hdr.version >= strictMutations[r.hdr.key]}
	m.bucket, m.limit, m.burst = q.Mutations(r.quotaUser(), r.hdr.clientID)
	return m
}

// record accounts for n partitions about to be created or deleted; under
// a strict quota already exceeded it refuses them instead.
func (m *mutationQuota) record(n int32) error {
	if m.bucket == nil {
		return nil
	}
	now := m.q.Now()
	if m.strict {
		if d := m.bucket.Throttle(now, m.limit, m.burst); d > 0 {
			m.throttle = max(m.throttle, d)
			return topicErrf(kerr.ThrottlingQuotaExceeded, "The throttling quota has been exceeded.")
		}
		m.bucket.Record(now, float64(n), m.limit, m.burst)
		return nil
	}
	m.throttle = max(m.throttle, m.bucket.Record(now, float64(n), m.limit, m.burst))
	return nil
}

// done sets r's throttle: a strict quota's longest refusal, a permissive
// one's throttle after the last mutation.
func (m *mutationQuota) done(r *request) {
	if m.throttle > 0 {
		r.throttle(m.throttle)
	}
}
