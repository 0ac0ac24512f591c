package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/server/wire"
)

// Source is what the scrape-time metrics read from the broker.
type Source interface {
	// LogDirs are the broker's log directories (disk space).
	LogDirs() []string
	// Topics is every topic, sorted by name.
	Topics() []Topic
	// Groups is the group coordinator's state; nil when the broker has
	// no group coordinator.
	Groups() *Groups
	// Budget is the storage engine's open-file and mapping budget.
	Budget() engine.BudgetStats
	// RequestMemory is the memory held by requests read and not yet
	// answered.
	RequestMemory() int64
}

// Topic is one topic as the scrape sees it.
type Topic struct {
	Name       string
	Internal   bool
	MinInsync  int // min.insync.replicas
	Partitions []Partition
}

// Partition is one partition of a Topic.
type Partition struct {
	ID int32
	// Offline: the metadata view gives it no leader.
	Offline bool
	// Log is the local replica's log; nil when this broker hosts none.
	Log *engine.Log
	// Leader: this broker leads it; ISR and Replicas are then the sizes
	// of its in-sync replica set and its replica set.
	Leader        bool
	ISR, Replicas int
}

// Groups is the group coordinator's state at a scrape.
type Groups struct {
	Rebalances int64          // new generations completed since start
	ByState    map[string]int // groups by state name (every state present)
	// Lags are, per group whose committed offsets could be read, the
	// high watermark minus the committed offset of each partition this
	// broker leads (never negative).
	Lags map[string][]PartitionLag
}

// PartitionLag is a group's lag on one partition.
type PartitionLag struct {
	Topic     string
	Partition int32
	Lag       int64
}

// Metrics are the broker's Prometheus metrics. Per-API series exist for
// every served key from the start so rates are well defined. The exported
// fields are the counters the broker's connections and listeners update.
type Metrics struct {
	src      Source
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// BytesIn and BytesOut are request and response bytes on the wire.
	BytesIn  prometheus.Counter
	BytesOut prometheus.Counter
	// Connections are the open client connections.
	Connections prometheus.Gauge
	// BadRequests are malformed, oversize or unserved requests.
	BadRequests prometheus.Counter
	// Panics are handler panics contained to their connection.
	Panics prometheus.Counter
	// APIVersionsDowngrades counts ApiVersions requests newer than served
	// (a client's normal first probe; not a bad request).
	APIVersionsDowngrades prometheus.Counter
	// AcceptErrors counts failed accepts (e.g. EMFILE: no file descriptor
	// left), by listener.
	AcceptErrors *prometheus.CounterVec
	// ConnectionsRefused counts connections closed at accept, by reason
	// (max.connections, max.connections.per.ip).
	ConnectionsRefused *prometheus.CounterVec
	// requestMemory is the request memory in use (queued.max.request.bytes
	// bounds it); RequestMemoryWaits counts reads that waited for it.
	requestMemory      prometheus.GaugeFunc
	RequestMemoryWaits prometheus.Counter
	// Authentications counts SASL authentications by listener, mechanism
	// and result (success, failure, refused: a request other than the
	// SASL ones before authentication); TLSHandshakeFailures failed TLS
	// handshakes (untrusted or missing client certificates, protocol
	// mismatches, plaintext clients on a TLS listener), by listener.
	Authentications      *prometheus.CounterVec
	TLSHandshakeFailures *prometheus.CounterVec
	// per-key children, looked up without the vec's hashing on the hot path
	reqByKey map[int16]prometheus.Counter
	latByKey map[int16]prometheus.Observer
	// op are the per-topic, error, disk, partition-health and group
	// metrics (operator.go).
	op *opMetrics
}

