package server

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/server/quota"
)

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
	cfg := *q.cfg.Load()
	if len(cfg) == 0 {
		return m
	}
	res, ok := cfg.Resolve(quota.ControllerMutationRate, r.quotaUser(), r.hdr.clientID)
	if !ok || res.Limit <= 0 {
		return m
	}
	m.limit = res.Limit
	m.burst = res.Limit * float64(q.samples) * q.window.Seconds()
	m.bucket = q.bucket(res.Sensor, q.s.clock.Now())
	return m
}

// bucket returns the named token bucket, created on first use.
func (q *quotaManager) bucket(name string, now time.Time) *quota.Bucket {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.buckets == nil {
		q.buckets = map[string]*quota.Bucket{}
	}
	for k, b := range q.buckets {
		if len(q.buckets) > 1024 && b.Idle(now.Add(-sensorIdle)) {
			delete(q.buckets, k)
		}
	}
	b := q.buckets[name]
	if b == nil {
		b = &quota.Bucket{}
		q.buckets[name] = b
	}
	return b
}

// record accounts for n partitions about to be created or deleted; under
// a strict quota already exceeded it refuses them instead.
func (m *mutationQuota) record(n int32) error {
	if m.bucket == nil {
		return nil
	}
	now := m.q.s.clock.Now()
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
