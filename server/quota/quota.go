// Package quota is the broker's client quotas, as Apache Kafka's
// ClientQuotaManager computes them, with no dependency on the rest of the
// broker: quota entities and their precedence, rates sampled over
// windows, and throttle times.
//
// # Entities and precedence
//
// Quotas are set (AlterClientQuotas) on an entity: a user, a client id, a
// user and client id, or their defaults; the key is the entity's path in
// Kafka's ZooKeeper layout ("users/alice/clients/app", "users/<default>",
// "clients/<default>"), names URL-encoded as Kafka's Sanitizer does. For a
// request by user U with client id C, each quota type (producer_byte_rate,
// consumer_byte_rate, request_percentage) comes from the first of these
// that sets it:
//
//  1. users/U/clients/C
//  2. users/U/clients/<default>
//  3. users/U
//  4. users/<default>/clients/C
//  5. users/<default>/clients/<default>
//  6. users/<default>
//  7. clients/C
//  8. clients/<default>
//
// The rate is shared by the requests that resolve to the same sensor: a
// user-level quota (3, 6) is one rate for all of the user's client ids, a
// client-level one (7, 8) one rate per client id across users, the others
// one per user and client id — as Kafka's quota metric tags.
//
// # Rates and throttling
//
// A sensor records values (bytes, or request time as a percentage of one
// thread) into quota.window.num samples of quota.window.size.seconds. Its
// rate is the sum of the samples over the time they cover, which counts
// at least (samples-1) full windows, so a burst at start-up is not
// measured over a few milliseconds (Kafka's Rate.windowSize). When a
// recorded value takes the rate above the quota Q, the client is
// throttled for (rate-Q)/Q × window time: the time until the rate would
// fall back to Q with nothing more sent.
//
// The controller mutation quota (controller_mutation_rate, KIP-599) is
// measured differently, with a token bucket (Bucket), as Kafka does.
//
// # At run time
//
// Manager (manager.go) holds a broker's quota configuration, replaced
// whole when quotas change, and the sensors and buckets it records into,
// created on first use and dropped after an hour unused, plus the
// broker-wide connection creation rate. The broker records into it by
// user and client id; muting connections and answering with
// throttle_time_ms stay the broker's.
package quota

import (
	"net/url"
	"strings"
	"sync"
	"time"
)

// Quota keys.
const (
	ProducerByteRate       = "producer_byte_rate"
	ConsumerByteRate       = "consumer_byte_rate"
	RequestPercentage      = "request_percentage"
	ControllerMutationRate = "controller_mutation_rate"
	ConnectionCreationRate = "connection_creation_rate"
)

// Entity types as AlterClientQuotas / DescribeClientQuotas name them.
const (
	EntityUser     = "user"
	EntityClientID = "client-id"
	EntityIP       = "ip"
)

// Default is the name of a default entity in its path.
const Default = "<default>"

// Sanitize encodes a user name or client id for an entity path (Kafka's
// Sanitizer: URL encoding, %20 for a space, %2A for '*', %7E for '~').
func Sanitize(name string) string {
	e := url.QueryEscape(name)
	e = strings.ReplaceAll(e, "+", "%20")
	e = strings.ReplaceAll(e, "*", "%2A")
	return strings.ReplaceAll(e, "~", "%7E")
}