// New creates the metrics of a broker serving the API keys keys.
func New(src Source, keys []int16) *Metrics {
	m := &Metrics{
		src: src,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "requests_total", Help: "Requests handled, by API.",
		}, []string{"api"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kvlog", Name: "request_duration_seconds", Help: "Time from reading a request to its response being ready, by API.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"api"}),
		BytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "network_bytes_in_total", Help: "Request bytes read from clients.",
		}),
		BytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "network_bytes_out_total", Help: "Response bytes written to clients.",
		}),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kvlog", Name: "connections", Help: "Open client connections.",
		}),
		BadRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "bad_requests_total", Help: "Malformed, oversize or unserved requests (each closes its connection).",
		}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "handler_panics_total", Help: "Handler panics contained to their connection.",
		}),
		APIVersionsDowngrades: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "api_versions_unsupported_total", Help: "ApiVersions requests newer than served, answered with UNSUPPORTED_VERSION so the client retries lower (normal client start-up).",
		}),
		AcceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "accept_errors_total", Help: "Failed accepts (e.g. EMFILE, out of file descriptors), by listener; the listener backs off and retries.",
		}, []string{"listener"}),
		ConnectionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "connections_refused_total", Help: "Connections closed at accept, by the limit they hit.",
		}, []string{"reason"}),
		requestMemory: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvlog", Name: "request_memory_bytes", Help: "Memory held by requests read and not yet answered (bounded by queued.max.request.bytes).",
		}, func() float64 { return float64(src.RequestMemory()) }),
		RequestMemoryWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "request_memory_waits_total", Help: "Request reads that waited for queued.max.request.bytes to free up.",
		}),
		Authentications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "sasl_authentications_total", Help: "SASL authentications by listener, mechanism and result (success, failure, refused).",
		}, []string{"listener", "mechanism", "result"}),
		TLSHandshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "tls_handshake_failures_total", Help: "Failed TLS handshakes, by listener.",
		}, []string{"listener"}),
		reqByKey: map[int16]prometheus.Counter{},
		latByKey: map[int16]prometheus.Observer{},
		op:       newOpMetrics(src),
	}
	for _, k := range keys {
		name := APIName(k)
		m.reqByKey[k] = m.requests.WithLabelValues(name)
		m.latByKey[k] = m.latency.WithLabelValues(name)
	}
	return m
}

// APIName names an API key for logs and metrics.
func APIName(key int16) string {
	if n := kmsg.NameForKey(key); n != "Unknown" {
		return n
	}
	return "Unknown" + strconv.Itoa(int(key))
}

