package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"
)

// Scenario 3: end-to-end latency, produce call to consumer receipt, at
// fixed fractions of the measured peak. The Kafka-protocol systems all run
// at the same absolute rates: the fractions of kvlog's median peak in the
// produce scenario (same shape), so their latencies compare at equal load;
// NATS runs at the same fractions of its own peak (it cannot approach
// kvlog's). One more cell runs the Kafka-protocol systems at 50% of Apache
// Kafka's peak (its default durability), the rate of the goal against
// Kafka. Producer linger 0; a consumer tails the topic from its end.

// goalLatencyReps is the rounds of the goal's cell (50% of Apache
// Kafka's peak).
func (c *config) goalLatencyReps() int {
	if c.latencyGoalReps > 0 {
		return c.latencyGoalReps
	}
	return c.latencyReps
}

// latencyRepsFlag is -latency-reps (0: the mode's rounds);
// latencyPeaksFlag -latency-peaks, the peaks (records/s) to take instead of
// measuring them, by system (kvlog, kafka, nats-js): same-rate runs on
// different days, and no peak measured on a loaded machine.
var (
	latencyRepsFlag      int
	latencyPeaksFlag     = map[string]float64{}
	latencyFractionsFlag string // -latency-fractions
)

// parseLatencyPeaks reads -latency-peaks: comma-separated system=records/s.
func parseLatencyPeaks(spec string) (map[string]float64, error) {
	out := map[string]float64{}
	if spec == "" {
		return out, nil
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || f <= 0 || (k != "kvlog" && k != "kafka" && k != "nats-js") {
			return nil, fmt.Errorf("-latency-peaks %q: want kvlog|kafka|nats-js=records/s", kv)
		}
		out[k] = f
	}
	return out, nil
}

func latencyCell(frac float64) string { return fmt.Sprintf("%.0f%% of peak", 100*frac) }

// kafkaLatencyCell is the cell at half of Apache Kafka's peak.
const kafkaLatencyCell = "50% of Kafka's peak"

