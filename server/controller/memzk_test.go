package controller

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing/synctest"

	"github.com/go-zookeeper/zk"

	"github.com/kvlog/kvlog/server/zkstore"
)

// memZK is an in-memory twin of the ZooKeeper ensemble as the controller
// sees it through Store: a tree of znodes holding typed values (instead of
// zkstore's JSON), with znode versions, ephemeral owners, one-shot watches
// fanned out per registration as go-zookeeper does, the controller-epoch
// fence, and sessions that expire (their ephemerals go, their watches fire
// EventNotWatching, a new session starts and the OnNewSession callbacks
// run). A session's notifications can be held back, as for a client that
// is paused or partitioned, and released later.
type memZK struct {
	mu       sync.Mutex
	zxid     int64
	nodes    map[string]*znode
	watches  []*memWatch
	sessions []*memSession
	nextID   int64
	holdAll  bool
	heldAll  []heldNote
	hooks    map[string]func() // see beforeSet
	stats    storeStats
	// onRead, when set, is called (with mu held, on the reader's
	// goroutine) at each batch read, with the session and the size.
	onRead func(s *memSession, n int)
}

// storeStats counts the controller's partition-state batches (the
// harness's "store" command reports them and resets them).
type storeStats struct {
	readBatches, reads   int
	writeBatches, writes int
}

type znode struct {
	data    any
	version int32
	czxid   int64
	owner   int64 // ephemeral owner session; 0: persistent
}

type watchKind int

const (
	watchData     watchKind = iota // GetW: changed or deleted
	watchExists                    // ExistsW on an absent node: created
	watchChildren                  // ChildrenW: child created or deleted, node deleted
)

type memWatch struct {
	sess *memSession
	path string
	kind watchKind
	ch   chan zk.Event
}

// memSession is one client session of memZK; it implements Store.
type memSession struct {
	zk        *memZK
	id        int64
	listeners []func()
	hold      bool
	held      []func() // notifications held back, in order
	closed    bool
	// failReads is how many more ControllerID reads fail (ZooKeeper
	// unreachable).
	failReads int
}

var _ Store = (*memSession)(nil)

const (
	pathController      = "/controller"
	pathControllerEpoch = "/controller_epoch"
	pathBrokerIDs       = "/brokers/ids"
	pathTopics          = "/brokers/topics"
	pathISRChanges      = "/isr_change_notification"
	pathDeleteTopics    = "/admin/delete_topics"
)

func newMemZK() *memZK {
	z := &memZK{nodes: map[string]*znode{}, hooks: map[string]func(){}}
	for _, p := range []string{"/brokers", pathBrokerIDs, pathTopics, pathISRChanges, "/admin", pathDeleteTopics} {
		z.nodes[p] = &znode{}
	}
	return z
}

func statePath(topic string, p int32) string {
	return fmt.Sprintf("%s/%s/partitions/%d/state", pathTopics, topic, p)
}

func parentOf(p string) string { return p[:strings.LastIndexByte(p, '/')] }

// newSession opens a session.
func (z *memZK) newSession() *memSession {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.nextID++
	s := &memSession{zk: z, id: z.nextID}
	z.sessions = append(z.sessions, s)
	return s
}

// children lists p's direct children (sorted). Caller holds mu.
func (z *memZK) children(p string) []string {
	var out []string
	for k := range z.nodes {
		if parentOf(k) == p {
			out = append(out, k[len(p)+1:])
		}
	}
	sort.Strings(out)
	return out
}

// fire delivers the watches on path of the given kinds. Caller holds mu.
func (z *memZK) fire(path string, typ zk.EventType, kinds ...watchKind) {
	keep := z.watches[:0]
	var fired []*memWatch
	for _, w := range z.watches {
		if w.path == path && slices.Contains(kinds, w.kind) {
			fired = append(fired, w)
			continue
		}
		keep = append(keep, w)
	}
	z.watches = keep
	for _, w := range fired {
		w.deliver(zk.Event{Type: typ, State: zk.StateHasSession, Path: path})
	}
}

