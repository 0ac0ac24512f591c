package server

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine/record"
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

// startGroups creates the coordinator and loads every group by replaying
// __consumer_offsets: a single broker coordinates all of its partitions.
//
// Cluster mode (the seam): a broker must coordinate exactly the partitions
// it leads — s.groups.Load(p) when it becomes leader of
// __consumer_offsets-p, s.groups.Unload(p) when it stops, and
// groupCoordinator must answer with the partition's leader. Until that is
// wired, nothing is loaded in cluster mode: FindCoordinator answers
// COORDINATOR_NOT_AVAILABLE and the group APIs NOT_COORDINATOR.
func (s *Server) startGroups() error {
	partitions := s.cfg.OffsetsTopicNumPartitions
	if t := s.topic(group.OffsetsTopic); t != nil {
		partitions = int32(len(t.parts)) // the existing topic decides, as in Kafka
	}
	st := &offsetsStore{s: s, unannounced: make([]atomic.Int64, partitions)}
	co, err := group.New(s.groupConfig(partitions), st, group.Options{
		Clock:  s.clock,
		Logger: s.logger.With("component", "group-coordinator"),
	})
	if err != nil {
		return err
	}
	s.groups = co
	if s.cluster != nil {
		return nil
	}
	if err := co.LoadAll(); err != nil {
		co.Close()
		return err
	}
	return nil
}

// groupConfig reads the coordinator's keys (they are static).
func (s *Server) groupConfig(partitions int32) group.Config {
	l := s.layers.Load()
	get := func(name string) int64 { return mustInt(l.brokerValue(name).value) }
	ms := func(name string) time.Duration { return time.Duration(get(name)) * time.Millisecond }
	cfg := group.DefaultConfig()
	cfg.Partitions = partitions
	cfg.MinSessionTimeout = ms("group.min.session.timeout.ms")
	cfg.MaxSessionTimeout = ms("group.max.session.timeout.ms")
	cfg.InitialRebalanceDelay = ms("group.initial.rebalance.delay.ms")
	cfg.MaxSize = int(min(get("group.max.size"), 1<<31-1))
	cfg.OffsetsRetention = time.Duration(get("offsets.retention.minutes")) * time.Minute
	return cfg
}

