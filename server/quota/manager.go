package quota

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Manager is a broker's client quotas at run time: the quota
// configuration (replaced whole when quotas change) and the sensors it
// records into, created on first use and dropped after an hour unused;
// the token buckets of the controller mutation rate; the broker-wide
// connection creation rate. It is safe for concurrent use.
type Manager struct {
	now     func() time.Time
	samples int           // quota.window.num
	window  time.Duration // quota.window.size.seconds
	cfg     atomic.Pointer[Config]

	mu      sync.Mutex
	sensors map[string]*Rate
	buckets map[string]*Bucket // controller mutations
	conns   *Rate              // broker-wide connection creations
	pruned  time.Time
}

// sensorIdle is how long an unused sensor is kept.
const sensorIdle = time.Hour

// NewManager returns a Manager without quotas, measuring over samples
// windows of window each on the clock now.
func NewManager(samples int, window time.Duration, now func() time.Time) *Manager {
	m := &Manager{now: now, samples: samples, window: window, sensors: map[string]*Rate{}, buckets: map[string]*Bucket{}}
	m.conns = NewRate(samples, window)
	empty := Config{}
	m.cfg.Store(&empty)
	return m
}

// Config is the current quota configuration (not to be modified).
func (m *Manager) Config() Config { return *m.cfg.Load() }

// SetConfig replaces the quota configuration.
func (m *Manager) SetConfig(c Config) { m.cfg.Store(&c) }

// Now is the manager's clock.
func (m *Manager) Now() time.Time { return m.now() }

// sensor returns the named sensor, created on first use.
func (m *Manager) sensor(name string, now time.Time) *Rate {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.pruned) > sensorIdle/4 {
		m.pruned = now
		for k, r := range m.sensors {
			if r.Idle(now.Add(-sensorIdle)) {
				delete(m.sensors, k)
			}
		}
	}
	r := m.sensors[name]
	if r == nil {
		r = NewRate(m.samples, m.window)
		m.sensors[name] = r
	}
	return r
}

// Record records v on the sensor the quota key (ProducerByteRate,
// ConsumerByteRate, RequestPercentage) of user and clientID resolves to,
// and returns the throttle time (0 without a quota).
func (m *Manager) Record(key, user, clientID string, v float64) time.Duration {
	cfg := *m.cfg.Load()
	if len(cfg) == 0 {
		return 0 // no quota at all: the common case costs one load
	}
	res, ok := cfg.Resolve(key, user, clientID)
	if !ok {
		return 0
	}
	now := m.now()
	return m.sensor(res.Sensor, now).RecordAndThrottle(now, v, res.Limit)
}

// Unrecord takes back v recorded by Record (a throttled fetch answered
// empty).
func (m *Manager) Unrecord(key, user, clientID string, v float64) {
	if res, ok := (*m.cfg.Load()).Resolve(key, user, clientID); ok {
		now := m.now()
		m.sensor(res.Sensor, now).Unrecord(now, v)
	}
}

// MaxFetchBytes caps a consumer fetch at what its quota allows over the
// measured window (Kafka's getMaxValueInQuotaWindow): a larger fetch
// would be throttled, answered empty and retried forever.
func (m *Manager) MaxFetchBytes(user, clientID string) (int32, bool) {
	cfg := *m.cfg.Load()
	if len(cfg) == 0 {
		return 0, false
	}
	res, ok := cfg.Resolve(ConsumerByteRate, user, clientID)
	if !ok {
		return 0, false
	}
	v := res.Limit * float64(m.samples-1) * m.window.Seconds()
	return int32(max(min(v, math.MaxInt32), 1)), true
}

// AcceptThrottle applies the connection creation rates to a new
// connection from ip: it returns how long accepting must pause (the
// broker-wide rate brokerLimit, max.connection.creation.rate;
// math.MaxInt32 or more: none) and whether the IP's
// connection_creation_rate quota refuses this connection.
func (m *Manager) AcceptThrottle(ip string, brokerLimit int64) (time.Duration, bool) {
	now := m.now()
	var pause time.Duration
	if brokerLimit < math.MaxInt32 {
		pause = m.conns.RecordAndThrottle(now, 1, float64(brokerLimit))
	}
	c := *m.cfg.Load()
	for _, p := range []string{"ips/" + Sanitize(ip), "ips/" + Default} {
		if limit, ok := c[p][ConnectionCreationRate]; ok {
			if m.sensor("connections:"+ip, now).RecordAndThrottle(now, 1, limit) > 0 {
				return pause, true
			}
			break
		}
	}
	return pause, false
}

// Mutations is the controller mutation quota of user and clientID: the
// token bucket to take partition creations and deletions from, its rate
// and its burst (samples × window of the rate); b nil when no quota
// applies.
func (m *Manager) Mutations(user, clientID string) (b *Bucket, limit, burst float64) {
	cfg := *m.cfg.Load()
	if len(cfg) == 0 {
		return nil, 0, 0
	}
	res, ok := cfg.Resolve(ControllerMutationRate, user, clientID)
	if !ok || res.Limit <= 0 {
		return nil, 0, 0
	}
	return m.bucket(res.Sensor, m.now()), res.Limit, res.Limit * float64(m.samples) * m.window.Seconds()
}

// bucket returns the named token bucket, created on first use.
func (m *Manager) bucket(name string, now time.Time) *Bucket {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, b := range m.buckets {
		if len(m.buckets) > 1024 && b.Idle(now.Add(-sensorIdle)) {
			delete(m.buckets, k)
		}
	}
	b := m.buckets[name]
	if b == nil {
		b = &Bucket{}
		m.buckets[name] = b
	}
	return b
}
