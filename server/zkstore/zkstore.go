// Package zkstore is the ZooKeeper metadata store: it implements
// metastore.Store on Apache Kafka's ZooKeeper-era znode layout (so the data
// is laid out as a Kafka 2.x cluster's), and adds what the controller and
// the brokers need in cluster mode: broker registration, controller
// election with the controller epoch, partition states, fenced controller
// writes, leader ISR updates and change notifications.
//
// # Znodes (relative to the optional chroot)
//
//	/brokers/ids/<id>                         ephemeral; endpoints JSON (v5); czxid = broker epoch
//	/brokers/topics/<t>                       {"version":3,"topic_id":..,"partitions":{"0":[1,2,3]},..}
//	/brokers/topics/<t>/partitions/<p>/state  {"controller_epoch":..,"leader":..,"version":1,"leader_epoch":..,"isr":[..]}
//	/controller                               ephemeral {"version":1,"brokerid":..,"timestamp":".."}
//	/controller_epoch                         "N"
//	/config/topics/<t>, /config/brokers/<id>  {"version":1,"config":{..}}
//	/config/users/<user>                      {"version":1,"config":{"SCRAM-SHA-512":"salt=..,stored_key=..,server_key=..,iterations=.."}}
//	/config/changes/config_change_<seq>       {"version":2,"entity_path":"topics/<t>"}
//	/admin/delete_topics/<t>                  marks a topic for deletion
//	/isr_change_notification/isr_change_<seq> {"version":1,"partitions":[{"topic":..,"partition":..}]}
//	/latest_producer_id_block                 {"version":1,"broker":..,"block_start":"..","block_end":".."}
//	/cluster/id                               {"version":"1","id":".."}
//
// # ACLs
//
// Options.SetACL (zookeeper.set.acl) creates every znode with Kafka's
// ZooKeeper-mode ACLs: all permissions for the session's authenticated
// identities (Options.AuthScheme/Auth, e.g. digest user:password), read
// for everyone except below /config/users and /config/brokers. Without
// it, znodes are open to everyone, as Kafka's default.
//
// # Lost connections
//
// Reads, and the writes whose repetition is harmless, wait across a
// dropped connection for the client to resume the session (up to the
// session timeout), as Kafka's ZooKeeper client does; only a session
// expiry fails them (see retry.go). Writes whose outcome is unknown after
// a lost connection return the error to their callers.
//
// # Fencing
//
// The controller is elected by creating /controller and bumping
// /controller_epoch in one multi (the epoch's znode version is remembered as
// the Fence). Every controller write is a multi that starts with a version
// check on /controller_epoch, so a deposed (zombie) controller can change
// nothing: its writes fail with ErrFenced. Leaders change the ISR with a
// conditional set on the state's znode version (ErrBadVersion on conflict).
package zkstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/server/metastore"
)

// Errors.
var (
	ErrBrokerIDTaken = errors.New("zkstore: broker id already registered by another live broker")
	ErrFenced        = errors.New("zkstore: controller epoch changed (this controller is fenced)")
	ErrBadVersion    = errors.New("zkstore: partition state changed concurrently")
	ErrNotElected    = errors.New("zkstore: another broker is the controller")
	ErrNoBrokers     = errors.New("zkstore: not enough live brokers for the replication factor")
)

// Options configure a Store.
type Options struct {
	// Connect is zookeeper.connect: host:port[,host:port...][/chroot].
	Connect           string
	SessionTimeout    time.Duration // zookeeper.session.timeout.ms (18 s)
	ConnectionTimeout time.Duration // zookeeper.connection.timeout.ms (default: session timeout)
	// ClusterID is written to /cluster/id if it is absent; empty generates one.
	ClusterID string
	BrokerID  int32
	Logger    *slog.Logger
	// Now is the time source for timestamps in znodes (nil: time.Now).
	Now func() time.Time
	// AuthScheme and Auth are the credentials the session presents
	// (ZooKeeper's addauth), e.g. "digest" and "user:password"; none when
	// AuthScheme is empty. They are presented again after a reconnect.
	AuthScheme string
	Auth       []byte
	// SetACL is zookeeper.set.acl: every znode the store creates gets
	// Kafka's ACLs (see Store.acl); it needs credentials.
	SetACL bool
}

