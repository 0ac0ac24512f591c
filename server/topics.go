package server

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/server/config"
)

// Topic lifecycle shared by CreateTopics, Metadata auto-creation,
// DeleteTopics and the config APIs. All changes hold topicMu; readers use
// the snapshot in Server.topics.

const maxTopicNameLen = 249

// internalTopics are Kafka's internal topics.
var internalTopics = map[string]bool{"__consumer_offsets": true, "__transaction_state": true}

func isInternalTopic(name string) bool { return internalTopics[name] }

// validateTopicName applies Kafka's topic name rules.
func validateTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > maxTopicNameLen:
		return fmt.Errorf("topic name is longer than %d characters", maxTopicNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q contains %q; only ASCII alphanumerics, '.', '_' and '-' are allowed", name, c)
		}
	}
	return nil
}

// collisionName maps '.' to '_': two topics whose names differ only there
// collide in metric names, so Kafka refuses the second.
func collisionName(name string) string { return strings.ReplaceAll(name, ".", "_") }

// topicError is an error with its Kafka error (for per-topic results).
type topicError struct {
	kerr *kerr.Error
	msg  string
}

func (e *topicError) Error() string { return e.msg }
func (e *topicError) Unwrap() error { return e.kerr }

func topicErrf(ke *kerr.Error, format string, args ...any) error {
	return &topicError{kerr: ke, msg: fmt.Sprintf(format, args...)}
}

// newTopicSpec is a validated creation request.
type newTopicSpec struct {
	name       string
	partitions int32
	rf         int16
	configs    map[string]string
}

// checkNewTopic validates a creation request against the current topics
// and configuration, filling -1 defaults. Caller may or may not hold
// topicMu (createTopic re-checks under it).
func (s *Server) checkNewTopic(spec *newTopicSpec) error {
	if err := validateTopicName(spec.name); err != nil {
		return topicErrf(kerr.InvalidTopicException, "%v", err)
	}
	snap := s.topics.Load()
	if _, ok := snap.byName[spec.name]; ok {
		return topicErrf(kerr.TopicAlreadyExists, "topic %q already exists", spec.name)
	}
	cn := collisionName(spec.name)
	for name := range snap.byName {
		if collisionName(name) == cn {
			return topicErrf(kerr.InvalidTopicException, "topic %q collides with existing topic %q ('.' and '_' are equivalent)", spec.name, name)
		}
	}
	if spec.partitions == -1 {
		spec.partitions = s.cfg.NumPartitions
	}
	if spec.partitions <= 0 {
		return topicErrf(kerr.InvalidPartitions, "number of partitions must be positive, got %d", spec.partitions)
	}
	if spec.rf == -1 {
		spec.rf = s.cfg.DefaultReplicationFactor
	}
	if spec.rf <= 0 {
		return topicErrf(kerr.InvalidReplicationFactor, "replication factor must be positive, got %d", spec.rf)
	}
	if spec.rf > 1 && !s.mode.replicated() { // a cluster checks its live brokers
		return topicErrf(kerr.InvalidReplicationFactor, "replication factor %d is larger than the 1 available broker", spec.rf)
	}
	if err := s.layers.Load().ValidateTopicConfigs(spec.configs); err != nil {
		return topicErrf(kerr.InvalidConfig, "%v", err)
	}
	return nil
}

// maxPartitionsPerRequest bounds the partitions one CreateTopics or
// CreatePartitions request may create, as Kafka's controller does
// (docs/topics.md).
const maxPartitionsPerRequest = 10_000

// createTopic validates a topic and has the membership create it. A
// single node creates its logs first, then the metadata store (the commit
// point), then makes it visible to requests: a failure before the store
// took it removes the logs again, so the metadata never names a topic
// whose logs were not all created, and logs of a creation that did not
// finish are strays the next start sets aside. A cluster writes it to
// ZooKeeper; the controller does the rest.
func (s *Server) createTopic(spec newTopicSpec) (*topic, error) {
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	if s.closing.Load() {
		return nil, topicErrf(kerr.NotController, "broker is shutting down")
	}
	if err := s.checkNewTopic(&spec); err != nil {
		return nil, err
	}
	return s.mode.createTopic(spec)
}

