// Package controller is the ZooKeeper-mode cluster controller: one broker,
// elected through the ephemeral /controller znode, that watches broker
// registrations and topics, elects partition leaders from the ISR, bumps
// leader epochs, writes partition states fenced by the controller epoch and
// tells brokers with LeaderAndIsr, UpdateMetadata and StopReplica (Kafka's
// inter-broker APIs, sent with kmsg). It also serves controlled shutdown.
//
// The decisions are pure functions (decide.go); this file is the runner: a
// single event loop goroutine owns all controller state, ZooKeeper watches
// post events to it, and one sender goroutine per broker delivers requests
// in order (sender.go). election.go holds winning the election and the new
// controller's first reads and sends (fail-over); requests.go builds the
// LeaderAndIsr, UpdateMetadata and StopReplica requests and publishes
// metadata once leaders have their state. The controller reaches ZooKeeper only through the
// Store interface (store.go: its contract) and the brokers only through a
// Dialer, so the tests run it against an in-memory twin of the store and
// scripted brokers, in a synctest bubble (testdata/*.txt: scenarios of
// events and the exact partition states and requests that follow).
// states.go holds the controller's copy of the partition states: read and
// written in batches, each event touching only the partitions it can
// change.
//
// # Replicas that cannot be opened
//
// A broker that cannot create or open a partition's log answers that
// partition KAFKA_STORAGE_ERROR in its LeaderAndIsr response. As Kafka's
// controller does, the controller then remembers that replica as offline
// (a per-broker set, cleared when the broker dies or registers again, and
// entry by entry when a later LeaderAndIsr response reports the partition
// fine): if it led the partition another leader is elected from the rest of
// the ISR (or none, when no other ISR member is live), it leaves the ISR
// (unless it is the last member), it gets StopReplica (without delete), the
// other replicas the new state, and every broker's metadata lists it among
// the partition's offline replicas. An offline replica is not elected again
// until it is back. A new controller learns the offline replicas afresh from
// the LeaderAndIsr responses to its first requests.
//
// # Controlled shutdown
//
// ControlledShutdown must come from the broker it names: its BrokerEpoch
// must be the czxid of that broker's registration, read from ZooKeeper
// when the request is handled (and the one this controller knows); a
// request without an epoch (v0-v1) or with another one is refused with
// STALE_BROKER_EPOCH and changes nothing.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/server/zkstore"
)

// Config configures a Controller.
type Config struct {
	BrokerID int32
	// Store is the metadata store (*zkstore.Store in production).
	Store Store
	// Dialer connects to the brokers (nil: KafkaDialer).
	Dialer Dialer
	// Unclean reports unclean.leader.election.enable for a topic.
	Unclean func(topic string) bool
	// AutoRebalance enables preferred leader election every
	// RebalanceInterval (auto.leader.rebalance.enable).
	AutoRebalance     bool
	RebalanceInterval time.Duration
	RequestTimeout    time.Duration
	Logger            *slog.Logger
	// Metadata, when set, is the partition states in this broker's
	// metadata cache (filled by the previous controller's UpdateMetadata).
	// A fail-over reads first the states of the partitions whose leader it
	// names is gone (or that it does not know), elects and tells their new
	// leaders, and reads the others meanwhile (readOthers): with one
	// broker of three lost at 30,000 partitions, a third of the reads come
	// before the new leaders instead of all of them. It orders the reads,
	// and stands in for the partitions not read yet in the metadata that
	// publishes the new leaders; every decision is made on states read
	// from the store.
	Metadata func() map[zkstore.TopicPartition]zkstore.PartitionState
}

