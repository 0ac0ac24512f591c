package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvlog/kvlog/client"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka-protocol load, with franz-go (kgo) — the same client, options and
// records against kvlogd, kfake and the replicated cluster.

// runStats is one timed run.
type runStats struct {
	records int64
	bytes   int64 // payload: key + value bytes
	elapsed time.Duration
	cpu     float64 // CPU seconds of the system's process(es) during the run
	// clientCPU: CPU seconds of this process (the load generator: franz-go
	// or the pre-encoded requests) over the same window; 0 when not metered.
	clientCPU float64
	// Kafka produce only: the median round trip of a Produce request as the
	// client saw it (write, wait, read; pipelined requests wait for the
	// ones before them) and the median request size; reqs: the Produce
	// requests of the run; inFlight: the mean number of Produce requests
	// outstanding on the connection as each was written, itself included
	// (franz-go's producer; the pre-encoded generator's is fixed).
	reqMs, reqKB float64
	reqs         int
	inFlight     float64
}

// reqHook collects the Produce requests' round trips (franz-go's
// HookBrokerE2E) and how many were outstanding as each was written
// (HookBrokerWrite; one broker).
type reqHook struct {
	mu        sync.Mutex
	on        bool
	ms, size  []float64
	out       int // written, not yet answered
	outSum    int // sum of out at each write while on
	outWrites int
}

func (h *reqHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key != 0 || err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.out++
	if h.on {
		h.outSum += h.out
		h.outWrites++
	}
}

func (h *reqHook) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if key != 0 || e.WriteErr != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.out--
	if e.ReadErr != nil {
		return
	}
	if h.on {
		h.ms = append(h.ms, float64(e.DurationE2E().Microseconds())/1000)
		h.size = append(h.size, float64(e.BytesWritten)/1024)
	}
}

func (h *reqHook) set(on bool) {
	h.mu.Lock()
	h.on = on
	h.mu.Unlock()
}

func (s runStats) recPerSec() float64 { return float64(s.records) / s.elapsed.Seconds() }
func (s runStats) mbPerSec() float64  { return float64(s.bytes) / 1e6 / s.elapsed.Seconds() }
func (s runStats) cpuPerGB() float64  { return s.cpu / (float64(s.bytes) / 1e9) }

// clientMeter meters this process's CPU (the load generator's).
func clientMeter() *cpuMeter { return meterCPU(os.Getpid()) }

// Consumer fetch sizes for every Kafka-protocol read.
const (
	fetchMaxBytes     = 64 << 20
	fetchMaxPartBytes = 16 << 20
)

func kafkaClient(addr []string, opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr...)}, opts...)...)
}

// createTopic creates a topic and waits until every partition has a leader.
// growPartitions adds partitions to topic, which has have, up to n, at most
// maxPartitionsPerCreate per request.
func growPartitions(ctx context.Context, adm *kadm.Client, topic string, have, n int32) error {
	for have < n {
		have = min(n, have+maxPartitionsPerCreate)
		rs, err := adm.UpdatePartitions(ctx, int(have), topic)
		if err == nil {
			err = rs.Error()
		}
		if err != nil {
			return fmt.Errorf("topic %s: grow to %d partitions: %w", topic, have, err)
		}
	}
	return nil
}

// maxPartitionsPerCreate bounds the partitions one CreateTopics or
// CreatePartitions request adds (see createTopic).
const maxPartitionsPerCreate = 5000

