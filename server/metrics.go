package server

import (
	"github.com/kvlog/kvlog/engine"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
	"github.com/kvlog/kvlog/console"
)

// metrics are the broker's Prometheus metrics. Per-API series exist for
// every served key from the start so rates are well defined.
type metrics struct {
	s           *Server
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	connections prometheus.Gauge
	badRequests prometheus.Counter
	panics      prometheus.Counter
	// apiVersionsDowngrades counts ApiVersions requests newer than served
	// (a client's normal first probe; not a bad request).
	apiVersionsDowngrades prometheus.Counter
	// acceptErrors counts failed accepts (e.g. EMFILE: no file descriptor
	// left), by listener.
	acceptErrors *prometheus.CounterVec
	// connectionsRefused counts connections closed at accept, by reason
	// (max.connections, max.connections.per.ip).
	connectionsRefused *prometheus.CounterVec
	// requestMemory is the request memory in use (queued.max.request.bytes
	// bounds it); requestMemoryWaits counts reads that waited for it.
	requestMemory      prometheus.GaugeFunc
	requestMemoryWaits prometheus.Counter
	// authentications counts SASL authentications by listener, mechanism
	// and result (success, failure, refused: a request other than the
	// SASL ones before authentication); tlsHandshakeFailures failed TLS
	// handshakes (untrusted or missing client certificates, protocol
	// mismatches, plaintext clients on a TLS listener), by listener.
	authentications      *prometheus.CounterVec
	tlsHandshakeFailures *prometheus.CounterVec
	// per-key children, looked up without the vec's hashing on the hot path
	reqByKey map[int16]prometheus.Counter
	latByKey map[int16]prometheus.Observer
	// op are the per-topic, error, disk, partition-health and group
	// metrics (operator_metrics.go).
	op *opMetrics
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		s: s,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "requests_total", Help: "Requests handled, by API.",
		}, []string{"api"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kvlog", Name: "request_duration_seconds", Help: "Time from reading a request to its response being ready, by API.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"api"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "network_bytes_in_total", Help: "Request bytes read from clients.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "network_bytes_out_total", Help: "Response bytes written to clients.",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kvlog", Name: "connections", Help: "Open client connections.",
		}),
		badRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "bad_requests_total", Help: "Malformed, oversize or unserved requests (each closes its connection).",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "handler_panics_total", Help: "Handler panics contained to their connection.",
		}),
		apiVersionsDowngrades: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "api_versions_unsupported_total", Help: "ApiVersions requests newer than served, answered with UNSUPPORTED_VERSION so the client retries lower (normal client start-up).",
		}),
		acceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "accept_errors_total", Help: "Failed accepts (e.g. EMFILE, out of file descriptors), by listener; the listener backs off and retries.",
		}, []string{"listener"}),
		connectionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "connections_refused_total", Help: "Connections closed at accept, by the limit they hit.",
		}, []string{"reason"}),
		requestMemory: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "kvlog", Name: "request_memory_bytes", Help: "Memory held by requests read and not yet answered (bounded by queued.max.request.bytes).",
		}, func() float64 { return float64(s.reqMem.InUse()) }),
		requestMemoryWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "request_memory_waits_total", Help: "Request reads that waited for queued.max.request.bytes to free up.",
		}),
		authentications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "sasl_authentications_total", Help: "SASL authentications by listener, mechanism and result (success, failure, refused).",
		}, []string{"listener", "mechanism", "result"}),
		tlsHandshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kvlog", Name: "tls_handshake_failures_total", Help: "Failed TLS handshakes, by listener.",
		}, []string{"listener"}),
		reqByKey: map[int16]prometheus.Counter{},
		latByKey: map[int16]prometheus.Observer{},
		op:       newOpMetrics(s),
	}
	for k := range handlers {
		name := apiName(k)
		m.reqByKey[k] = m.requests.WithLabelValues(name)
		m.latByKey[k] = m.latency.WithLabelValues(name)
	}
	return m
}