// Controller runs the election and, while elected, the controller duties.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	events chan event
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the loop goroutine.
	active       bool
	fence        zkstore.Fence
	brokers      map[int32]zkstore.Broker
	shuttingDown map[int32]bool
	topics       map[string]*topicInfo
	senders      map[int32]*sender
	// states is the copy of the partition states (states.go); leaderless
	// the partitions without a leader or a state; hosted the partitions
	// each broker has a replica of.
	states     map[zkstore.TopicPartition]zkstore.PartitionState
	leaderless map[zkstore.TopicPartition]bool
	hosted     map[int32]map[zkstore.TopicPartition]struct{}
	// unpublished are the partitions whose new leader publishAfter waits
	// for (by publishSeq): metadata lists them without a leader meanwhile.
	unpublished map[zkstore.TopicPartition]uint64
	publishSeq  uint64
	// provisional stands in for the states not read yet in the metadata
	// sent during a fail-over's reads (readOthers).
	provisional map[zkstore.TopicPartition]zkstore.PartitionState
	// offlineDirs are the replicas each broker reported KAFKA_STORAGE_ERROR
	// for (Kafka's replicasOnOfflineDirs).
	offlineDirs map[int32]map[zkstore.TopicPartition]bool
	// watchSeq numbers the watches set; watches is the newest one set on
	// each znode (see supersededWatch).
	watchSeq uint64
	watches  map[watchKey]uint64

	statusMu sync.Mutex
	status   Status
}

// Status is what the controller reports (metrics, tests).
type Status struct {
	Active    bool
	Epoch     int32
	Elections int
}

type topicInfo struct {
	assign   zkstore.TopicAssignment
	deleting bool
}

type eventKind int

const (
	evController eventKind = iota
	evBrokers
	evTopics
	evTopicAssignment
	evISRChanges
	evDeletions
	evShutdown
	evSession
	evRebalance
	evLeaderAndIsrResponse
	evPublish
	evFullState
)

type event struct {
	kind  eventKind
	topic string
	// watch is the id of the watch that posted the event (0: not a watch).
	watch uint64
	// controlled shutdown
	ctx         context.Context // the caller's: how long it waits for the reply
	broker      int32
	brokerEpoch int64
	reply       chan shutdownResult
	// LeaderAndIsr response: the partitions the broker answered with
	// KAFKA_STORAGE_ERROR and without error.
	from            *sender
	offline, online []zkstore.TopicPartition
	// publish: the term (controller epoch) that asked for it, its number,
	// the partitions it waited for, since when, and whether the full state
	// follows (a fail-over's)
	epoch int32
	seq   uint64
	tps   []zkstore.TopicPartition
	since time.Time
	full  bool
}

type shutdownResult struct {
	remaining []zkstore.TopicPartition
	err       error
}

// New returns a controller; Run starts it.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Unclean == nil {
		cfg.Unclean = func(string) bool { return false }
	}
	if cfg.RebalanceInterval <= 0 {
		cfg.RebalanceInterval = 5 * time.Minute
	}
	if cfg.Dialer == nil {
		cfg.Dialer = KafkaDialer{ClientID: fmt.Sprintf("kvlog-controller-%d", cfg.BrokerID)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", "controller"), events: make(chan event, 256),
		ctx: ctx, cancel: cancel, done: make(chan struct{}), watches: map[watchKey]uint64{}}
}

// Start runs the controller loop until Stop.
func (c *Controller) Start() {
	c.cfg.Store.OnNewSession(func() { c.post(event{kind: evSession}) })
	go c.loop()
	c.post(event{kind: evController})
}

// Stop resigns (if elected) and stops the loop.
func (c *Controller) Stop() {
	c.cancel()
	<-c.done
}

// Status reports the controller's state.
func (c *Controller) Status() Status {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	return c.status
}

func (c *Controller) setStatus(fn func(*Status)) {
	c.statusMu.Lock()
	fn(&c.status)
	c.statusMu.Unlock()
}

func (c *Controller) post(ev event) {
	select {
	case c.events <- ev:
	case <-c.ctx.Done():
	}
}

// watchKey names what a watch is on: the znode behind an event kind (and
// topic).
type watchKey struct {
	kind  eventKind
	topic string
}

// watch posts ev when the ZooKeeper watch ch fires. The watch becomes the
// current one of its znode: an older watch still set on it is superseded
// (see supersededWatch).
func (c *Controller) watch(ch <-chan zk.Event, ev event) {
	if ch == nil {
		return
	}
	c.watchSeq++
	ev.watch = c.watchSeq
	c.watches[watchKey{ev.kind, ev.topic}] = ev.watch
	go func() {
		select {
		case <-ch:
			c.post(ev)
		case <-c.ctx.Done():
		}
	}()
}