func (w *memWatch) deliver(ev zk.Event) {
	w.sess.notify(func() {
		w.ch <- ev
		close(w.ch)
	})
}

// notify runs fn now, or later when the session's notifications are held.
// Caller holds z.mu.
func (s *memSession) notify(fn func()) {
	switch {
	case s.hold:
		s.held = append(s.held, fn)
	case s.zk.holdAll:
		s.zk.heldAll = append(s.zk.heldAll, heldNote{s, fn})
	default:
		fn()
	}
}

type heldNote struct {
	s  *memSession
	fn func()
}

// batch runs fn with every notification held back until it returns: the
// controllers see its changes at once, as one step. The notifications are
// then delivered one at a time, session by session (in the order the
// sessions were opened, each session's in the order they fired), each once
// the reaction to the previous one is over (every goroutine of the
// synctest bubble waits): one of the interleavings ZooKeeper allows, the
// same every run.
func (z *memZK) batch(fn func()) {
	z.mu.Lock()
	z.holdAll = true
	z.mu.Unlock()
	fn()
	z.mu.Lock()
	z.holdAll = false
	held := z.heldAll
	z.heldAll = nil
	sessions := slices.Clone(z.sessions)
	z.mu.Unlock()
	for _, s := range sessions {
		for _, h := range held {
			if h.s != s {
				continue
			}
			z.mu.Lock()
			s.notify(h.fn)
			z.mu.Unlock()
			synctest.Wait()
		}
	}
}

// beforeSet arms fn to run (under the lock, as another client's write) just
// before the next controller write of path: a write that lands between the
// controller's read and its conditional write.
func (z *memZK) beforeSet(path string, fn func()) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.hooks[path] = fn
}

func (z *memZK) create(path string, data any, owner, czxid int64) error {
	if _, ok := z.nodes[path]; ok {
		return zk.ErrNodeExists
	}
	z.zxid++
	if czxid == 0 {
		czxid = z.zxid
	}
	z.nodes[path] = &znode{data: data, czxid: czxid, owner: owner}
	z.fire(path, zk.EventNodeCreated, watchExists)
	z.fire(parentOf(path), zk.EventNodeChildrenChanged, watchChildren)
	return nil
}

func (z *memZK) set(path string, data any, version int32) (int32, error) {
	n, ok := z.nodes[path]
	if !ok {
		return 0, zk.ErrNoNode
	}
	if version >= 0 && n.version != version {
		return 0, zk.ErrBadVersion
	}
	z.zxid++
	n.data = data
	n.version++
	z.fire(path, zk.EventNodeDataChanged, watchData)
	return n.version, nil
}

func (z *memZK) delete(path string) {
	if _, ok := z.nodes[path]; !ok {
		return
	}
	for _, c := range z.children(path) {
		z.delete(path + "/" + c)
	}
	z.zxid++
	delete(z.nodes, path)
	z.fire(path, zk.EventNodeDeleted, watchData, watchChildren)
	z.fire(parentOf(path), zk.EventNodeChildrenChanged, watchChildren)
}

func (s *memSession) watch(path string, kind watchKind) <-chan zk.Event {
	w := &memWatch{sess: s, path: path, kind: kind, ch: make(chan zk.Event, 1)}
	s.zk.watches = append(s.zk.watches, w)
	return w.ch
}

// expire ends the session as ZooKeeper does when the client is away too
// long: every watch it had fires EventNotWatching (in the order they were
// set), its ephemerals are deleted (others' watches fire), the client gets
// a new session and the OnNewSession callbacks run. With hold, the session's
// notifications wait for release.
func (s *memSession) expire(hold bool) {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	s.hold = s.hold || hold
	// The client hears of the expiry only as its watches being dropped
	// (not of the deletions of its ephemerals); the others see them go.
	s.invalidateWatches(zk.ErrSessionExpired)
	s.dropEphemerals()
	z.nextID++
	s.id = z.nextID
	for _, fn := range s.listeners {
		s.notify(func() { go fn() })
	}
}

