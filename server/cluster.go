package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/kconn"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/controller"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/zkstore"
)

// Cluster mode (zookeeper.connect set): the metadata store is ZooKeeper,
// one broker is the controller, every partition has a leader and followers
// (package replica). The broker keeps:
//
//   - a metadata cache (clusterMeta) replaced whole by each UpdateMetadata
//     from the controller: live brokers, and every partition's leader,
//     leader epoch, ISR and replicas. Metadata requests are answered from it.
//   - the topic snapshot (Server.topics) with every topic; a partition has a
//     log and a replica.Partition only when this broker hosts it (created on
//     the first LeaderAndIsr naming it), otherwise log is nil and
//     Server.partition returns nil.
//   - follower fetchers (replica.Fetchers), the ISR writer (leaders' ISR
//     changes written to ZooKeeper conditionally) and the shrink ticker.
//   - a controller candidate (package controller).
//
// Lock order: cluster.partMu → Server.topicMu.

// clusterMeta is the controller-fed metadata cache (immutable), the
// cluster's metadataView.
type clusterMeta struct {
	controllerID int32
	brokers      map[int32][]zkstore.Endpoint
	topics       map[string][]partMeta
}

type partMeta struct {
	leader, leaderEpoch int32
	isr, replicas       []int32
	offline             []int32
}

func (m *clusterMeta) controller() int32                             { return m.controllerID }
func (m *clusterMeta) brokerEndpoints() map[int32][]zkstore.Endpoint { return m.brokers }
func (m *clusterMeta) partitions(topic string) ([]partMeta, bool) {
	parts, ok := m.topics[topic]
	return parts, ok
}

type cluster struct {
	s        *Server
	zk       *zkstore.Store
	ctrl     *controller.Controller
	fetchers *replica.Fetchers
	dialer   *kconn.Dialer // the inter-broker listener's TLS and SASL (security_interbroker.go)
	log      *slog.Logger

	brokerEpoch  atomic.Int64
	ctrlView     atomic.Pointer[zkstore.ControllerView] // the controller as last read from ZooKeeper (cluster_fence.go)
	ctrlEpoch    atomic.Int32                           // its epoch (metrics)
	shuttingDown atomic.Bool
	meta         atomic.Pointer[clusterMeta]

	partMu sync.Mutex // serialises LeaderAndIsr / StopReplica partition changes

	loads coordLoads // group coordinator loads and unloads (cluster_groups.go)

	isrCh  chan isrWork
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	lastConfigChange int64 // sequence number of the last config change applied
	metrics          *clusterMetrics
	stopOnce         sync.Once
	stopped          atomic.Bool
}

type isrWork struct {
	p  *replica.Partition
	ch *replica.ISRChange
}

// openZooKeeper opens the ZooKeeper metadata store for cfg.
func openZooKeeper(cfg *config.Broker, logger *slog.Logger) (*zkstore.Store, error) {
	scheme, auth, setACL, err := zooKeeperAuth(cfg.Layers())
	if err != nil {
		return nil, err
	}
	return zkstore.Open(zkstore.Options{
		Connect: cfg.ZooKeeperConnect, SessionTimeout: cfg.ZooKeeperSessionTimeout, ConnectionTimeout: cfg.ZooKeeperConnectionTimeout,
		ClusterID: cfg.ClusterID, BrokerID: cfg.NodeID, Logger: logger,
		AuthScheme: scheme, Auth: auth, SetACL: setACL,
	})
}

func newCluster(s *Server, zk *zkstore.Store) *cluster {
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{s: s, zk: zk, log: s.logger.With("component", "cluster"), isrCh: make(chan isrWork, 4096), ctx: ctx, cancel: cancel,
		lastConfigChange: -1}
	c.loads.kick = make(chan struct{}, 1)
	c.meta.Store(&clusterMeta{controllerID: -1, brokers: map[int32][]zkstore.Endpoint{}, topics: map[string][]partMeta{}})
	c.metrics = newClusterMetrics(c)
	return c
}

