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
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/console"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/internal/kconn"
	"github.com/kvlog/kvlog/replica"
	zkcluster "github.com/kvlog/kvlog/server/cluster"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/controller"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/zkstore"
)

// Cluster mode (zookeeper.connect set): the metadata store is ZooKeeper,
// one broker is the controller, every partition has a leader and followers
// (package replica). Package cluster's Member is the membership itself
// (registration, the controller candidate and the fencing of its
// requests, fetchers, the ISR writer, ZooKeeper's change notifications,
// controlled shutdown); this file wires it to what the broker owns:
//
//   - a metadata cache (clusterMeta) replaced whole by each UpdateMetadata
//     from the controller: live brokers, and every partition's leader,
//     leader epoch, ISR and replicas. Metadata requests are answered from it.
//   - the topic snapshot (Server.topics) with every topic; a partition has a
//     log and a replica.Partition only when this broker hosts it (created on
//     the first LeaderAndIsr naming it), otherwise log is nil and
//     Server.partition returns nil.
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
	// controllerEpoch and zkVersion: of the state (what a new controller
	// on this broker starts from, package controller's Config.Metadata)
	controllerEpoch, zkVersion int32
}

func (m *clusterMeta) controller() int32                             { return m.controllerID }
func (m *clusterMeta) brokerEndpoints() map[int32][]zkstore.Endpoint { return m.brokers }
func (m *clusterMeta) partitions(topic string) ([]partMeta, bool) {
	parts, ok := m.topics[topic]
	return parts, ok
}

// cluster is the broker's side of cluster mode, its membership.
type cluster struct {
	s      *Server
	zk     *zkstore.Store
	m      *zkcluster.Member
	ctx    context.Context // ends when the membership stops
	dialer *kconn.Dialer   // the inter-broker listener's TLS and SASL (security.go)
	log    *slog.Logger

	meta atomic.Pointer[clusterMeta]

	partMu sync.Mutex // serialises LeaderAndIsr / StopReplica partition changes
}

func newCluster(s *Server, zk *zkstore.Store) *cluster {
	c := &cluster{s: s, zk: zk, log: s.logger.With("component", "cluster")}
	c.meta.Store(&clusterMeta{controllerID: -1, brokers: map[int32][]zkstore.Endpoint{}, topics: map[string][]partMeta{}})
	c.m = zkcluster.New(zkcluster.Config{
		Broker:   s.cfg,
		Store:    zk,
		Clock:    s.clock,
		Logger:   s.logger,
		Registry: s.registry,
		Brokers:  func() map[int32][]zkstore.Endpoint { return c.meta.Load().brokers },
		Unclean: func(topic string) bool {
			if t := s.topic(topic); t != nil {
				return s.layers.Load().TopicBool("unclean.leader.election.enable", t.configs)
			}
			return s.brokerBool("unclean.leader.election.enable")
		},
		OnConfigChange: c.applyConfigChange,
		FollowerLag:    c.followerLag,
		Metadata:       c.metaStates,
	})
	c.ctx = c.m.Context()
	return c
}

// metaStates is the partition states in the metadata cache (the last
// UpdateMetadata applied): a fail-over's first reads, and a stand-in for
// the states it has not read yet (package cluster's Config.Metadata).
func (c *cluster) metaStates() map[zkstore.TopicPartition]zkstore.PartitionState {
	m := c.meta.Load()
	n := 0
	for _, parts := range m.topics {
		n += len(parts)
	}
	out := make(map[zkstore.TopicPartition]zkstore.PartitionState, n)
	for name, parts := range m.topics {
		for p, pm := range parts {
			if pm.replicas == nil {
				continue // not in the request that filled the cache
			}
			out[zkstore.TopicPartition{Topic: name, Partition: int32(p)}] = zkstore.PartitionState{Leader: pm.leader,
				LeaderEpoch: pm.leaderEpoch, ISR: pm.isr, ControllerEpoch: pm.controllerEpoch, ZkVersion: pm.zkVersion}
		}
	}
	return out
}

// fromController admits a request the controller sends to the brokers
// (the membership's admit; package cluster's Member.Admit has the rules):
// it returns the cluster, or the error to answer with: INVALID_REQUEST on
// a single node (no controller), STALE_BROKER_EPOCH or
// STALE_CONTROLLER_EPOCH. A refusal is logged at WARN.
func (s *Server) fromController(r *request, controllerID, controllerEpoch int32, brokerEpoch int64) (*cluster, *kerr.Error) {
	c, ref := s.mode.admit(controllerID, controllerEpoch, brokerEpoch)
	if ref == nil {
		return c, nil
	}
	r.log().Warn("refused inter-broker request: "+ref.Reason, append([]any{"controller", controllerID,
		"controller_epoch", controllerEpoch, "broker_epoch", brokerEpoch, "err", ref.Err}, ref.Attrs...)...)
	return nil, ref.Err
}

