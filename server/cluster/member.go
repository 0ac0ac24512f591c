package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/internal/kconn"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/acl"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/controller"
	"github.com/kvlog/kvlog/server/zkstore"
)

// retryWait is how long a watcher waits before reading ZooKeeper again
// after a failed read.
const retryWait = time.Second

// Config is what a Member is given by the broker.
type Config struct {
	// Broker is the broker's static configuration (node id, the
	// replica.* and controlled.shutdown.* settings, the inter-broker
	// listener).
	Broker *config.Broker
	Store  Store
	Clock  clock.Clock // nil: clock.Real
	Logger *slog.Logger
	// Registry receives the replication and controller metrics at Start;
	// nil: not exported.
	Registry *prometheus.Registry

	// Brokers is the live brokers' endpoints from the metadata cache the
	// controller keeps current (UpdateMetadata): the follower fetchers,
	// controlled shutdown and the broker's forwarded requests dial them.
	Brokers func() map[int32][]zkstore.Endpoint
	// Unclean reports whether topic allows unclean leader election.
	Unclean func(topic string) bool
	// OnConfigChange applies a configuration change notification: the
	// changed entity ("topics/<name>", "brokers/<id>", "users/…",
	// "clients/…", "ips/…"). Called on the config watcher's goroutine.
	OnConfigChange func(entity string)
	// FollowerLag is the kvlog_follower_lag_messages gauge's value.
	FollowerLag func() int64
	// Metadata is the partition states in the metadata cache (the
	// previous controller's UpdateMetadata): the controller candidate's
	// fail-over reads first the states of the partitions it names led by
	// brokers that are gone (controller.Config.Metadata). nil: none.
	Metadata func() map[zkstore.TopicPartition]zkstore.PartitionState
}

// StartArgs is what exists only once the broker's listeners are bound.
type StartArgs struct {
	// Endpoints are the advertised listeners, the inter-broker one first.
	Endpoints []zkstore.Endpoint
	// Protocols maps each listener to its security protocol.
	Protocols map[string]string
	// Dialer reaches other brokers on the inter-broker listener.
	Dialer *kconn.Dialer
	// Replicas is the partition manager: the fetchers feed its followers,
	// the ISR shrink check ticks it, and Stop stops its replicas.
	Replicas *replica.Manager
	// Authorizer, when set, is kept current from ZooKeeper's ACL change
	// notifications.
	Authorizer *acl.Authorizer
}

// Member is this broker's membership of a ZooKeeper cluster.
type Member struct {
	cfg Config
	zk  Store
	clk clock.Clock
	log *slog.Logger

	ctrl     *controller.Controller
	fetchers *replica.Fetchers
	dialer   *kconn.Dialer
	replicas *replica.Manager
	authz    *acl.Authorizer

	brokerEpoch  atomic.Int64
	ctrlView     atomic.Pointer[zkstore.ControllerView] // the controller as last read from ZooKeeper (fence.go)
	ctrlEpoch    atomic.Int32                           // its epoch (metrics)
	shuttingDown atomic.Bool

	isrCh chan isrWork
	queue serialQueue

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	metrics  *metrics
	stopOnce sync.Once
	stopped  atomic.Bool
}

// New makes the membership; Start joins the cluster.
func New(cfg Config) *Member {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Member{cfg: cfg, zk: cfg.Store, clk: cfg.Clock, log: cfg.Logger.With("component", "cluster"),
		isrCh: make(chan isrWork, 4096), ctx: ctx, cancel: cancel}
	if m.clk == nil {
		m.clk = clock.Real
	}
	m.queue.kick = make(chan struct{}, 1)
	m.metrics = newMetrics(m)
	return m
}

// Context ends when the membership stops.
func (m *Member) Context() context.Context { return m.ctx }

