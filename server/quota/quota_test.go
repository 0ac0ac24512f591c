package quota

import (
	"testing"
	"time"
)

// TestResolve: Kafka's precedence, and which requests share a sensor.
func TestResolve(t *testing.T) {
	c := Config{
		"users/alice/clients/app":       {ProducerByteRate: 1},
		"users/alice/clients/<default>": {ProducerByteRate: 2},
		"users/alice":                   {ProducerByteRate: 3, ConsumerByteRate: 30},
		"users/<default>/clients/app":   {ProducerByteRate: 4},
		"users/<default>":               {ProducerByteRate: 6},
		"clients/tool":                  {ProducerByteRate: 7},
		"clients/<default>":             {ProducerByteRate: 8, RequestPercentage: 50},
	}
	for _, tc := range []struct {
		key, user, client string
		limit             float64
		sensor            string
	}{
		{ProducerByteRate, "alice", "app", 1, "producer_byte_rate:user=alice,client=app"},
		{ProducerByteRate, "alice", "other", 2, "producer_byte_rate:user=alice,client=other"},
		{ConsumerByteRate, "alice", "other", 30, "consumer_byte_rate:user=alice"},
		{ProducerByteRate, "bob", "app", 4, "producer_byte_rate:user=bob,client=app"},
		{ProducerByteRate, "bob", "x", 6, "producer_byte_rate:user=bob"},
		{RequestPercentage, "bob", "x", 50, "request_percentage:,client=x"},
	} {
		r, ok := c.Resolve(tc.key, tc.user, tc.client)
		if !ok || r.Limit != tc.limit || r.Sensor != tc.sensor {
			t.Errorf("%s %s/%s: %+v %v, want %v %s", tc.key, tc.user, tc.client, r, ok, tc.limit, tc.sensor)
		}
	}
	delete(c, "users/<default>")
	if r, ok := c.Resolve(ProducerByteRate, "bob", "tool"); !ok || r.Limit != 7 {
		t.Errorf("client quota: %+v", r)
	}
	if _, ok := (Config{}).Resolve(ProducerByteRate, "a", "b"); ok {
		t.Error("no quota resolved to one")
	}
	for _, p := range []string{"users/alice", "users/<default>/clients/app", "clients/a%20b", "ips/10.0.0.1", "users/a%2Ab"} {
		e, ok := ParsePath(p)
		if !ok || e.Path() != p {
			t.Errorf("%s: %+v %v -> %s", p, e, ok, e.Path())
		}
	}
}

// TestRateThrottle: a client that waits out every throttle it is given
// sends at the quota once the first full window (which lets a burst of
// (samples-1) windows' worth through, as Kafka) has passed.
func TestRateThrottle(t *testing.T) {
	r := NewRate(11, time.Second)
	now := time.Unix(1000, 0)
	const limit = 1000.0 // bytes/s
	sent := 0.0
	warm := now.Add(11 * time.Second)
	for now.Sub(warm) < 60*time.Second {
		d := r.RecordAndThrottle(now, 100, limit)
		if now.After(warm) {
			sent += 100
		}
		now = now.Add(d + time.Millisecond)
	}
	got := sent / now.Sub(warm).Seconds()
	if got < 0.9*limit || got > 1.1*limit {
		t.Errorf("rate %.0f/s, quota %.0f/s", got, limit)
	}
}

// TestBucket: a full bucket lets a burst of limit × samples × window
// through, goes negative with the mutation that empties it, throttles for
// the refill time back to zero, and refills at the limit.
func TestBucket(t *testing.T) {
	var b Bucket
	now := time.Unix(1000, 0)
	const limit, burst = 2.0, 2.0 * 11 // 2 mutations/s over 11 windows of 1 s
	if d := b.Throttle(now, limit, burst); d != 0 {
		t.Fatalf("a new bucket throttles %v", d)
	}
	if d := b.Record(now, 20, limit, burst); d != 0 {
		t.Fatalf("20 of a 22-token burst: throttled %v", d)
	}
	if d := b.Record(now, 8, limit, burst); d != 3*time.Second {
		t.Fatalf("6 tokens below zero at 2/s: throttle %v, want 3s", d)
	}
	if d := b.Throttle(now.Add(2*time.Second), limit, burst); d != time.Second {
		t.Fatalf("2 s later: throttle %v, want 1s", d)
	}
	if d := b.Throttle(now.Add(3*time.Second), limit, burst); d != 0 {
		t.Fatalf("3 s later: throttle %v, want 0", d)
	}
	// Refilling stops at the burst.
	later := now.Add(time.Hour)
	if d := b.Record(later, burst, limit, burst); d != 0 {
		t.Fatalf("a full burst after an hour: throttled %v", d)
	}
	if d := b.Record(later, 1, limit, burst); d != 500*time.Millisecond {
		t.Fatalf("one past the burst: throttle %v, want 500ms", d)
	}
}