func scenLatency(ctx context.Context, r *runner) error {
	s := r.cfg.latencyShape
	names := r.cfg.latencySystems
	if r.baseline != "" {
		// The tree before the change measured, in the same rounds.
		names = append(slices.Clone(names), "kvlog-before")
	}
	specs := r.available("latency", names...)
	ins, err := r.startAll(specs)
	if err != nil {
		return err
	}
	defer r.stopAll("latency", ins)

	// Peaks: the latency generator's (franz-go's) from the produce
	// scenario, else measured here (2 runs). With the produce scenario's
	// pre-encoded generator the peak is the broker's, which franz-go's
	// linger-0 producer need not reach: the rates here stay fractions of
	// what this scenario's own client can drive.
	peak := map[string]float64{}
	for _, name := range []string{"kvlog", "nats-js", "kafka"} {
		if len(r.cfg.latencyFractions) == 0 && name != "kafka" {
			continue // only the goal's cell runs
		}
		if p, ok := latencyPeaksFlag[name]; ok {
			peak[name] = p
			r.note("latency", "%s peak given (-latency-peaks), not measured: %.0f records/s", name, p)
			continue
		}
		if p := r.kgoPeakRate(name, s); p > 0 {
			peak[name] = p
			continue
		}
		for _, in := range ins {
			if in.spec.name != name {
				continue
			}
			var rates []float64
			for i := 0; i < 2; i++ {
				st, err := produceOnce(ctx, in, s, r.recordsFor(in, s, r.cfg.produceBytes), genKgo)
				if err != nil {
					return err
				}
				rates = append(rates, st.recPerSec())
			}
			peak[name] = median(rates)
			r.note("latency", "%s peak measured here with franz-go (the produce scenario did not run it with franz-go): %.0f records/s", name, peak[name])
		}
	}
	if peak["kvlog"] == 0 && len(r.cfg.latencyFractions) > 0 {
		return fmt.Errorf("no kvlog peak rate")
	}
	// Each run gets a fresh topic or stream, removed after it (kfake keeps
	// everything in memory: one topic for all runs would grow by gigabytes).
	type target struct {
		in *instance
		nc *natsConn
	}
	var ts []*target
	for _, in := range ins {
		t := &target{in: in}
		if in.spec.kind == natsKind {
			if t.nc, err = natsDial(in.addr); err != nil {
				return err
			}
			defer t.nc.close()
		}
		ts = append(ts, t)
	}
	type cellDef struct {
		name string
		frac float64
		base string // the peak the rate is a fraction of ("": kvlog's, NATS its own)
	}
	var cells []cellDef
	for _, frac := range r.cfg.latencyFractions {
		cells = append(cells, cellDef{latencyCell(frac), frac, ""})
	}
	if peak["kafka"] > 0 {
		cells = append(cells, cellDef{kafkaLatencyCell, 0.5, "kafka"})
	}
	for _, cd := range cells {
		cell, frac := cd.name, cd.frac
		cts := ts
		if cd.base != "" {
			cts = nil
			for _, t := range ts {
				if t.in.spec.kind == kafkaKind {
					cts = append(cts, t)
				}
			}
		}
		reps := r.cfg.latencyReps
		if cd.base == "kafka" {
			reps = r.cfg.goalLatencyReps()
		}
		err := rotate(reps, cts, func(rep int, t *target) error {
			pids := []int{t.in.p.pid}
			settled := settleDisk(r.tmp)
			r.st.add("latency", cell, t.in.spec.name, "pre-run sync", "ms", msOf(settled))
			var res latencyRun
			var err error
			if t.in.spec.kind == natsKind {
				rate := frac * peak["nats-js"]
				var nt natsTarget
				if nt, err = t.nc.create(ctx, nextName("lat"), false); err != nil {
					return err
				}
				res, err = natsLatency(ctx, t.nc, nt, s, rate, r.cfg.latencyWarm, r.cfg.latencyDur, pids)
				t.nc.remove(ctx, nt)
				r.st.add("latency", cell, t.in.spec.name, "target", "records/s", rate)
			} else {
				rate := frac * peak["kvlog"]
				if cd.base != "" {
					rate = frac * peak[cd.base]
				}
				addr := []string{t.in.addr}
				topic := nextName("latency-")
				if err := createTopic(ctx, addr, topic, s.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
					return err
				}
				httpAddr := ""
				if t.in.spec.impl == "kvlogd" {
					httpAddr = t.in.http
				}
				res, err = kafkaLatency(ctx, addr, topic, s, rate, r.cfg.latencyWarm, r.cfg.latencyDur, pids, httpAddr)
				deleteTopic(ctx, addr, topic)
				r.st.add("latency", cell, t.in.spec.name, "target", "records/s", rate)
			}
			if err != nil {
				return fmt.Errorf("%s at %s: %w", t.in.spec.name, cell, err)
			}
			p := percentiles(res.lat, 0.5, 0.99, 0.999, 1)
			r.st.add("latency", cell, t.in.spec.name, "p50", "ms", p[0])
			r.st.add("latency", cell, t.in.spec.name, "p99", "ms", p[1])
			r.st.add("latency", cell, t.in.spec.name, "p99.9", "ms", p[2])
			r.st.add("latency", cell, t.in.spec.name, "max", "ms", p[3])
			r.st.add("latency", cell, t.in.spec.name, "achieved", "records/s", res.achieved)
			r.st.add("latency", cell, t.in.spec.name, "lost", "records", float64(res.lost))
			r.st.add("latency", cell, t.in.spec.name, "samples", "records", float64(len(res.lat)))
			logf("  %-13s %s rep %d: %8.0f rec/s p50 %.2f p99 %.2f p99.9 %.2f max %.1f ms (lost %d)", t.in.spec.name, cell, rep, res.achieved, p[0], p[1], p[2], p[3], res.lost)
			r.addLatencyTrace(cell, t.in.spec.name, res)
			return nil
		})
		if err != nil {
			return err
		}
		if cd.base == "kafka" {
			var pins []*instance
			for _, t := range cts {
				pins = append(pins, t.in)
			}
			r.profileLatency(ctx, pins, cell, s, frac*peak["kafka"])
		}
	}
	if peak["kafka"] > 0 {
		r.note("latency", "%s: every Kafka-protocol system at 50%% of Apache Kafka's (default durability) peak %s records/s", kafkaLatencyCell, fnum(peak["kafka"]))
	}
	r.note("latency", "before each run the file system holding every system's data is synced (untimed): a run does not wait for what earlier runs of other systems left in the page cache (Apache Kafka's default and kvlog-nofsync do not fsync; the kernel writes their data back about 30 s later, and meanwhile every fsync on the disk, of whichever system runs then, waits behind it: on the benchmark machine, under load, an fdatasync took up to about 600 ms while another file's 1 GB was written back, against ≤ 70 ms otherwise, for appends and overwrites of preallocated blocks alike). \"pre-run sync\" in the trace table is how long that sync took")
	if len(r.cfg.latencyFractions) > 0 {
		r.note("latency", "rates: Kafka-protocol systems at %s of kvlog's peak %s records/s; NATS at the same fractions of nats-js's peak %s records/s. The load generator (producer and consumer) runs on the same 2 cores: where \"achieved\" falls short of the target, the machine, not only the broker, was saturated, and the latencies say so",
			fracList(r.cfg.latencyFractions), fnum(peak["kvlog"]), fnum(peak["nats-js"]))
	}
	return nil
}

