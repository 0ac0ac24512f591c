package cleaner

import (
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cleaner's Prometheus metrics (Kafka's LogCleaner and
// LogCleanerManager gauges, plus counters). Per-partition gauges are
// collected from the Manager's state at scrape time, so partitions that go
// away leave no stale series.
type metrics struct {
	m *Manager

	bytesRead, bytesWritten     prometheus.Counter
	recordsRead, recordsRetain  prometheus.Counter
	tombstonesDropped           prometheus.Counter
	passes                      *prometheus.CounterVec
	threads                     prometheus.Gauge
	maxDirtyRatio               atomicFloat
	maxCompactionDelay          atomic.Int64 // ns
	lastDuration, lastRecopy    atomicFloat
	lastUtilization             atomicFloat
	dirtyRatio, uncleanable     *prometheus.Desc
	uncleanableCount, uncBytes  *prometheus.Desc
	maxDirty, recopy, cleanTime *prometheus.Desc
	bufferUtil, sinceLastRun    *prometheus.Desc
	compactionDelay, deadThread *prometheus.Desc
	throttled, mapBytes         *prometheus.Desc
}

type atomicFloat struct{ v atomic.Uint64 }

func (f *atomicFloat) Store(x float64) { f.v.Store(math.Float64bits(x)) }
func (f *atomicFloat) Load() float64   { return math.Float64frombits(f.v.Load()) }

const ns = "kvlog_cleaner_"

func newMetrics(m *Manager) *metrics {
	part := []string{"topic", "partition"}
	return &metrics{
		m:                 m,
		bytesRead:         prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "bytes_read_total", Help: "Bytes of segments read by clean passes (map building and recopy)."}),
		bytesWritten:      prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "bytes_written_total", Help: "Bytes of cleaned segments swapped in."}),
		recordsRead:       prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "records_read_total", Help: "Records examined while recopying."}),
		recordsRetain:     prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "records_retained_total", Help: "Records kept while recopying."}),
		tombstonesDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "tombstones_dropped_total", Help: "Tombstones removed after their delete horizon."}),
		passes:            prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "passes_total", Help: "Clean passes by result (ok, aborted, failed)."}, []string{"result"}),
		threads:           prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "threads", Help: "Running cleaner threads."}),
		dirtyRatio:        prometheus.NewDesc(ns+"dirty_ratio", "Cleanable bytes / (clean + cleanable bytes) of a compacted partition at the last planning round.", part, nil),
		uncleanable:       prometheus.NewDesc(ns+"partition_uncleanable", "1 when the partition is marked uncleanable.", part, nil),
		uncleanableCount:  prometheus.NewDesc(ns+"uncleanable_partitions", "Partitions marked uncleanable (Kafka uncleanable-partitions-count).", nil, nil),
		uncBytes:          prometheus.NewDesc(ns+"uncleanable_bytes", "Cleanable bytes of uncleanable partitions (Kafka uncleanable-bytes).", nil, nil),
		maxDirty:          prometheus.NewDesc(ns+"max_dirty_percent", "Highest dirty ratio of any compacted partition, percent (Kafka max-dirty-percent).", nil, nil),
		recopy:            prometheus.NewDesc(ns+"recopy_percent", "Bytes written / bytes read of the last pass, percent (Kafka cleaner-recopy-percent).", nil, nil),
		cleanTime:         prometheus.NewDesc(ns+"last_clean_duration_seconds", "Duration of the last pass (Kafka max-clean-time-secs).", nil, nil),
		bufferUtil:        prometheus.NewDesc(ns+"buffer_utilization_percent", "Offset map fill of the last pass, percent (Kafka max-buffer-utilization-percent).", nil, nil),
		sinceLastRun:      prometheus.NewDesc(ns+"time_since_last_run_seconds", "Time since the cleaner last planned (Kafka time-since-last-run-ms).", nil, nil),
		compactionDelay:   prometheus.NewDesc(ns+"max_compaction_delay_seconds", "How far past max.compaction.lag.ms the most overdue partition is (Kafka max-compaction-delay-secs).", nil, nil),
		deadThread:        prometheus.NewDesc(ns+"dead_threads", "Cleaner threads that died (Kafka DeadThreadCount); always 0, failures are isolated per partition.", nil, nil),
		mapBytes:          prometheus.NewDesc(ns+"offset_map_bytes", "Offset map memory the cleaner holds now (allocated at a thread's first pass, released when it has been idle).", nil, nil),
		throttled:         prometheus.NewDesc(ns+"throttled_seconds_total", "Time threads waited on log.cleaner.io.max.bytes.per.second.", nil, nil),
	}
}

