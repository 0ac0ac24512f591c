// Package metastore keeps the cluster metadata the broker must not lose:
// topics (id, partition count, replication factor, config overrides),
// dynamic broker configs, producer-id allocation and the cluster id.
//
// Store is the seam between the broker and where that metadata lives. Local
// is the embedded single-node implementation: a JSON file in the first data
// directory, written as checksummed generations with the previous one kept
// as a fallback (FORMAT.md in this directory describes the files); the
// ZooKeeper implementation (Kafka's ZooKeeper-era layout) is package
// zkstore. Every mutating call is durable when it returns.
package metastore

import (
	"errors"
)

// Errors returned by Store implementations.
var (
	ErrTopicExists  = errors.New("metastore: topic already exists")
	ErrUnknownTopic = errors.New("metastore: unknown topic")
	// ErrPartitionCount: a topic's partition count can only grow.
	ErrPartitionCount = errors.New("metastore: partition count cannot decrease")
	ErrClosed         = errors.New("metastore: closed")
)

// TopicID is a Kafka topic id (a UUID).
type TopicID [16]byte

// Topic is one topic's durable metadata. Configs holds only the topic's
// overrides (DYNAMIC_TOPIC_CONFIG), never resolved defaults.
type Topic struct {
	Name              string            `json:"name"`
	ID                TopicID           `json:"id"`
	Partitions        int32             `json:"partitions"`
	ReplicationFactor int16             `json:"replication_factor"`
	Configs           map[string]string `json:"configs,omitempty"`
	// Assignment is each partition's replicas, preferred leader first
	// (ZooKeeper mode; nil in the single-node store and, on creation,
	// "assign round-robin over the live brokers").
	Assignment [][]int32 `json:"assignment,omitempty"`
}

// Store is the metadata store. Implementations are safe for concurrent use.
// Returned values are copies the caller may keep and modify.
type Store interface {
	// ClusterID is the cluster's id, fixed at first start.
	ClusterID() string
	// Topics lists every live topic.
	Topics() []Topic
	// CreateTopic records a new topic; ErrTopicExists if the name is taken
	// or still pending deletion.
	CreateTopic(t Topic) error
	// DeleteTopic removes a live topic and records it as pending deletion
	// until DeletionDone; ErrUnknownTopic if it does not exist. It must
	// succeed on a full disk when at all possible: deleting a topic is how
	// an operator frees space.
	DeleteTopic(name string) error
	// PendingDeletions lists topics deleted whose logs may still exist.
	PendingDeletions() []Topic
	// DeletionDone forgets a pending deletion once its logs are gone.
	DeletionDone(name string) error
	// SetTopicConfigs replaces a topic's config overrides.
	SetTopicConfigs(name string, configs map[string]string) error
	// SetPartitionCount raises a live topic's partition count
	// (CreatePartitions). The same count again is a no-op; a lower one is
	// ErrPartitionCount; ErrUnknownTopic if the topic does not exist.
	SetPartitionCount(name string, partitions int32) error
	// BrokerConfigs returns the dynamic broker configs of a resource:
	// "" is the cluster-wide default, a broker id string one broker.
	BrokerConfigs(resource string) map[string]string
	// SetBrokerConfigs replaces the dynamic broker configs of a resource.
	SetBrokerConfigs(resource string, configs map[string]string) error
	// NextProducerID hands out a producer id never handed out before, even
	// across restarts.
	NextProducerID() (int64, error)
	// Close releases the store.
	Close() error
}

// ScramStore keeps users' SCRAM credentials, one per user and mechanism
// (SCRAM-SHA-256, SCRAM-SHA-512), each in Kafka's stored form
// (salt=…,stored_key=…,server_key=…,iterations=…). Local and the ZooKeeper
// store (/config/users/<user>, as Kafka's ZooKeeper mode) implement it.
type ScramStore interface {
	// ScramCredential is one user's credential for a mechanism.
	ScramCredential(user, mechanism string) (cred string, ok bool, err error)
	// ScramCredentials are one user's credentials by mechanism (empty if
	// none).
	ScramCredentials(user string) (map[string]string, error)
	// ScramUsers lists the users with at least one credential, sorted.
	ScramUsers() ([]string, error)
	// SetScramCredentials replaces one user's credentials by mechanism;
	// an empty map removes them all.
	SetScramCredentials(user string, creds map[string]string) error
}
