package server

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/server/coordlog"
	"github.com/kvlog/kvlog/server/group"
)

// The group coordinator's wiring: its configuration from the broker keys,
// its store (the __consumer_offsets partitions through the engine) and
// where FindCoordinator sends clients. The coordinator itself is package
// group; the handlers are 08-16, 42 and 47.
//
// Lock order: a group shard's lock is taken before Server.topicMu (the
// store creates __consumer_offsets on first write) and before engine
// locks; nothing holding topicMu calls into the coordinator.

// startGroups creates the coordinator and, on a single node, loads every
// group by replaying __consumer_offsets: a single broker coordinates all of
// its partitions.
//
// Cluster mode: nothing is loaded here. A broker coordinates exactly the
// __consumer_offsets partitions it leads: LeaderAndIsr queues Load(p) when
// it becomes leader and Unload(p) when it stops (cluster_groups.go),
// FindCoordinator answers with the partition's leader from the metadata
// cache, and the group APIs of partitions not loaded here answer
// NOT_COORDINATOR.
func (s *Server) startGroups() error {
	partitions := s.cfg.OffsetsTopicNumPartitions
	if t := s.topic(group.OffsetsTopic); t != nil {
		partitions = int32(len(t.parts)) // the existing topic decides, as in Kafka
	}
	st := &offsetsStore{log: newCoordLog(s, group.OffsetsTopic, "offsets.commit.timeout.ms", partitions, kerr.NotCoordinator, s.ensureOffsetsTopic)}
	co, err := group.New(s.groupConfig(partitions), st, group.Options{
		Clock:  s.clock,
		Logger: s.logger.With("component", "group-coordinator"),
	})
	if err != nil {
		return err
	}
	s.groups = co
	if s.mode.replicated() {
		return nil // partitions load as their leadership arrives
	}
	if err := co.LoadAll(); err != nil {
		co.Close()
		return err
	}
	// Topic deletions finished by loadTopics: their offsets go before the
	// deletion is recorded done, so a crash in between redoes both.
	if names := s.deletedAtStart; len(names) > 0 {
		s.deletedAtStart = nil
		s.removeDeletedOffsets(names)
		for _, name := range names {
			if err := s.meta.DeletionDone(name); err != nil {
				s.logger.Error("recording topic deletion failed; the next start retries", "topic", name, "err", err)
			}
		}
	}
	return nil
}

// removeDeletedOffsets removes the committed offsets of deleted topics
// from every group this broker coordinates. A failure is logged: the
// offsets then stay (as in Kafka, where the tombstones are written once).
// Caller must not hold topicMu.
func (s *Server) removeDeletedOffsets(topics []string) {
	if s.groups == nil {
		return
	}
	n, err := s.groups.OnTopicsDeleted(topics)
	if err != nil {
		s.logger.Error("removing committed offsets of deleted topics failed", "topics", topics, "err", err)
	}
	if n > 0 {
		s.logger.Info("removed committed offsets of deleted topics", "topics", topics, "offsets", n)
	}
}

// groupConfig reads the coordinator's keys (they are static).
func (s *Server) groupConfig(partitions int32) group.Config {
	l := s.layers.Load()
	get, ms := l.Int, l.Duration
	cfg := group.DefaultConfig()
	cfg.Partitions = partitions
	cfg.MinSessionTimeout = ms("group.min.session.timeout.ms")
	cfg.MaxSessionTimeout = ms("group.max.session.timeout.ms")
	cfg.InitialRebalanceDelay = ms("group.initial.rebalance.delay.ms")
	cfg.MaxSize = int(min(get("group.max.size"), 1<<31-1))
	cfg.OffsetsRetention = ms("offsets.retention.minutes")
	return cfg
}

// ensureOffsetsTopic creates __consumer_offsets if it does not exist:
// compacted, with offsets.topic.segment.bytes segments, replicated
// offsets.topic.replication.factor times in cluster mode (creation fails
// while fewer brokers are alive, as in Kafka since KIP-115: a cluster
// still starting must not get an under-replicated offsets topic forever).
func (s *Server) ensureOffsetsTopic() (*topic, error) {
	if t := s.topic(group.OffsetsTopic); t != nil {
		return t, nil
	}
	l := s.layers.Load()
	rf := int16(1)
	if s.mode.replicated() {
		rf = int16(l.Int("offsets.topic.replication.factor"))
	}
	t, err := s.createTopic(newTopicSpec{
		name:       group.OffsetsTopic,
		partitions: s.groups.Partitions(),
		rf:         rf,
		configs: map[string]string{
			"cleanup.policy":   "compact",
			"segment.bytes":    l.Broker("offsets.topic.segment.bytes").Value,
			"compression.type": "producer",
		},
	})
	if err != nil {
		if t := s.topic(group.OffsetsTopic); t != nil { // created concurrently
			return t, nil
		}
		return nil, err
	}
	return t, nil
}