// loadTopics builds the topic snapshot from ZooKeeper and deletes local logs
// of topics that no longer exist (deleted while this broker was away).
func (c *cluster) loadTopics() error {
	s := c.s
	topics := c.zk.Topics()
	known := map[string]bool{}
	for _, t := range topics {
		known[t.Name] = true
	}
	for _, l := range s.mgr.Logs() {
		tp := l.TopicPartition()
		if !known[tp.Topic] {
			c.log.Info("deleting log of a topic that no longer exists", "topic", tp.Topic, "partition", tp.Partition)
			if err := s.deleteLog(tp); err != nil {
				c.log.Error("deleting stray log failed", "topic", tp.Topic, "partition", tp.Partition, "err", err)
			}
		}
	}
	snap := &topicSnapshot{byName: map[string]*topic{}, byID: map[metastore.TopicID]*topic{}}
	layers := s.layers.Load()
	for _, mt := range topics {
		t := c.buildTopic(mt, layers, nil)
		snap.byName[t.name] = t
		snap.byID[t.id] = t
	}
	s.topics.Store(snap)
	return nil
}

// buildTopic makes a topic value from stored metadata, reusing prev's
// partitions; partitions with an existing local log get their replica.
func (c *cluster) buildTopic(mt metastore.Topic, layers *config.Layers, prev *topic) *topic {
	t := &topic{name: mt.Name, id: mt.ID, rf: mt.ReplicationFactor, internal: isInternalTopic(mt.Name), configs: maps.Clone(mt.Configs)}
	if t.configs == nil {
		t.configs = map[string]string{}
	}
	t.settings = newTopicSettings(layers, t.configs)
	for p := int32(0); p < mt.Partitions; p++ {
		if prev != nil && int(p) < len(prev.parts) {
			t.parts = append(t.parts, prev.parts[p])
			continue
		}
		tp := engine.TopicPartition{Topic: mt.Name, Partition: p}
		part := &partition{tp: tp}
		if l, ok := c.s.mgr.Log(tp); ok {
			l.SetConfig(layers.EngineConfig(t.configs))
			c.attach(part, l)
		}
		t.parts = append(t.parts, part)
	}
	return t
}

// attach gives a partition its log and replica (its role comes with
// LeaderAndIsr).
func (c *cluster) attach(part *partition, l *engine.Log) {
	part.log = l
	part.rep = c.s.replicas.Add(l)
}

// interBrokerListener is the listener other brokers use to reach this one.
func (c *cluster) interBrokerListener() string { return c.s.cfg.InterBrokerListener }

