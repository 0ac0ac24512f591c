package server

import (
	"errors"
	"fmt"
	"maps"
	"sort"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/config"
	"github.com/kvlog/kvlog/server/metastore"
)

// topicSnapshot is an immutable view of every topic.
type topicSnapshot struct {
	byName map[string]*topic
	byID   map[metastore.TopicID]*topic
}

// topic is an immutable view of one topic; a config change builds a new
// topic sharing the same partitions.
type topic struct {
	name     string
	id       metastore.TopicID
	rf       int16
	internal bool
	parts    []*partition
	configs  map[string]string // overrides only
	settings config.TopicSettings
}

// partition is one partition of a topic. log and rep are set together
// when this broker hosts a replica of it (a single node hosts every
// partition whose log could be opened, as its leader: Server.leadAlone);
// otherwise both are nil and Server.partition does not return it. So
// "has no replica" means "not hosted here" in both modes, never "single
// node": the request paths ask role, not which mode runs.
type partition struct {
	tp  engine.TopicPartition
	log *engine.Log
	rep *replica.Partition // role, leader epoch, ISR, HW (replica.Manager)
}

// role is this broker's role for p: replica.RoleNone when it hosts no
// replica of it (p nil, or not hosted).
func (p *partition) role() replica.Role {
	if p == nil || p.rep == nil {
		return replica.RoleNone
	}
	return p.rep.Role()
}

// leadAlone hosts l as the leader of a partition whose only replica is
// this broker (a single node: every record in the log is committed once
// it is as durable as configured).
func (s *Server) leadAlone(l *engine.Log) (*partition, error) {
	rep, err := s.replicas.LeadAlone(l, leaderEpoch)
	if err != nil {
		return nil, fmt.Errorf("leading %s: %w", l.TopicPartition(), err)
	}
	return &partition{tp: l.TopicPartition(), log: l, rep: rep}, nil
}

// newTopic is a stored topic's view without partitions.
func (s *Server) newTopic(mt metastore.Topic, layers *config.Layers) *topic {
	t := &topic{
		name:     mt.Name,
		id:       mt.ID,
		rf:       mt.ReplicationFactor,
		internal: isInternalTopic(mt.Name),
		configs:  maps.Clone(mt.Configs),
	}
	if t.configs == nil {
		t.configs = map[string]string{}
	}
	config.SanitizeTopicConfigs(mt.Name, t.configs, layers, s.logger)
	t.settings = layers.TopicSettings(t.configs)
	return t
}

// openTopic builds a stored topic's view over its logs, creating missing
// ones (partitions added by a CreatePartitions that the store took but
// whose logs a crash lost). A partition whose log cannot be had is
// offline (no log); the topic is returned with every such error joined.
func (s *Server) openTopic(mt metastore.Topic, layers *config.Layers) (*topic, error) {
	t := s.newTopic(mt, layers)
	ecfg := layers.EngineConfig(t.configs)
	var errs []error
	for p := int32(0); p < mt.Partitions; p++ {
		tp := engine.TopicPartition{Topic: mt.Name, Partition: p}
		l, ok := s.mgr.Log(tp)
		if ok {
			l.SetConfig(ecfg)
		} else {
			var err error
			if l, err = s.mgr.CreateLog(tp, ecfg); err != nil {
				errs = append(errs, fmt.Errorf("creating log %s: %w", tp, err))
				t.parts = append(t.parts, &partition{tp: tp})
				continue
			}
		}
		part, err := s.leadAlone(l)
		if err != nil {
			errs = append(errs, err)
			part = &partition{tp: tp}
		}
		t.parts = append(t.parts, part)
	}
	return t, errors.Join(errs...)
}

// topic returns the named topic, or nil.
func (s *Server) topic(name string) *topic { return s.topics.Load().byName[name] }

// partition returns a topic's partition, or nil.
func (s *Server) partition(name string, p int32) *partition {
	t := s.topic(name)
	if t == nil || p < 0 || int(p) >= len(t.parts) || t.parts[p].log == nil {
		return nil
	}
	return t.parts[p]
}

// sortedTopics lists the current topics by name.
func (s *Server) sortedTopics() []*topic {
	snap := s.topics.Load()
	out := make([]*topic, 0, len(snap.byName))
	for _, t := range snap.byName {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// publishTopics installs a new snapshot built from the old one by fn.
// Caller holds topicMu.
func (s *Server) publishTopics(fn func(byName map[string]*topic)) {
	old := s.topics.Load()
	byName := maps.Clone(old.byName)
	fn(byName)
	byID := make(map[metastore.TopicID]*topic, len(byName))
	for _, t := range byName {
		byID[t.id] = t
	}
	s.topics.Store(&topicSnapshot{byName: byName, byID: byID})
	// A new topic or changed configs may make a partition due (or change
	// what the status lists): the cleaner looks now, not after its backoff.
	if s.cleaner != nil {
		s.cleaner.Wake()
	}
}