// close ends the session for good (the broker stopped or crashed).
func (s *memSession) close() {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	s.hold = false
	s.held = nil
	s.closed = true
	s.invalidateWatches(zk.ErrClosing)
	s.dropEphemerals()
}

// release delivers the held notifications, in order.
func (s *memSession) release() {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	s.hold = false
	held := s.held
	s.held = nil
	for _, fn := range held {
		s.notify(fn)
	}
}

func (s *memSession) dropEphemerals() {
	var eph []string
	for p, n := range s.zk.nodes {
		if n.owner != 0 && n.owner == s.id {
			eph = append(eph, p)
		}
	}
	sort.Strings(eph)
	for _, p := range eph {
		s.zk.delete(p)
	}
}

func (s *memSession) invalidateWatches(err error) {
	z := s.zk
	keep := z.watches[:0]
	var mine []*memWatch
	for _, w := range z.watches {
		if w.sess == s {
			mine = append(mine, w)
			continue
		}
		keep = append(keep, w)
	}
	z.watches = keep
	for _, w := range mine {
		w.deliver(zk.Event{Type: zk.EventNotWatching, State: zk.StateDisconnected, Path: w.path, Err: err})
	}
}

// watchCounts counts the session's outstanding watches by path.
func (s *memSession) watchCounts() map[string]int {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	out := map[string]int{}
	for _, w := range s.zk.watches {
		if w.sess == s {
			out[w.path]++
		}
	}
	return out
}

// ---- the test's writes (brokers and tools, not the controller) ----

func (s *memSession) registerBroker(b zkstore.Broker) error {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	return s.zk.create(fmt.Sprintf("%s/%d", pathBrokerIDs, b.ID), b, s.id, b.Epoch)
}

func (z *memZK) createTopic(name string, replicas [][]int32) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if err := z.create(pathTopics+"/"+name, zkstore.TopicAssignment{Name: name, Replicas: replicas}, 0, 0); err != nil {
		panic(err)
	}
}

func (z *memZK) addPartitions(name string, extra [][]int32) {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := z.nodes[pathTopics+"/"+name]
	a := n.data.(zkstore.TopicAssignment)
	a.Replicas = append(slices.Clone(a.Replicas), extra...)
	if _, err := z.set(pathTopics+"/"+name, a, -1); err != nil {
		panic(err)
	}
}

func (z *memZK) markDeletion(name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	_ = z.create(pathDeleteTopics+"/"+name, nil, 0, 0)
}

// updateISR is a leader's ISR change (zkstore.UpdateISR): a conditional set
// on the state's version, not fenced, and a sequential notification.
func (z *memZK) updateISR(topic string, p int32, st zkstore.PartitionState) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.updateISRLocked(topic, p, st)
}

func (z *memZK) updateISRLocked(topic string, p int32, st zkstore.PartitionState) error {
	v, err := z.set(statePath(topic, p), st, st.ZkVersion)
	if err != nil {
		return err
	}
	_ = v
	name := fmt.Sprintf("isr_change_%010d", z.zxid)
	return z.create(pathISRChanges+"/"+name, []zkstore.TopicPartition{{Topic: topic, Partition: p}}, 0, 0)
}

// state reads a partition state (for the test).
func (z *memZK) state(topic string, p int32) (zkstore.PartitionState, bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.stateLocked(topic, p)
}

func (z *memZK) stateLocked(topic string, p int32) (zkstore.PartitionState, bool) {
	n, ok := z.nodes[statePath(topic, p)]
	if !ok {
		return zkstore.PartitionState{}, false
	}
	st := n.data.(zkstore.PartitionState)
	st.ISR = slices.Clone(st.ISR)
	st.ZkVersion = n.version
	return st, true
}