func createTopic(ctx context.Context, addr []string, topic string, partitions int32, rf int16, configs map[string]string) error {
	cl, err := kafkaClient(addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	cfg := map[string]*string{}
	for k, v := range configs {
		cfg[k] = kadm.StringPtr(v)
	}
	// Apache Kafka in KRaft mode refuses one request that would write more
	// than 10,000 metadata records (POLICY_VIOLATION), and a topic of P
	// partitions is P+1 records: larger topics are created in steps, the
	// topic first and then partitions added up to the count.
	first := min(partitions, maxPartitionsPerCreate)
	resp, err := adm.CreateTopic(ctx, first, rf, cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	if err := growPartitions(ctx, adm, topic, first, partitions); err != nil {
		return err
	}
	for {
		md, err := adm.Metadata(ctx, topic)
		if err == nil {
			if td, ok := md.Topics[topic]; ok && td.Err == nil && len(td.Partitions) == int(partitions) {
				ready := true
				for _, p := range td.Partitions {
					if p.Leader < 0 || p.Err != nil || len(p.ISR) < int(rf) {
						ready = false
					}
				}
				if ready {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s: no leaders: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func deleteTopic(ctx context.Context, addr []string, topic string) {
	cl, err := kafkaClient(addr)
	if err != nil {
		return
	}
	defer cl.Close()
	kadm.NewClient(cl).DeleteTopics(ctx, topic)
}

// producerOpts are the producer settings of a shape: franz-go's defaults
// (linger 10 ms, batches up to 1,000,012 bytes, 50,000 buffered records,
// murmur2 key partitioning) with the shape's acks (acks=all idempotent,
// acks=1 not) and compression; linger >= 0 overrides the linger.
func producerOpts(s shape, linger time.Duration) []kgo.Opt {
	var opts []kgo.Opt
	switch s.comp {
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	default:
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	}
	if s.acks == "1" {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	} else {
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if linger >= 0 {
		opts = append(opts, kgo.ProducerLinger(linger))
	}
	return opts
}

// kafkaProduce writes n records of shape s (records first..first+n-1 of the
// key sequence) as fast as the producer goes and times it. A first record,
// produced synchronously before the clock starts, sets up connections,
// metadata and the producer id; it is not counted.
func kafkaProduce(ctx context.Context, addr []string, topic string, s shape, first, n int, pids []int) (runStats, error) {
	return kafkaProduceWith(ctx, addr, topic, s, first, n, pids)
}

// kafkaProduceWith is kafkaProduce with more producer options.
func kafkaProduceWith(ctx context.Context, addr []string, topic string, s shape, first, n int, pids []int, extra ...kgo.Opt) (runStats, error) {
	hook := &reqHook{}
	cl, err := kafkaClient(addr, append(append(producerOpts(s, -1), kgo.DefaultProduceTopic(topic), kgo.WithHooks(hook)), extra...)...)
	if err != nil {
		return runStats{}, err
	}
	defer cl.Close()
	keys, vals := keySet(s.keys), valuePool(s.valueLen)
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: keys[0], Value: vals[0]}).FirstErr(); err != nil {
		return runStats{}, fmt.Errorf("warm-up produce: %w", err)
	}
	hook.set(true)
	// Records are recycled through a free list once acknowledged, so the
	// generator's own garbage does not grow with n.
	const pool = 60_000
	free := make(chan *kgo.Record, pool)
	for i := 0; i < pool; i++ {
		free <- new(kgo.Record)
	}
	var (
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	wg.Add(n)
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
		free <- r
		wg.Done()
	}
	m, cm := meterCPU(pids...), clientMeter()
	start := time.Now()
	for i := first; i < first+n; i++ {
		r := <-free
		*r = kgo.Record{Key: keys[keyIndex(i, s.keys)], Value: vals[i%len(vals)]}
		cl.Produce(ctx, r, promise)
	}
	wg.Wait()
	st := runStats{records: int64(n), bytes: int64(n) * int64(s.recordBytes()), elapsed: time.Since(start), cpu: m.seconds(), clientCPU: cm.seconds()}
	hook.set(false)
	hook.mu.Lock()
	st.reqMs, st.reqKB = median(hook.ms), median(hook.size)
	st.reqs = len(hook.ms)
	if hook.outWrites > 0 {
		st.inFlight = float64(hook.outSum) / float64(hook.outWrites)
	}
	hook.mu.Unlock()
	if p := firstErr.Load(); p != nil {
		return st, fmt.Errorf("produce: %w", *p)
	}
	return st, nil
}

// endOffsets lists a topic's partitions' end offsets.
func endOffsets(ctx context.Context, addr []string, topic string) (map[int32]int64, error) {
	cl, err := kafkaClient(addr)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = o.Err
		}
		out[o.Partition] = o.Offset
	})
	return out, lerr
}

// kafkaConsume reads topic from the given offsets (nil: from the start of
// every partition) up to the given end offsets (nil: the end offsets at the
// call) and times it from the first poll.
func kafkaConsume(ctx context.Context, addr []string, topic string, from, to map[int32]int64, pids []int) (runStats, error) {
	var err error
	if to == nil {
		if to, err = endOffsets(ctx, addr, topic); err != nil {
			return runStats{}, err
		}
	}
	parts := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	for p, end := range to {
		start := int64(0)
		if from != nil {
			start = from[p]
		}
		if from == nil {
			parts[p] = kgo.NewOffset().AtStart()
		} else {
			parts[p] = kgo.NewOffset().At(start)
		}
		if end > start {
			remaining[p] = end
		}
	}
	cl, err := kafkaClient(addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchMaxBytes(fetchMaxBytes), kgo.FetchMaxPartitionBytes(fetchMaxPartBytes), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return runStats{}, err
	}
	defer cl.Close()
	var st runStats
	m, cm := meterCPU(pids...), clientMeter()
	start := time.Now()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return st, fmt.Errorf("consume %s: %d records read, %d partitions unfinished: %w", topic, st.records, len(remaining), ctx.Err())
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("fetch partition %d: %w", p, err) })
		if ferr != nil {
			return st, ferr
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			end, ok := remaining[p.Partition]
			if !ok {
				return
			}
			for _, r := range p.Records {
				if r.Offset >= end {
					break
				}
				st.records++
				st.bytes += int64(len(r.Key) + len(r.Value))
			}
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 >= end {
				delete(remaining, p.Partition)
			}
		})
	}
	st.elapsed = time.Since(start)
	st.cpu = m.seconds()
	st.clientCPU = cm.seconds()
	return st, nil
}

