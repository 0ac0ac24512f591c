package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS JetStream load with nats.go: the same keys, values and record counts
// as the Kafka-protocol load. A record is a message on subject
// <prefix><key>: a plain stream (subjects "<name>.>", every message kept)
// or a KV bucket with history 1 ("$KV.<bucket>.<key>", the latest per key).
// Publishing is asynchronous with at most natsMaxPending unacknowledged
// messages, the equivalent of the Kafka producer's buffered window.

const natsMaxPending = 4096

type natsConn struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func natsDial(addr string) (*natsConn, error) {
	nc, err := nats.Connect("nats://"+addr, nats.Timeout(10*time.Second))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(5*time.Minute))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &natsConn{nc: nc, js: js}, nil
}

func (c *natsConn) close() { c.nc.Close() }

// natsTarget is a stream or bucket to write to.
type natsTarget struct {
	stream string // stream name (KV_<bucket> for a bucket)
	prefix string // subject prefix before the key
	kv     jetstream.KeyValue
}

// create makes a file-store stream (kv false) or KV bucket with history 1.
func (c *natsConn) create(ctx context.Context, name string, kv bool) (natsTarget, error) {
	if kv {
		b, err := c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage})
		if err != nil {
			return natsTarget{}, fmt.Errorf("create bucket %s: %w", name, err)
		}
		return natsTarget{stream: "KV_" + name, prefix: "$KV." + name + ".", kv: b}, nil
	}
	_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.FileStorage})
	if err != nil {
		return natsTarget{}, fmt.Errorf("create stream %s: %w", name, err)
	}
	return natsTarget{stream: name, prefix: name + "."}, nil
}

func (c *natsConn) remove(ctx context.Context, t natsTarget) {
	c.js.DeleteStream(ctx, t.stream)
}

// natsProduce publishes n records (first..first+n-1 of the key sequence).
func natsProduce(ctx context.Context, c *natsConn, t natsTarget, s shape, first, n int, pids []int) (runStats, error) {
	var (
		errs     atomic.Int64
		firstErr atomic.Pointer[error]
	)
	ajs, err := jetstream.New(c.nc, jetstream.WithPublishAsyncMaxPending(natsMaxPending),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, &err)
		}))
	if err != nil {
		return runStats{}, err
	}
	keys, vals := keySet(s.keys), valuePool(s.valueLen)
	// Warm-up: one synchronous publish, not timed.
	if _, err := ajs.Publish(ctx, t.prefix+string(keys[0]), vals[0]); err != nil {
		return runStats{}, fmt.Errorf("warm-up publish: %w", err)
	}
	m := meterCPU(pids...)
	start := time.Now()
	for i := first; i < first+n; i++ {
		k := keys[keyIndex(i, s.keys)]
		if _, err := ajs.PublishAsync(t.prefix+string(k), vals[i%len(vals)], jetstream.WithStallWait(time.Minute)); err != nil {
			return runStats{}, fmt.Errorf("publish: %w", err)
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
	case <-ctx.Done():
		return runStats{}, ctx.Err()
	}
	st := runStats{records: int64(n), bytes: int64(n) * int64(s.recordBytes()), elapsed: time.Since(start), cpu: m.seconds()}
	if p := firstErr.Load(); p != nil {
		return st, fmt.Errorf("%d publishes failed: %w", errs.Load(), *p)
	}
	return st, nil
}

// natsConsume reads want messages of the stream from its first message with
// an ordered consumer (nats.go's sequential, flow-controlled reader).
func natsConsume(ctx context.Context, c *natsConn, t natsTarget, want int64, pids []int) (runStats, error) {
	cons, err := c.js.OrderedConsumer(ctx, t.stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return runStats{}, err
	}
	var st runStats
	done := make(chan struct{})
	var once sync.Once
	plen := len(t.prefix)
	m := meterCPU(pids...)
	start := time.Now()
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		st.records++
		st.bytes += int64(len(msg.Subject())-plen) + int64(len(msg.Data()))
		if st.records >= want {
			once.Do(func() { close(done) })
		}
	}, jetstream.PullMaxMessages(8192))
	if err != nil {
		return runStats{}, err
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		return st, fmt.Errorf("consume %s: %d of %d messages: %w", t.stream, st.records, want, ctx.Err())
	}
	st.elapsed = time.Since(start)
	st.cpu = m.seconds()
	return st, nil
}

