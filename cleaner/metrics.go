package cleaner

import (
	"math"
	"strconv"
	"strings"
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
	idleRolls                   prometheus.Counter
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
		idleRolls:         prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "idle_rolls_total", Help: "Active segments of compacted partitions rolled because they had no append for kvlog.cleaner.idle.roll.ms and were then cleanable."}),
		passes:            prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "passes_total", Help: "Clean passes by result (ok, aborted, failed)."}, []string{"result"}),
		threads:           prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "threads", Help: "Running cleaner threads."}),
		dirtyRatio:        prometheus.NewDesc(ns+"dirty_ratio", "Cleanable bytes / (clean + cleanable bytes) of a compacted partition at the last planning round.", part, nil),
		uncleanable:       prometheus.NewDesc(ns+"partition_uncleanable", "1 when the partition is marked uncleanable.", part, nil),
		uncleanableCount:  prometheus.NewDesc(ns+"uncleanable_partitions", "Partitions marked uncleanable (Kafka uncleanable-partitions-count).", nil, nil),
		uncBytes:          prometheus.NewDesc(ns+"uncleanable_bytes", "Cleanable bytes of uncleanable partitions (Kafka uncleanable-bytes).", nil, nil),
		maxDirty:          prometheus.NewDesc(ns+"max_dirty_ratio", "Highest dirty ratio of any compacted partition, 0-1 (Kafka max-dirty-percent / 100).", nil, nil),
		recopy:            prometheus.NewDesc(ns+"recopy_ratio", "Bytes written / bytes read of the last pass, 0-1 (Kafka cleaner-recopy-percent / 100).", nil, nil),
		cleanTime:         prometheus.NewDesc(ns+"last_clean_duration_seconds", "Duration of the last pass (Kafka max-clean-time-secs).", nil, nil),
		bufferUtil:        prometheus.NewDesc(ns+"buffer_utilization_ratio", "Offset map fill of the last pass, 0-1 (Kafka max-buffer-utilization-percent / 100).", nil, nil),
		sinceLastRun:      prometheus.NewDesc(ns+"last_run_timestamp_seconds", "Unix time the cleaner last planned (Kafka time-since-last-run-ms is time() minus this).", nil, nil),
		compactionDelay:   prometheus.NewDesc(ns+"max_compaction_delay_seconds", "How far past max.compaction.lag.ms the most overdue partition is (Kafka max-compaction-delay-secs).", nil, nil),
		deadThread:        prometheus.NewDesc(ns+"failed_threads", "Cleaner threads that clean nothing because their offset map could not be allocated (the closest to Kafka's DeadThreadCount: a failing partition is marked uncleanable instead of killing its thread).", nil, nil),
		mapBytes:          prometheus.NewDesc(ns+"offset_map_bytes", "Offset map memory the cleaner holds now (allocated at a thread's first pass, released when it has been idle).", nil, nil),
		throttled:         prometheus.NewDesc(ns+"throttled_seconds_total", "Time threads waited on log.cleaner.io.max.bytes.per.second.", nil, nil),
	}
}

func (x *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{x.bytesRead, x.bytesWritten, x.recordsRead, x.recordsRetain, x.tombstonesDropped, x.idleRolls, x.passes, x.threads, x}
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
		x.lastRecopy.Store(st.RecopyRatio())
		x.lastUtilization.Store(st.MapUtilization)
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
	// Internal topics (__consumer_offsets: 50 partitions) are one series
	// per topic, partition "all", with the highest value of any of its
	// partitions.
	internal := map[string][2]float64{}
	var internalOrder []string
	for _, p := range m.sortedParts() {
		u := 0.0
		if p.uncleanable {
			u = 1
			unc++
			uncBytes += float64(p.assess.CleanableBytes)
		}
		if strings.HasPrefix(p.tp.Topic, "__") {
			agg, seen := internal[p.tp.Topic]
			if !seen {
				internalOrder = append(internalOrder, p.tp.Topic)
			}
			internal[p.tp.Topic] = [2]float64{max(agg[0], p.assess.Ratio), max(agg[1], u)}
			continue
		}
		lv := []string{p.tp.Topic, strconv.Itoa(int(p.tp.Partition))}
		ch <- prometheus.MustNewConstMetric(x.dirtyRatio, prometheus.GaugeValue, p.assess.Ratio, lv...)
		ch <- prometheus.MustNewConstMetric(x.uncleanable, prometheus.GaugeValue, u, lv...)
	}
	for _, t := range internalOrder {
		agg := internal[t]
		ch <- prometheus.MustNewConstMetric(x.dirtyRatio, prometheus.GaugeValue, agg[0], t, "all")
		ch <- prometheus.MustNewConstMetric(x.uncleanable, prometheus.GaugeValue, agg[1], t, "all")
	}
	lastRun := m.lastRun
	failed := len(m.threadErrs)
	m.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(x.uncleanableCount, unc)
	gauge(x.uncBytes, uncBytes)
	gauge(x.maxDirty, x.maxDirtyRatio.Load())
	gauge(x.recopy, x.lastRecopy.Load())
	gauge(x.cleanTime, x.lastDuration.Load())
	gauge(x.bufferUtil, x.lastUtilization.Load())
	gauge(x.sinceLastRun, float64(lastRun.UnixNano())/1e9)
	gauge(x.compactionDelay, time.Duration(x.maxCompactionDelay.Load()).Seconds())
	gauge(x.deadThread, float64(failed))
	gauge(x.mapBytes, float64(m.mapBytes.Load()))
	ch <- prometheus.MustNewConstMetric(x.throttled, prometheus.CounterValue, m.throttle.Throttled().Seconds())
}