// statePaths lists the partitions with a state, sorted by topic and
// partition.
func (z *memZK) partitions() []zkstore.TopicPartition {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []zkstore.TopicPartition
	for k := range z.nodes {
		if !strings.HasSuffix(k, "/state") {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(k, pathTopics+"/"), "/")
		p, _ := strconv.Atoi(parts[2])
		out = append(out, zkstore.TopicPartition{Topic: parts[0], Partition: int32(p)})
	}
	slices.SortFunc(out, func(a, b zkstore.TopicPartition) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

func (z *memZK) controllerEpoch() (int32, int32) {
	z.mu.Lock()
	defer z.mu.Unlock()
	n, ok := z.nodes[pathControllerEpoch]
	if !ok {
		return 0, -1
	}
	return n.data.(int32), n.version
}

func (z *memZK) controllerID() int32 {
	z.mu.Lock()
	defer z.mu.Unlock()
	if n, ok := z.nodes[pathController]; ok {
		return n.data.(int32)
	}
	return -1
}

// ---- Store ----

func (s *memSession) OnNewSession(fn func()) {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}

func (s *memSession) ControllerID() (int32, <-chan zk.Event, error) {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	if s.closed {
		return 0, nil, zk.ErrClosing
	}
	if s.failReads > 0 {
		s.failReads--
		return 0, nil, zk.ErrConnectionClosed
	}
	if n, ok := s.zk.nodes[pathController]; ok {
		return n.data.(int32), s.watch(pathController, watchData), nil
	}
	return -1, s.watch(pathController, watchExists), nil
}

func (s *memSession) Elect(brokerID int32) (zkstore.Fence, error) {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	if s.closed {
		return zkstore.Fence{}, zk.ErrClosing
	}
	if _, ok := z.nodes[pathControllerEpoch]; !ok {
		_ = z.create(pathControllerEpoch, int32(0), 0, 0)
	}
	if _, ok := z.nodes[pathController]; ok {
		return zkstore.Fence{}, zkstore.ErrNotElected
	}
	ep := z.nodes[pathControllerEpoch]
	next := ep.data.(int32) + 1
	_ = z.create(pathController, brokerID, s.id, 0)
	v, _ := z.set(pathControllerEpoch, next, ep.version)
	return zkstore.Fence{Epoch: next, ZkVersion: v}, nil
}

func (s *memSession) Resign() error {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	if s.closed {
		return zk.ErrClosing
	}
	if n, ok := z.nodes[pathController]; ok && n.owner == s.id {
		z.delete(pathController)
	}
	return nil
}

func (s *memSession) Brokers() ([]zkstore.Broker, <-chan zk.Event, error) {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	if s.closed {
		return nil, nil, zk.ErrClosing
	}
	var out []zkstore.Broker
	for _, c := range z.children(pathBrokerIDs) {
		n := z.nodes[pathBrokerIDs+"/"+c]
		b := n.data.(zkstore.Broker)
		b.Epoch = n.czxid
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, s.watch(pathBrokerIDs, watchChildren), nil
}

func (s *memSession) BrokerRegistration(id int32) (int64, bool, bool, error) {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	if s.closed {
		return 0, false, false, zk.ErrClosing
	}
	n, ok := z.nodes[fmt.Sprintf("%s/%d", pathBrokerIDs, id)]
	if !ok {
		return 0, false, false, nil
	}
	return n.czxid, true, n.owner == s.id, nil
}

func (s *memSession) TopicNames() ([]string, <-chan zk.Event, error) {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	if s.closed {
		return nil, nil, zk.ErrClosing
	}
	return s.zk.children(pathTopics), s.watch(pathTopics, watchChildren), nil
}

var errNoTopic = errors.New("memzk: unknown topic")

func (s *memSession) AssignmentW(name string) (zkstore.TopicAssignment, <-chan zk.Event, error) {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	if s.closed {
		return zkstore.TopicAssignment{}, nil, zk.ErrClosing
	}
	n, ok := s.zk.nodes[pathTopics+"/"+name]
	if !ok {
		return zkstore.TopicAssignment{}, nil, fmt.Errorf("%w: %s", errNoTopic, name)
	}
	a := n.data.(zkstore.TopicAssignment)
	a.Version = n.version
	return a, s.watch(pathTopics+"/"+name, watchData), nil
}

// PartitionStates reads many states at once (one batch in the stats).
func (s *memSession) PartitionStates(tps []zkstore.TopicPartition) ([]zkstore.PartitionState, []bool, error) {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	if s.closed {
		return nil, nil, zk.ErrClosing
	}
	s.zk.stats.readBatches++
	s.zk.stats.reads += len(tps)
	if s.zk.onRead != nil {
		s.zk.onRead(s, len(tps))
	}
	states := make([]zkstore.PartitionState, len(tps))
	ok := make([]bool, len(tps))
	for i, tp := range tps {
		states[i], ok[i] = s.zk.stateLocked(tp.Topic, tp.Partition)
	}
	return states, ok, nil
}

// fenced is the version check on /controller_epoch every controller write
// starts with. Caller holds mu.
func (z *memZK) fenced(f zkstore.Fence) error {
	if n, ok := z.nodes[pathControllerEpoch]; !ok || n.version != f.ZkVersion {
		return zkstore.ErrFenced
	}
	return nil
}

// WritePartitionStates applies the writes in order, each fenced (one
// batch in the stats).
func (s *memSession) WritePartitionStates(f zkstore.Fence, ws []zkstore.StateWrite) ([]int32, []error, error) {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	if s.closed {
		return nil, nil, zk.ErrClosing
	}
	z.stats.writeBatches++
	z.stats.writes += len(ws)
	versions := make([]int32, len(ws))
	errs := make([]error, len(ws))
	for i, w := range ws {
		topic, p, st := w.TP.Topic, w.TP.Partition, w.State
		if hook := z.hooks[statePath(topic, p)]; hook != nil {
			delete(z.hooks, statePath(topic, p))
			hook()
		}
		if err := z.fenced(f); err != nil {
			return nil, nil, err
		}
		st.ISR = slices.Clone(st.ISR)
		if w.Create {
			st.ZkVersion = 0
			for _, dir := range []string{fmt.Sprintf("%s/%s/partitions", pathTopics, topic), parentOf(statePath(topic, p))} {
				if _, ok := z.nodes[dir]; !ok {
					_ = z.create(dir, nil, 0, 0)
				}
			}
			errs[i] = z.create(statePath(topic, p), st, 0, 0)
			continue
		}
		v, err := z.set(statePath(topic, p), st, st.ZkVersion)
		if errors.Is(err, zk.ErrBadVersion) {
			err = zkstore.ErrBadVersion
		}
		versions[i], errs[i] = v, err
	}
	return versions, errs, nil
}

func (s *memSession) ISRChangesW() ([]string, <-chan zk.Event, error) {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	if s.closed {
		return nil, nil, zk.ErrClosing
	}
	return s.zk.children(pathISRChanges), s.watch(pathISRChanges, watchChildren), nil
}

func (s *memSession) TakeISRChange(name string) ([]zkstore.TopicPartition, error) {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	if s.closed {
		return nil, zk.ErrClosing
	}
	n, ok := z.nodes[pathISRChanges+"/"+name]
	if !ok {
		return nil, nil
	}
	z.delete(pathISRChanges + "/" + name)
	return n.data.([]zkstore.TopicPartition), nil
}

func (s *memSession) PendingDeletionsW() ([]string, <-chan zk.Event, error) {
	s.zk.mu.Lock()
	defer s.zk.mu.Unlock()
	if s.closed {
		return nil, nil, zk.ErrClosing
	}
	return s.zk.children(pathDeleteTopics), s.watch(pathDeleteTopics, watchChildren), nil
}

func (s *memSession) DeletionDone(name string) error {
	z := s.zk
	z.mu.Lock()
	defer z.mu.Unlock()
	if s.closed {
		return zk.ErrClosing
	}
	z.delete(pathTopics + "/" + name)
	z.delete(pathDeleteTopics + "/" + name)
	return nil
}