// Store is the ZooKeeper metadata store. Safe for concurrent use.
type Store struct {
	opts      Options
	conn      *zk.Conn
	root      string
	clusterID string
	log       *slog.Logger

	mu        sync.Mutex
	nextPID   int64
	pidEnd    int64 // exclusive
	closed    bool
	listeners []func()
	done      chan struct{} // closed by Close
	// retryHook, when set (tests), runs before each retry of a request
	// after a lost connection, with the error that made it retry.
	retryHook func(error)
}

var _ metastore.Store = (*Store)(nil)

// ParseConnect splits a zookeeper.connect string into servers and chroot.
func ParseConnect(s string) (servers []string, chroot string, err error) {
	hosts := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		hosts, chroot = s[:i], path.Clean(s[i:])
		if chroot == "/" {
			chroot = ""
		}
	}
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			servers = append(servers, h)
		}
	}
	if len(servers) == 0 {
		return nil, "", fmt.Errorf("zkstore: no servers in zookeeper.connect %q", s)
	}
	return servers, chroot, nil
}

type slogZK struct{ l *slog.Logger }

func (s slogZK) Printf(format string, args ...any) {
	s.l.Debug(fmt.Sprintf(format, args...), "component", "zookeeper-client")
}

// Open connects, waits for a session (up to ConnectionTimeout), and creates
// the chroot and Kafka's persistent paths.
func Open(opts Options) (*Store, error) {
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = 18 * time.Second
	}
	if opts.ConnectionTimeout <= 0 {
		opts.ConnectionTimeout = opts.SessionTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	servers, chroot, err := ParseConnect(opts.Connect)
	if err != nil {
		return nil, err
	}
	if opts.SetACL && opts.AuthScheme == "" {
		return nil, fmt.Errorf("zkstore: zookeeper.set.acl needs credentials for ZooKeeper (the znodes' ACLs name the identity that creates them)")
	}
	s := &Store{opts: opts, root: chroot, log: opts.Logger.With("component", "zkstore"), done: make(chan struct{})}
	conn, events, err := zk.Connect(servers, opts.SessionTimeout, zk.WithLogger(slogZK{s.log}))
	if err != nil {
		return nil, fmt.Errorf("zkstore: connect %s: %w", opts.Connect, err)
	}
	s.conn = conn
	if err := waitSession(events, opts.ConnectionTimeout); err != nil {
		conn.Close()
		return nil, fmt.Errorf("zkstore: connect %s: %w", opts.Connect, err)
	}
	if opts.AuthScheme != "" {
		// The client keeps the credentials and sends them again on every
		// new connection, before any other request.
		if err := conn.AddAuth(opts.AuthScheme, opts.Auth); err != nil {
			conn.Close()
			return nil, fmt.Errorf("zkstore: authenticate to %s with scheme %s: %w", opts.Connect, opts.AuthScheme, err)
		}
	}
	go s.watchSession(events)
	if err := s.ensurePath(""); err != nil { // the chroot
		s.Close()
		return nil, err
	}
	for _, p := range []string{pathBrokerIDs, pathTopics, pathSeqID, pathConfigTopics, pathConfigBrokers, pathConfigChanges,
		pathDeleteTopics, pathISRChanges, pathCluster, "/config/clients", "/config/users"} {
		if err := s.ensurePath(p); err != nil {
			s.Close()
			return nil, err
		}
	}
	if err := s.initClusterID(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func waitSession(events <-chan zk.Event, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("no session within %v", timeout)
		}
	}
}

// watchSession runs the session listeners whenever a new session starts
// after the previous one expired (ephemeral znodes and watches are gone).
func (s *Store) watchSession(events <-chan zk.Event) {
	expired := false
	for ev := range events {
		if ev.Type != zk.EventSession {
			continue
		}
		switch ev.State {
		case zk.StateExpired:
			s.log.Warn("ZooKeeper session expired")
			expired = true
		case zk.StateHasSession:
			if expired {
				expired = false
				s.mu.Lock()
				ls := slices.Clone(s.listeners)
				s.mu.Unlock()
				s.log.Info("new ZooKeeper session after expiry", "session", s.conn.SessionID())
				for _, fn := range ls {
					go fn()
				}
			}
		}
	}
}