// ControlledShutdown moves leadership away from broker id (called by the
// ControlledShutdown handler on the controller). It returns the partitions
// id still leads (to retry later), or an error (not the controller, stale
// broker epoch).
//
// It returns once the live brokers have answered the LeaderAndIsr and
// UpdateMetadata requests carrying the moves (or when ctx ends or
// RequestTimeout passes first): the new leaders lead and every broker's
// metadata names them, so broker id may stop serving on this answer without
// leaving its partitions leaderless or clients pointed at it. Brokers that
// go away meanwhile are not waited for.
func (c *Controller) ControlledShutdown(ctx context.Context, id int32, brokerEpoch int64) ([]zkstore.TopicPartition, error) {
	// The wait for the brokers' answers ends a little before ctx does, so
	// that the caller gets the answer (the partitions id still leads)
	// rather than its own deadline.
	wait := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/10))
		defer cancel()
	}
	reply := make(chan shutdownResult, 1)
	select {
	case c.events <- event{kind: evShutdown, ctx: wait, broker: id, brokerEpoch: brokerEpoch, reply: reply}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, kerr.NotController
	}
	select {
	case r := <-reply:
		return r.remaining, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Controller) loop() {
	defer close(c.done)
	rebalance := time.NewTicker(c.cfg.RebalanceInterval)
	defer rebalance.Stop()
	for {
		select {
		case <-c.ctx.Done():
			c.resign()
			return
		case <-rebalance.C:
			if c.active && c.cfg.AutoRebalance {
				c.handle(event{kind: evRebalance})
			}
		case ev := <-c.events:
			c.handle(ev)
		}
	}
}

// supersededWatch reports whether ev comes from a watch that a newer one
// on the same znode replaced. ZooKeeper watches cannot be removed and each
// fires once, so every read that sets one (an election run, a fail-over,
// an event handled) leaves the older ones set; acting on them too would set
// yet more, one more per run of the election, each firing for every later
// change. The newest watch was set by a read made after the older ones'
// and fires for every change since, so the older ones' events add nothing.
func (c *Controller) supersededWatch(ev event) bool {
	if ev.watch == 0 {
		return false
	}
	key := watchKey{ev.kind, ev.topic}
	if c.watches[key] != ev.watch {
		return true
	}
	delete(c.watches, key)
	return false
}

func (c *Controller) handle(ev event) {
	if c.supersededWatch(ev) {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("controller event panicked; resigning", "event", ev.kind, "panic", v)
			c.resign()
			go func() { time.Sleep(time.Second); c.post(event{kind: evController}) }()
		}
	}()
	var err error
	switch ev.kind {
	case evController, evSession:
		err = c.elect()
	case evShutdown:
		if !c.active {
			ev.reply <- shutdownResult{err: kerr.NotController}
			return
		}
		rem, sent, err2 := c.controlledShutdown(ev.broker, ev.brokerEpoch)
		err = err2
		if errors.Is(err2, zkstore.ErrFenced) {
			// Another controller was elected: the broker asks it.
			ev.reply <- shutdownResult{err: kerr.NotController}
			break
		}
		if err2 != nil {
			ev.reply <- shutdownResult{err: err2}
			break
		}
		// Answer once the moves are applied and propagated, off the loop:
		// the brokers' answers do not need it, and it keeps serving.
		go func() {
			c.awaitDelivered(ev.ctx, ev.broker, sent)
			ev.reply <- shutdownResult{remaining: rem}
		}()
	default:
		if !c.active {
			return
		}
		switch ev.kind {
		case evBrokers:
			err = c.onBrokersChanged()
		case evTopics:
			err = c.onTopicsChanged()
		case evTopicAssignment:
			err = c.onTopicAssignment(ev.topic)
		case evISRChanges:
			err = c.onISRChanges()
		case evDeletions:
			err = c.onDeletions()
		case evRebalance:
			err = c.preferredElection()
		case evLeaderAndIsrResponse:
			err = c.onLeaderAndIsrResponse(ev.from, ev.offline, ev.online)
		case evPublish:
			c.published(ev)
		case evFullState:
			c.fullStateDue(ev)
		}
	}
	if errors.Is(err, zkstore.ErrFenced) {
		c.log.Warn("controller epoch moved on: this controller is fenced; resigning")
		c.resign()
		c.post(event{kind: evController})
		return
	}
	if err != nil && !errors.Is(err, kerr.NotController) && !errors.Is(err, kerr.StaleBrokerEpoch) {
		c.log.Error("controller event failed", "event", ev.kind, "err", err)
	}
}