// Start creates the fetchers, registers the broker, then starts the
// controller watcher, the ISR writer, the shrink ticker, the config
// watcher, the coordinator queue, the ACL watchers (with an authorizer)
// and the controller candidate.
func (m *Member) Start(a StartArgs) error {
	b := m.cfg.Broker
	m.dialer, m.replicas, m.authz = a.Dialer, a.Replicas, a.Authorizer
	// The fetchers exist before the registration: the controller sends
	// LeaderAndIsr as soon as it sees it, and a partition made follower
	// without fetchers would never fetch.
	m.fetchers = replica.NewFetchers(replica.FetcherConfig{
		ReplicaID:         b.NodeID,
		Resolve:           m.Resolve,
		MaxWait:           b.ReplicaFetchWaitMax,
		MinBytes:          b.ReplicaFetchMinBytes,
		MaxBytes:          b.ReplicaFetchResponseMaxBytes,
		PartitionMaxBytes: b.ReplicaFetchMaxBytes,
		Backoff:           b.ReplicaFetchBackoff,
		RequestTimeout:    b.ReplicaSocketTimeout,
		Logger:            m.cfg.Logger,
		Dialer:            a.Dialer,
		Clock:             m.clk,
	})
	reg := zkstore.Broker{ID: b.NodeID, Endpoints: a.Endpoints, Protocols: a.Protocols}
	epoch, err := m.zk.RegisterBroker(reg)
	if err != nil {
		return err
	}
	if m.cfg.Registry != nil {
		if err := m.metrics.register(m.cfg.Registry); err != nil {
			return err
		}
	}
	m.brokerEpoch.Store(epoch)
	m.log.Info("registered broker", "broker", b.NodeID, "broker_epoch", epoch, "endpoints", a.Endpoints)
	m.zk.OnNewSession(func() {
		epoch, err := m.zk.RegisterBroker(reg)
		if err != nil {
			m.log.Error("re-registering after session expiry failed", "err", err)
			return
		}
		m.brokerEpoch.Store(epoch)
		m.log.Info("re-registered broker after session expiry", "broker_epoch", epoch)
	})
	m.goRun(m.controllerWatcher)
	m.goRun(m.isrWriter)
	m.goRun(m.shrinkTicker)
	m.goRun(m.configWatcher)
	m.goRun(m.queue.run(m.ctx))
	if m.authz != nil {
		m.goRun(func() { m.aclWatcher(false) })
		m.goRun(func() { m.aclWatcher(true) })
	}
	m.ctrl = controller.New(controller.Config{
		BrokerID:          b.NodeID,
		Store:             m.zk,
		Unclean:           m.cfg.Unclean,
		AutoRebalance:     b.AutoLeaderRebalance,
		RebalanceInterval: b.LeaderImbalanceCheckInterval,
		RequestTimeout:    b.ReplicaSocketTimeout,
		Logger:            m.cfg.Logger,
		Dialer:            controller.KafkaDialer{ClientID: fmt.Sprintf("kvlog-controller-%d", b.NodeID), Secure: a.Dialer},
		Metadata:          m.cfg.Metadata,
	})
	m.ctrl.Start()
	return nil
}