// OnNewSession registers fn to run (on its own goroutine) each time a new
// session replaces an expired one.
func (s *Store) OnNewSession(fn func()) {
	s.mu.Lock()
	s.listeners = append(s.listeners, fn)
	s.mu.Unlock()
}

// SessionID is the current session id.
func (s *Store) SessionID() int64 { return s.conn.SessionID() }

// HasSession reports whether the connection to ZooKeeper currently holds
// a session (the broker's readiness in cluster mode).
func (s *Store) HasSession() bool { return s.conn.State() == zk.StateHasSession }

// p prefixes the chroot.
func (s *Store) p(rel string) string {
	if rel == "" {
		if s.root == "" {
			return "/"
		}
		return s.root
	}
	return s.root + rel
}

var openACL = zk.WorldACL(zk.PermAll)

// acl is the ACL of a znode the store creates at rel (relative to the
// chroot; the chroot's own parts are not sensitive). Without SetACL:
// anyone may do anything, as Kafka without zookeeper.set.acl. With it,
// Kafka's ZooKeeper-mode defaults: every permission for the identities
// the creating session authenticated as (ZooKeeper's "auth" scheme, which
// it expands to them), plus read for everyone — except under /config/users
// (SCRAM credentials) and /config/brokers (broker configs, which may hold
// passwords), which only the brokers' identity may read.
func (s *Store) acl(rel string) []zk.ACL {
	if !s.opts.SetACL {
		return openACL
	}
	acls := zk.AuthACL(zk.PermAll)
	if !SensitivePath(rel) {
		acls = append(acls, zk.WorldACL(zk.PermRead)...)
	}
	return acls
}

// SensitivePath reports whether a znode (relative to the chroot) is
// readable only by the brokers under zookeeper.set.acl, as Kafka's
// ZooKeeper mode keeps /config/users and /config/brokers.
func SensitivePath(rel string) bool {
	return strings.HasPrefix(rel, "/config/users") || strings.HasPrefix(rel, pathConfigBrokers)
}

// ensurePath creates rel and its parents (persistent, empty) if missing.
func (s *Store) ensurePath(rel string) error {
	full := s.p(rel)
	if full == "/" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(full, "/"), "/")
	cur := ""
	for _, part := range parts {
		cur += "/" + part
		if err := s.createPersistent(cur, nil, s.acl(strings.TrimPrefix(cur, s.root))); err != nil {
			return fmt.Errorf("zkstore: create %s: %w", cur, err)
		}
	}
	return nil
}

func (s *Store) initClusterID() error {
	data, _, err := s.get(s.p(pathClusterID))
	if errors.Is(err, zk.ErrNoNode) {
		id := s.opts.ClusterID
		if id == "" {
			tid := metastore.NewTopicID()
			id = encodeTopicID(tid)
		}
		b, _ := json.Marshal(clusterIDJSON{Version: "1", ID: id})
		if err := s.createPersistent(s.p(pathClusterID), b, s.acl(pathClusterID)); err != nil {
			return fmt.Errorf("zkstore: create cluster id: %w", err)
		}
		data, _, err = s.get(s.p(pathClusterID))
	}
	if err != nil {
		return fmt.Errorf("zkstore: read cluster id: %w", err)
	}
	var j clusterIDJSON
	if err := json.Unmarshal(data, &j); err != nil || j.ID == "" {
		return fmt.Errorf("zkstore: bad /cluster/id %q", data)
	}
	s.clusterID = j.ID
	return nil
}

// ClusterID is /cluster/id.
func (s *Store) ClusterID() string { return s.clusterID }

// Close ends the session (ephemeral znodes go away at once).
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.conn.Close()
	return nil
}

// ---- topics (metastore.Store) ----

// TopicNames lists /brokers/topics and returns a watch on its children.
func (s *Store) TopicNames() ([]string, <-chan zk.Event, error) {
	names, _, ch, err := s.childrenW(s.p(pathTopics))
	if err != nil {
		return nil, nil, fmt.Errorf("zkstore: list topics: %w", err)
	}
	sort.Strings(names)
	return names, ch, nil
}

// Assignment reads a topic's replica assignment.
func (s *Store) Assignment(name string) (TopicAssignment, error) {
	data, st, err := s.get(s.p(topicPath(name)))
	if errors.Is(err, zk.ErrNoNode) {
		return TopicAssignment{}, metastore.ErrUnknownTopic
	}
	if err != nil {
		return TopicAssignment{}, fmt.Errorf("zkstore: read topic %s: %w", name, err)
	}
	a, err := decodeAssignment(name, data)
	a.Version = st.Version
	return a, err
}