func (c *Controller) live(id int32) bool {
	_, ok := c.brokers[id]
	return ok
}

func (c *Controller) eligible(id int32) bool { return c.live(id) && !c.shuttingDown[id] }

// replicaOffline reports whether broker id reported its replica of tp
// unusable (KAFKA_STORAGE_ERROR).
func (c *Controller) replicaOffline(id int32, tp zkstore.TopicPartition) bool {
	return c.offlineDirs[id][tp]
}

// eligibleFor is eligible for a leader or ISR member of tp: also not offline.
func (c *Controller) eligibleFor(tp zkstore.TopicPartition) func(int32) bool {
	return func(id int32) bool { return c.eligible(id) && !c.replicaOffline(id, tp) }
}

// loadTopics reads the topic list (watched) and each new topic's
// assignment (watched), and returns the new topics' partitions (their
// states are not read).
func (c *Controller) loadTopics() ([]zkstore.TopicPartition, error) {
	names, ch, err := c.cfg.Store.TopicNames()
	if err != nil {
		return nil, err
	}
	var fresh []zkstore.TopicPartition
	c.watch(ch, event{kind: evTopics})
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
		if _, ok := c.topics[n]; ok {
			continue
		}
		a, ach, err := c.cfg.Store.AssignmentW(n)
		if err != nil {
			c.log.Warn("reading topic assignment failed", "topic", n, "err", err)
			continue
		}
		c.watch(ach, event{kind: evTopicAssignment, topic: n})
		c.topics[n] = &topicInfo{assign: a}
		c.indexTopic(n, a, 0)
		fresh = append(fresh, topicPartitions(n, a, 0)...)
	}
	for n, ti := range c.topics {
		if !seen[n] {
			c.forgetTopic(n, ti.assign)
			delete(c.topics, n)
			delete(c.watches, watchKey{evTopicAssignment, n})
		}
	}
	return fresh, nil
}

// topicNames lists the known topics, sorted.
func (c *Controller) topicNames() []string {
	names := make([]string, 0, len(c.topics))
	for n := range c.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Controller) onBrokersChanged() error {
	bs, ch, err := c.cfg.Store.Brokers()
	if err != nil {
		return err
	}
	c.watch(ch, event{kind: evBrokers})
	now := map[int32]zkstore.Broker{}
	for _, b := range bs {
		now[b.ID] = b
	}
	dead := map[int32]bool{}
	var added []int32
	for id, old := range c.brokers {
		if b, ok := now[id]; !ok || b.Epoch != old.Epoch {
			dead[id] = true
		}
	}
	for id, b := range now {
		if old, ok := c.brokers[id]; !ok || old.Epoch != b.Epoch {
			added = append(added, id)
		}
	}
	if len(dead) == 0 && len(added) == 0 {
		return nil
	}
	c.log.Info("brokers changed", "dead", keys(dead), "new", added)
	// First the failures (restarted brokers count as failed and back).
	for id := range dead {
		if s := c.senders[id]; s != nil {
			s.close()
			delete(c.senders, id)
		}
		delete(c.brokers, id)
		delete(c.shuttingDown, id)
	}
	// A broker that died or registered again starts with no offline
	// replicas: its next LeaderAndIsr responses tell.
	for id := range dead {
		delete(c.offlineDirs, id)
	}
	for _, id := range added {
		delete(c.offlineDirs, id)
	}
	// The partitions the dead brokers host, and those without a leader.
	hosted := c.hostedBy(keys(dead)...)
	before := c.leaders(hosted)
	changed, err := c.reconcile(hosted)
	if err != nil {
		return err
	}
	more, err := c.reconcile(c.leaderlessPartitions())
	if err != nil {
		return err
	}
	changed = append(changed, more...)
	if err != nil {
		return err
	}
	for _, id := range added {
		c.brokers[id] = now[id]
		c.sender(now[id])
	}
	// Partitions without a leader may have a candidate now.
	more, err = c.reconcile(c.leaderlessPartitions())
	if err != nil {
		return err
	}
	changed = append(changed, more...)
	var sent []delivery
	for _, id := range added {
		sent = append(sent, c.sendLeaderAndIsr(id, nil)...) // everything it hosts
	}
	sent = append(sent, c.sendLeaderAndIsrFor(changed, added)...)
	c.publishAfter(sent, c.moved(before, changed), false)
	return nil
}