// ensureOffsetsTopic creates __consumer_offsets if it does not exist:
// compacted, with offsets.topic.segment.bytes segments.
func (s *Server) ensureOffsetsTopic() (*topic, error) {
	if t := s.topic(group.OffsetsTopic); t != nil {
		return t, nil
	}
	l := s.layers.Load()
	t, err := s.createTopic(newTopicSpec{
		name:       group.OffsetsTopic,
		partitions: s.groups.Partitions(),
		rf:         1,
		configs: map[string]string{
			"cleanup.policy":   "compact",
			"segment.bytes":    l.brokerValue("offsets.topic.segment.bytes").value,
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
// group's __consumer_offsets partition, which is created on the first
// lookup (as Kafka does). On a single node, this broker.
func (s *Server) groupCoordinator(r *request, groupID string) (nodeID int32, host string, port int32, err error) {
	if s.cluster != nil {
		// The seam: answer with the leader of
		// __consumer_offsets-PartitionFor(groupID) once the cluster loads
		// and unloads coordinator partitions (see startGroups).
		return -1, "", -1, topicErrf(kerr.CoordinatorNotAvailable, "group coordination is not available in cluster mode yet")
	}
	if _, err := s.ensureOffsetsTopic(); err != nil {
		r.log().Warn("creating the offsets topic failed", "err", err)
		return -1, "", -1, topicErrf(kerr.CoordinatorNotAvailable, "creating %s: %v", group.OffsetsTopic, err)
	}
	return s.cfg.NodeID, r.c.l.advHost, r.c.l.advPort, nil
}

// clientHost is the member's host as Kafka reports it ("/ip").
func clientHost(r *request) string {
	host, _, err := net.SplitHostPort(r.c.remote)
	if err != nil {
		host = r.c.remote
	}
	return "/" + host
}

// offsetsStore is group.Store over the __consumer_offsets partitions.
type offsetsStore struct {
	s *Server
	// unannounced counts bytes appended per partition that parked fetches
	// have not been told about (they are, at Sync).
	unannounced []atomic.Int64
}

func (st *offsetsStore) partition(p int32, create bool) (*partition, error) {
	t := st.s.topic(group.OffsetsTopic)
	if t == nil {
		if !create {
			return nil, nil
		}
		var err error
		if t, err = st.s.ensureOffsetsTopic(); err != nil {
			return nil, err
		}
	}
	if int(p) >= len(t.parts) || int(p) >= len(st.unannounced) {
		return nil, topicErrf(kerr.UnknownTopicOrPartition, "%s has %d partitions, the coordinator %d", group.OffsetsTopic, len(t.parts), len(st.unannounced))
	}
	if t.parts[p].log == nil {
		// Cluster mode: this broker hosts no replica of the partition.
		return nil, topicErrf(kerr.NotCoordinator, "%s-%d is not hosted by this broker", group.OffsetsTopic, p)
	}
	if t.parts[p].log == nil {
		return nil, topicErrf(kerr.NotLeaderForPartition, "%s-%d is not hosted here", group.OffsetsTopic, p)
	}
	return t.parts[p], nil
}

// Append writes the records as one uncompressed batch.
func (st *offsetsStore) Append(p int32, recs []group.Record) error {
	part, err := st.partition(p, true)
	if err != nil {
		return err
	}
	bl := record.Builder{
		BaseTimestamp:   st.s.clock.Now().UnixMilli(),
		MaxTimestamp:    record.NoTimestamp,
		LastOffsetDelta: -1,
		ProducerID:      -1,
		ProducerEpoch:   -1,
		BaseSequence:    -1,
	}
	for i, r := range recs {
		bl.Add(record.Record{OffsetDelta: int32(i), Key: r.Key, Value: r.Value})
	}
	batch, err := bl.Build(nil)
	if err != nil {
		return err
	}
	if _, err := part.log.Append(batch, leaderEpoch); err != nil {
		return err
	}
	st.unannounced[p].Add(int64(len(batch)))
	return nil
}

// Sync makes the appended records durable (fsync, when acks=all produce
// is fsynced too) and only then visible: the high watermark moves and
// parked fetches wake.
func (st *offsetsStore) Sync(p int32) error {
	part, err := st.partition(p, false)
	if err != nil || part == nil {
		return err
	}
	leo := part.log.LogEndOffset()
	if st.s.cfg.FsyncAcksAll {
		if err := part.log.Sync(); err != nil {
			return err
		}
	}
	part.raiseHighWatermark(leo)
	if n := st.unannounced[p].Swap(0); n > 0 {
		part.appended(int(n))
	}
	return nil
}

// Replay reads the partition from its start to its end. A batch that
// cannot be decoded is skipped with a warning (recovery already dropped
// torn and corrupt batches; this only guards against foreign writes).
func (st *offsetsStore) Replay(p int32, fn func(group.Record)) error {
	part, err := st.partition(p, false)
	if err != nil || part == nil {
		return err
	}
	l := part.log
	var dec record.Decoder
	return l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(b record.Batch) error {
		if b.IsControl() {
			return nil
		}
		err := dec.Records(b, func(r *record.Record) error {
			fn(group.Record{Key: r.Key, Value: r.Value})
			return nil
		})
		if err != nil {
			st.s.logger.Warn("skipping undecodable batch while loading groups", "partition", p, "offset", b.BaseOffset(), "err", err)
		}
		return nil
	})
}

var _ group.Store = (*offsetsStore)(nil)

// groupTP converts for the coordinator.
func groupTP(topic string, partition int32) group.TopicPartition {
	return group.TopicPartition{Topic: topic, Partition: partition}
}

func msDur(ms int32) time.Duration { return time.Duration(ms) * time.Millisecond }
