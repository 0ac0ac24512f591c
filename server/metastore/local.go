package metastore

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// LocalFileName is the file Local keeps its state in, inside its directory.
const LocalFileName = "kvlog-metadata.json"

// producerIDBlock is how many producer ids Local reserves per durable write.
// A restart skips the rest of the current block, as Kafka's
// /latest_producer_id_block does.
const producerIDBlock = 1000

// localState is the persisted document.
type localState struct {
	Version          int                          `json:"version"`
	ClusterID        string                       `json:"cluster_id"`
	Topics           map[string]*Topic            `json:"topics"`
	PendingDeletions map[string]*Topic            `json:"pending_deletions,omitempty"`
	BrokerConfigs    map[string]map[string]string `json:"broker_configs,omitempty"`
	ProducerIDBlock  int64                        `json:"producer_id_block_end"`
}

// Local is the embedded metadata store: a JSON document rewritten
// atomically (temp file, fsync, rename, directory fsync) on every change.
type Local struct {
	mu      sync.Mutex
	path    string
	state   localState
	nextPID int64 // next producer id to hand out; < state.ProducerIDBlock
	closed  bool
}

var _ Store = (*Local)(nil)

// OpenLocal opens (or creates) the store in dir. clusterID, if not empty,
// is used for a new store; an existing store keeps its own.
func OpenLocal(dir, clusterID string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l := &Local{path: filepath.Join(dir, LocalFileName)}
	b, err := os.ReadFile(l.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if clusterID == "" {
			clusterID = newClusterID()
		}
		l.state = localState{Version: 1, ClusterID: clusterID, Topics: map[string]*Topic{}}
		if err := l.persist(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &l.state); err != nil {
			return nil, fmt.Errorf("metastore: %s: %w", l.path, err)
		}
		if l.state.Version != 1 {
			return nil, fmt.Errorf("metastore: %s: unsupported version %d", l.path, l.state.Version)
		}
		if l.state.Topics == nil {
			l.state.Topics = map[string]*Topic{}
		}
	}
	l.nextPID = l.state.ProducerIDBlock
	return l, nil
}

// newClusterID returns a Kafka-style cluster id: a random UUID in
// unpadded URL-safe base64.
func newClusterID() string {
	var id [16]byte
	rand.Read(id[:])
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// NewTopicID returns a random, non-zero topic id.
func NewTopicID() TopicID {
	var id TopicID
	rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // variant
	return id
}

// persist writes the state durably. Caller holds mu (or owns l).
func (l *Local) persist() error {
	b, err := json.MarshalIndent(&l.state, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(l.path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// mutate applies fn to the state and persists it, restoring the previous
// state if persisting fails.
func (l *Local) mutate(fn func(s *localState) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	prev := cloneState(&l.state)
	if err := fn(&l.state); err != nil {
		return err
	}
	if err := l.persist(); err != nil {
		l.state = prev
		return err
	}
	return nil
}

func cloneTopic(t *Topic) Topic {
	c := *t
	c.Configs = maps.Clone(t.Configs)
	return c
}

func cloneState(s *localState) localState {
	c := *s
	c.Topics = make(map[string]*Topic, len(s.Topics))
	for k, t := range s.Topics {
		tc := cloneTopic(t)
		c.Topics[k] = &tc
	}
	if s.PendingDeletions != nil {
		c.PendingDeletions = make(map[string]*Topic, len(s.PendingDeletions))
		for k, t := range s.PendingDeletions {
			tc := cloneTopic(t)
			c.PendingDeletions[k] = &tc
		}
	}
	if s.BrokerConfigs != nil {
		c.BrokerConfigs = make(map[string]map[string]string, len(s.BrokerConfigs))
		for k, m := range s.BrokerConfigs {
			c.BrokerConfigs[k] = maps.Clone(m)
		}
	}
	return c
}

func (l *Local) ClusterID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.ClusterID
}

func sortedTopics(m map[string]*Topic) []Topic {
	out := make([]Topic, 0, len(m))
	for _, t := range m {
		out = append(out, cloneTopic(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (l *Local) Topics() []Topic {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sortedTopics(l.state.Topics)
}

func (l *Local) CreateTopic(t Topic) error {
	return l.mutate(func(s *localState) error {
		if _, ok := s.Topics[t.Name]; ok {
			return ErrTopicExists
		}
		if _, ok := s.PendingDeletions[t.Name]; ok {
			return ErrTopicExists
		}
		tc := cloneTopic(&t)
		s.Topics[t.Name] = &tc
		return nil
	})
}

func (l *Local) DeleteTopic(name string) error {
	return l.mutate(func(s *localState) error {
		t, ok := s.Topics[name]
		if !ok {
			return ErrUnknownTopic
		}
		delete(s.Topics, name)
		if s.PendingDeletions == nil {
			s.PendingDeletions = map[string]*Topic{}
		}
		s.PendingDeletions[name] = t
		return nil
	})
}

func (l *Local) PendingDeletions() []Topic {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sortedTopics(l.state.PendingDeletions)
}

func (l *Local) DeletionDone(name string) error {
	return l.mutate(func(s *localState) error {
		delete(s.PendingDeletions, name)
		return nil
	})
}

func (l *Local) SetTopicConfigs(name string, configs map[string]string) error {
	return l.mutate(func(s *localState) error {
		t, ok := s.Topics[name]
		if !ok {
			return ErrUnknownTopic
		}
		t.Configs = maps.Clone(configs)
		return nil
	})
}

func (l *Local) SetPartitionCount(name string, partitions int32) error {
	return l.mutate(func(s *localState) error {
		t, ok := s.Topics[name]
		if !ok {
			return ErrUnknownTopic
		}
		if partitions < t.Partitions {
			return fmt.Errorf("%w: topic %s has %d partitions, asked for %d", ErrPartitionCount, name, t.Partitions, partitions)
		}
		t.Partitions = partitions
		return nil
	})
}

func (l *Local) BrokerConfigs(resource string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.state.BrokerConfigs[resource])
}

func (l *Local) SetBrokerConfigs(resource string, configs map[string]string) error {
	return l.mutate(func(s *localState) error {
		if s.BrokerConfigs == nil {
			s.BrokerConfigs = map[string]map[string]string{}
		}
		if len(configs) == 0 {
			delete(s.BrokerConfigs, resource)
		} else {
			s.BrokerConfigs[resource] = maps.Clone(configs)
		}
		return nil
	})
}

func (l *Local) NextProducerID() (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.nextPID >= l.state.ProducerIDBlock {
		prev := l.state.ProducerIDBlock
		l.state.ProducerIDBlock = l.nextPID + producerIDBlock
		if err := l.persist(); err != nil {
			l.state.ProducerIDBlock = prev
			return 0, err
		}
	}
	id := l.nextPID
	l.nextPID++
	return id, nil
}

func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}