// start creates the fetchers, registers the broker (after the listeners
// are bound), then starts the controller watcher, the ISR writer, the shrink ticker, the config
// watcher, the group coordinator loader and the controller candidate.
func (c *cluster) start() error {
	s := c.s
	var eps []zkstore.Endpoint
	s.lnMu.Lock()
	ln := slices.Clone(s.listeners)
	s.lnMu.Unlock()
	ibl := c.interBrokerListener()
	sort.SliceStable(ln, func(i, j int) bool { return ln[i].name == ibl && ln[j].name != ibl })
	dialer, err := s.interBrokerDialer()
	if err != nil {
		return err
	}
	c.dialer = dialer
	for _, l := range ln {
		host := l.advHost
		if host == "" {
			host, _, _ = net.SplitHostPort(l.ln.Addr().String())
		}
		eps = append(eps, zkstore.Endpoint{Name: l.name, Host: host, Port: l.advPort})
	}
	// The fetchers exist before the registration: the controller sends
	// LeaderAndIsr as soon as it sees it, and a partition made follower
	// without fetchers would never fetch.
	c.fetchers = replica.NewFetchers(replica.FetcherConfig{
		ReplicaID:         s.cfg.NodeID,
		Resolve:           c.resolve,
		MaxWait:           s.cfg.ReplicaFetchWaitMax,
		MinBytes:          s.cfg.ReplicaFetchMinBytes,
		MaxBytes:          s.cfg.ReplicaFetchResponseMaxBytes,
		PartitionMaxBytes: s.cfg.ReplicaFetchMaxBytes,
		Backoff:           s.cfg.ReplicaFetchBackoff,
		RequestTimeout:    s.cfg.ReplicaSocketTimeout,
		Logger:            s.logger,
		Dialer:            dialer,
	})
	epoch, err := c.zk.RegisterBroker(zkstore.Broker{ID: s.cfg.NodeID, Endpoints: eps, Protocols: s.listenerProtocols()})
	if err != nil {
		return err
	}
	if err := c.metrics.register(s.registry); err != nil {
		return err
	}
	c.brokerEpoch.Store(epoch)
	c.log.Info("registered broker", "broker", s.cfg.NodeID, "broker_epoch", epoch, "endpoints", eps)
	c.zk.OnNewSession(func() {
		epoch, err := c.zk.RegisterBroker(zkstore.Broker{ID: s.cfg.NodeID, Endpoints: eps, Protocols: s.listenerProtocols()})
		if err != nil {
			c.log.Error("re-registering after session expiry failed", "err", err)
			return
		}
		c.brokerEpoch.Store(epoch)
		c.log.Info("re-registered broker after session expiry", "broker_epoch", epoch)
	})
	c.wg.Add(5)
	go c.controllerWatcher()
	go c.isrWriter()
	go c.shrinkTicker()
	go c.configWatcher()
	go c.coordinatorLoader()
	if s.authz != nil {
		c.wg.Add(2)
		go c.aclWatcher(false)
		go c.aclWatcher(true)
	}
	c.ctrl = controller.New(controller.Config{
		BrokerID: s.cfg.NodeID,
		Store:    c.zk,
		Unclean: func(topic string) bool {
			if t := s.topic(topic); t != nil {
				return s.layers.Load().TopicBool("unclean.leader.election.enable", t.configs)
			}
			return s.brokerBool("unclean.leader.election.enable")
		},
		AutoRebalance:     s.cfg.AutoLeaderRebalance,
		RebalanceInterval: s.cfg.LeaderImbalanceCheckInterval,
		RequestTimeout:    s.cfg.ReplicaSocketTimeout,
		Logger:            s.logger,
		Dialer:            controller.KafkaDialer{ClientID: fmt.Sprintf("kvlog-controller-%d", s.cfg.NodeID), Secure: dialer},
	})
	c.ctrl.Start()
	return nil
}

// resolve gives a broker's inter-broker address from the metadata cache.
func (c *cluster) resolve(id int32) (string, bool) {
	m := c.meta.Load()
	eps, ok := m.brokers[id]
	if !ok || len(eps) == 0 {
		return "", false
	}
	ep := eps[0]
	for _, e := range eps {
		if e.Name == c.interBrokerListener() {
			ep = e
		}
	}
	return net.JoinHostPort(ep.Host, strconv.Itoa(int(ep.Port))), true
}

// isrWriter persists leaders' ISR changes one at a time.
func (c *cluster) isrWriter() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case w := <-c.isrCh:
			c.writeISR(w)
		}
	}
}

func (c *cluster) writeISR(w isrWork) {
	tp := w.p.Log().TopicPartition()
	st := w.p.State()
	ps := zkstore.PartitionState{Leader: c.s.cfg.NodeID, LeaderEpoch: w.ch.LeaderEpoch, ISR: w.ch.ISR,
		ControllerEpoch: st.ControllerEpoch, ZkVersion: w.ch.ZkVersion}
	v, err := c.zk.UpdateISR(tp.Topic, tp.Partition, ps)
	if err == nil {
		kind := "expand"
		if w.ch.Shrink {
			kind = "shrink"
			c.metrics.isrShrinks.Inc()
		} else {
			c.metrics.isrExpands.Inc()
		}
		c.log.Info("ISR changed", "topic", tp.Topic, "partition", tp.Partition, "change", kind, "isr", w.ch.ISR, "leader_epoch", w.ch.LeaderEpoch)
		w.p.ISRChangeDone(w.ch, v, nil, nil)
		return
	}
	var cur *replica.State
	if errors.Is(err, zkstore.ErrBadVersion) {
		if zs, ok, rerr := c.zk.PartitionState(tp.Topic, tp.Partition); rerr == nil && ok {
			cur = &replica.State{Leader: zs.Leader, LeaderEpoch: zs.LeaderEpoch, ISR: zs.ISR, ZkVersion: zs.ZkVersion, ControllerEpoch: zs.ControllerEpoch}
		}
		c.log.Info("ISR change conflicted with a newer partition state", "topic", tp.Topic, "partition", tp.Partition, "proposed", w.ch.ISR)
	} else {
		c.log.Warn("ISR change failed", "topic", tp.Topic, "partition", tp.Partition, "err", err)
	}
	w.p.ISRChangeDone(w.ch, 0, err, cur)
}