// TopicConfigs reads /config/topics/<t> (empty when absent).
func (s *Store) TopicConfigs(name string) (map[string]string, error) {
	data, _, err := s.get(s.p(topicConfigPath(name)))
	if errors.Is(err, zk.ErrNoNode) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("zkstore: read topic config %s: %w", name, err)
	}
	return decodeConfig(data)
}

func (s *Store) pendingSet() map[string]bool {
	names, _, err := s.children(s.p(pathDeleteTopics))
	out := map[string]bool{}
	if err != nil {
		return out
	}
	for _, n := range names {
		out[n] = true
	}
	return out
}

func (s *Store) readTopic(name string) (metastore.Topic, error) {
	a, err := s.Assignment(name)
	if err != nil {
		return metastore.Topic{}, err
	}
	cfg, err := s.TopicConfigs(name)
	if err != nil {
		return metastore.Topic{}, err
	}
	t := metastore.Topic{Name: name, ID: a.ID, Partitions: int32(len(a.Replicas)), Configs: cfg, Assignment: a.Replicas}
	if len(a.Replicas) > 0 {
		t.ReplicationFactor = int16(len(a.Replicas[0]))
	}
	return t, nil
}

// Topics lists the live topics (not marked for deletion), read from
// ZooKeeper. Unreadable topics are logged and skipped.
func (s *Store) Topics() []metastore.Topic {
	names, _, err := s.children(s.p(pathTopics))
	if err != nil {
		s.log.Error("listing topics failed", "err", err)
		return nil
	}
	sort.Strings(names)
	pending := s.pendingSet()
	var out []metastore.Topic
	for _, n := range names {
		if pending[n] {
			continue
		}
		t, err := s.readTopic(n)
		if err != nil {
			if !errors.Is(err, metastore.ErrUnknownTopic) {
				s.log.Error("reading topic failed", "topic", n, "err", err)
			}
			continue
		}
		out = append(out, t)
	}
	return out
}