// createLogs creates the logs of partitions [from, to) of a topic, each
// led by this broker alone, in one batch (engine.Manager.CreateLogs: the
// log dir fsynced once for every new partition directory, not once per
// partition, and the logs opened in parallel). If one cannot be created,
// the ones created are removed again and the error returned (the engine
// removes the directories it made for the others). A log that already
// exists is an error too: only a stray the start-up could not set aside
// can be there, and its records must not become the new partition's.
func (s *Server) createLogs(name string, from, to int32, ecfg engine.Config) ([]*partition, error) {
	n := int(to - from)
	tps := make([]engine.TopicPartition, 0, n)
	cfgs := make([]engine.Config, 0, n)
	for p := from; p < to; p++ {
		tp := engine.TopicPartition{Topic: name, Partition: p}
		if l, ok := s.mgr.Log(tp); ok {
			return nil, fmt.Errorf("creating log %s (%d of %d): a log of %s already exists (%s)", tp, p-from+1, n, tp, l.Dir())
		}
		tps = append(tps, tp)
		cfgs = append(cfgs, ecfg)
	}
	logs, errs := s.mgr.CreateLogs(tps, cfgs)
	parts := make([]*partition, 0, n)
	var failed error
	for i, l := range logs {
		switch {
		case errs[i] != nil:
			if failed == nil {
				failed = fmt.Errorf("creating log %s (%d of %d): %w", tps[i], i+1, n, errs[i])
			}
		case failed != nil:
			parts = append(parts, &partition{tp: tps[i], log: l})
		default:
			part, err := s.leadAlone(l)
			if err != nil {
				failed = fmt.Errorf("creating log %s (%d of %d): %w", tps[i], i+1, n, err)
				part = &partition{tp: tps[i], log: l}
			}
			parts = append(parts, part)
		}
	}
	if failed != nil {
		s.dropLogs(parts)
		return nil, failed
	}
	return parts, nil
}

// dropLogs removes the logs of partitions created by a request that
// failed, and the directories of dirs (what a failed creation left). Each
// log is closed before its directory goes, which returns descriptors to a
// process that may have run out; removals that failed are retried once
// after all were closed. Directories that still remain are strays the next
// start removes (they hold no records).
func (s *Server) dropLogs(parts []*partition, dirs ...string) {
	var failed []string
	for _, p := range parts {
		if p.rep != nil {
			s.replicas.Remove(p.rep)
		}
		dir := p.log.Dir()
		if err := s.deleteLog(p.tp); err != nil {
			failed = append(failed, dir)
		}
	}
	for _, dir := range append(failed, dirs...) {
		if err := s.fs.RemoveAll(dir); err != nil {
			s.logger.Error("removing the log of a failed creation failed; the next start removes it", "dir", dir, "err", err)
		}
	}
}

// deleteTopic removes a topic through the membership. On a single node:
// durable in the store (as pending deletion), invisible to new requests,
// parked fetches woken, its logs deleted, then the committed offsets of
// its partitions removed from every group (as Kafka's
// GroupCoordinator.onPartitionsDeleted does), and the deletion recorded as
// done; a cluster marks it for deletion in ZooKeeper. Internal topics
// cannot be deleted (docs/topics.md).
func (s *Server) deleteTopic(name string) error {
	s.topicMu.Lock()
	t := s.topic(name)
	if t == nil {
		s.topicMu.Unlock()
		return topicErrf(kerr.UnknownTopicOrPartition, "unknown topic %q", name)
	}
	if t.internal {
		s.topicMu.Unlock()
		return topicErrf(kerr.InvalidTopicException, "topic %q is an internal topic and cannot be deleted", name)
	}
	return s.mode.deleteTopic(t) // releases topicMu
}

