package server

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

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

// quotaManager holds the quota configuration and the sensors.
type quotaManager struct {
	s       *Server
	store   metastore.QuotaStore // nil: the store keeps no quotas
	cfg     atomic.Pointer[quota.Config]
	samples int
	window  time.Duration

	mu      sync.Mutex
	sensors map[string]*quota.Rate
	buckets map[string]*quota.Bucket // controller mutations (quota_mutations.go)
	conns   *quota.Rate              // broker-wide connection creations
	pruned  time.Time
}

// sensorIdle is how long an unused sensor is kept.
const sensorIdle = time.Hour

func (s *Server) initQuotas() error {
	l := s.layers.Load()
	q := &quotaManager{
		s:       s,
		samples: int(l.Int("quota.window.num")),
		window:  l.Duration("quota.window.size.seconds"),
		sensors: map[string]*quota.Rate{},
	}
	q.conns = quota.NewRate(q.samples, q.window)
	empty := quota.Config{}
	q.cfg.Store(&empty)
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
	c := quota.Config(all)
	q.cfg.Store(&c)
	return nil
}

// sensor returns the named sensor, created on first use.
func (q *quotaManager) sensor(name string, now time.Time) *quota.Rate {
	q.mu.Lock()
	defer q.mu.Unlock()
	if now.Sub(q.pruned) > sensorIdle/4 {
		q.pruned = now
		for k, r := range q.sensors {
			if r.Idle(now.Add(-sensorIdle)) {
				delete(q.sensors, k)
			}
		}
	}
	r := q.sensors[name]
	if r == nil {
		r = quota.NewRate(q.samples, q.window)
		q.sensors[name] = r
	}
	return r
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
	cfg := *q.cfg.Load()
	if len(cfg) == 0 {
		return 0 // no quota at all: the common case costs one load
	}
	res, ok := cfg.Resolve(key, r.quotaUser(), r.hdr.clientID)
	if !ok {
		return 0
	}
	now := q.s.clock.Now()
	return q.sensor(res.Sensor, now).RecordAndThrottle(now, v, res.Limit)
}

// unrecord takes back v (a throttled fetch answered empty).
func (q *quotaManager) unrecord(key string, r *request, v float64) {
	if res, ok := (*q.cfg.Load()).Resolve(key, r.quotaUser(), r.hdr.clientID); ok {
		now := q.s.clock.Now()
		q.sensor(res.Sensor, now).Unrecord(now, v)
	}
}

// maxFetchBytes caps a consumer fetch at what its quota allows over the
// measured window (Kafka's getMaxValueInQuotaWindow): a larger fetch
// would be throttled, answered empty and retried forever.
func (q *quotaManager) maxFetchBytes(r *request) (int32, bool) {
	cfg := *q.cfg.Load()
	if len(cfg) == 0 {
		return 0, false
	}
	res, ok := cfg.Resolve(quota.ConsumerByteRate, r.quotaUser(), r.hdr.clientID)
	if !ok {
		return 0, false
	}
	v := res.Limit * float64(q.samples-1) * q.window.Seconds()
	return int32(max(min(v, math.MaxInt32), 1)), true
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

// mute stops reading from c until d has passed (or the connection stops).
func (c *conn) mute(d time.Duration) {
	t := time.NewTimer(d)
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
	now := q.s.clock.Now()
	var pause time.Duration
	if limit := q.s.brokerInt("max.connection.creation.rate"); limit < math.MaxInt32 {
		pause = q.conns.RecordAndThrottle(now, 1, float64(limit))
	}
	c := *q.cfg.Load()
	for _, p := range []string{"ips/" + quota.Sanitize(ip), "ips/" + quota.Default} {
		if limit, ok := c[p][quota.ConnectionCreationRate]; ok {
			if q.sensor("connections:"+ip, now).RecordAndThrottle(now, 1, limit) > 0 {
				return pause, true
			}
			break
		}
	}
	return pause, false
}