// goRun runs f on a goroutine Stop waits for.
func (m *Member) goRun(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

// Resolve gives a broker's inter-broker address from the metadata cache.
func (m *Member) Resolve(id int32) (string, bool) {
	eps, ok := m.cfg.Brokers()[id]
	if !ok || len(eps) == 0 {
		return "", false
	}
	ep := eps[0]
	for _, e := range eps {
		if e.Name == m.cfg.Broker.InterBrokerListener {
			ep = e
		}
	}
	return net.JoinHostPort(ep.Host, strconv.Itoa(int(ep.Port))), true
}

// Fetchers are the follower fetchers (nil before Start).
func (m *Member) Fetchers() *replica.Fetchers { return m.fetchers }

// Controller is this broker's controller candidate (nil before Start).
func (m *Member) Controller() *controller.Controller { return m.ctrl }

// ControllerStatus reports the local controller candidate's state.
func (m *Member) ControllerStatus() controller.Status {
	if m.ctrl == nil {
		return controller.Status{}
	}
	return m.ctrl.Status()
}

// ShuttingDown reports whether Shutdown began: a partition made follower
// from then on is not fetched.
func (m *Member) ShuttingDown() bool { return m.shuttingDown.Load() }

// BrokerEpoch is this broker's registration epoch.
func (m *Member) BrokerEpoch() int64 { return m.brokerEpoch.Load() }

// ControllerEpoch is the controller epoch as this broker last read it.
func (m *Member) ControllerEpoch() int32 { return m.ctrlEpoch.Load() }

// HasSession reports whether the ZooKeeper session is up.
func (m *Member) HasSession() bool { return m.zk.HasSession() }

// Shutdown is the graceful stop: stop following (leave the ISRs), ask the
// controller to move leadership away (controlled shutdown), then Stop.
func (m *Member) Shutdown(ctx context.Context) {
	if m.stopped.Load() || !m.shuttingDown.CompareAndSwap(false, true) {
		return
	}
	if m.fetchers != nil {
		m.fetchers.Close()
	}
	if m.cfg.Broker.ControlledShutdownEnable && m.ctrl != nil {
		m.controlledShutdown(ctx)
	}
	m.Stop()
}

// Stop ends the controller candidate, the fetchers and the background
// work, stops the replicas and removes the registration.
func (m *Member) Stop() { m.stopOnce.Do(m.stopNow) }

func (m *Member) stopNow() {
	m.stopped.Store(true)
	if m.ctrl != nil {
		m.ctrl.Stop()
	}
	if m.fetchers != nil {
		m.fetchers.Close()
	}
	m.cancel()
	m.wg.Wait()
	if m.replicas != nil {
		m.replicas.StopAll()
	}
	_ = m.zk.UnregisterBroker(m.cfg.Broker.NodeID)
}

// controlledShutdown sends ControlledShutdown to the controller until it
// reports no partitions left or the retries run out, waiting
// controlled.shutdown.retry.backoff.ms (at most 2 s) between attempts.
func (m *Member) controlledShutdown(ctx context.Context) {
	retries := m.cfg.Broker.ControlledShutdownMaxRetries
	backoff := min(m.cfg.Broker.ControlledShutdownRetryBackoff, 2*time.Second)
	for attempt := 0; attempt <= retries; attempt++ {
		remaining, err := m.controlledShutdownOnce(ctx)
		if err == nil && remaining == 0 {
			m.log.Info("controlled shutdown complete")
			return
		}
		m.log.Warn("controlled shutdown incomplete", "attempt", attempt+1, "remaining", remaining, "err", err)
		if attempt < retries && !clock.Sleep(ctx, m.clk, backoff) {
			return
		}
	}
}

func (m *Member) controlledShutdownOnce(ctx context.Context) (int, error) {
	id := m.cfg.Broker.NodeID
	ctl, _, err := m.zk.ControllerID()
	if err != nil {
		return -1, err
	}
	if ctl < 0 {
		return -1, errors.New("no controller")
	}
	if ctl == id {
		rem, err := m.ctrl.ControlledShutdown(ctx, id, m.brokerEpoch.Load())
		return len(rem), err
	}
	addr, ok := m.Resolve(ctl)
	if !ok {
		return -1, fmt.Errorf("no address for controller %d", ctl)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := m.dialer.Dial(rctx, addr, "kvlog-controlled-shutdown")
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	req := kmsg.NewPtrControlledShutdownRequest()
	req.Version = 3
	req.BrokerID = id
	req.BrokerEpoch = m.brokerEpoch.Load()
	kresp, err := conn.Request(rctx, req)
	if err != nil {
		return -1, err
	}
	resp := kresp.(*kmsg.ControlledShutdownResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return -1, err
	}
	return len(resp.PartitionsRemaining), nil
}

// serialQueue runs queued work one item at a time, in order.
type serialQueue struct {
	mu    sync.Mutex
	items []func()
	kick  chan struct{}
}

// Enqueue runs f on the membership's serial queue after everything queued
// before it: the coordinators' loads and unloads, off the controller's
// requests, in the order the role changes arrived (the caller orders its
// calls). Nothing queued runs after Stop.
func (m *Member) Enqueue(f func()) {
	q := &m.queue
	q.mu.Lock()
	q.items = append(q.items, f)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *serialQueue) run(ctx context.Context) func() {
	return func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-q.kick:
			}
			for ctx.Err() == nil {
				q.mu.Lock()
				if len(q.items) == 0 {
					q.mu.Unlock()
					break
				}
				f := q.items[0]
				q.items = q.items[1:]
				q.mu.Unlock()
				f()
			}
		}
	}
}