// Register registers every metric in r (a collector registered already is
// left as it is) and hooks the engine's flushes into the flush histogram
// (one broker per process serves metrics). unregister takes out of r what
// this call registered (a broker whose start failed); on an error,
// Register has taken it out already.
func (m *Metrics) Register(r *prometheus.Registry) (unregister func(), err error) {
	m.op.start()
	var added []prometheus.Collector
	unregister = func() {
		for _, c := range added {
			r.Unregister(c)
		}
	}
	for _, c := range append([]prometheus.Collector{
		m.requests, m.latency, m.BytesIn, m.BytesOut, m.Connections, m.BadRequests, m.Panics,
		m.APIVersionsDowngrades, m.AcceptErrors, m.ConnectionsRefused, m.requestMemory, m.RequestMemoryWaits,
		m.Authentications, m.TLSHandshakeFailures,
		partitionCollector{src: m.src},
		budgetCollector{src: m.src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, m.op.collectors()...) {
		if err := r.Register(c); err != nil {
			if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
				unregister()
				return nil, err
			}
			continue
		}
		added = append(added, c)
	}
	return unregister, nil
}

// Observe accounts a completed request of API key with request req (a
// produce request's batches tallied in tally when they are gone, else
// nil), answered with resp or with fetch (a Fetch encoded by package
// wire), or not at all (skip: an acks=0 produce), after d: its API's
// count and latency, its topics' traffic and its error codes.
func (m *Metrics) Observe(key int16, req kmsg.Request, tally ProduceTally, resp kmsg.Response, fetch *wire.FetchReply, skip bool, d time.Duration) {
	if c, ok := m.reqByKey[key]; ok {
		c.Inc()
		m.latByKey[key].Observe(d.Seconds())
		m.op.observe(key, req, tally, resp, fetch, skip)
	}
}

// TopicBytesOut is, per topic, the record batch bytes returned to
// consumers' fetches since start (kvlog_topic_bytes_out_total).
func (m *Metrics) TopicBytesOut() map[string]int64 {
	out := map[string]int64{}
	ch := make(chan prometheus.Metric, 64)
	go func() { m.op.bytesOut.Collect(ch); close(ch) }()
	for pm := range ch {
		var d dto.Metric
		if pm.Write(&d) != nil || d.Counter == nil {
			continue
		}
		for _, l := range d.Label {
			if l.GetName() == "topic" {
				out[l.GetValue()] = int64(d.Counter.GetValue())
			}
		}
	}
	return out
}

var (
	partSizeDesc = prometheus.NewDesc("kvlog_partition_size_bytes", "Bytes of a partition's segments.", []string{"topic", "partition"}, nil)
	partLEODesc  = prometheus.NewDesc("kvlog_partition_log_end_offset", "A partition's log end offset.", []string{"topic", "partition"}, nil)
	partLSODesc  = prometheus.NewDesc("kvlog_partition_log_start_offset", "A partition's log start offset.", []string{"topic", "partition"}, nil)
	partHWDesc   = prometheus.NewDesc("kvlog_partition_high_watermark", "A partition's high watermark.", []string{"topic", "partition"}, nil)
	topicsDesc   = prometheus.NewDesc("kvlog_topics", "Topics.", nil, nil)
)

// partitionCollector reports per-partition gauges at scrape time, for
// every topic but the internal ones (__consumer_offsets' 50 partitions):
// kvlog_topic_size_bytes covers those.
type partitionCollector struct{ src Source }

func (c partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- partSizeDesc
	ch <- partLEODesc
	ch <- partLSODesc
	ch <- partHWDesc
	ch <- topicsDesc
}

func (c partitionCollector) Collect(ch chan<- prometheus.Metric) {
	ts := c.src.Topics()
	ch <- prometheus.MustNewConstMetric(topicsDesc, prometheus.GaugeValue, float64(len(ts)))
	for _, t := range ts {
		if t.Internal {
			continue
		}
		for _, p := range t.Partitions {
			if p.Log == nil {
				continue // cluster mode: not hosted here
			}
			lv := []string{t.Name, strconv.Itoa(int(p.ID))}
			ch <- prometheus.MustNewConstMetric(partSizeDesc, prometheus.GaugeValue, float64(p.Log.Size()), lv...)
			ch <- prometheus.MustNewConstMetric(partLEODesc, prometheus.GaugeValue, float64(p.Log.LogEndOffset()), lv...)
			ch <- prometheus.MustNewConstMetric(partLSODesc, prometheus.GaugeValue, float64(p.Log.LogStartOffset()), lv...)
			ch <- prometheus.MustNewConstMetric(partHWDesc, prometheus.GaugeValue, float64(p.Log.HighWatermark()), lv...)
		}
	}
}

// budgetCollector exports the storage engine's budget of open files and
// memory mappings (kvlog.max.open.files, vm.max_map_count): use, bounds,
// cold segments closed to make room, active segments reopened, and
// operations refused (KAFKA_STORAGE_ERROR) because everything open was in use.
type budgetCollector struct{ src Source }

var budgetDescs = []struct {
	desc    *prometheus.Desc
	counter bool
	value   func(engine.BudgetStats) int64
}{
	{prometheus.NewDesc("kvlog_engine_open_files", "File descriptors the storage engine holds open.", nil, nil), false, func(b engine.BudgetStats) int64 { return b.OpenFiles }},
	{prometheus.NewDesc("kvlog_engine_open_files_limit", "The engine's budget of open files (kvlog.max.open.files or derived from RLIMIT_NOFILE).", nil, nil), false, func(b engine.BudgetStats) int64 { return b.MaxOpenFiles }},
	{prometheus.NewDesc("kvlog_engine_mappings", "Memory mappings the storage engine holds (index files, mapped segments).", nil, nil), false, func(b engine.BudgetStats) int64 { return b.Mappings }},
	{prometheus.NewDesc("kvlog_engine_mappings_limit", "The engine's budget of memory mappings (derived from vm.max_map_count).", nil, nil), false, func(b engine.BudgetStats) int64 { return b.MaxMappings }},
	{prometheus.NewDesc("kvlog_engine_segment_evictions_total", "Cold segment handles closed to stay within the budget.", nil, nil), true, func(b engine.BudgetStats) int64 { return b.Evictions }},
	{prometheus.NewDesc("kvlog_engine_active_segment_reopens_total", "Active segments reopened on demand after being closed for the budget.", nil, nil), true, func(b engine.BudgetStats) int64 { return b.Reopens }},
	{prometheus.NewDesc("kvlog_engine_copied_reads_total", "Reads served from memory instead of file ranges because responses in flight held half the open-file budget.", nil, nil), true, func(b engine.BudgetStats) int64 { return b.CopiedReads }},
	{prometheus.NewDesc("kvlog_engine_budget_refusals_total", "Operations refused (KAFKA_STORAGE_ERROR) because every open file or mapping of the budget was in use.", nil, nil), true, func(b engine.BudgetStats) int64 { return b.Refusals }},
}

func (c budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range budgetDescs {
		ch <- d.desc
	}
}

func (c budgetCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.src.Budget()
	for _, d := range budgetDescs {
		t := prometheus.GaugeValue
		if d.counter {
			t = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(d.desc, t, float64(d.value(b)))
	}
}