// LiveBrokerIDs lists the registered brokers' ids, sorted.
func (s *Store) LiveBrokerIDs() ([]int32, error) {
	names, _, err := s.children(s.p(pathBrokerIDs))
	if err != nil {
		return nil, fmt.Errorf("zkstore: list brokers: %w", err)
	}
	var ids []int32
	for _, n := range names {
		id, err := strconv.Atoi(n)
		if err == nil {
			ids = append(ids, int32(id))
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// CreateTopic writes the topic's config and assignment (in one multi, config
// first as Kafka does). A nil Assignment is computed round-robin over the
// live brokers (ErrNoBrokers when there are fewer than the replication
// factor).
func (s *Store) CreateTopic(t metastore.Topic) error {
	if s.pendingSet()[t.Name] {
		return metastore.ErrTopicExists
	}
	assign := t.Assignment
	if assign == nil {
		ids, err := s.LiveBrokerIDs()
		if err != nil {
			return err
		}
		if assign, err = AssignReplicas(ids, t.Partitions, t.ReplicationFactor, -1); err != nil {
			return err
		}
	}
	data, err := encodeAssignment(t.ID, assign)
	if err != nil {
		return err
	}
	cfg, err := encodeConfig(t.Configs)
	if err != nil {
		return err
	}
	ops := []any{}
	exists, _, err := s.exists(s.p(topicConfigPath(t.Name)))
	if err != nil {
		return fmt.Errorf("zkstore: create topic %s: %w", t.Name, err)
	}
	if exists {
		ops = append(ops, &zk.SetDataRequest{Path: s.p(topicConfigPath(t.Name)), Data: cfg, Version: -1})
	} else {
		ops = append(ops, &zk.CreateRequest{Path: s.p(topicConfigPath(t.Name)), Data: cfg, Acl: s.acl(topicConfigPath(t.Name))})
	}
	ops = append(ops, &zk.CreateRequest{Path: s.p(topicPath(t.Name)), Data: data, Acl: s.acl(topicPath(t.Name))})
	if _, err := s.conn.Multi(ops...); err != nil {
		if errors.Is(err, zk.ErrNodeExists) {
			return metastore.ErrTopicExists
		}
		return fmt.Errorf("zkstore: create topic %s: %w", t.Name, err)
	}
	return nil
}

// DeleteTopic marks a topic for deletion (/admin/delete_topics/<t>); the
// controller deletes the replicas and then the topic (DeletionDone).
func (s *Store) DeleteTopic(name string) error {
	exists, _, err := s.exists(s.p(topicPath(name)))
	if err != nil {
		return fmt.Errorf("zkstore: delete topic %s: %w", name, err)
	}
	if !exists {
		return metastore.ErrUnknownTopic
	}
	if err := s.createPersistent(s.p(deleteTopicPath(name)), nil, s.acl(deleteTopicPath(name))); err != nil {
		return fmt.Errorf("zkstore: delete topic %s: %w", name, err)
	}
	return nil
}

// PendingDeletions lists the topics marked for deletion whose assignment
// still exists.
func (s *Store) PendingDeletions() []metastore.Topic {
	names, _, err := s.children(s.p(pathDeleteTopics))
	if err != nil {
		return nil
	}
	sort.Strings(names)
	var out []metastore.Topic
	for _, n := range names {
		if t, err := s.readTopic(n); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// PendingDeletionsW lists /admin/delete_topics with a watch.
func (s *Store) PendingDeletionsW() ([]string, <-chan zk.Event, error) {
	names, _, ch, err := s.childrenW(s.p(pathDeleteTopics))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	return names, ch, nil
}

// DeletionDone removes the topic's znodes (assignment, partition states,
// config) and its deletion mark.
func (s *Store) DeletionDone(name string) error {
	if err := s.deleteRecursive(s.p(topicPath(name))); err != nil {
		return err
	}
	for _, p := range []string{topicConfigPath(name), deleteTopicPath(name)} {
		if err := s.deleteAny(s.p(p)); err != nil {
			return fmt.Errorf("zkstore: delete %s: %w", p, err)
		}
	}
	return nil
}

func (s *Store) deleteRecursive(full string) error {
	children, _, err := s.children(full)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("zkstore: delete %s: %w", full, err)
	}
	for _, c := range children {
		if err := s.deleteRecursive(full + "/" + c); err != nil {
			return err
		}
	}
	if err := s.deleteAny(full); err != nil {
		return fmt.Errorf("zkstore: delete %s: %w", full, err)
	}
	return nil
}

// notifyConfigChange is the multi op announcing a config change.
func (s *Store) configChangeOp(entityPath string) *zk.CreateRequest {
	b, _ := json.Marshal(configChangeJSON{Version: 2, EntityPath: entityPath})
	return &zk.CreateRequest{Path: s.p(pathConfigChanges + "/" + configChangePrefix), Data: b, Acl: s.acl(pathConfigChanges), Flags: zk.FlagSequence}
}

// SetTopicConfigs replaces /config/topics/<t> and announces the change
// under /config/changes.
func (s *Store) SetTopicConfigs(name string, configs map[string]string) error {
	exists, _, err := s.exists(s.p(topicPath(name)))
	if err != nil {
		return fmt.Errorf("zkstore: set configs of %s: %w", name, err)
	}
	if !exists {
		return metastore.ErrUnknownTopic
	}
	return s.setConfig(topicConfigPath(name), "topics/"+name, configs)
}

func (s *Store) setConfig(rel, entity string, configs map[string]string) error {
	data, err := encodeConfig(configs)
	if err != nil {
		return err
	}
	if err := s.ensurePath(path.Dir(rel)); err != nil {
		return err
	}
	ok, _, err := s.exists(s.p(rel))
	if err != nil {
		return err
	}
	var op any = &zk.SetDataRequest{Path: s.p(rel), Data: data, Version: -1}
	if !ok {
		op = &zk.CreateRequest{Path: s.p(rel), Data: data, Acl: s.acl(rel)}
	}
	if _, err := s.conn.Multi(op, s.configChangeOp(entity)); err != nil {
		return fmt.Errorf("zkstore: write %s: %w", rel, err)
	}
	return nil
}

// ConfigChangesW lists /config/changes with a watch.
func (s *Store) ConfigChangesW() ([]string, <-chan zk.Event, error) {
	names, _, ch, err := s.childrenW(s.p(pathConfigChanges))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	return names, ch, nil
}

// SetPartitionCount adds partitions to a topic, assigned round-robin over
// the live brokers.
func (s *Store) SetPartitionCount(name string, partitions int32) error {
	a, err := s.Assignment(name)
	if err != nil {
		return err
	}
	cur := int32(len(a.Replicas))
	switch {
	case partitions == cur:
		return nil
	case partitions < cur:
		return fmt.Errorf("%w: topic %s has %d partitions, asked for %d", metastore.ErrPartitionCount, name, cur, partitions)
	}
	rf := int16(1)
	if cur > 0 {
		rf = int16(len(a.Replicas[0]))
	}
	ids, err := s.LiveBrokerIDs()
	if err != nil {
		return err
	}
	extra, err := AssignReplicas(ids, partitions-cur, rf, int(cur))
	if err != nil {
		return err
	}
	return s.AddPartitions(name, extra, a.Version)
}

// AddPartitions appends replica assignments to a topic, conditionally on the
// assignment's znode version.
func (s *Store) AddPartitions(name string, extra [][]int32, version int32) error {
	a, err := s.Assignment(name)
	if err != nil {
		return err
	}
	if a.Version != version {
		return fmt.Errorf("zkstore: topic %s assignment changed concurrently", name)
	}
	data, err := encodeAssignment(a.ID, append(a.Replicas, extra...))
	if err != nil {
		return err
	}
	if _, err := s.conn.Set(s.p(topicPath(name)), data, version); err != nil {
		return fmt.Errorf("zkstore: add partitions to %s: %w", name, err)
	}
	return nil
}

func brokerEntity(resource string) string {
	if resource == "" {
		return defaultBrokerEntity
	}
	return resource
}

// BrokerConfigs reads /config/brokers/<id> ("" is <default>).
func (s *Store) BrokerConfigs(resource string) map[string]string {
	data, _, err := s.get(s.p(pathConfigBrokers + "/" + brokerEntity(resource)))
	if err != nil {
		return map[string]string{}
	}
	c, err := decodeConfig(data)
	if err != nil {
		s.log.Error("bad broker config znode", "resource", resource, "err", err)
		return map[string]string{}
	}
	return maps.Clone(c)
}

// SetBrokerConfigs replaces /config/brokers/<id> and announces the change.
func (s *Store) SetBrokerConfigs(resource string, configs map[string]string) error {
	e := brokerEntity(resource)
	return s.setConfig(pathConfigBrokers+"/"+e, "brokers/"+e, configs)
}

// producerIDBlockSize is Kafka's PidBlockSize.
const producerIDBlockSize = 1000

// NextProducerID hands out ids from blocks reserved in
// /latest_producer_id_block (conditional update), unique across the
// cluster.
func (s *Store) NextProducerID() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, metastore.ErrClosed
	}
	if s.nextPID >= s.pidEnd {
		start, err := s.reservePIDBlock()
		if err != nil {
			return 0, err
		}
		s.nextPID, s.pidEnd = start, start+producerIDBlockSize
	}
	id := s.nextPID
	s.nextPID++
	return id, nil
}

func (s *Store) reservePIDBlock() (int64, error) {
	full := s.p(pathProducerIDs)
	for attempt := 0; attempt < 100; attempt++ {
		data, st, err := s.get(full)
		var start int64
		switch {
		case errors.Is(err, zk.ErrNoNode):
			b := s.pidBlock(0)
			if _, err := s.conn.Create(full, b, 0, s.acl(pathProducerIDs)); err == nil {
				return 0, nil
			} else if !errors.Is(err, zk.ErrNodeExists) {
				return 0, err
			}
			continue
		case err != nil:
			return 0, err
		}
		var j pidBlockJSON
		if err := json.Unmarshal(data, &j); err != nil {
			return 0, fmt.Errorf("zkstore: bad %s: %w", pathProducerIDs, err)
		}
		end, err := strconv.ParseInt(j.BlockEnd, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("zkstore: bad %s block_end %q", pathProducerIDs, j.BlockEnd)
		}
		start = end + 1
		if _, err := s.conn.Set(full, s.pidBlock(start), st.Version); err == nil {
			return start, nil
		} else if !errors.Is(err, zk.ErrBadVersion) {
			return 0, err
		}
	}
	return 0, errors.New("zkstore: could not reserve a producer id block (contention)")
}

func (s *Store) pidBlock(start int64) []byte {
	b, _ := json.Marshal(pidBlockJSON{Version: 1, Broker: s.opts.BrokerID,
		BlockStart: strconv.FormatInt(start, 10), BlockEnd: strconv.FormatInt(start+producerIDBlockSize-1, 10)})
	return b
}

// AssignReplicas assigns partitions round-robin over brokers as Kafka's
// AdminUtils does without racks: partition i's first replica is broker
// (start+i) mod n (the preferred leader), the followers are shifted by a
// per-round increment so that replicas spread. start < 0 picks
// firstPartition as the start (deterministic).
func AssignReplicas(brokers []int32, partitions int32, rf int16, firstPartition int) ([][]int32, error) {
	n := len(brokers)
	if int(rf) > n || rf <= 0 {
		return nil, fmt.Errorf("%w: replication factor %d, %d live brokers", ErrNoBrokers, rf, n)
	}
	bs := slices.Clone(brokers)
	slices.Sort(bs)
	start := max(firstPartition, 0)
	out := make([][]int32, partitions)
	shift := 0
	for i := 0; i < int(partitions); i++ {
		p := start + i
		if p > 0 && p%n == 0 {
			shift++
		}
		first := p % n
		rs := []int32{bs[first]}
		for j := 0; j < int(rf)-1; j++ {
			off := 1 + (shift+j)%(n-1)
			rs = append(rs, bs[(first+off)%n])
		}
		out[i] = rs
	}
	return out, nil
}

// SCRAM credentials live in /config/users/<user> as Kafka's ZooKeeper mode
// keeps them: the entity config's keys SCRAM-SHA-256 and SCRAM-SHA-512
// hold the stored credentials (other keys, such as quotas, are kept), the
// user name sanitized as Kafka's Sanitizer does (URL encoding, with %20
// for a space, %2A for '*' and %7E for '~'), and a change notification
// under /config/changes names users/<user>.

// SanitizeUser encodes a user name for its znode.
func SanitizeUser(user string) string {
	e := url.QueryEscape(user)
	e = strings.ReplaceAll(e, "+", "%20")
	e = strings.ReplaceAll(e, "*", "%2A")
	return strings.ReplaceAll(e, "~", "%7E")
}

func userConfigPath(user string) string { return pathConfigUsers + "/" + SanitizeUser(user) }

func isScramKey(k string) bool { return strings.HasPrefix(k, "SCRAM-SHA-") }

func (s *Store) userConfig(user string) (map[string]string, error) {
	data, _, err := s.get(s.p(userConfigPath(user)))
	if errors.Is(err, zk.ErrNoNode) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("zkstore: read user %s: %w", user, err)
	}
	return decodeConfig(data)
}

// ScramCredential implements metastore.ScramStore.
func (s *Store) ScramCredential(user, mechanism string) (string, bool, error) {
	c, err := s.userConfig(user)
	if err != nil {
		return "", false, err
	}
	v, ok := c[mechanism]
	return v, ok, nil
}

// ScramCredentials implements metastore.ScramStore.
func (s *Store) ScramCredentials(user string) (map[string]string, error) {
	c, err := s.userConfig(user)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k, v := range c {
		if isScramKey(k) {
			out[k] = v
		}
	}
	return out, nil
}

// ScramUsers implements metastore.ScramStore.
func (s *Store) ScramUsers() ([]string, error) {
	names, _, err := s.children(s.p(pathConfigUsers))
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("zkstore: list users: %w", err)
	}
	var out []string
	for _, n := range names {
		user, err := url.PathUnescape(n)
		if err != nil {
			continue
		}
		creds, err := s.ScramCredentials(user)
		if err != nil {
			return nil, err
		}
		if len(creds) > 0 {
			out = append(out, user)
		}
	}
	sort.Strings(out)
	return out, nil
}

// SetScramCredentials implements metastore.ScramStore.
func (s *Store) SetScramCredentials(user string, creds map[string]string) error {
	c, err := s.userConfig(user)
	if err != nil {
		return err
	}
	for k := range c {
		if isScramKey(k) {
			delete(c, k)
		}
	}
	maps.Copy(c, creds)
	return s.setConfig(userConfigPath(user), "users/"+SanitizeUser(user), c)
}