// setTopicConfigs replaces a topic's overrides (already validated) and
// applies them to its logs.
func (s *Server) setTopicConfigs(name string, configs map[string]string) error {
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	t := s.topic(name)
	if t == nil {
		return topicErrf(kerr.UnknownTopicOrPartition, "unknown topic %q", name)
	}
	if err := s.meta.SetTopicConfigs(name, configs); err != nil {
		return topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	nt := *t
	nt.configs = maps.Clone(configs)
	if nt.configs == nil {
		nt.configs = map[string]string{}
	}
	s.applyTopicConfig(&nt, s.layers.Load())
	s.publishTopics(func(m map[string]*topic) { m[name] = &nt })
	s.logger.Info("altered topic configs", "topic", name, "configs", configs)
	return nil
}

func (s *Server) applyTopicConfig(t *topic, layers *config.Layers) {
	t.settings = layers.TopicSettings(t.configs)
	ecfg := layers.EngineConfig(t.configs)
	for _, p := range t.parts {
		if p.log != nil { // cluster mode: only hosted partitions have logs
			p.log.SetConfig(ecfg)
		}
	}
}

// setBrokerConfigs replaces the dynamic configs of a broker resource ("" =
// cluster default) and re-applies every topic's effective configuration.
func (s *Server) setBrokerConfigs(resource string, configs map[string]string) error {
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	if err := s.meta.SetBrokerConfigs(resource, configs); err != nil {
		return topicErrf(kerr.KafkaStorageError, "metadata store: %v", err)
	}
	s.refreshLayers()
	layers := s.layers.Load()
	s.publishTopics(func(m map[string]*topic) {
		for name, t := range m {
			nt := *t
			s.applyTopicConfig(&nt, layers)
			m[name] = &nt
		}
	})
	s.logger.Info("altered dynamic broker configs", "resource", resource, "configs", configs)
	return nil
}

// addPartitions raises a topic's partition count to count
// (CreatePartitions) through the membership: on a single node the new
// logs first, then the count in the metadata store, then visible; in a
// cluster the count in ZooKeeper. assignment, if not nil, names the
// replicas of each new partition (a single node checks it; a cluster
// assigns round-robin). With validateOnly nothing changes.
func (s *Server) addPartitions(name string, count int32, assignment [][]int32, validateOnly bool) error {
	s.topicMu.Lock()
	defer s.topicMu.Unlock()
	if s.closing.Load() {
		return topicErrf(kerr.NotController, "broker is shutting down")
	}
	t := s.topic(name)
	if t == nil {
		return topicErrf(kerr.UnknownTopicOrPartition, "unknown topic %q", name)
	}
	if t.internal {
		// The group coordinator maps groups to partitions of
		// __consumer_offsets by count: changing it would lose groups.
		return topicErrf(kerr.InvalidRequest, "the partition count of internal topic %q cannot be changed", name)
	}
	cur := int32(len(t.parts))
	switch {
	case count < cur:
		return topicErrf(kerr.InvalidPartitions, "topic %q currently has %d partitions, which is higher than the requested %d", name, cur, count)
	case count == cur:
		return topicErrf(kerr.InvalidPartitions, "topic %q already has %d partitions", name, cur)
	}
	return s.mode.addPartitions(t, count, assignment, validateOnly)
}

// checkReplicas validates a replica assignment for one partition of a
// topic with replication factor rf: this single broker only, no duplicates.
func (s *Server) checkReplicas(replicas []int32, rf int16) error {
	if len(replicas) != int(rf) {
		return fmt.Errorf("%d replicas given, the topic's replication factor is %d", len(replicas), rf)
	}
	seen := map[int32]bool{}
	for _, id := range replicas {
		if seen[id] {
			return fmt.Errorf("duplicate broker %d in replica assignment", id)
		}
		seen[id] = true
		if id != s.cfg.NodeID {
			return fmt.Errorf("unknown broker %d in replica assignment", id)
		}
	}
	return nil
}