// Desanitize reverses Sanitize.
func Desanitize(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// Entity is a quota entity: a user, a client id, both, or an IP address
// (Has*), each a name or the default entity (*Default).
type Entity struct {
	HasUser, HasClient, HasIP bool
	User, Client, IP          string
	UserDefault, ClientDef    bool
	IPDefault                 bool
}

// Path is the entity's path ("users/alice/clients/app").
func (e Entity) Path() string {
	part := func(name string, def bool) string {
		if def {
			return Default
		}
		return Sanitize(name)
	}
	switch {
	case e.HasIP:
		return "ips/" + part(e.IP, e.IPDefault)
	case e.HasUser && e.HasClient:
		return "users/" + part(e.User, e.UserDefault) + "/clients/" + part(e.Client, e.ClientDef)
	case e.HasUser:
		return "users/" + part(e.User, e.UserDefault)
	case e.HasClient:
		return "clients/" + part(e.Client, e.ClientDef)
	}
	return ""
}

// ParsePath parses an entity path; ok false if it is not one.
func ParsePath(p string) (Entity, bool) {
	parts := strings.Split(p, "/")
	name := func(s string) (string, bool) {
		if s == Default {
			return "", true
		}
		return Desanitize(s), false
	}
	var e Entity
	switch {
	case len(parts) == 2 && parts[0] == "users":
		e.HasUser = true
		e.User, e.UserDefault = name(parts[1])
	case len(parts) == 4 && parts[0] == "users" && parts[2] == "clients":
		e.HasUser, e.HasClient = true, true
		e.User, e.UserDefault = name(parts[1])
		e.Client, e.ClientDef = name(parts[3])
	case len(parts) == 2 && parts[0] == "clients":
		e.HasClient = true
		e.Client, e.ClientDef = name(parts[1])
	case len(parts) == 2 && parts[0] == "ips":
		e.HasIP = true
		e.IP, e.IPDefault = name(parts[1])
	default:
		return Entity{}, false
	}
	return e, true
}

// Config is every entity's quotas: path → key → value.
type Config map[string]map[string]float64

// Resolved is the quota that applies to a request and the sensor whose
// rate it limits.
type Resolved struct {
	Limit  float64
	Sensor string // "user=<u>,client=<c>" with the parts the entity has
}

// Resolve finds the quota of key for user and client id (the precedence
// above); ok false when none is set.
func (c Config) Resolve(key, user, clientID string) (Resolved, bool) {
	u, cl := Sanitize(user), Sanitize(clientID)
	for _, lv := range []struct {
		path             string
		byUser, byClient bool
	}{
		{"users/" + u + "/clients/" + cl, true, true},
		{"users/" + u + "/clients/" + Default, true, true},
		{"users/" + u, true, false},
		{"users/" + Default + "/clients/" + cl, true, true},
		{"users/" + Default + "/clients/" + Default, true, true},
		{"users/" + Default, true, false},
		{"clients/" + cl, false, true},
		{"clients/" + Default, false, true},
	} {
		v, ok := c[lv.path][key]
		if !ok {
			continue
		}
		s := ""
		if lv.byUser {
			s = "user=" + u
		}
		if lv.byClient {
			s += ",client=" + cl
		}
		return Resolved{Limit: v, Sensor: key + ":" + s}, true
	}
	return Resolved{}, false
}

// Rate is a sampled rate (Kafka's Rate over SampledStat): Samples windows
// of Window each.
type Rate struct {
	Samples int
	Window  time.Duration

	mu      sync.Mutex
	starts  []time.Time // each sample's start, zero if unused
	values  []float64
	cur     int
	lastUse time.Time
}

// NewRate returns a rate over samples windows of window.
func NewRate(samples int, window time.Duration) *Rate {
	samples = max(samples, 2)
	return &Rate{Samples: samples, Window: window, starts: make([]time.Time, samples), values: make([]float64, samples)}
}

// advance moves to the sample covering now. Caller holds mu.
func (r *Rate) advance(now time.Time) {
	if r.starts[r.cur].IsZero() {
		r.starts[r.cur] = now
		return
	}
	if now.Sub(r.starts[r.cur]) < r.Window {
		return
	}
	r.cur = (r.cur + 1) % r.Samples
	r.starts[r.cur], r.values[r.cur] = now, 0
}

// purge forgets samples older than the whole window. Caller holds mu.
func (r *Rate) purge(now time.Time) {
	horizon := time.Duration(r.Samples) * r.Window
	for i := range r.starts {
		if !r.starts[i].IsZero() && now.Sub(r.starts[i]) >= horizon {
			r.starts[i], r.values[i] = time.Time{}, 0
		}
	}
}

// Record adds v at now.
func (r *Rate) Record(now time.Time, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge(now)
	r.advance(now)
	r.values[r.cur] += v
	r.lastUse = now
}

// Unrecord takes back a value recorded at now (a fetch answered empty
// because it was throttled).
func (r *Rate) Unrecord(now time.Time, v float64) { r.Record(now, -v) }

// measure is the rate per second and the window it was measured over.
// Caller holds mu.
func (r *Rate) measure(now time.Time) (float64, time.Duration) {
	r.purge(now)
	var total float64
	oldest := now
	for i, s := range r.starts {
		if s.IsZero() {
			continue
		}
		total += r.values[i]
		if s.Before(oldest) {
			oldest = s
		}
	}
	elapsed := now.Sub(oldest)
	full := int(elapsed / r.Window)
	if minFull := r.Samples - 1; full < minFull {
		elapsed += time.Duration(minFull-full) * r.Window
	}
	return total / elapsed.Seconds(), elapsed
}

// Measure is the current rate per second.
func (r *Rate) Measure(now time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, _ := r.measure(now)
	return v
}

// RecordAndThrottle adds v at now and returns how long the client must
// wait for the rate to fall back to limit (0 if it is within it).
func (r *Rate) RecordAndThrottle(now time.Time, v, limit float64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purge(now)
	r.advance(now)
	r.values[r.cur] += v
	r.lastUse = now
	return r.throttle(now, limit)
}

func (r *Rate) throttle(now time.Time, limit float64) time.Duration {
	rate, window := r.measure(now)
	if limit <= 0 || rate <= limit {
		return 0
	}
	return time.Duration((rate - limit) / limit * float64(window)).Round(time.Millisecond)
}

// Idle reports whether nothing was recorded since before cutoff.
func (r *Rate) Idle(cutoff time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastUse.Before(cutoff)
}

// Bucket is a token bucket, as Kafka's TokenBucket measures the
// controller mutation quota (controller_mutation_rate, KIP-599): it holds
// at most burst tokens (limit × samples × window), starts full, refills
// at limit per second, and each mutation (a partition created or deleted)
// takes one. It may go below zero — the request that empties it is not
// cut short — and while it is below zero the quota is exceeded: the
// client is throttled for the time the refill takes to bring it back to
// zero, -tokens/limit seconds.
type Bucket struct {
	mu      sync.Mutex
	tokens  float64
	last    time.Time // last refill; zero: never used (full)
	lastUse time.Time
}

// refill adds what the time since the last refill earned. Caller holds mu.
func (b *Bucket) refill(now time.Time, limit, burst float64) {
	if b.last.IsZero() {
		b.tokens = burst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(burst, b.tokens+limit*d.Seconds())
	}
	b.last = now
}

// Throttle refills the bucket and returns how long the client must wait
// before it is within its quota again (0 when it is).
func (b *Bucket) Throttle(now time.Time, limit, burst float64) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, limit, burst)
	return b.throttle(limit)
}

func (b *Bucket) throttle(limit float64) time.Duration {
	if b.tokens >= 0 || limit <= 0 {
		return 0
	}
	return time.Duration(-b.tokens / limit * float64(time.Second)).Round(time.Millisecond)
}

// Record takes v tokens at now and returns the throttle time after it.
func (b *Bucket) Record(now time.Time, v, limit, burst float64) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now, limit, burst)
	b.tokens = min(burst, b.tokens-v)
	b.lastUse = now
	return b.throttle(limit)
}

// Idle reports whether nothing was recorded since before cutoff.
func (b *Bucket) Idle(cutoff time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastUse.Before(cutoff)
}
