package cluster

import (
	"errors"
	"fmt"
	"maps"

	"github.com/kvlog/kvlog/server/metastore"
)

// NotEnoughBrokersError is CreateTopic's error when the replication
// factor is larger than the number of live brokers.
type NotEnoughBrokersError struct {
	ReplicationFactor int16
	Live              int
}

func (e *NotEnoughBrokersError) Error() string {
	return fmt.Sprintf("replication factor %d is larger than the %d available brokers", e.ReplicationFactor, e.Live)
}

// ReadTopic reads a topic's assignment and configs from ZooKeeper.
func (m *Member) ReadTopic(name string) (metastore.Topic, error) {
	a, err := m.zk.Assignment(name)
	if err != nil {
		return metastore.Topic{}, err
	}
	cfgs, err := m.zk.TopicConfigs(name)
	if err != nil {
		return metastore.Topic{}, err
	}
	mt := metastore.Topic{Name: name, ID: a.ID, Partitions: int32(len(a.Replicas)), Configs: cfgs, Assignment: a.Replicas}
	if len(a.Replicas) > 0 {
		mt.ReplicationFactor = int16(len(a.Replicas[0]))
	}
	return mt, nil
}

// TopicConfigs reads a topic's configs from ZooKeeper.
func (m *Member) TopicConfigs(name string) (map[string]string, error) { return m.zk.TopicConfigs(name) }

// CreateTopic creates a topic in ZooKeeper (the controller then creates
// the partition states and tells the replicas) and returns it as stored,
// without its assignment. It fails with a *NotEnoughBrokersError,
// metastore.ErrTopicExists or the store's error.
func (m *Member) CreateTopic(name string, partitions int32, rf int16, configs map[string]string) (metastore.Topic, error) {
	ids, err := m.zk.LiveBrokerIDs()
	if err != nil {
		return metastore.Topic{}, err
	}
	if int(rf) > len(ids) {
		return metastore.Topic{}, &NotEnoughBrokersError{ReplicationFactor: rf, Live: len(ids)}
	}
	mt := metastore.Topic{Name: name, ID: metastore.NewTopicID(), Partitions: partitions, ReplicationFactor: rf, Configs: maps.Clone(configs)}
	if err := m.zk.CreateTopic(mt); err != nil {
		return metastore.Topic{}, err
	}
	mt.Assignment = nil
	m.log.Info("created topic", "topic", name, "partitions", partitions, "replication_factor", rf, "configs", configs)
	return mt, nil
}

// DeleteTopic marks a topic for deletion; the controller deletes the
// replicas (StopReplica) and the znodes.
func (m *Member) DeleteTopic(name string) error { return m.zk.DeleteTopic(name) }

// AddPartitions grows a topic to count partitions in ZooKeeper (assigned
// round-robin over the live brokers); the controller starts them.
func (m *Member) AddPartitions(name string, count int32) error {
	return m.zk.SetPartitionCount(name, count)
}

// DeletedTopics returns the candidates ZooKeeper confirms deleted: no
// assignment znode, or one with another id (deleted and created again). A
// topic still there under the same id was only missing from one metadata
// update.
func (m *Member) DeletedTopics(candidates map[string]metastore.TopicID) []string {
	var deleted []string
	for name, id := range candidates {
		a, err := m.zk.Assignment(name)
		switch {
		case errors.Is(err, metastore.ErrUnknownTopic), err == nil && a.ID != id:
			deleted = append(deleted, name)
		case err != nil:
			m.log.Warn("cannot tell whether a topic was deleted; its groups keep their offsets", "topic", name, "err", err)
		}
	}
	return deleted
}