func (m *metrics) register(r *prometheus.Registry) error {
	m.op.start()
	for _, c := range append([]prometheus.Collector{
		m.requests, m.latency, m.bytesIn, m.bytesOut, m.connections, m.badRequests, m.panics,
		m.apiVersionsDowngrades, m.acceptErrors, m.connectionsRefused, m.requestMemory, m.requestMemoryWaits,
		m.authentications, m.tlsHandshakeFailures,
		&partitionCollector{s: m.s},
		engineBudgetMetrics(m.s),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, m.op.collectors()...) {
		if err := r.Register(c); err != nil {
			if _, dup := err.(prometheus.AlreadyRegisteredError); !dup {
				return err
			}
		}
	}
	return nil
}

// observe accounts a completed request: its API's count and latency, and
// (opMetrics) its topics' traffic and its error codes.
func (m *metrics) observe(r *request, res result, d time.Duration) {
	key := r.hdr.key
	if c, ok := m.reqByKey[key]; ok {
		c.Inc()
		m.latByKey[key].Observe(d.Seconds())
		m.op.observe(r, res)
	}
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
type partitionCollector struct{ s *Server }

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- partSizeDesc
	ch <- partLEODesc
	ch <- partLSODesc
	ch <- partHWDesc
	ch <- topicsDesc
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	ts := c.s.sortedTopics()
	ch <- prometheus.MustNewConstMetric(topicsDesc, prometheus.GaugeValue, float64(len(ts)))
	for _, t := range ts {
		if t.internal {
			continue
		}
		for _, p := range t.parts {
			if p.log == nil {
				continue // cluster mode: not hosted here
			}
			lv := []string{t.name, strconv.Itoa(int(p.tp.Partition))}
			ch <- prometheus.MustNewConstMetric(partSizeDesc, prometheus.GaugeValue, float64(p.log.Size()), lv...)
			ch <- prometheus.MustNewConstMetric(partLEODesc, prometheus.GaugeValue, float64(p.log.LogEndOffset()), lv...)
			ch <- prometheus.MustNewConstMetric(partLSODesc, prometheus.GaugeValue, float64(p.log.LogStartOffset()), lv...)
			ch <- prometheus.MustNewConstMetric(partHWDesc, prometheus.GaugeValue, float64(p.log.HighWatermark()), lv...)
		}
	}
}

// HTTPHandler serves /metrics (Prometheus, the cleaner's metrics
// included), /healthz (liveness) and /readyz (readiness, see health.go),
// /cleaner (the log cleaner's status as JSON: every
// compacted partition with its dirty ratio, first dirty offset, last clean
// and state; `kvlog cleaner status` reads it) and Go's profiler under
// /debug/pprof/ (only on a loopback listener unless
// kvlog.http.pprof.enable says otherwise), and the web console under /ui/
// (console.go); with kvlog.http.auth=basic every path but the health
// checks needs a user's password (http_security.go).
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	if s.httpPprof() {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if ui := s.consoleHandler(); ui != nil {
		mux.Handle(console.Prefix, ui)
		mux.Handle("/ui", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
	}
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	mux.Handle(cleanerstatus.Path, s.cleaner.Handler())
	mux.HandleFunc("/healthz", s.serveHealthz)
	mux.HandleFunc("/readyz", s.serveReadyz)
	s.registerKeyRoutes(mux) // key lookups (http_keys.go)
	return s.httpSecure(mux)
}

// engineBudgetMetrics exports the storage engine's budget of open files and
// memory mappings (kvlog.max.open.files, vm.max_map_count): use, bounds,
// cold segments closed to make room, active segments reopened, and
// operations refused (KAFKA_STORAGE_ERROR) because everything open was in use.
func engineBudgetMetrics(s *Server) prometheus.Collector {
	return budgetCollector{s: s}
}

type budgetCollector struct{ s *Server }

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
	b := c.s.mgr.Budget()
	for _, d := range budgetDescs {
		t := prometheus.GaugeValue
		if d.counter {
			t = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(d.desc, t, float64(d.value(b)))
	}
}