// leaders are the current leaders of tps (those with a state).
func (c *Controller) leaders(tps []zkstore.TopicPartition) map[zkstore.TopicPartition]int32 {
	out := make(map[zkstore.TopicPartition]int32, len(tps))
	for _, tp := range tps {
		if st, ok := c.cachedState(tp); ok {
			out[tp] = st.Leader
		}
	}
	return out
}

// moved lists the partitions of changed whose leader is not the one in
// before. A partition whose leader stayed (only its ISR or epoch changed)
// is led by a broker that serves it already: its metadata need not wait
// (publishAfter).
func (c *Controller) moved(before map[zkstore.TopicPartition]int32, changed []zkstore.TopicPartition) []zkstore.TopicPartition {
	var out []zkstore.TopicPartition
	for _, tp := range changed {
		if st, ok := c.cachedState(tp); ok {
			if prev, known := before[tp]; known && prev == st.Leader {
				continue
			}
		}
		out = append(out, tp)
	}
	return out
}

// sendLeaderAndIsrFor tells the live replicas of the changed partitions,
// except the brokers in skip (already told everything).
func (c *Controller) sendLeaderAndIsrFor(changed []zkstore.TopicPartition, skip []int32) []delivery {
	if len(changed) == 0 {
		return nil
	}
	byBroker := map[int32][]zkstore.TopicPartition{}
	for _, tp := range changed {
		ti := c.topics[tp.Topic]
		if ti == nil || int(tp.Partition) >= len(ti.assign.Replicas) {
			continue
		}
		for _, r := range ti.assign.Replicas[tp.Partition] {
			if c.live(r) && !slices.Contains(skip, r) {
				byBroker[r] = append(byBroker[r], tp)
			}
		}
	}
	var sent []delivery
	for id, tps := range byBroker {
		sent = append(sent, c.sendLeaderAndIsr(id, tps)...)
	}
	return sent
}

func (c *Controller) onTopicsChanged() error {
	fresh, err := c.loadTopics()
	if err != nil {
		return err
	}
	if len(fresh) == 0 {
		c.sendUpdateMetadataAll()
		return nil
	}
	counts := map[string]int{}
	for _, tp := range fresh {
		counts[tp.Topic]++
	}
	for _, n := range slices.Sorted(maps.Keys(counts)) {
		c.log.Info("new topic", "topic", n, "partitions", counts[n])
	}
	return c.onNewPartitions(fresh)
}

// onNewPartitions initialises new partitions and tells their replicas,
// then the metadata once the leaders have them. Their states are not read
// first (a read per partition, 10,000 for a large topic): a new partition
// has none, and the rare one that does (written by an earlier controller)
// makes its create fail with NodeExists, and updateStates then reads it
// and decides again.
func (c *Controller) onNewPartitions(fresh []zkstore.TopicPartition) error {
	for _, tp := range fresh {
		if _, ok := c.cachedState(tp); !ok {
			c.setCached(tp, zkstore.PartitionState{}, false) // leaderless until written
		}
	}
	if _, err := c.reconcile(fresh); err != nil {
		return err
	}
	c.publishAfter(c.sendLeaderAndIsrFor(fresh, nil), fresh, false)
	return nil
}

func (c *Controller) onTopicAssignment(name string) error {
	ti := c.topics[name]
	if ti == nil {
		return nil
	}
	a, ch, err := c.cfg.Store.AssignmentW(name)
	if err != nil {
		return nil // deleted: the topics watch handles it
	}
	c.watch(ch, event{kind: evTopicAssignment, topic: name})
	old := len(ti.assign.Replicas)
	if len(a.Replicas) <= old {
		ti.assign = a
		return nil
	}
	ti.assign = a
	c.indexTopic(name, a, old)
	return c.onNewPartitions(topicPartitions(name, a, old))
}