// latencyRun is the result of one paced end-to-end run.
type latencyRun struct {
	lat      []float64 // ms, produce call to consumer receipt, after the warm-up
	achieved float64   // records/s actually sent over the timed part
	lost     int64     // sent but not received within the drain timeout
	cpu      float64
	trace    *latencyBreakdown // where the slow records waited (nil: not traced)
	broker   brokerHists       // a kvlogd's histograms over the timed part
}

// kafkaLatency produces at rate records/s for warm+dur (one partition
// assumed, any works) with linger 0, while a consumer tails the topic from
// its end; each value carries its send time in its first 8 bytes.
//
// Every record is traced (latencyTrace): res.trace says where the slowest
// 1% of them waited. With httpAddr (a kvlogd's), res.broker holds the
// broker's own histograms over the timed part.
func kafkaLatency(ctx context.Context, addr []string, topic string, s shape, rate float64, warm, dur time.Duration, pids []int, httpAddr string) (latencyRun, error) {
	ends, err := endOffsets(ctx, addr, topic)
	if err != nil {
		return latencyRun{}, err
	}
	parts := map[int32]kgo.Offset{}
	for p, e := range ends {
		parts[p] = kgo.NewOffset().At(e)
	}
	const maxWait = 500 * time.Millisecond
	var tr *latencyTrace
	if latencyIndexed(s.valueLen) {
		tr = newLatencyTrace(int(rate*(warm+dur).Seconds()*1.05)+1024, maxWait)
	}
	var consHooks, prodHooks []kgo.Opt
	if tr != nil {
		consHooks = []kgo.Opt{kgo.WithHooks(latencyConsumerHooks{tr})}
		prodHooks = []kgo.Opt{kgo.WithHooks(latencyProducerHooks{tr})}
	}
	cons, err := kafkaClient(addr, append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchMaxBytes(fetchMaxBytes), kgo.FetchMaxPartitionBytes(fetchMaxPartBytes), kgo.FetchMaxWait(maxWait)}, consHooks...)...)
	if err != nil {
		return latencyRun{}, err
	}
	defer cons.Close()
	prod, err := kafkaClient(addr, append(append(producerOpts(s, 0), kgo.DefaultProduceTopic(topic)), prodHooks...)...)
	if err != nil {
		return latencyRun{}, err
	}
	defer prod.Close()
	keys, vals := keySet(s.keys), valuePool(s.valueLen)
	// Warm-up record: a value shorter than a timestamp, ignored by the
	// consumer.
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: keys[0], Value: []byte("w")}).FirstErr(); err != nil {
		return latencyRun{}, err
	}

	var res latencyRun
	timedFrom := time.Now().Add(warm).UnixNano()
	var received atomic.Int64
	lat := make([]float64, 0, int(rate*dur.Seconds())+1024)
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	consDone := make(chan error, 1)
	var latMu sync.Mutex
	go func() {
		for {
			fs := cons.PollFetches(cctx)
			if cctx.Err() != nil {
				consDone <- nil
				return
			}
			now := time.Now().UnixNano()
			latMu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				if len(r.Value) < 8 {
					return // a warm-up record
				}
				if i := tr.index(r.Value); i >= 0 {
					tr.polled[i].Store(now)
				}
				sent := int64(binary.LittleEndian.Uint64(r.Value))
				if sent >= timedFrom {
					lat = append(lat, float64(now-sent)/1e6)
				}
				received.Add(1)
			})
			latMu.Unlock()
		}
	}()

	var firstErr atomic.Pointer[error]
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
			return
		}
		if i := tr.index(r.Value); i >= 0 {
			tr.acked[i].Store(time.Now().UnixNano())
		}
	}
	m := meterCPU(pids...)
	start := time.Now()
	total := warm + dur
	var sent, timedSent int64
	var behind time.Duration // the generator's worst lag behind its schedule (timed part)
	var gc0 debug.GCStats
	hist0 := make(chan brokerHists, 1) // (scraped beside the generator, not in its way)
	timed := false
	var genCPU, brokerCPU *cpuMeter // over the timed part
	var timedStart time.Time
	for {
		el := time.Since(start)
		if el >= total {
			break
		}
		if !timed && el >= warm {
			timed = true
			if tr != nil {
				tr.set(true)
			}
			debug.ReadGCStats(&gc0)
			genCPU, brokerCPU, timedStart = meterCPU(os.Getpid()), meterCPU(pids...), time.Now()
			go func() { hist0 <- scrapeBrokerHists(httpAddr) }()
		}
		if timed {
			behind = max(behind, el-time.Duration(float64(sent)/rate*float64(time.Second)))
		}
		target := int64(rate * el.Seconds())
		for sent < target {
			v := make([]byte, s.valueLen)
			copy(v, vals[sent%int64(len(vals))])
			now := time.Now().UnixNano()
			binary.LittleEndian.PutUint64(v, uint64(now))
			if tr != nil && sent < int64(len(tr.sent)) {
				binary.LittleEndian.PutUint64(v[8:], uint64(sent+1))
				tr.sent[sent].Store(now)
			}
			if now >= timedFrom {
				timedSent++
			}
			prod.Produce(ctx, &kgo.Record{Key: keys[keyIndex(int(sent), s.keys)], Value: v}, promise)
			sent++
		}
		time.Sleep(100 * time.Microsecond)
	}
	res.achieved = float64(timedSent) / dur.Seconds()
	if tr != nil {
		tr.set(false)
	}
	var genCores, brokerCores float64
	if timed {
		el := time.Since(timedStart).Seconds()
		genCores, brokerCores = genCPU.seconds()/el, brokerCPU.seconds()/el
	}
	var gc1 debug.GCStats
	debug.ReadGCStats(&gc1)
	if timed {
		res.broker = scrapeBrokerHists(httpAddr).since(<-hist0)
	}
	prod.Flush(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < sent && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	res.cpu = m.seconds()
	ccancel()
	<-consDone
	latMu.Lock()
	res.lat = lat
	latMu.Unlock()
	res.lost = sent - received.Load()
	if tr != nil {
		b := tr.breakdown(int(sent), timedFrom)
		b.behindMax = msOf(behind)
		b.genCores, b.brokerCores = genCores, brokerCores
		b.fetchPerSec = float64(b.fetches) / dur.Seconds()
		b.gcPauses = int(gc1.NumGC - gc0.NumGC)
		for i := 0; i < b.gcPauses && i < len(gc1.Pause); i++ {
			b.gcMaxPause = max(b.gcMaxPause, msOf(gc1.Pause[i]))
		}
		res.trace = &b
	}
	if p := firstErr.Load(); p != nil {
		return res, fmt.Errorf("produce: %w", *p)
	}
	return res, nil
}

