package metrics

import (
	"encoding/binary"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/buildinfo"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/wire"
)

// opMetrics are the metrics an operator alerts on: traffic and errors per
// topic and API, fsync latency, disk space, partition health (exported as
// 0 on a single node rather than absent), consumer groups and their lag,
// and the build. Request-path counters are updated in observe (every
// completed request); the rest is read at scrape time.
type opMetrics struct {
	src      Source
	bytesIn  *prometheus.CounterVec
	records  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
	errors   *prometheus.CounterVec
	flush    prometheus.Histogram
	commit   prometheus.Histogram
}

func newOpMetrics(src Source) *opMetrics {
	return &opMetrics{
		src: src,
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kvlog", Name: "topic_bytes_in_total",
			Help: "Record batch bytes appended by produce requests, by topic (Kafka BytesInPerSec)."}, []string{"topic"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kvlog", Name: "topic_records_in_total",
			Help: "Records appended by produce requests, by topic (Kafka MessagesInPerSec)."}, []string{"topic"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kvlog", Name: "topic_bytes_out_total",
			Help: "Record batch bytes returned to consumers' fetches (not followers'), by topic (Kafka BytesOutPerSec)."}, []string{"topic"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kvlog", Name: "request_errors_total",
			Help: "Error codes in responses, by API and Kafka error name: one per partition, group or resource that failed (Kafka ErrorsPerSec)."}, []string{"api", "error"}),
		flush: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "kvlog", Name: "log_flush_duration_seconds",
			Help:    "Time of each log flush that synced data (segment, indexes, directory) to disk (Kafka LogFlushRateAndTimeMs).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "kvlog", Name: "produce_commit_wait_seconds",
			Help:    "Time from a leader append to the high watermark passing its batch (the wait of its acks=all answer and of the consumers reading it): the group commit's fsync, or the followers' fetches.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
	}
}

func (m *opMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.bytesIn, m.records, m.bytesOut, m.errors, m.flush, m.commit, m}
}

// start hooks the engine's flushes into the histogram (one broker per
// process serves metrics).
func (m *opMetrics) start() {
	engine.SetFlushObserver(func(d time.Duration) { m.flush.Observe(d.Seconds()) })
	replica.SetCommitWaitObserver(func(d time.Duration) { m.commit.Observe(d.Seconds()) })
}

// observe accounts a completed request (see Metrics.Observe).
func (m *opMetrics) observe(key int16, kreq kmsg.Request, tally ProduceTally, resp kmsg.Response, fetch *wire.FetchReply, skip bool) {
	switch {
	case fetch != nil:
		req, _ := kreq.(*kmsg.FetchRequest)
		if req != nil && req.ReplicaID < 0 && req.ReplicaState.ID < 0 {
			for t, n := range fetch.TopicBytes {
				m.bytesOut.WithLabelValues(t).Add(float64(n))
			}
		}
		if fetch.Resp != nil {
			m.countErrors(key, fetch.Resp)
		}
	case resp != nil:
		if req, ok := kreq.(*kmsg.ProduceRequest); ok {
			if resp, ok := resp.(*kmsg.ProduceResponse); ok {
				m.produced(req, tally, resp)
			}
		}
		m.countErrors(key, resp)
	case skip:
		// acks=0 produce: appended unless refused; no answer to check.
		if req, ok := kreq.(*kmsg.ProduceRequest); ok {
			m.produced(req, tally, nil)
		}
	}
}

// produced counts the bytes and records of the partitions a produce
// appended (every partition when resp is nil: acks=0), from tally when
// the request's batches were tallied before its frame was reused.
func (m *opMetrics) produced(req *kmsg.ProduceRequest, tally ProduceTally, resp *kmsg.ProduceResponse) {
	var failed map[string]map[int32]bool
	if resp != nil {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					if failed == nil {
						failed = map[string]map[int32]bool{}
					}
					if failed[t.Topic] == nil {
						failed[t.Topic] = map[int32]bool{}
					}
					failed[t.Topic][p.Partition] = true
				}
			}
		}
	}
	for ti, t := range req.Topics {
		var bytes, records int64
		for pi, p := range t.Partitions {
			if failed[t.Topic][p.Partition] {
				continue
			}
			if tally != nil {
				bytes += tally[ti][pi].Bytes
				records += tally[ti][pi].Records
				continue
			}
			bytes += int64(len(p.Records))
			records += batchRecords(p.Records)
		}
		if bytes > 0 {
			m.bytesIn.WithLabelValues(t.Topic).Add(float64(bytes))
			m.records.WithLabelValues(t.Topic).Add(float64(records))
		}
	}
}