// groupCoordinator is the broker coordinating a group: the leader of the
// group's __consumer_offsets partition in the metadata view (on a single
// node, this broker), at the endpoint of the listener the request came in
// on. The topic is created on the first lookup (as Kafka does).
func (s *Server) groupCoordinator(r *request, groupID string) (nodeID int32, host string, port int32, err error) {
	t, err := s.ensureOffsetsTopic()
	if err != nil {
		r.log().Warn("creating the offsets topic failed", "err", err)
		return -1, "", -1, topicErrf(kerr.CoordinatorNotAvailable, "creating %s: %v", group.OffsetsTopic, err)
	}
	co := s.groups
	if int32(len(t.parts)) != co.Partitions() {
		return -1, "", -1, topicErrf(kerr.CoordinatorNotAvailable, "%s has %d partitions but this broker's coordinator maps groups over %d (restart it)",
			group.OffsetsTopic, len(t.parts), co.Partitions())
	}
	return s.coordinatorEndpoint(r, group.OffsetsTopic, co.PartitionFor(groupID))
}

// coordinatorEndpoint is the leader of partition p of a coordinator's
// topic in the metadata view, at the endpoint of the listener r came in
// on.
func (s *Server) coordinatorEndpoint(r *request, name string, p int32) (nodeID int32, host string, port int32, err error) {
	view := s.view()
	parts, _ := view.partitions(name)
	if int(p) >= len(parts) || parts[p].leader < 0 {
		return -1, "", -1, topicErrf(kerr.CoordinatorNotAvailable, "%s-%d has no leader yet", name, p)
	}
	leader := parts[p].leader
	eps := view.brokerEndpoints()[leader]
	if len(eps) == 0 {
		return -1, "", -1, topicErrf(kerr.CoordinatorNotAvailable, "leader %d of %s-%d is not a live broker", leader, name, p)
	}
	ep := eps[0]
	for _, e := range eps {
		if e.Name == r.c.l.name {
			ep = e
		}
	}
	return leader, ep.Host, ep.Port, nil
}

// clientHost is the member's host as Kafka reports it ("/ip").
func clientHost(r *request) string {
	host, _, err := net.SplitHostPort(r.c.remote)
	if err != nil {
		host = r.c.remote
	}
	return "/" + host
}

// offsetsStore is group.Store over the __consumer_offsets partitions
// (package coordlog has how writes become durable; offsets.commit.timeout.ms
// bounds the wait).
type offsetsStore struct{ log *coordlog.Log }

// Append writes the records as one uncompressed batch.
func (st *offsetsStore) Append(p int32, recs []group.Record) error {
	kvs := make([]coordlog.KV, len(recs))
	for i, r := range recs {
		kvs[i] = coordlog.KV{Key: r.Key, Value: r.Value}
	}
	return tooLargeForGroups(st.log.Append(p, kvs))
}

// Sync waits until the high watermark passed the last append.
func (st *offsetsStore) Sync(p int32) error { return st.log.Sync(p) }

// AppendTxn writes a TxnOffsetCommit's records as one transactional batch
// of the producer. A producer epoch the partition refuses passes through
// (INVALID_PRODUCER_EPOCH, as Kafka answers it).
func (st *offsetsStore) AppendTxn(p int32, pid int64, epoch int16, recs []group.Record) error {
	kvs := make([]coordlog.KV, len(recs))
	for i, r := range recs {
		kvs[i] = coordlog.KV{Key: r.Key, Value: r.Value}
	}
	err := st.log.AppendAs(p, pid, epoch, kvs)
	if errors.Is(err, engine.ErrInvalidProducerEpoch) || errors.Is(err, engine.ErrOutOfOrderSequence) {
		return fmt.Errorf("%w: %w", group.ErrPassThrough, err)
	}
	return tooLargeForGroups(err)
}

// Replay reads the partition from its start to its end, with the
// transaction fields of each record and the transaction markers.
func (st *offsetsStore) Replay(p int32, fn func(group.Record)) error {
	return st.log.ReplayTxn(p, func(r coordlog.Record) {
		gr := group.Record{Key: r.Key, Value: r.Value, ProducerID: r.PID, Transactional: r.Transactional}
		switch r.Marker {
		case 1:
			gr.Marker = group.CommitMarker
		case 2:
			gr.Marker = group.AbortMarker
		}
		fn(gr)
	})
}

var _ group.Store = (*offsetsStore)(nil)

// groupTP converts for the coordinator.
func groupTP(topic string, partition int32) group.TopicPartition {
	return group.TopicPartition{Topic: topic, Partition: partition}
}

func msDur(ms int32) time.Duration { return time.Duration(ms) * time.Millisecond }

// tooLargeForGroups marks the engine's refusals of a batch for its size as
// group.ErrRecordTooLarge, which the coordinator answers as Kafka does
// instead of with a retriable error.
func tooLargeForGroups(err error) error {
	if errors.Is(err, engine.ErrMessageTooLarge) || errors.Is(err, engine.ErrRecordListTooLarge) {
		return fmt.Errorf("%w: %w", group.ErrRecordTooLarge, err)
	}
	return err
}