// profileLatency profiles kvlogd (pprof) and Apache Kafka (JFR) at the
// goal's rate in one more run per system after the timed rounds, so that
// the profilers' cost stays out of every measured latency; the report's
// explanation of the latency row reads these windows.
func (r *runner) profileLatency(ctx context.Context, ins []*instance, cell string, s shape, rate float64) {
	for _, in := range ins {
		if in.spec.name != "kvlog" && in.spec.impl != "kafka" {
			continue
		}
		addr := []string{in.addr}
		httpAddr := ""
		if in.spec.impl == "kvlogd" {
			httpAddr = in.http
		}
		r.profile(ctx, in, "latency", in.spec.name+" at "+cell+" (one more run, untimed)", r.cfg.profileSeconds, func() error {
			topic := nextName("latency-")
			if err := createTopic(ctx, addr, topic, s.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
				return err
			}
			defer deleteTopic(ctx, addr, topic)
			_, err := kafkaLatency(ctx, addr, topic, s, rate, r.cfg.latencyWarm, r.cfg.latencyDur, []int{in.p.pid}, httpAddr)
			return err
		})
	}
}

func fracList(fs []float64) string {
	s := ""
	for i, f := range fs {
		if i > 0 {
			s += "/"
		}
		s += fmt.Sprintf("%.0f%%", 100*f)
	}
	return s
}

// latencyTrace attributes every record's end-to-end latency to the stages
// it went through, so that a slow record can be told apart: waiting in the
// producer (its buffer, or the 5 Produce requests franz-go keeps in
// flight), the broker's commit (the Produce answer comes once the high
// watermark passed the batch), the consumer's fetch (a long poll not woken
// when the high watermark moved shows as a fetch answered after its whole
// max wait), the consumer's poll, or the generator itself (behind its
// schedule: CPU starvation, a blocked Produce call, GC). Each value
// carries its record's index in bytes 8-15 (after the send time), so the
// producer's promise, the consumer client's buffering hook and the poll
// find it without offsets.
type latencyTrace struct {
	sent, acked, fetched, polled []atomic.Int64 // unix ns by record index (0: not seen)

	mu          sync.Mutex
	on          bool      // the timed part runs
	produceRTT  []float64 // ms, each Produce request, write start to answer read
	produceWait []float64 // ms, each Produce request's wait to be written
	fetchRTT    []float64 // ms, each Fetch
	fetchLong   int       // fetches answered after ≥ 90% of their max wait
	maxWait     time.Duration

	// The consumer's fetch cycle (one Fetch in flight: franz-go sends the
	// next one once the records of the last were buffered and taken by
	// PollFetches), each Fetch of the timed part: its bytes, and after its
	// answer was read (fetchRTT: from its write, the broker's parking
	// and serving and the wire), in the client: answer read → its last
	// record buffered (decoding), → the next Fetch written (waiting for the
	// poll, the fetch manager, building the request).
	fetchBytes, fetchDecode, fetchIdle []float64
	lastReadEnd                        int64        // unix ns, the last Fetch answer read
	lastBuffered                       atomic.Int64 // unix ns, the last record buffered
	fetchRecords, fetchBatches         int64        // read in the timed part (FetchBatchRead)
	produceBatches, produceRecords     int64        // written in the timed part (ProduceBatchWritten)
}