// onISRChangesNoSend consumes the ISR change notifications.
func (c *Controller) onISRChangesNoSend() (bool, error) {
	names, ch, err := c.cfg.Store.ISRChangesW()
	if err != nil {
		return false, err
	}
	c.watch(ch, event{kind: evISRChanges})
	seen := map[zkstore.TopicPartition]bool{}
	var tps []zkstore.TopicPartition
	for _, n := range names {
		got, err := c.cfg.Store.TakeISRChange(n)
		if err != nil {
			return false, err
		}
		for _, tp := range got {
			if _, ok := c.replicasOf(tp); ok && !seen[tp] {
				seen[tp] = true
				tps = append(tps, tp)
			}
		}
	}
	// The leaders changed these states: read them again.
	if err := c.loadStates(tps); err != nil {
		return false, err
	}
	return len(names) > 0, nil
}

func (c *Controller) onISRChanges() error {
	any, err := c.onISRChangesNoSend()
	if err != nil || !any {
		return err
	}
	c.sendUpdateMetadataAll()
	return nil
}

// onDeletions deletes the topics marked under /admin/delete_topics: every
// live replica gets StopReplica with delete, then the znodes go.
func (c *Controller) onDeletions() error {
	names, ch, err := c.cfg.Store.PendingDeletionsW()
	if err != nil {
		return err
	}
	c.watch(ch, event{kind: evDeletions})
	if len(names) == 0 {
		return nil
	}
	for _, n := range names {
		ti := c.topics[n]
		if ti != nil {
			ti.deleting = true
			byBroker := map[int32][]int32{}
			for p, rs := range ti.assign.Replicas {
				for _, r := range rs {
					if c.live(r) {
						byBroker[r] = append(byBroker[r], int32(p))
					}
				}
			}
			for id, ps := range byBroker {
				c.sendStopReplica(id, n, ps, true)
			}
		}
		if err := c.cfg.Store.DeletionDone(n); err != nil {
			return err
		}
		if ti != nil {
			c.forgetTopic(n, ti.assign)
		}
		delete(c.topics, n)
		delete(c.watches, watchKey{evTopicAssignment, n})
		for _, set := range c.offlineDirs {
			for tp := range set {
				if tp.Topic == n {
					delete(set, tp)
				}
			}
		}
		c.log.Info("deleted topic", "topic", n)
	}
	c.sendUpdateMetadataAll()
	return nil
}

// controlledShutdown moves leadership off broker id and drops it from ISRs.
// It returns the partitions id still leads and the requests telling the
// brokers (see ControlledShutdown).
func (c *Controller) controlledShutdown(id int32, epoch int64) ([]zkstore.TopicPartition, []delivery, error) {
	b, ok := c.brokers[id]
	if !ok {
		return nil, nil, kerr.BrokerNotAvailable
	}
	if epoch != b.Epoch {
		c.log.Warn("refused controlled shutdown: not the broker's registration", "broker", id, "broker_epoch", epoch, "registered_epoch", b.Epoch)
		return nil, nil, kerr.StaleBrokerEpoch
	}
	reg, exists, _, err := c.cfg.Store.BrokerRegistration(id)
	if err != nil {
		return nil, nil, err
	}
	if !exists || reg != epoch {
		c.log.Warn("refused controlled shutdown: not the broker's registration in ZooKeeper", "broker", id, "broker_epoch", epoch, "registered", exists, "registered_epoch", reg)
		return nil, nil, kerr.StaleBrokerEpoch
	}
	c.shuttingDown[id] = true
	var stuck []zkstore.TopicPartition
	changed, err := c.updateStates(c.hostedBy(id), func(tp zkstore.TopicPartition, replicas []int32, st zkstore.PartitionState, exists bool) (zkstore.PartitionState, bool) {
		if !exists {
			return st, false
		}
		next, ch, stk := MoveLeaderFrom(st, replicas, id, c.eligibleFor(tp), c.fence.Epoch)
		if stk && !slices.Contains(stuck, tp) {
			stuck = append(stuck, tp)
		}
		return next, ch
	})
	if err != nil {
		return nil, nil, err
	}
	c.log.Info("controlled shutdown", "broker", id, "moved", len(changed), "remaining", len(stuck))
	sent := c.sendLeaderAndIsrFor(changed, []int32{id})
	sent = append(sent, c.sendUpdateMetadataAll()...)
	return stuck, sent, nil
}