func (x *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{x.bytesRead, x.bytesWritten, x.recordsRead, x.recordsRetain, x.tombstonesDropped, x.passes, x.threads, x}
}

func (x *metrics) register(r prometheus.Registerer) error {
	for i, c := range x.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range x.collectors()[:i] {
				r.Unregister(d)
			}
			return err
		}
	}
	return nil
}

func (x *metrics) unregister(r prometheus.Registerer) {
	for _, c := range x.collectors() {
		r.Unregister(c)
	}
}

// pass accounts a finished pass.
func (x *metrics) pass(st PassStats, err error, aborted bool) {
	x.bytesRead.Add(float64(st.BytesRead + st.MapBytesRead))
	x.bytesWritten.Add(float64(st.BytesWritten))
	x.recordsRead.Add(float64(st.RecordsRead))
	x.recordsRetain.Add(float64(st.RecordsRetained))
	x.tombstonesDropped.Add(float64(st.TombstonesDropped))
	switch {
	case err == nil:
		x.passes.WithLabelValues("ok").Inc()
		x.lastDuration.Store(st.Duration.Seconds())
		x.lastRecopy.Store(100 * st.RecopyRatio())
		x.lastUtilization.Store(100 * st.MapUtilization)
	case aborted:
		x.passes.WithLabelValues("aborted").Inc()
	default:
		x.passes.WithLabelValues("failed").Inc()
	}
}

// Describe implements prometheus.Collector for the state-derived gauges.
func (x *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{x.dirtyRatio, x.uncleanable, x.uncleanableCount, x.uncBytes, x.maxDirty, x.recopy, x.cleanTime, x.bufferUtil, x.sinceLastRun, x.compactionDelay, x.deadThread, x.throttled, x.mapBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (x *metrics) Collect(ch chan<- prometheus.Metric) {
	m := x.m
	m.mu.Lock()
	var unc, uncBytes float64
	for _, p := range m.sortedParts() {
		lv := []string{p.tp.Topic, strconv.Itoa(int(p.tp.Partition))}
		ch <- prometheus.MustNewConstMetric(x.dirtyRatio, prometheus.GaugeValue, p.assess.Ratio, lv...)
		u := 0.0
		if p.uncleanable {
			u = 1
			unc++
			uncBytes += float64(p.assess.CleanableBytes)
		}
		ch <- prometheus.MustNewConstMetric(x.uncleanable, prometheus.GaugeValue, u, lv...)
	}
	since := m.clk.Now().Sub(m.lastRun)
	m.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(x.uncleanableCount, unc)
	gauge(x.uncBytes, uncBytes)
	gauge(x.maxDirty, 100*x.maxDirtyRatio.Load())
	gauge(x.recopy, x.lastRecopy.Load())
	gauge(x.cleanTime, x.lastDuration.Load())
	gauge(x.bufferUtil, x.lastUtilization.Load())
	gauge(x.sinceLastRun, since.Seconds())
	gauge(x.compactionDelay, time.Duration(x.maxCompactionDelay.Load()).Seconds())
	gauge(x.deadThread, 0)
	gauge(x.mapBytes, float64(m.mapBytes.Load()))
	ch <- prometheus.MustNewConstMetric(x.throttled, prometheus.CounterValue, m.throttle.Throttled().Seconds())
}