// latencyIndexed is whether values of n bytes have room for the index.
func latencyIndexed(n int) bool { return n >= 16 }

func newLatencyTrace(n int, maxWait time.Duration) *latencyTrace {
	return &latencyTrace{
		sent: make([]atomic.Int64, n), acked: make([]atomic.Int64, n),
		fetched: make([]atomic.Int64, n), polled: make([]atomic.Int64, n),
		maxWait: maxWait,
	}
}

// index is the record index a traced value carries (-1: none).
func (t *latencyTrace) index(v []byte) int {
	if t == nil || !latencyIndexed(len(v)) {
		return -1
	}
	i := int(binary.LittleEndian.Uint64(v[8:])) - 1
	if i < 0 || i >= len(t.sent) {
		return -1
	}
	return i
}

func (t *latencyTrace) set(on bool) {
	t.mu.Lock()
	t.on = on
	t.mu.Unlock()
}

// latencyProducerHooks and latencyConsumerHooks are the two clients' hooks.
type (
	latencyProducerHooks struct{ t *latencyTrace }
	latencyConsumerHooks struct{ t *latencyTrace }
)

func (h latencyProducerHooks) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	t := h.t
	t.mu.Lock()
	if t.on {
		t.produceBatches++
		t.produceRecords += int64(m.NumRecords)
	}
	t.mu.Unlock()
}

func (h latencyConsumerHooks) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.FetchBatchMetrics) {
	t := h.t
	t.mu.Lock()
	if t.on {
		t.fetchBatches++
		t.fetchRecords += int64(m.NumRecords)
	}
	t.mu.Unlock()
}

func (h latencyProducerHooks) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if key != 0 || e.WriteErr != nil || e.ReadErr != nil {
		return
	}
	t := h.t
	t.mu.Lock()
	if t.on {
		t.produceRTT = append(t.produceRTT, msOf(e.DurationE2E()))
		t.produceWait = append(t.produceWait, msOf(e.WriteWait))
	}
	t.mu.Unlock()
}

func (h latencyConsumerHooks) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if key != 1 || e.WriteErr != nil || e.ReadErr != nil {
		return
	}
	t := h.t
	d := e.DurationE2E()
	now := time.Now().UnixNano() // (the hook runs once the answer is read)
	written := now - int64(d)
	t.mu.Lock()
	if t.on {
		t.fetchRTT = append(t.fetchRTT, msOf(d))
		if d >= t.maxWait*9/10 {
			t.fetchLong++
		}
		t.fetchBytes = append(t.fetchBytes, float64(e.BytesRead))
		if prev := t.lastReadEnd; prev != 0 && written > prev {
			// The previous answer's records were buffered before this
			// Fetch was sent (one in flight).
			decoded := max(t.lastBuffered.Load(), prev)
			t.fetchDecode = append(t.fetchDecode, float64(decoded-prev)/1e6)
			t.fetchIdle = append(t.fetchIdle, float64(max(written-decoded, 0))/1e6)
		}
	}
	t.lastReadEnd = now
	t.mu.Unlock()
}

func (h latencyConsumerHooks) OnFetchRecordBuffered(r *kgo.Record) {
	if i := h.t.index(r.Value); i >= 0 {
		now := time.Now().UnixNano()
		h.t.fetched[i].CompareAndSwap(0, now)
		h.t.lastBuffered.Store(now)
	}
}

