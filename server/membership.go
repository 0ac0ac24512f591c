package server

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/console"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	zkcluster "github.com/kvlog/kvlog/server/cluster"
	"github.com/kvlog/kvlog/server/controller"
	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/txn"
)

// membership is how this broker belongs to a cluster, and the one place
// the two modes differ: alone (standalone: the embedded metadata store, a
// cluster of one whose partitions this broker leads with ISR = {itself})
// or through ZooKeeper and a controller (cluster, cluster.go). Everything
// else (requests, the partition manager, the coordinators) asks it or the
// metadata view instead of asking which mode runs.
type membership interface {
	// loadTopics opens the logs of the topics this broker hosts (New).
	loadTopics() error
	// start joins the cluster once the listeners are bound (Start).
	start() error
	// shutdown hands leadership away while the broker still serves
	// (Shutdown, before the listeners close); stop ends the background
	// work once the requests are answered.
	shutdown(ctx context.Context)
	stop()
	// onISRChange receives the partition manager's ISR changes (nil: a
	// cluster of one has no other replica to add or remove).
	onISRChange() func(*replica.Partition, *replica.ISRChange)
	// createTopic creates a checked topic, with topicMu held.
	createTopic(spec newTopicSpec) (*topic, error)
	// deleteTopic deletes t (not internal), called with topicMu held; it
	// releases topicMu before returning.
	deleteTopic(t *topic) error
	// addPartitions grows t to count partitions (count checked to be
	// larger), with topicMu held.
	addPartitions(t *topic, count int32, assignment [][]int32, validateOnly bool) error
	// replicated reports whether topics are replicated across brokers:
	// the replication factor and min.insync.replicas of internal topics
	// come from their keys, the coordinators load the partitions they
	// lead as leadership arrives rather than all at start.
	replicated() bool
	// notReady is why the membership keeps the broker from being ready
	// (readiness), "" when it does not.
	notReady() string
	// describe sets the console's mode fields.
	describe(bi *console.BrokerInfo)
	// controllerCandidate is this broker's controller candidate, which
	// answers ControlledShutdown when active (nil on a single node).
	controllerCandidate() *controller.Controller
	// admit decides whether to apply an inter-broker request from the
	// controller: the cluster to apply it to, or the error to answer
	// with and why (Server.fromController).
	admit(controllerID, controllerEpoch int32, brokerEpoch int64) (*cluster, *zkcluster.Refusal)
	// writeMarkers writes a transaction marker to each partition through
	// its leader and calls done once with one error per partition: this
	// broker's own partitions directly (Server.writeMarkers), in a
	// cluster the others' in WriteTxnMarkers requests (cluster_txns.go).
	writeMarkers(mk engine.Marker, tps []txn.TopicPartition, done func([]error))
}

// standalone is a single node's membership.
type standalone struct{ s *Server }

func (standalone) start() error                                              { return nil }
func (standalone) shutdown(context.Context)                                  {}
func (standalone) stop()                                                     {}
func (standalone) onISRChange() func(*replica.Partition, *replica.ISRChange) { return nil }
func (standalone) replicated() bool                                          { return false }
func (standalone) notReady() string                                          { return "" }
func (standalone) describe(bi *console.BrokerInfo)                           { bi.Mode = "single node" }
func (standalone) controllerCandidate() *controller.Controller               { return nil }

// writeMarkers: a single node leads every partition it hosts.
func (a standalone) writeMarkers(mk engine.Marker, tps []txn.TopicPartition, done func([]error)) {
	a.s.writeMarkers(mk, tps, done)
}

// admit refuses: a single node has no controller.
func (standalone) admit(int32, int32, int64) (*cluster, *zkcluster.Refusal) {
	return nil, &zkcluster.Refusal{Err: kerr.InvalidRequest, Reason: "a single node takes no requests from a controller"}
}

// loadTopics removes the logs of pending deletions (startGroups then
// removes their offsets and records them done), adopts the logs found when
// the metadata store is new, and opens every topic's logs. A partition
// whose log cannot be opened or created is offline: the broker starts and
// serves the others.
func (a standalone) loadTopics() error {
	s := a.s
	for _, t := range s.meta.PendingDeletions() {
		if err := s.deleteLogs(t.Name, t.Partitions); err != nil {
			s.logger.Error("finishing the deletion of a topic failed; the next start retries", "topic", t.Name, "err", err)
			continue
		}
		s.deletedAtStart = append(s.deletedAtStart, t.Name)
	}
	if s.adoptLogs {
		s.adoptUnknownLogs()
	}
	snap := &topicSnapshot{byName: map[string]*topic{}, byID: map[metastore.TopicID]*topic{}}
	layers := s.layers.Load()
	for _, mt := range s.meta.Topics() {
		t, err := s.openTopic(mt, layers)
		if err != nil {
			s.logger.Error("partitions offline: their logs cannot be opened", "topic", mt.Name, "err", err)
		}
		snap.byName[t.name] = t
		snap.byID[t.id] = t
	}
	s.topics.Store(snap)
	return nil
}