func (c *cluster) admit(controllerID, controllerEpoch int32, brokerEpoch int64) (*cluster, *zkcluster.Refusal) {
	if ref := c.m.Admit(controllerID, controllerEpoch, brokerEpoch); ref != nil {
		return nil, ref
	}
	return c, nil
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
	t.settings = layers.TopicSettings(t.configs)
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

// start registers the broker with its advertised listeners, the
// inter-broker listener first, once they are bound.
func (c *cluster) start() error {
	s := c.s
	s.lnMu.Lock()
	ln := slices.Clone(s.listeners)
	s.lnMu.Unlock()
	ibl := s.cfg.InterBrokerListener
	sort.SliceStable(ln, func(i, j int) bool { return ln[i].name == ibl && ln[j].name != ibl })
	dialer, err := s.interBrokerDialer()
	if err != nil {
		return err
	}
	c.dialer = dialer
	var eps []zkstore.Endpoint
	for _, l := range ln {
		host := l.advHost
		if host == "" {
			host, _, _ = net.SplitHostPort(l.ln.Addr().String())
		}
		eps = append(eps, zkstore.Endpoint{Name: l.name, Host: host, Port: l.advPort})
	}
	a := zkcluster.StartArgs{Endpoints: eps, Protocols: s.listenerProtocols(), Dialer: dialer, Replicas: s.replicas}
	if s.authz != nil {
		a.Authorizer = s.authz.a
	}
	return c.m.Start(a)
}

// resolve gives a broker's inter-broker address from the metadata cache.
func (c *cluster) resolve(id int32) (string, bool) { return c.m.Resolve(id) }

// followerLag sums, over the partitions this broker follows, how far the
// local log end is behind the leader's high watermark as last seen.
func (c *cluster) followerLag() int64 {
	var lag int64
	for _, t := range c.s.topics.Load().byName {
		for _, p := range t.parts {
			if p.role() != replica.RoleFollower {
				continue
			}
			if d := int64(p.log.HighWatermark()) - int64(p.log.LogEndOffset()); d > 0 {
				lag += d
			}
		}
	}
	return lag
}

// applyConfigChange applies a /config/changes notification (the config
// watcher of package cluster hands them over): a topic's configs, client
// quotas, or the dynamic broker configs.
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

// readTopic reads a topic's assignment and configs from ZooKeeper.
func (c *cluster) readTopic(name string) (metastore.Topic, error) { return c.m.ReadTopic(name) }

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

// storeErr is the topic error for a failed metadata store operation.
func storeErr(err error) error {
	return topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
}

// createTopic creates a topic in ZooKeeper; the controller then creates the
// partition states and tells the replicas.
func (c *cluster) createTopic(spec newTopicSpec) (*topic, error) {
	mt, err := c.m.CreateTopic(spec.name, spec.partitions, spec.rf, spec.configs)
	var few *zkcluster.NotEnoughBrokersError
	switch {
	case errors.As(err, &few):
		return nil, topicErrf(kerr.InvalidReplicationFactor, "%v", few)
	case errors.Is(err, metastore.ErrTopicExists):
		return nil, topicErrf(kerr.TopicAlreadyExists, "topic %q already exists", spec.name)
	case err != nil:
		return nil, storeErr(err)
	}
	s := c.s
	t := c.buildTopic(mt, s.layers.Load(), nil)
	s.publishTopics(func(m map[string]*topic) {
		if m[t.name] == nil {
			m[t.name] = t
		}
	})
	return s.topic(t.name), nil
}

// deleteTopic marks a topic for deletion; the controller deletes the
// replicas (StopReplica) and the znodes. Called with topicMu held, which
// it releases.
func (c *cluster) deleteTopic(t *topic) error {
	defer c.s.topicMu.Unlock()
	if err := c.m.DeleteTopic(t.name); err != nil {
		if errors.Is(err, metastore.ErrUnknownTopic) {
			return topicErrf(kerr.UnknownTopicOrPartition, "unknown topic %q", t.name)
		}
		return storeErr(err)
	}
	return nil
}

// addPartitions adds partitions in ZooKeeper (assigned round-robin over the
// live brokers, whatever assignment asks); the controller starts them.
func (c *cluster) addPartitions(t *topic, count int32, _ [][]int32, validateOnly bool) error {
	if validateOnly {
		return nil
	}
	if err := c.m.AddPartitions(t.name, count); err != nil {
		if errors.Is(err, metastore.ErrPartitionCount) {
			return topicErrf(kerr.InvalidPartitions, "%v", err)
		}
		return storeErr(err)
	}
	return nil
}

// shutdown is the cluster part of a graceful stop: stop following, a
// controlled shutdown, then stop (package cluster's Member.Shutdown).
func (c *cluster) shutdown(ctx context.Context) { c.m.Shutdown(ctx) }

func (c *cluster) stop() { c.m.Stop() }

// onISRChange writes the partition manager's ISR changes to ZooKeeper.
func (c *cluster) onISRChange() func(*replica.Partition, *replica.ISRChange) { return c.m.ProposeISR }

func (c *cluster) replicated() bool { return true }

func (c *cluster) notReady() string {
	if !c.m.HasSession() {
		return "no ZooKeeper session"
	}
	return ""
}

func (c *cluster) describe(bi *console.BrokerInfo) {
	bi.Mode, bi.ZooKeeper, bi.ZooKeeperSession = "cluster", c.s.cfg.ZooKeeperConnect, c.m.HasSession()
}

func (c *cluster) controllerCandidate() *controller.Controller { return c.m.Controller() }