// ProduceTally is what the produce metrics count of a request's batches,
// per topic and partition in the request's order. A produce request whose
// batches are gone before it is answered (an acks=all request hands its
// frame back once appended) is tallied first (TallyProduce).
type ProduceTally [][]BatchTally

// BatchTally is one partition's batch bytes and records.
type BatchTally struct{ Bytes, Records int64 }

// TallyProduce tallies req's batches for the metrics.
func TallyProduce(req *kmsg.ProduceRequest) ProduceTally {
	t := make(ProduceTally, len(req.Topics))
	for ti, rt := range req.Topics {
		t[ti] = make([]BatchTally, len(rt.Partitions))
		for pi, p := range rt.Partitions {
			t[ti][pi] = BatchTally{Bytes: int64(len(p.Records)), Records: batchRecords(p.Records)}
		}
	}
	return t
}

// batchRecords sums the record counts of the v2 batch headers in b.
func batchRecords(b []byte) int64 {
	var n int64
	for len(b) >= record.OffRecords {
		size := record.OffLength + 4 + int64(int32(binary.BigEndian.Uint32(b[record.OffLength:])))
		if size < record.OffRecords || size > int64(len(b)) {
			break
		}
		n += int64(int32(binary.BigEndian.Uint32(b[record.OffNumRecords:])))
		b = b[size:]
	}
	return n
}

var errorCodeType = reflect.TypeOf(int16(0))

// countErrors counts every non-zero ErrorCode field in resp (top level,
// per topic, per partition, per group, per resource).
func (m *opMetrics) countErrors(key int16, resp kmsg.Response) {
	if fr, ok := resp.(*kmsg.FetchResponse); ok && fetchErrorFree(fr) {
		return // the most frequent response, walked without reflection
	}
	api := APIName(key)
	walkErrorCodes(reflect.ValueOf(resp), func(code int16) {
		// Steps of the protocol, not failures: a client's first
		// ApiVersions probe above the served version
		// (kvlog_api_versions_unsupported_total counts those), and the
		// JoinGroup that hands a new member its id.
		if (key == kmsg.ApiVersions.Int16() && code == kerr.UnsupportedVersion.Code) ||
			(key == kmsg.JoinGroup.Int16() && code == kerr.MemberIDRequired.Code) {
			return
		}
		name := strconv.Itoa(int(code))
		if e := kerr.ErrorForCode(code); e != nil {
			if ke, ok := e.(*kerr.Error); ok {
				name = ke.Message
			}
		}
		m.errors.WithLabelValues(api, name).Inc()
	}, 0)
}

// fetchErrorFree reports whether a fetch response has no error code at
// all (top level, topics' partitions): nothing for countErrors to count.
func fetchErrorFree(fr *kmsg.FetchResponse) bool {
	if fr.ErrorCode != 0 {
		return false
	}
	for i := range fr.Topics {
		for j := range fr.Topics[i].Partitions {
			if fr.Topics[i].Partitions[j].ErrorCode != 0 {
				return false
			}
		}
	}
	return true
}

// walkErrorCodes calls fn with every non-zero ErrorCode (an int16 field of
// that name) in v, down to depth 6, skipping byte slices. It runs for every
// response, so what it needs of a struct type (the ErrorCode field, the
// fields to descend into) is worked out once per type (errWalkPlan), not
// by looking fields up on each call.
func walkErrorCodes(v reflect.Value, fn func(int16), depth int) {
	if depth > 6 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkErrorCodes(v.Elem(), fn, depth+1)
		}
	case reflect.Struct:
		plan := errWalkPlanOf(v.Type())
		if plan.code >= 0 {
			if c := int16(v.Field(plan.code).Int()); c != 0 {
				fn(c)
			}
		}
		for _, i := range plan.nested {
			walkErrorCodes(v.Field(i), fn, depth+1)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkErrorCodes(v.Index(i), fn, depth+1)
		}
	}
}

// errWalkPlan is what walkErrorCodes looks at in a struct type: the index
// of its exported int16 ErrorCode field (-1: none) and, in field order,
// its exported fields that are structs, pointers or slices other than
// byte slices.
type errWalkPlan struct {
	code   int
	nested []int
}

var errWalkPlans sync.Map // reflect.Type → *errWalkPlan