// proposeISR queues a leader's ISR change (replica.ManagerConfig.OnISRChange).
func (c *cluster) proposeISR(p *replica.Partition, ch *replica.ISRChange) {
	select {
	case c.isrCh <- isrWork{p, ch}:
	default:
		p.ISRChangeDone(ch, 0, errors.New("ISR writer queue full"), nil)
	}
}

// shrinkTicker checks every led partition for out-of-sync followers.
func (c *cluster) shrinkTicker() {
	defer c.wg.Done()
	every := max(c.s.cfg.ReplicaLagTimeMax/4, 50*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.s.replicas.Tick()
	}
}

// configWatcher applies /config/changes notifications (topic and broker
// configs changed through any broker).
func (c *cluster) configWatcher() {
	defer c.wg.Done()
	first := true
	for c.ctx.Err() == nil {
		names, ch, err := c.zk.ConfigChangesW()
		if err != nil {
			select {
			case <-time.After(time.Second):
			case <-c.ctx.Done():
			}
			continue
		}
		for _, n := range names {
			seq, err := strconv.ParseInt(strings.TrimPrefix(n, "config_change_"), 10, 64)
			if err != nil || seq <= c.lastConfigChange {
				continue
			}
			c.lastConfigChange = seq
			if first {
				continue // the snapshot was read after these
			}
			entity, err := c.zk.TakeConfigChange(n)
			if err != nil {
				continue
			}
			c.applyConfigChange(entity)
		}
		first = false
		select {
		case <-ch:
		case <-c.ctx.Done():
		}
	}
}

func (c *cluster) applyConfigChange(entity string) {
	s := c.s
	switch {
	case strings.HasPrefix(entity, "topics/"):
		name := strings.TrimPrefix(entity, "topics/")
		cfgs, err := c.zk.TopicConfigs(name)
		if err != nil {
			return
		}
		s.topicMu.Lock()
		if t := s.topic(name); t != nil && !maps.Equal(t.configs, cfgs) {
			nt := *t
			nt.configs = cfgs
			s.applyTopicConfig(&nt, s.layers.Load())
			s.publishTopics(func(m map[string]*topic) { m[name] = &nt })
			c.log.Info("applied topic config change", "topic", name, "configs", cfgs)
		}
		s.topicMu.Unlock()
	case strings.HasPrefix(entity, "users/"), strings.HasPrefix(entity, "clients/"), strings.HasPrefix(entity, "ips/"):
		// Client quotas (SCRAM credentials are read at each authentication).
		if s.quotas.store != nil {
			if err := s.quotas.reload(); err != nil {
				c.log.Warn("reloading client quotas failed", "entity", entity, "err", err)
			}
		}
	case strings.HasPrefix(entity, "brokers/"):
		s.topicMu.Lock()
		s.refreshLayers()
		layers := s.layers.Load()
		s.publishTopics(func(m map[string]*topic) {
			for name, t := range m {
				nt := *t
				s.applyTopicConfig(&nt, layers)
				m[name] = &nt
			}
		})
		s.topicMu.Unlock()
	}
}