// createTopic creates the logs first, then records the topic in the
// metadata store (the commit point), then makes it visible to requests.
func (a standalone) createTopic(spec newTopicSpec) (*topic, error) {
	s := a.s
	if s.deleting[spec.name] {
		return nil, topicErrf(kerr.TopicAlreadyExists, "topic %q is marked for deletion", spec.name)
	}
	// A deletion of the same name that did not finish blocks re-creation
	// until its logs are gone.
	for _, pd := range s.meta.PendingDeletions() {
		if pd.Name != spec.name {
			continue
		}
		if err := s.deleteLogs(pd.Name, pd.Partitions); err != nil {
			return nil, topicErrf(kerr.KafkaStorageError, "previous incarnation of %q not yet deleted: %v", spec.name, err)
		}
		if err := s.meta.DeletionDone(pd.Name); err != nil {
			return nil, topicErrf(kerr.KafkaStorageError, "%v", err)
		}
	}
	mt := metastore.Topic{
		Name:              spec.name,
		ID:                metastore.NewTopicID(),
		Partitions:        spec.partitions,
		ReplicationFactor: spec.rf,
		Configs:           maps.Clone(spec.configs),
	}
	layers := s.layers.Load()
	ecfg := layers.EngineConfig(mt.Configs)
	parts, err := s.createLogs(spec.name, 0, spec.partitions, ecfg)
	if err != nil {
		return nil, topicErrf(kerr.KafkaStorageError, "creating topic %q: %v", spec.name, err)
	}
	if err := s.meta.CreateTopic(mt); err != nil {
		s.dropLogs(parts)
		if errors.Is(err, metastore.ErrTopicExists) {
			return nil, topicErrf(kerr.TopicAlreadyExists, "topic %q already exists", spec.name)
		}
		return nil, topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	t := s.newTopic(mt, layers)
	t.parts = parts
	s.publishTopics(func(m map[string]*topic) { m[t.name] = t })
	s.logger.Info("created topic", "topic", t.name, "partitions", spec.partitions, "configs", spec.configs)
	return t, nil
}

// deleteTopic: durable in the store (as pending deletion), invisible to
// new requests, parked fetches woken, its logs deleted, then the committed
// offsets of its partitions removed from every group, and the deletion
// recorded as done.
func (a standalone) deleteTopic(t *topic) error {
	s, name := a.s, t.name
	if err := s.meta.DeleteTopic(name); err != nil {
		s.topicMu.Unlock()
		return topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	s.publishTopics(func(m map[string]*topic) { delete(m, name) })
	for _, p := range t.parts {
		if p.rep != nil {
			s.replicas.Remove(p.rep) // parked fetches wake
		}
	}
	logsErr := s.deleteLogs(name, int32(len(t.parts)))
	s.deleting[name] = true // until the offsets are gone: no re-creation
	s.topicMu.Unlock()

	s.removeDeletedOffsets([]string{name}) // outside topicMu (lock order)

	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	delete(s.deleting, name)
	if logsErr != nil {
		// The store still lists it as pending; the next start finishes.
		s.logger.Error("deleting topic logs failed; will retry at start-up", "topic", name, "err", logsErr)
		return nil
	}
	if err := s.meta.DeletionDone(name); err != nil {
		s.logger.Error("recording topic deletion failed", "topic", name, "err", err)
	}
	s.logger.Info("deleted topic", "topic", name)
	return nil
}

// addPartitions creates the new partitions' logs, then records the count.
func (a standalone) addPartitions(t *topic, count int32, assignment [][]int32, validateOnly bool) error {
	s, name, cur := a.s, t.name, int32(len(t.parts))
	if assignment != nil {
		if int32(len(assignment)) != count-cur {
			return topicErrf(kerr.InvalidReplicaAssignment, "increasing the number of partitions by %d but %d assignments provided", count-cur, len(assignment))
		}
		for i, replicas := range assignment {
			if err := s.checkReplicas(replicas, t.rf); err != nil {
				return topicErrf(kerr.InvalidReplicaAssignment, "partition %d: %v", cur+int32(i), err)
			}
		}
	}
	if validateOnly {
		return nil
	}
	// Logs first, then the store (the commit point), as for creation.
	ecfg := s.layers.Load().EngineConfig(t.configs)
	parts, err := s.createLogs(name, cur, count, ecfg)
	if err != nil {
		return topicErrf(kerr.KafkaStorageError, "adding partitions to %q: %v", name, err)
	}
	if err := s.meta.SetPartitionCount(name, count); err != nil {
		s.dropLogs(parts)
		return topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	nt := *t
	nt.parts = append(slices.Clone(t.parts), parts...)
	s.publishTopics(func(m map[string]*topic) { m[name] = &nt })
	s.logger.Info("added partitions", "topic", name, "from", cur, "to", count)
	return nil
}