// natsLatency publishes at rate for warm+dur while an ordered consumer
// delivering only new messages receives them; values carry their send time.
func natsLatency(ctx context.Context, c *natsConn, t natsTarget, s shape, rate float64, warm, dur time.Duration, pids []int) (latencyRun, error) {
	cons, err := c.js.OrderedConsumer(ctx, t.stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return latencyRun{}, err
	}
	timedFrom := time.Now().Add(warm).UnixNano()
	var received atomic.Int64
	var mu sync.Mutex
	lat := make([]float64, 0, int(rate*dur.Seconds())+1024)
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		now := time.Now().UnixNano()
		d := msg.Data()
		if len(d) >= 8 {
			sent := int64(binary.LittleEndian.Uint64(d))
			if sent >= timedFrom {
				mu.Lock()
				lat = append(lat, float64(now-sent)/1e6)
				mu.Unlock()
			}
		}
		received.Add(1)
	}, jetstream.PullMaxMessages(8192))
	if err != nil {
		return latencyRun{}, err
	}
	defer cc.Stop()
	var firstErr atomic.Pointer[error]
	ajs, err := jetstream.New(c.nc, jetstream.WithPublishAsyncMaxPending(natsMaxPending),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) { firstErr.CompareAndSwap(nil, &err) }))
	if err != nil {
		return latencyRun{}, err
	}
	keys, vals := keySet(s.keys), valuePool(s.valueLen)
	var res latencyRun
	m := meterCPU(pids...)
	start := time.Now()
	var sent, timedSent int64
	for {
		el := time.Since(start)
		if el >= warm+dur {
			break
		}
		target := int64(rate * el.Seconds())
		for sent < target {
			v := make([]byte, s.valueLen)
			copy(v, vals[sent%int64(len(vals))])
			now := time.Now().UnixNano()
			binary.LittleEndian.PutUint64(v, uint64(now))
			if now >= timedFrom {
				timedSent++
			}
			if _, err := ajs.PublishAsync(t.prefix+string(keys[keyIndex(int(sent), s.keys)]), v, jetstream.WithStallWait(time.Minute)); err != nil {
				return res, err
			}
			sent++
		}
		time.Sleep(100 * time.Microsecond)
	}
	res.achieved = float64(timedSent) / dur.Seconds()
	select {
	case <-ajs.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
	}
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < sent && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	res.cpu = m.seconds()
	cc.Stop()
	mu.Lock()
	res.lat = lat
	mu.Unlock()
	res.lost = sent - received.Load()
	if p := firstErr.Load(); p != nil {
		return res, fmt.Errorf("publish: %w", *p)
	}
	return res, nil
}

// natsWatchAll rebuilds a bucket's state with KV WatchAll (every current
// value, then a nil marker), as a NATS KV application starts.
func natsWatchAll(ctx context.Context, kv jetstream.KeyValue, pids []int) (int, runStats, error) {
	// The legacy push subscription under WatchAll bounds consumer creation
	// by the context's deadline (5 s when it has none): give it room.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	m := meterCPU(pids...)
	start := time.Now()
	w, err := kv.WatchAll(wctx)
	if err != nil {
		return 0, runStats{}, err
	}
	defer w.Stop()
	state := make(map[string][]byte)
	var st runStats
	for e := range w.Updates() {
		if e == nil {
			break
		}
		st.records++
		st.bytes += int64(len(e.Key()) + len(e.Value()))
		if e.Operation() == jetstream.KeyValuePut {
			state[e.Key()] = e.Value()
		} else {
			delete(state, e.Key())
		}
	}
	if wctx.Err() != nil {
		return 0, st, wctx.Err()
	}
	st.elapsed = time.Since(start)
	st.cpu = m.seconds()
	return len(state), st, nil
}
