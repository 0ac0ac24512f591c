package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/replica"
	zkcluster "github.com/kvlog/kvlog/server/cluster"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/fetchsession"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/metrics"
	"github.com/kvlog/kvlog/server/txn"
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

	metrics  *metrics.Metrics
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
		reqMem:    wire.NewMemory(cfg.QueuedMaxRequestBytes, opts.Clock),
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
	s.fetchSessions.Moves = s.replicas.Moves
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
	unregister, err := s.metrics.Register(s.registry)
	if err != nil {
		return nil, err
	}
	undo.push(unregister)
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
// The receiver is a pointer: `defer undo.runIf(&err)` evaluates it when
// deferred, so a value receiver would run the stack as it was then (empty)
// instead of the steps pushed since.
func (c *cleanups) runIf(err *error) {
	if *err == nil {
		return
	}
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
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

// replicaConfig configures the partition manager.
func (s *Server) replicaConfig() replica.ManagerConfig {
	cfg := replica.ManagerConfig{
		ID:             s.cfg.NodeID,
		LagMax:         s.cfg.ReplicaLagTimeMax,
		SyncAlone:      s.cfg.FsyncAcksAll,
		Clock:          s.clock,
		Logger:         s.logger.With("component", "replica"),
		AroundTruncate: s.aroundTruncate,
	}
	cfg.OnISRChange = s.mode.onISRChange()
	return cfg
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

// setClosing marks the broker as closing: request paths and the accept
// loops see it (closing, closingCh).
func (s *Server) setClosing() {
	s.closing.Store(true)
	s.closeCh.Do(func() { close(s.closingCh) })
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

// Readiness reports whether the broker should receive traffic, and why
// not: the log dirs are loaded once New returned; it is ready once every
// listener accepts (Start) and, in cluster mode, the ZooKeeper session is
// up; not during shutdown. The HTTP listener's /readyz serves it.
func (s *Server) Readiness() (bool, []string) {
	var reasons []string
	if !s.started.Load() {
		reasons = append(reasons, "listeners not accepting yet")
	}
	if s.closing.Load() {
		reasons = append(reasons, "shutting down")
	}
	if why := s.mode.notReady(); why != "" {
		reasons = append(reasons, why)
	}
	return len(reasons) == 0, reasons
}