func errWalkPlanOf(t reflect.Type) *errWalkPlan {
	if p, ok := errWalkPlans.Load(t); ok {
		return p.(*errWalkPlan)
	}
	plan := &errWalkPlan{code: -1}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Name == "ErrorCode" && f.Type == errorCodeType {
			plan.code = i
			continue
		}
		switch f.Type.Kind() {
		case reflect.Slice:
			if f.Type.Elem().Kind() == reflect.Uint8 {
				continue // bytes (record batches, metadata)
			}
			plan.nested = append(plan.nested, i)
		case reflect.Struct, reflect.Pointer:
			plan.nested = append(plan.nested, i)
		}
	}
	p, _ := errWalkPlans.LoadOrStore(t, plan)
	return p.(*errWalkPlan)
}

var (
	buildInfoDesc   = prometheus.NewDesc("kvlog_build_info", "Always 1; the labels say which build runs.", []string{"version", "goversion"}, nil)
	dirFreeDesc     = prometheus.NewDesc("kvlog_log_dir_free_bytes", "Bytes available to the broker on a log dir's volume.", []string{"dir"}, nil)
	dirTotalDesc    = prometheus.NewDesc("kvlog_log_dir_total_bytes", "Size of a log dir's volume in bytes.", []string{"dir"}, nil)
	offlineDesc     = prometheus.NewDesc("kvlog_offline_partitions", "Partitions without a leader: on a single node, those whose log could not be opened; in a cluster, as the metadata this broker holds says (every broker reports the cluster's count: alert on max).", nil, nil)
	underRepDesc    = prometheus.NewDesc("kvlog_under_replicated_partitions", "Partitions this broker leads whose ISR is smaller than their replica set (0 on a single node).", nil, nil)
	underMinISRDesc = prometheus.NewDesc("kvlog_under_min_isr_partitions", "Partitions this broker leads whose ISR is smaller than their min.insync.replicas (acks=all produce fails).", nil, nil)
	groupsDesc      = prometheus.NewDesc("kvlog_groups", "Consumer groups this broker coordinates, by state.", []string{"state"}, nil)
	rebalancesDesc  = prometheus.NewDesc("kvlog_group_rebalances_total", "Rebalances (new generations) completed by this broker's group coordinator since it started.", nil, nil)
	groupLagDesc    = prometheus.NewDesc("kvlog_group_lag", "High watermark minus the group's committed offset, per partition this broker leads (committed offsets only: a group's uncommitted progress is not seen).", []string{"group", "topic", "partition"}, nil)
	topicSizeDesc   = prometheus.NewDesc("kvlog_topic_size_bytes", "Bytes of a topic's partitions hosted here (internal topics included).", []string{"topic"}, nil)
)

func (m *opMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{buildInfoDesc, dirFreeDesc, dirTotalDesc, offlineDesc, underRepDesc, underMinISRDesc, groupsDesc, rebalancesDesc, groupLagDesc, topicSizeDesc} {
		ch <- d
	}
}

func (m *opMetrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	gauge(buildInfoDesc, 1, buildinfo.Release(), runtime.Version())
	for _, dir := range m.src.LogDirs() {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err == nil {
			gauge(dirFreeDesc, float64(st.Bavail)*float64(st.Bsize), dir)
			gauge(dirTotalDesc, float64(st.Blocks)*float64(st.Bsize), dir)
		}
	}

	var offline, underRep, underMinISR int
	for _, t := range m.src.Topics() {
		var size int64
		hosted := false
		for _, p := range t.Partitions {
			if p.Offline {
				offline++
			}
			if p.Log == nil {
				continue
			}
			hosted = true
			size += p.Log.Size()
			if !p.Leader {
				continue
			}
			if p.ISR < p.Replicas {
				underRep++
			}
			if p.ISR < t.MinInsync {
				underMinISR++
			}
		}
		if hosted {
			gauge(topicSizeDesc, float64(size), t.Name)
		}
	}
	gauge(offlineDesc, float64(offline))
	gauge(underRepDesc, float64(underRep))
	gauge(underMinISRDesc, float64(underMinISR))

	g := m.src.Groups()
	if g == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(rebalancesDesc, prometheus.CounterValue, float64(g.Rebalances))
	for group, lags := range g.Lags {
		for _, l := range lags {
			gauge(groupLagDesc, float64(l.Lag), group, l.Topic, strconv.Itoa(int(l.Partition)))
		}
	}
	for st, n := range g.ByState {
		gauge(groupsDesc, float64(n), st)
	}
}