// rawReplayMap is the hand-written franz-go replay loop an application
// would use: end offsets, consume every partition from its start to them,
// keep the latest value per key in a map. It returns the live keys.
func rawReplayMap(ctx context.Context, addr []string, topic string, pids []int) (int, runStats, error) {
	to, err := endOffsets(ctx, addr, topic)
	if err != nil {
		return 0, runStats{}, err
	}
	parts := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	for p, e := range to {
		parts[p] = kgo.NewOffset().AtStart()
		if e > 0 {
			remaining[p] = e
		}
	}
	cl, err := kafkaClient(addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchMaxBytes(fetchMaxBytes), kgo.FetchMaxPartitionBytes(fetchMaxPartBytes), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return 0, runStats{}, err
	}
	defer cl.Close()
	m := meterCPU(pids...)
	start := time.Now()
	state := make(map[string][]byte)
	var st runStats
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return 0, st, err
		}
		if ctx.Err() != nil {
			return 0, st, ctx.Err()
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if r.Value == nil {
					delete(state, string(r.Key))
				} else {
					state[string(r.Key)] = r.Value
				}
				st.records++
				st.bytes += int64(len(r.Key) + len(r.Value))
			}
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 >= remaining[p.Partition] {
				delete(remaining, p.Partition)
			}
		})
	}
	st.elapsed = time.Since(start)
	st.cpu = m.seconds()
	return len(state), st, nil
}

// libraryReplay rebuilds the table with kvlog's client library
// (client.Open with ReplayOnly), the way a kvlog application starts.
func libraryReplay(ctx context.Context, addr []string, topic string, uncompacted bool, pids []int) (int, runStats, error) {
	opts := []client.Option{client.ReplayOnly()}
	if uncompacted {
		opts = append(opts, client.AllowUncompacted())
	}
	m := meterCPU(pids...)
	start := time.Now()
	tbl, err := client.Open(ctx, addr, topic, opts...)
	if err != nil {
		return 0, runStats{}, err
	}
	el := time.Since(start)
	n := tbl.Len()
	stats := tbl.Stats()
	tbl.Close()
	return n, runStats{records: stats.Records, bytes: stats.Bytes, elapsed: el, cpu: m.seconds()}, nil
}