// awaitDelivered waits until the brokers answered the requests sent (a
// broker's sender closing, as when it dies or this controller resigns, ends
// the wait for it), ctx ends or RequestTimeout passes.
func (c *Controller) awaitDelivered(ctx context.Context, shuttingDown int32, sent []delivery) {
	if ctx == nil {
		ctx = context.Background()
	}
	timeout := time.NewTimer(c.cfg.RequestTimeout)
	defer timeout.Stop()
	for i, d := range sent {
		select {
		case <-d.done:
			continue
		case <-d.s.ctx.Done():
			continue
		case <-ctx.Done():
		case <-timeout.C:
		}
		var pending []int32
		for _, d := range sent[i:] {
			select {
			case <-d.done:
			case <-d.s.ctx.Done():
			default:
				pending = append(pending, d.s.id)
			}
		}
		if len(pending) > 0 {
			slices.Sort(pending)
			c.log.Warn("answering controlled shutdown before every broker applied it", "broker", shuttingDown, "unanswered", slices.Compact(pending))
		}
		return
	}
}

// onLeaderAndIsrResponse is Kafka's handling of a LeaderAndIsr response
// (package doc, "Replicas that cannot be opened"): the broker's offline
// replicas are updated, and those newly offline are taken out of service.
func (c *Controller) onLeaderAndIsrResponse(from *sender, offline, online []zkstore.TopicPartition) error {
	id := from.id
	if c.senders[id] != from {
		return nil // the broker went away or registered again meanwhile
	}
	set := c.offlineDirs[id]
	if set == nil {
		set = map[zkstore.TopicPartition]bool{}
		c.offlineDirs[id] = set
	}
	for _, tp := range online {
		delete(set, tp)
	}
	var fresh []zkstore.TopicPartition
	for _, tp := range offline {
		if ti := c.topics[tp.Topic]; ti == nil || ti.deleting || int(tp.Partition) >= len(ti.assign.Replicas) {
			continue
		}
		if !set[tp] {
			set[tp] = true
			fresh = append(fresh, tp)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	c.log.Error("broker cannot serve its replicas (KAFKA_STORAGE_ERROR); marking them offline", "broker", id, "partitions", fresh)
	return c.onReplicasOffline(id, fresh)
}

// onReplicasOffline takes broker id's replicas of tps out of service: a new
// leader where it led, out of the ISR, StopReplica to it, the new states to
// the other replicas and the metadata to every broker.
func (c *Controller) onReplicasOffline(id int32, tps []zkstore.TopicPartition) error {
	stop := map[string][]int32{}
	for _, tp := range tps {
		stop[tp.Topic] = append(stop[tp.Topic], tp.Partition)
	}
	before := c.leaders(tps)
	changed, err := c.updateStates(tps, func(tp zkstore.TopicPartition, replicas []int32, st zkstore.PartitionState, exists bool) (zkstore.PartitionState, bool) {
		if !exists {
			return st, false
		}
		down := func(r int32) bool { return !c.live(r) || c.replicaOffline(r, tp) }
		return AfterBrokerLoss(st, replicas, down, c.eligibleFor(tp), c.cfg.Unclean(tp.Topic), c.fence.Epoch)
	})
	if err != nil {
		return err
	}
	for _, topic := range slices.Sorted(maps.Keys(stop)) {
		c.sendStopReplica(id, topic, stop[topic], false)
	}
	c.publishAfter(c.sendLeaderAndIsrFor(changed, []int32{id}), c.moved(before, changed), false)
	return nil
}

// preferredElection moves leadership back to preferred replicas.
func (c *Controller) preferredElection() error {
	changed, err := c.updateStates(c.allPartitions(), func(tp zkstore.TopicPartition, replicas []int32, st zkstore.PartitionState, exists bool) (zkstore.PartitionState, bool) {
		if !exists {
			return st, false
		}
		return PreferredLeader(st, replicas, c.eligibleFor(tp), c.fence.Epoch)
	})
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		c.publishAfter(c.sendLeaderAndIsrFor(changed, nil), changed, false)
	}
	return nil
}

func keys[V any](m map[int32]V) []int32 {
	out := make([]int32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