func msOf(d time.Duration) float64 { return float64(d) / 1e6 }

// latencyBreakdown is what a traced run found, medians over the slowest
// 1% of its timed records unless named otherwise (ms).
type latencyBreakdown struct {
	slowFrom   float64 // the end-to-end latency the slowest 1% start at
	slowAcked  float64 // send → the producer's promise (queueing + request + commit)
	slowAtCons float64 // send → buffered in the consumer client (fetch answer read)
	slowPolled float64 // buffered in the consumer client → returned by PollFetches
	slowAt     float64 // when the slowest record was sent, s after the timed part began
	ackP50     float64 // send → promise, every record
	ackP99     float64
	produceP99 float64 // Produce request round trips
	produceMax float64
	waitP99    float64 // Produce requests' wait to be written
	fetchP99   float64 // Fetch round trips
	fetchLong  int
	behindMax  float64 // the generator's worst lag behind its schedule
	gcPauses   int
	gcMaxPause float64

	// The consumer's fetch cycle and the producer's batching over the
	// timed part (latencyTrace), and the CPU of each side.
	fetches                  int     // Fetch round trips
	fetchPerSec              float64 // Fetch round trips per second
	fetchRTTP50, fetchRTTP99 float64 // Fetch written → answer read, ms
	fetchKB                  float64 // answer size, median KB
	recsPerFetch             float64 // records read / Fetch round trips
	decodeP50, decodeP99     float64 // answer read → its last record buffered, ms
	idleP50, idleP99         float64 // … → the next Fetch written, ms
	batchesPerProduce        float64 // batches per Produce request
	recsPerBatch             float64 // records per produced batch
	genCores, brokerCores    float64 // CPU over the timed part, cores: this process (generator, producer and consumer), the broker
}

// breakdown computes the run's breakdown over the records sent at or after
// timedFrom (unix ns).
func (t *latencyTrace) breakdown(n int, timedFrom int64) latencyBreakdown {
	var b latencyBreakdown
	type rec struct{ sent, acked, fetched, polled int64 }
	var rs []rec
	var e2e, acks []float64
	for i := 0; i < n && i < len(t.sent); i++ {
		r := rec{t.sent[i].Load(), t.acked[i].Load(), t.fetched[i].Load(), t.polled[i].Load()}
		if r.sent < timedFrom || r.polled == 0 {
			continue
		}
		rs = append(rs, r)
		e2e = append(e2e, float64(r.polled-r.sent)/1e6)
		if r.acked != 0 {
			acks = append(acks, float64(r.acked-r.sent)/1e6)
		}
	}
	if len(rs) == 0 {
		return b
	}
	b.slowFrom = percentiles(slices.Clone(e2e), 0.99)[0]
	var sa, sc, sp []float64
	worst := 0
	for i, r := range rs {
		if e2e[i] > e2e[worst] {
			worst = i
		}
		if e2e[i] < b.slowFrom {
			continue
		}
		if r.acked != 0 {
			sa = append(sa, float64(r.acked-r.sent)/1e6)
		}
		if r.fetched != 0 {
			sc = append(sc, float64(r.fetched-r.sent)/1e6)
			sp = append(sp, float64(r.polled-r.fetched)/1e6)
		}
	}
	b.slowAcked, b.slowAtCons, b.slowPolled = median(sa), median(sc), median(sp)
	b.slowAt = float64(rs[worst].sent-timedFrom) / 1e9
	p := percentiles(acks, 0.5, 0.99)
	b.ackP50, b.ackP99 = p[0], p[1]
	t.mu.Lock()
	defer t.mu.Unlock()
	p = percentiles(t.produceRTT, 0.99, 1)
	b.produceP99, b.produceMax = p[0], p[1]
	b.waitP99 = percentiles(t.produceWait, 0.99)[0]
	b.fetchP99 = percentiles(t.fetchRTT, 0.99)[0]
	b.fetchLong = t.fetchLong
	b.fetches = len(t.fetchRTT)
	p = percentiles(slices.Clone(t.fetchRTT), 0.5, 0.99)
	b.fetchRTTP50, b.fetchRTTP99 = p[0], p[1]
	b.fetchKB = percentiles(slices.Clone(t.fetchBytes), 0.5)[0] / 1024
	if b.fetches > 0 {
		b.recsPerFetch = float64(t.fetchRecords) / float64(b.fetches)
	}
	p = percentiles(slices.Clone(t.fetchDecode), 0.5, 0.99)
	b.decodeP50, b.decodeP99 = p[0], p[1]
	p = percentiles(slices.Clone(t.fetchIdle), 0.5, 0.99)
	b.idleP50, b.idleP99 = p[0], p[1]
	if n := len(t.produceRTT); n > 0 {
		b.batchesPerProduce = float64(t.produceBatches) / float64(n)
	}
	if t.produceBatches > 0 {
		b.recsPerBatch = float64(t.produceRecords) / float64(t.produceBatches)
	}
	return b
}