// ensureLocal returns the partition with a local log and replica, creating
// the log (and refreshing the topic from ZooKeeper) as needed. Caller holds
// partMu.
func (c *cluster) ensureLocal(name string, p int32) (*partition, error) {
	s := c.s
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	t := s.topic(name)
	if t == nil || int(p) >= len(t.parts) {
		mt, err := c.readTopic(name)
		if err != nil {
			return nil, err
		}
		t = c.buildTopic(mt, s.layers.Load(), t)
		nt := t
		s.publishTopics(func(m map[string]*topic) { m[name] = nt })
	}
	if int(p) >= len(t.parts) {
		return nil, kerr.UnknownTopicOrPartition
	}
	part := t.parts[p]
	if part.log != nil {
		return part, nil
	}
	l, err := s.mgr.CreateLog(part.tp, s.layers.Load().EngineConfig(t.configs))
	if err != nil {
		if errors.Is(err, engine.ErrClosed) || errors.Is(err, engine.ErrStorage) {
			return nil, fmt.Errorf("create log of %s: %w", part.tp, err)
		}
		// Whatever stopped the log from being created or opened is a
		// storage failure of this replica (KAFKA_STORAGE_ERROR).
		return nil, fmt.Errorf("create log of %s: %w: %w", part.tp, engine.ErrStorage, err)
	}
	np := &partition{tp: part.tp}
	c.attach(np, l)
	nt := *t
	nt.parts = slices.Clone(t.parts)
	nt.parts[p] = np
	s.publishTopics(func(m map[string]*topic) { m[name] = &nt })
	return np, nil
}

func (c *cluster) readTopic(name string) (metastore.Topic, error) {
	a, err := c.zk.Assignment(name)
	if err != nil {
		return metastore.Topic{}, err
	}
	cfgs, err := c.zk.TopicConfigs(name)
	if err != nil {
		return metastore.Topic{}, err
	}
	mt := metastore.Topic{Name: name, ID: a.ID, Partitions: int32(len(a.Replicas)), Configs: cfgs, Assignment: a.Replicas}
	if len(a.Replicas) > 0 {
		mt.ReplicationFactor = int16(len(a.Replicas[0]))
	}
	return mt, nil
}

// syncTopics makes the topic snapshot follow the metadata cache: new topics
// and partitions appear, deleted topics without local logs go.
func (c *cluster) syncTopics(m *clusterMeta) {
	s := c.s
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	snap := s.topics.Load()
	var add []metastore.Topic
	for name, parts := range m.topics {
		t := snap.byName[name]
		if t != nil && len(t.parts) >= len(parts) {
			continue
		}
		mt, err := c.readTopic(name)
		if err != nil {
			c.log.Warn("reading new topic failed", "topic", name, "err", err)
			continue
		}
		add = append(add, mt)
	}
	var drop []string
	for name, t := range snap.byName {
		if _, ok := m.topics[name]; ok {
			continue
		}
		local := false
		for _, p := range t.parts {
			local = local || p.log != nil
		}
		if !local {
			drop = append(drop, name)
		}
	}
	if len(add) == 0 && len(drop) == 0 {
		return
	}
	layers := s.layers.Load()
	s.publishTopics(func(byName map[string]*topic) {
		for _, mt := range add {
			byName[mt.Name] = c.buildTopic(mt, layers, byName[mt.Name])
		}
		for _, n := range drop {
			delete(byName, n) // no local logs: nothing parked on them
		}
	})
}

