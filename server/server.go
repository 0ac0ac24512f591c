package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/replica"
	zkcluster "github.com/kvlog/kvlog/server/cluster"
	"github.com/kvlog/kvlog/server/fetchsession"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/txn"

	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/wire"
)

// Options are the broker's dependencies that are not configuration.
type Options struct {
	Logger *slog.Logger // nil: slog.Default()
	Clock  clock.Clock  // nil: clock.Real
	// Registry receives the broker's metrics; nil: a private registry
	// (served by HTTPHandler either way).
	Registry *prometheus.Registry
	// FS is the engine's file system; nil: the OS.
	FS vfs.FS
}

// Server is one kvlog broker: listeners, connections, protocol handlers,
// the partition logs and the metadata store.
type Server struct {
	cfg *config.Broker
	// fetchSessions are the incremental fetch sessions (fetch_sessions.go).
	fetchSessions fetchsession.Cache
	// partitionReads counts the partitions fetches looked at (tests).
	partitionReads atomic.Int64
	logger         *slog.Logger
	clock          clock.Clock
	mgr            *engine.Manager
	meta           metastore.Store
	// replicas is the partition manager: every hosted partition is a
	// replica.Partition, leading alone on a single node. Appends, the high
	// watermark, acks=all and parked fetches go through it.
	replicas *replica.Manager
	fs       vfs.FS // the engine's file system

	// deleting names topics whose deletion is past the metadata store but
	// not finished (their groups' offsets are being removed); under topicMu.
	deleting map[string]bool
	// deletedAtStart are the pending deletions whose logs loadTopics
	// removed; startGroups removes their offsets and records them done.
	deletedAtStart []string
	// adoptLogs: the metadata store was created by this start, so the
	// partition logs found are taken over as topics (a Kafka log dir, or
	// one whose metadata was lost); otherwise they are strays.
	adoptLogs bool

	// layers is the current broker-level configuration (static file plus
	// dynamic broker configs); replaced whole on change.
	layers atomic.Pointer[config.Layers]
	// topics is the current topic snapshot; replaced whole (copy on write)
	// under topicMu.
	topics  atomic.Pointer[topicSnapshot]
	topicMu sync.Mutex // serialises topic create/delete/alter and dynamic broker config changes
	alterMu sync.Mutex // serialises config read-modify-write (IncrementalAlterConfigs); taken before topicMu

	// groups is the group coordinator (groups.go).
	groups *group.Coordinator
	// txns is the transaction coordinator (txns.go).
	txns *txn.Coordinator

	// cleaner compacts the compacted topics' logs (cleaner.go).
	cleaner *cleaner.Manager

	// cluster is cluster mode (zookeeper.connect set, cluster.go); nil on
	// a single node.
	cluster *cluster
	// mode is how this broker belongs to a cluster (membership.go): the
	// cluster, or standalone.
	mode membership
	// view gives the current metadata view (Metadata, partition errors).
	view func() metadataView

	metrics  *metrics
	registry *prometheus.Registry

	// requestHook, when set (tests), sees every request before its handler
	// and may complete it itself (returning true) to drop, delay or break
	// requests, as kfake's ControlKey does.
	requestHook atomic.Pointer[func(r *request) bool]

	// reqMem bounds the memory of requests read and not yet answered
	// (queued.max.request.bytes).
	reqMem *wire.Memory

	// scramSecret keys the made-up SCRAM credentials of unknown users.
	scramSecret []byte

	// authz is the authorizer (authz.go); nil when none is configured
	// (every request allowed).
	authz *authorizer
	// quotas are the client quotas and connection creation rates
	// (quotas.go).
	quotas *quotaManager

	lnMu      sync.Mutex
	listeners []*listener
	conns     map[*conn]struct{}
	connsByIP map[string]int // open connections per remote IP (max.connections.per.ip)
	connWG    sync.WaitGroup
	closing   atomic.Bool
	closingCh chan struct{} // closed once closing is set (setClosing)
	closeCh   sync.Once
	started   atomic.Bool // Start returned: listeners accept (readiness)
	stopBg    context.CancelFunc
	bgDone    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// listener is one bound listener with the endpoint advertised for it.
type listener struct {
	name    string
	ln      net.Listener
	advHost string
	advPort int32
	sec     *listenerSecurity // protocol, TLS and SASL settings (security_listener.go)
}

// topicSnapshot is an immutable view of every topic.
type topicSnapshot struct {
	byName map[string]*topic
	byID   map[metastore.TopicID]*topic
}

// topic is an immutable view of one topic; a config change builds a new
// topic sharing the same partitions.
type topic struct {
	name     string
	id       metastore.TopicID
	rf       int16
	internal bool
	parts    []*partition
	configs  map[string]string // overrides only
	settings topicSettings
}

// partition is one partition of a topic. log and rep are set together
// when this broker hosts a replica of it (a single node hosts every
// partition whose log could be opened, as its leader); otherwise both are
// nil and Server.partition does not return it.
type partition struct {
	tp  engine.TopicPartition
	log *engine.Log
	rep *replica.Partition // role, leader epoch, ISR, HW (replica.Manager)
}

// New binds every listener, locks the log dirs, opens the metadata store
// and the partition logs and loads every topic. It does not serve yet
// (Start does). The order matters for a broker started twice on the same
// data directory: a listener already in use or a log dir locked by another
// process (engine.ErrDirLocked) fails here, before anything in the dirs is
// read or written, and a failed New never marks a dir it did not load as
// cleanly shut down.
func New(cfg *config.Broker, opts Options) (_ *Server, err error) {
	s := &Server{
		cfg:       cfg,
		logger:    opts.Logger,
		clock:     opts.Clock,
		conns:     map[*conn]struct{}{},
		reqMem:    wire.NewMemory(cfg.QueuedMaxRequestBytes),
		fs:        opts.FS,
		closingCh: make(chan struct{}),

		deleting: map[string]bool{},
	}
	if s.fs == nil {
		s.fs = vfs.Default
	}
	s.connsByIP = map[string]int{}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.clock == nil {
		s.clock = clock.Real
	}
	s.registry = opts.Registry
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	var undo cleanups // what New has set up, undone if it fails
	defer undo.runIf(&err)
	if err := s.bindListeners(); err != nil {
		return nil, err
	}
	undo.push(s.closeListeners)
	locks, err := engine.LockDirs(opts.FS, cfg.LogDirs)
	if err != nil {
		return nil, err
	}
	ownLocks := true // until the engine takes them
	undo.push(func() {
		if ownLocks {
			locks.Release()
		}
	})
	if cfg.ZooKeeperConnect != "" {
		zs, err := zkcluster.Open(cfg, s.logger)
		if err != nil {
			return nil, fmt.Errorf("metadata store: %w", err)
		}
		s.meta = zs
		c := newCluster(s, zs)
		s.cluster, s.mode = c, c
		s.view = func() metadataView { return c.meta.Load() }
	} else {
		local, err := metastore.OpenLocalWith(locks.Dirs()[0], cfg.ClusterID, metastore.LocalOptions{FS: s.fs, Logger: s.logger.With("component", "metastore")})
		if err != nil {
			return nil, fmt.Errorf("metadata store: %w", err)
		}
		s.meta = local
		s.adoptLogs = local.Created()
		s.mode = standalone{s}
		s.view = func() metadataView { return localView{s} }
	}
	undo.push(func() { s.meta.Close() })
	s.refreshLayers()

	overrides := map[string]map[string]string{}
	for _, t := range s.meta.Topics() {
		overrides[t.Name] = t.Configs
	}
	layers := s.layers.Load()
	if !s.mode.replicated() && !s.adoptLogs {
		s.setAsideStrayLogs()
	}
	ownLocks = false // released by mgr.Close, or by OpenManager on failure
	s.mgr, err = engine.OpenManager(engine.ManagerOptions{
		Locks:                  locks,
		FS:                     opts.FS,
		Clock:                  s.clock,
		Logger:                 s.logger.With("component", "engine"),
		MaxOpenSegments:        cfg.MaxOpenSegments,
		MaxOpenFiles:           cfg.MaxOpenFiles,
		ReservedFiles:          cfg.MaxConnections + 512,
		RecoveryThreads:        cfg.RecoveryThreads,
		RetentionCheckInterval: cfg.RetentionCheckInterval,
		CheckpointInterval:     cfg.CheckpointInterval,
		Journal:                cfg.JournalEnable,
		JournalMaxBytes:        cfg.JournalMaxBytes,
		ConfigFor: func(tp engine.TopicPartition) engine.Config {
			return layers.EngineConfig(overrides[tp.Topic])
		},
	})
	if err != nil {
		return nil, fmt.Errorf("opening logs: %w", err)
	}
	undo.push(func() { s.mgr.Close() })
	s.replicas = replica.NewManager(s.replicaConfig())
	undo.push(s.replicas.Close)
	// The cleaner exists before the topics load: deleting logs (pending
	// deletions, strays) goes through it.
	if err := s.newCleaner(opts.FS); err != nil {
		return nil, err
	}
	undo.push(func() { s.cleaner.Close() })
	if err := s.loadTopics(); err != nil {
		return nil, err
	}
	if err := s.startGroups(); err != nil {
		return nil, err
	}
	undo.push(s.groups.Close)
	if err := s.startTxns(); err != nil {
		return nil, err
	}
	undo.push(s.txns.Close)
	s.metrics = newMetrics(s)
	if err := s.metrics.register(s.registry); err != nil {
		return nil, err
	}
	if err := s.initSecurity(); err != nil {
		return nil, err
	}
	if err := s.initAuthorizer(); err != nil {
		return nil, err
	}
	if err := s.initQuotas(); err != nil {
		return nil, err
	}
	return s, nil
}

// cleanups is a stack of undo steps: a constructor that fails part way
// undoes what it set up, newest first.
type cleanups []func()

func (c *cleanups) push(f func()) { *c = append(*c, f) }

// runIf runs the steps when *err is set (deferred by the constructor).
func (c cleanups) runIf(err *error) {
	if *err == nil {
		return
	}
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// refreshLayers rebuilds the config layers from the static config and the
// store's dynamic broker configs.
func (s *Server) refreshLayers() {
	s.layers.Store(config.Sanitize(s.cfg.Static, s.meta.BrokerConfigs(s.nodeIDString()), s.meta.BrokerConfigs(""), s.logger))
	s.applyCleanerConfig() // log.cleaner.* changes apply live
}

func (s *Server) nodeIDString() string { return strconv.Itoa(int(s.cfg.NodeID)) }

// loadTopics opens the logs of the topics this broker hosts (the
// membership decides which: membership.go, cluster.go).
func (s *Server) loadTopics() error { return s.mode.loadTopics() }

// adoptUnknownLogs records, in a metadata store this start created, a
// topic for every topic whose partition logs were found: how a Kafka
// broker's log directory (or one whose metadata files were lost) is taken
// over. With a store that existed, such logs are strays instead
// (setAsideStrayLogs).
func (s *Server) adoptUnknownLogs() {
	count := map[string]int32{}
	for _, l := range s.mgr.Logs() {
		tp := l.TopicPartition()
		count[tp.Topic] = max(count[tp.Topic], tp.Partition+1)
	}
	for name, n := range count {
		s.logger.Warn("new metadata store: adopting the partition logs found as a topic", "topic", name, "partitions", n)
		if err := s.meta.CreateTopic(metastore.Topic{Name: name, ID: metastore.NewTopicID(), Partitions: n, ReplicationFactor: 1}); err != nil {
			s.logger.Error("adopting partition logs failed; they are not served", "topic", name, "err", err)
		}
	}
}

// replicaConfig configures the partition manager.
func (s *Server) replicaConfig() replica.ManagerConfig {
	cfg := replica.ManagerConfig{
		ID:             s.cfg.NodeID,
		LagMax:         s.cfg.ReplicaLagTimeMax,
		SyncAlone:      s.cfg.FsyncAcksAll,
		Now:            s.clock.Now,
		Logger:         s.logger.With("component", "replica"),
		AroundTruncate: s.aroundTruncate,
	}
	cfg.OnISRChange = s.mode.onISRChange()
	return cfg
}

// leadAlone hosts l as the leader of a partition whose only replica is
// this broker (a single node: every record in the log is committed once
// it is as durable as configured).
func (s *Server) leadAlone(l *engine.Log) (*partition, error) {
	rep, err := s.replicas.LeadAlone(l, leaderEpoch)
	if err != nil {
		return nil, fmt.Errorf("leading %s: %w", l.TopicPartition(), err)
	}
	return &partition{tp: l.TopicPartition(), log: l, rep: rep}, nil
}

// newTopic is a stored topic's view without partitions.
func (s *Server) newTopic(mt metastore.Topic, layers *config.Layers) *topic {
	t := &topic{
		name:     mt.Name,
		id:       mt.ID,
		rf:       mt.ReplicationFactor,
		internal: isInternalTopic(mt.Name),
		configs:  maps.Clone(mt.Configs),
	}
	if t.configs == nil {
		t.configs = map[string]string{}
	}
	config.SanitizeTopicConfigs(mt.Name, t.configs, layers, s.logger)
	t.settings = newTopicSettings(layers, t.configs)
	return t
}

// openTopic builds a stored topic's view over its logs, creating missing
// ones (partitions added by a CreatePartitions that the store took but
// whose logs a crash lost). A partition whose log cannot be had is
// offline (no log); the topic is returned with every such error joined.
func (s *Server) openTopic(mt metastore.Topic, layers *config.Layers) (*topic, error) {
	t := s.newTopic(mt, layers)
	ecfg := layers.EngineConfig(t.configs)
	var errs []error
	for p := int32(0); p < mt.Partitions; p++ {
		tp := engine.TopicPartition{Topic: mt.Name, Partition: p}
		l, ok := s.mgr.Log(tp)
		if ok {
			l.SetConfig(ecfg)
		} else {
			var err error
			if l, err = s.mgr.CreateLog(tp, ecfg); err != nil {
				errs = append(errs, fmt.Errorf("creating log %s: %w", tp, err))
				t.parts = append(t.parts, &partition{tp: tp})
				continue
			}
		}
		part, err := s.leadAlone(l)
		if err != nil {
			errs = append(errs, err)
			part = &partition{tp: tp}
		}
		t.parts = append(t.parts, part)
	}
	return t, errors.Join(errs...)
}

// setAsideStrayLogs handles, before the engine loads the log dirs,
// partition directories the metadata store does not list: of a topic it
// does not know, or beyond a known topic's partition count. They are what
// a topic creation (or CreatePartitions) that did not reach the store left
// behind, and are never adopted as topics. A stray that holds no records
// is removed; one with records is renamed to <topic>-<partition>.<id>-stray
// and left for the operator, as Kafka does with stray logs. Both are
// logged at WARN (the removals as one count per log dir).
func (s *Server) setAsideStrayLogs() {
	known := map[string]int32{}
	for _, ts := range [][]metastore.Topic{s.meta.Topics(), s.meta.PendingDeletions()} {
		for _, t := range ts {
			known[t.Name] = max(known[t.Name], t.Partitions)
		}
	}
	for _, dir := range s.cfg.LogDirs {
		ents, err := s.fs.ReadDir(dir)
		if err != nil {
			continue // a new dir: the engine creates it
		}
		removed, aside := 0, 0
		for _, e := range ents {
			tp, ok := engine.ParsePartitionDirName(e.Name())
			if !e.IsDir() || !ok {
				continue
			}
			if n, ok := known[tp.Topic]; ok && tp.Partition < n {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if holdsRecords, err := s.holdsRecords(path); err == nil && !holdsRecords {
				if err := s.fs.RemoveAll(path); err == nil {
					removed++
					continue
				}
			}
			to := filepath.Join(dir, strayDirName(e.Name()))
			if err := s.fs.Rename(path, to); err != nil {
				s.logger.Error("setting aside a partition log the metadata does not list failed", "dir", path, "err", err)
				continue
			}
			s.logger.Warn("partition log the metadata does not list set aside (not served)", "dir", path, "now", to)
			aside++
		}
		if removed > 0 {
			s.logger.Warn("removed empty partition logs the metadata does not list (a topic creation that did not finish)", "dir", dir, "count", removed)
		}
		if removed+aside > 0 {
			if err := s.fs.SyncDir(dir); err != nil {
				s.logger.Warn("syncing a log dir failed", "dir", dir, "err", err)
			}
		}
	}
}

// holdsRecords reports whether a partition directory has a non-empty
// segment (or cleaner output) file.
func (s *Server) holdsRecords(dir string) (bool, error) {
	ents, err := s.fs.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if e.IsDir() || !strings.Contains(e.Name(), engine.LogSuffix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return false, err
		}
		if fi.Size() > 0 {
			return true, nil
		}
	}
	return false, nil
}

// strayDirName is Kafka's name for a stray log: the partition directory's
// name, a random id and "-stray", shortened to fit a file name.
func strayDirName(name string) string {
	var id [16]byte
	rand.Read(id[:])
	suffix := "." + hex.EncodeToString(id[:]) + strayDirSuffix
	return name[:min(len(name), 255-len(suffix))] + suffix
}

// strayDirSuffix marks a partition directory set aside (never loaded).
const strayDirSuffix = "-stray"

func (s *Server) deleteLogs(name string, partitions int32) error {
	var errs []error
	failed := s.mgr.Failed() // logs that did not open at start-up: their directories go too
	for p := int32(0); p < partitions; p++ {
		tp := engine.TopicPartition{Topic: name, Partition: p}
		if _, ok := s.mgr.Log(tp); !ok && failed[tp] == nil {
			continue
		}
		if err := s.deleteLog(tp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// topic returns the named topic, or nil.
func (s *Server) topic(name string) *topic { return s.topics.Load().byName[name] }

// partition returns a topic's partition, or nil.
func (s *Server) partition(name string, p int32) *partition {
	t := s.topic(name)
	if t == nil || p < 0 || int(p) >= len(t.parts) || t.parts[p].log == nil {
		return nil
	}
	return t.parts[p]
}

// sortedTopics lists the current topics by name.
func (s *Server) sortedTopics() []*topic {
	snap := s.topics.Load()
	out := make([]*topic, 0, len(snap.byName))
	for _, t := range snap.byName {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// publishTopics installs a new snapshot built from the old one by fn.
// Caller holds topicMu.
func (s *Server) publishTopics(fn func(byName map[string]*topic)) {
	old := s.topics.Load()
	byName := maps.Clone(old.byName)
	fn(byName)
	byID := make(map[metastore.TopicID]*topic, len(byName))
	for _, t := range byName {
		byID[t.id] = t
	}
	s.topics.Store(&topicSnapshot{byName: byName, byID: byID})
	// A new topic or changed configs may make a partition due (or change
	// what the status lists): the cleaner looks now, not after its backoff.
	if s.cleaner != nil {
		s.cleaner.Wake()
	}
}

// bindListeners binds every configured listener (New calls it first).
// Listener ports of 0 pick a free port, which Metadata then advertises.
func (s *Server) bindListeners() error {
	var lc net.ListenConfig
	for _, l := range s.cfg.Listeners {
		ln, err := lc.Listen(context.Background(), "tcp", l.Addr())
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listener %s: %w", l, err)
		}
		sl := &listener{name: l.Name, ln: ln}
		for _, a := range s.cfg.AdvertisedListeners {
			if a.Name == l.Name {
				sl.advHost, sl.advPort = a.Host, int32(a.Port)
			}
		}
		if sl.advPort == 0 {
			sl.advPort = int32(ln.Addr().(*net.TCPAddr).Port)
		}
		s.lnMu.Lock()
		s.listeners = append(s.listeners, sl)
		s.lnMu.Unlock()
	}
	return nil
}

// Start starts serving on the listeners New bound, plus the engine's
// background work and the log cleaner.
func (s *Server) Start(ctx context.Context) error {
	bg, cancel := context.WithCancel(context.Background())
	s.stopBg = cancel
	s.bgDone = make(chan struct{})
	go func() {
		defer close(s.bgDone)
		s.mgr.Start(bg)
	}()
	s.cleaner.Start(bg)
	s.lnMu.Lock()
	for _, sl := range s.listeners {
		s.connWG.Add(1)
		go s.acceptLoop(sl)
	}
	s.lnMu.Unlock()
	if err := s.mode.start(); err != nil {
		s.closeListeners()
		return fmt.Errorf("joining the cluster: %w", err)
	}
	s.started.Store(true)
	return nil
}

// ListenerAddrs returns the bound address of every listener, by name.
func (s *Server) ListenerAddrs() map[string]net.Addr {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	out := map[string]net.Addr{}
	for _, l := range s.listeners {
		out[l.name] = l.ln.Addr()
	}
	return out
}

// acceptLoop accepts connections until the listener closes. A failed accept
// (EMFILE/ENFILE when the process is out of file descriptors, ENOBUFS, …)
// is retried with a back-off doubling from 5 ms to 1 s, as net/http's
// server does, so the loop does not spin while descriptors are short; it is
// logged at ERROR at most once per acceptLogEvery and counted in
// kvlog_accept_errors_total. Connections beyond max.connections or
// max.connections.per.ip are closed at once (counted in
// kvlog_connections_refused_total).
func (s *Server) acceptLoop(l *listener) {
	defer s.connWG.Done()
	var (
		backoff    time.Duration
		lastLog    time.Time
		suppressed int
	)
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.metrics.acceptErrors.WithLabelValues(l.name).Inc()
			if now := time.Now(); now.Sub(lastLog) >= acceptLogEvery {
				s.logger.Error("accept failed; retrying with back-off", "listener", l.name, "err", err,
					"retry_in", backoff, "suppressed_since_last_log", suppressed)
				lastLog, suppressed = now, 0
			} else {
				suppressed++
			}
			s.pauseAccepting(backoff)
			continue
		}
		backoff = 0
		ip := remoteIP(nc)
		s.lnMu.Lock()
		if s.closing.Load() {
			s.lnMu.Unlock()
			nc.Close()
			return
		}
		if reason := s.refuseLocked(ip); reason != "" {
			s.lnMu.Unlock()
			s.metrics.connectionsRefused.WithLabelValues(reason).Inc()
			s.logger.Debug("connection limit reached; closing new connection", "limit", reason, "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		pause, refuse := s.quotas.acceptThrottle(ip)
		if refuse {
			s.lnMu.Unlock()
			s.metrics.connectionsRefused.WithLabelValues("connection_creation_rate").Inc()
			s.logger.Debug("connection creation rate of the address exceeded; closing new connection", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		c := newConn(s, l, nc)
		s.conns[c] = struct{}{}
		s.connsByIP[c.ip]++
		s.connWG.Add(1)
		s.lnMu.Unlock()
		s.metrics.connections.Inc()
		go c.serve()
		// max.connection.creation.rate: accept the next one later.
		if pause > 0 {
			s.pauseAccepting(pause)
		}
	}
}

// pauseAccepting waits d, or less when the broker starts closing.
func (s *Server) pauseAccepting(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.closingCh:
	}
}

// setClosing marks the broker as closing: request paths and the accept
// loops see it (closing, closingCh).
func (s *Server) setClosing() {
	s.closing.Store(true)
	s.closeCh.Do(func() { close(s.closingCh) })
}

// acceptLogEvery rate-limits the accept error log.
const acceptLogEvery = 10 * time.Second

// refuseLocked names the connection limit a new connection from ip would
// pass, or "". Caller holds lnMu.
func (s *Server) refuseLocked(ip string) string {
	switch {
	case len(s.conns) >= s.cfg.MaxConnections:
		return "max.connections"
	case s.connsByIP[ip] >= s.cfg.MaxConnectionsPerIP:
		return "max.connections.per.ip"
	}
	return ""
}

func (s *Server) removeConn(c *conn) {
	s.lnMu.Lock()
	delete(s.conns, c)
	if s.connsByIP[c.ip]--; s.connsByIP[c.ip] <= 0 {
		delete(s.connsByIP, c.ip)
	}
	s.lnMu.Unlock()
	s.metrics.connections.Dec()
	s.connWG.Done()
}

func (s *Server) closeListeners() {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

// Shutdown stops the broker gracefully: stop accepting, stop reading new
// requests, answer every request already read (parked fetches answer at
// once), then close the logs (the engine writes its clean-shutdown marker)
// and the metadata store. When ctx ends first, connections are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mode.shutdown(ctx) // a cluster's controlled shutdown while still serving
	s.setClosing()
	s.closeListeners()
	s.lnMu.Lock()
	for c := range s.conns {
		c.stopReading()
	}
	s.lnMu.Unlock()
	s.replicas.Shutdown() // parked fetches answer now
	s.groups.Close()      // answers parked JoinGroup/SyncGroup requests

	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.logger.Warn("shutdown deadline reached; closing connections with requests in flight")
		s.lnMu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.lnMu.Unlock()
		<-done
	}
	return s.Close()
}

// Close releases the logs and the metadata store without draining
// connections (Shutdown drains first). Safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.setClosing()
		s.closeListeners()
		if s.stopBg != nil {
			s.stopBg()
			<-s.bgDone
		}
		s.cleaner.Close() // aborts running passes; before the logs close
		s.groups.Close()
		s.txns.Close()
		s.mode.stop()
		s.replicas.Close() // waits for the fsyncs in flight
		s.closeErr = errors.Join(s.mgr.Close(), s.meta.Close())
	})
	return s.closeErr
}

// ClusterID is the cluster id reported in Metadata.
func (s *Server) ClusterID() string { return s.meta.ClusterID() }