// The kvlogd histograms a latency run reads before and after its timed
// part (Prometheus series; a filter is a label the line must carry).
var brokerHistSeries = []struct{ key, name, filter string }{
	{"fsync", "kvlog_log_flush_duration_seconds", ""},
	{"commit", "kvlog_produce_commit_wait_seconds", ""},
	{"produce", "kvlog_request_duration_seconds", `api="Produce"`},
	{"fetch", "kvlog_request_duration_seconds", `api="Fetch"`},
}

// brokerHists are cumulative bucket counts by upper bound (s), per series
// key of brokerHistSeries; nil when there is no kvlogd to ask.
type brokerHists map[string]map[float64]float64

// scrapeBrokerHists reads the histograms of the kvlogd serving HTTP at
// httpAddr ("": none).
func scrapeBrokerHists(httpAddr string) brokerHists {
	if httpAddr == "" {
		return nil
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	h := brokerHists{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		for _, se := range brokerHistSeries {
			if !strings.HasPrefix(l, se.name+"_bucket{") || !strings.Contains(l, se.filter) {
				continue
			}
			i := strings.Index(l, `le="`)
			f := strings.Fields(l)
			if i < 0 || len(f) < 2 {
				continue
			}
			leS := l[i+4:]
			leS = leS[:strings.IndexByte(leS, '"')]
			le, err1 := strconv.ParseFloat(leS, 64)
			n, err2 := strconv.ParseFloat(f[len(f)-1], 64)
			if err1 != nil || err2 != nil {
				continue
			}
			if h[se.key] == nil {
				h[se.key] = map[float64]float64{}
			}
			h[se.key][le] = n
		}
	}
	return h
}

// since is h minus an earlier scrape.
func (h brokerHists) since(before brokerHists) brokerHists {
	if h == nil || before == nil {
		return nil
	}
	out := brokerHists{}
	for k, bs := range h {
		out[k] = map[float64]float64{}
		for le, n := range bs {
			out[k][le] = n - before[k][le]
		}
	}
	return out
}

// count, above and quantile summarise series key: how many observations,
// how many above bound (s), and the upper bound (ms) of the bucket holding
// quantile q (q = 1: the slowest one's); NaN without the series.
func (h brokerHists) count(key string) float64 {
	bs := h[key]
	if bs == nil {
		return math.NaN()
	}
	return bs[math.Inf(1)]
}

func (h brokerHists) above(key string, bound float64) float64 {
	bs := h[key]
	if bs == nil {
		return math.NaN()
	}
	best, bestLe := 0.0, math.Inf(1)
	for le, n := range bs {
		if le >= bound*0.999 && le < bestLe {
			best, bestLe = n, le
		}
	}
	return bs[math.Inf(1)] - best
}

func (h brokerHists) quantile(key string, q float64) float64 {
	bs := h[key]
	if bs == nil || bs[math.Inf(1)] == 0 {
		return math.NaN()
	}
	les := slices.Sorted(maps.Keys(bs))
	want := q * bs[math.Inf(1)]
	for _, le := range les {
		if bs[le] >= want {
			return le * 1000
		}
	}
	return math.Inf(1)
}

// The trace metrics of a latency cell (latencyBreakdown; the broker's
// histograms for kvlogd), in the order the report's table shows them.
var latencyTraceMetrics = []struct{ metric, head string }{
	{"slow from", "slowest 1% from ms"},
	{"slow: acked", "their send → ack ms"},
	{"slow: at consumer", "send → consumer client ms"},
	{"slow: polled", "consumer client → poll ms"},
	{"produce req p99", "Produce request p99 ms"},
	{"fetch long polls", "fetches ≥ 90% of max wait"},
	{"generator behind", "generator behind max ms"},
	{"gc max pause", "generator GC max pause ms"},
	{"broker fsync >25.6ms", "broker fsyncs > 25.6 ms"},
	{"broker fsync max", "broker fsync max ≤ ms"},
	{"broker commit p99", "broker append → HW p99 ≤ ms"},
	{"broker produce p99", "broker Produce p99 ≤ ms"},
	{"pre-run sync", "pre-run sync ms"},
}

// The consumer's fetch cycle, the producer's batching and the CPU of a
// latency cell (latencyBreakdown), in the order of the report's second
// trace table.
var latencyFetchMetrics = []struct{ metric, head string }{
	{"fetches/s", "Fetch round trips/s"},
	{"records/fetch", "records per Fetch"},
	{"fetch KB", "KB per answer (median)"},
	{"fetch rtt p50", "Fetch round trip p50 ms"},
	{"fetch rtt p99", "Fetch round trip p99 ms"},
	{"broker fetch p50", "broker Fetch p50 ≤ ms"},
	{"broker fetch p99", "broker Fetch p99 ≤ ms"},
	{"fetch decode p50", "decode p50 ms"},
	{"fetch decode p99", "decode p99 ms"},
	{"fetch idle p50", "→ next Fetch p50 ms"},
	{"fetch idle p99", "→ next Fetch p99 ms"},
	{"batches/produce", "batches per Produce"},
	{"records/batch", "records per batch"},
	{"generator cores", "generator CPU cores"},
	{"broker cores", "broker CPU cores"},
}

// addLatencyTrace records and logs where a run's slow records waited.
func (r *runner) addLatencyTrace(cell, sys string, res latencyRun) {
	b := res.trace
	if b == nil {
		return
	}
	h := res.broker
	vals := []float64{b.slowFrom, b.slowAcked, b.slowAtCons, b.slowPolled, b.produceP99, float64(b.fetchLong), b.behindMax, b.gcMaxPause,
		h.above("fsync", 0.0256), h.quantile("fsync", 1), h.quantile("commit", 0.99), h.quantile("produce", 0.99)}
	for i, m := range latencyTraceMetrics[:len(vals)] {
		r.st.add("latency", cell, sys, m.metric, "ms", vals[i])
	}
	fvals := []float64{b.fetchPerSec, b.recsPerFetch, b.fetchKB, b.fetchRTTP50, b.fetchRTTP99, h.quantile("fetch", 0.5), h.quantile("fetch", 0.99),
		b.decodeP50, b.decodeP99, b.idleP50, b.idleP99, b.batchesPerProduce, b.recsPerBatch, b.genCores, b.brokerCores}
	for i, m := range latencyFetchMetrics {
		r.st.add("latency", cell, sys, m.metric, "", fvals[i])
	}
	logf("  %-13s fetch cycle: %.0f Fetch/s, %.0f records and %.1f KB per answer; round trip p50 %.2f p99 %.2f ms (broker p50 ≤ %.2f p99 ≤ %.2f ms); "+
		"answer → records buffered p50 %.2f p99 %.2f ms, → next Fetch p50 %.2f p99 %.2f ms; produce: %.1f batches per request, %.0f records per batch; "+
		"CPU cores: generator process %.2f, broker %.2f",
		sys, b.fetchPerSec, b.recsPerFetch, b.fetchKB, b.fetchRTTP50, b.fetchRTTP99, h.quantile("fetch", 0.5), h.quantile("fetch", 0.99), b.decodeP50, b.decodeP99, b.idleP50, b.idleP99,
		b.batchesPerProduce, b.recsPerBatch, b.genCores, b.brokerCores)
	logf("  %-13s trace: slowest 1%% (≥ %.1f ms, worst sent %.2f s into the timed part): send→ack %.1f, send→consumer client %.1f, client→poll %.1f ms; "+
		"all: send→ack p50 %.1f p99 %.1f; Produce requests p99 %.1f max %.1f (write wait p99 %.1f), Fetch p99 %.1f, %d fetches ≥ 90%% of max wait; "+
		"generator behind max %.1f ms, %d GCs max pause %.2f ms",
		sys, b.slowFrom, b.slowAt, b.slowAcked, b.slowAtCons, b.slowPolled, b.ackP50, b.ackP99, b.produceP99, b.produceMax, b.waitP99, b.fetchP99, b.fetchLong,
		b.behindMax, b.gcPauses, b.gcMaxPause)
	if h != nil {
		logf("  %-13s broker: %.0f fsyncs (%.0f > 25.6 ms, p99 ≤ %.1f, max ≤ %.1f ms), append → HW p99 ≤ %.1f max ≤ %.1f ms (%.0f batches), Produce p99 ≤ %.1f ms",
			sys, h.count("fsync"), h.above("fsync", 0.0256), h.quantile("fsync", 0.99), h.quantile("fsync", 1),
			h.quantile("commit", 0.99), h.quantile("commit", 1), h.count("commit"), h.quantile("produce", 0.99))
	}
}

// latencyTraceTable renders where the slowest records of cell waited
// (medians over rounds), when the runs were traced.
func latencyTraceTable(r *runner, w *md, cell string) {
	var rows [][]string
	for _, sys := range r.st.systems("latency", cell) {
		if len(r.st.get("latency", cell, sys, latencyTraceMetrics[0].metric)) == 0 {
			continue
		}
		row := []string{sys}
		for _, m := range latencyTraceMetrics {
			row = append(row, fnum(median(r.st.get("latency", cell, sys, m.metric))))
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return
	}
	w.p("Where the slowest 1%% of the records waited (medians over rounds; \"send → ack\": the producer's promise, which comes once the broker's high watermark passed the batch; \"consumer client\": franz-go buffered the record from a Fetch answer; the broker columns are kvlogd's own histograms over the timed part, as bucket upper bounds):")
	head := []string{"System"}
	for _, m := range latencyTraceMetrics {
		head = append(head, m.head)
	}
	w.table(head, rows)
	rows = nil
	for _, sys := range r.st.systems("latency", cell) {
		if len(r.st.get("latency", cell, sys, latencyFetchMetrics[0].metric)) == 0 {
			continue
		}
		row := []string{sys}
		for _, m := range latencyFetchMetrics {
			row = append(row, fnum(median(r.st.get("latency", cell, sys, m.metric))))
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return
	}
	w.p("The consumer's fetch cycle, the producer's batching and the CPU over the timed part (medians over rounds). franz-go keeps one Fetch in flight and sends the next once the last answer's records were decoded, buffered and taken by the poll: the round trip is from the Fetch written to its answer read (the broker's parking and serving, and the wire; \"broker Fetch\" is kvlogd's own histogram, arrival to answer ready, as bucket upper bounds), \"decode\" the answer read → its last record buffered, \"→ next Fetch\" from there to the next Fetch written (waiting for the poll, building the request). \"generator CPU\" is the load generator's process (paced producer, franz-go producer and consumer), on the same 2 cores as the broker:")
	head = []string{"System"}
	for _, m := range latencyFetchMetrics {
		head = append(head, m.head)
	}
	w.table(head, rows)
}

// settleDisk syncs the file system holding dir (syncfs(2)) and returns how
// long that took: the write-back of what earlier runs left dirty, done
// before a latency run rather than during it.
func settleDisk(dir string) time.Duration {
	start := time.Now()
	f, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer f.Close()
	_ = unix.Syncfs(int(f.Fd()))
	return time.Since(start)
}