// createTopic creates a topic in ZooKeeper; the controller then creates the
// partition states and tells the replicas.
func (c *cluster) createTopic(spec newTopicSpec) (*topic, error) {
	ids, err := c.zk.LiveBrokerIDs()
	if err != nil {
		return nil, topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	if int(spec.rf) > len(ids) {
		return nil, topicErrf(kerr.InvalidReplicationFactor, "replication factor %d is larger than the %d available brokers", spec.rf, len(ids))
	}
	mt := metastore.Topic{Name: spec.name, ID: metastore.NewTopicID(), Partitions: spec.partitions, ReplicationFactor: spec.rf, Configs: maps.Clone(spec.configs)}
	if err := c.zk.CreateTopic(mt); err != nil {
		if errors.Is(err, metastore.ErrTopicExists) {
			return nil, topicErrf(kerr.TopicAlreadyExists, "topic %q already exists", spec.name)
		}
		return nil, topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	mt.Assignment = nil
	s := c.s
	t := c.buildTopic(mt, s.layers.Load(), nil)
	s.publishTopics(func(m map[string]*topic) {
		if m[t.name] == nil {
			m[t.name] = t
		}
	})
	c.log.Info("created topic", "topic", t.name, "partitions", spec.partitions, "replication_factor", spec.rf, "configs", spec.configs)
	return s.topic(t.name), nil
}

// deleteTopic marks a topic for deletion; the controller deletes the
// replicas (StopReplica) and the znodes. Called with topicMu held, which
// it releases.
func (c *cluster) deleteTopic(t *topic) error {
	defer c.s.topicMu.Unlock()
	if err := c.zk.DeleteTopic(t.name); err != nil {
		if errors.Is(err, metastore.ErrUnknownTopic) {
			return topicErrf(kerr.UnknownTopicOrPartition, "unknown topic %q", t.name)
		}
		return topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	return nil
}

// addPartitions adds partitions in ZooKeeper (assigned round-robin over the
// live brokers, whatever assignment asks); the controller starts them.
func (c *cluster) addPartitions(t *topic, count int32, _ [][]int32, validateOnly bool) error {
	if validateOnly {
		return nil
	}
	if err := c.zk.SetPartitionCount(t.name, count); err != nil {
		if errors.Is(err, metastore.ErrPartitionCount) {
			return topicErrf(kerr.InvalidPartitions, "%v", err)
		}
		return topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	return nil
}

// shutdown is the cluster part of a graceful stop: stop following (leave
// the ISRs), ask the controller to move leadership away (controlled
// shutdown), then stop the controller candidate and the background work.
func (c *cluster) shutdown(ctx context.Context) {
	if c.stopped.Load() || !c.shuttingDown.CompareAndSwap(false, true) {
		return
	}
	if c.fetchers != nil {
		c.fetchers.Close()
	}
	if c.s.cfg.ControlledShutdownEnable && c.ctrl != nil {
		c.controlledShutdown(ctx)
	}
	c.stop()
}

func (c *cluster) stop() {
	c.stopOnce.Do(c.stopNow)
}

// onISRChange writes the partition manager's ISR changes to ZooKeeper.
func (c *cluster) onISRChange() func(*replica.Partition, *replica.ISRChange) { return c.proposeISR }

func (c *cluster) replicated() bool { return true }

func (c *cluster) stopNow() {
	c.stopped.Store(true)
	if c.ctrl != nil {
		c.ctrl.Stop()
	}
	if c.fetchers != nil {
		c.fetchers.Close()
	}
	c.cancel()
	c.wg.Wait()
	c.s.replicas.StopAll()
	_ = c.zk.UnregisterBroker(c.s.cfg.NodeID)
}

// controlledShutdown sends ControlledShutdown to the controller until it
// reports no partitions left or the retries run out.
func (c *cluster) controlledShutdown(ctx context.Context) {
	retries := c.s.cfg.ControlledShutdownMaxRetries
	backoff := c.s.cfg.ControlledShutdownRetryBackoff
	for attempt := 0; attempt <= retries; attempt++ {
		remaining, err := c.controlledShutdownOnce(ctx)
		if err == nil && remaining == 0 {
			c.log.Info("controlled shutdown complete")
			return
		}
		c.log.Warn("controlled shutdown incomplete", "attempt", attempt+1, "remaining", remaining, "err", err)
		if attempt < retries {
			select {
			case <-time.After(min(backoff, 2*time.Second)):
			case <-ctx.Done():
				return
			}
		}
	}
}

func (c *cluster) controlledShutdownOnce(ctx context.Context) (int, error) {
	id := c.s.cfg.NodeID
	ctl, _, err := c.zk.ControllerID()
	if err != nil {
		return -1, err
	}
	if ctl < 0 {
		return -1, errors.New("no controller")
	}
	if ctl == id {
		rem, err := c.ctrl.ControlledShutdown(ctx, id, c.brokerEpoch.Load())
		return len(rem), err
	}
	addr, ok := c.resolve(ctl)
	if !ok {
		return -1, fmt.Errorf("no address for controller %d", ctl)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := c.dialer.Dial(rctx, addr, "kvlog-controlled-shutdown")
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	req := kmsg.NewPtrControlledShutdownRequest()
	req.Version = 3
	req.BrokerID = id
	req.BrokerEpoch = c.brokerEpoch.Load()
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

// controllerStatus reports the local controller candidate's state.
func (c *cluster) controllerStatus() controller.Status {
	if c.ctrl == nil {
		return controller.Status{}
	}
	return c.ctrl.Status()
}
