package server

import (
	"fmt"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/vfs"
)

// The log cleaner's wiring (package cleaner does the compaction): one
// cleaner.Manager per broker over the engine's logs, configured from the
// log.cleaner.* keys (config.Layers.Cleaner; static and dynamic broker
// configs: refreshLayers applies a change live), reading each partition's topic-level settings
// (min.cleanable.dirty.ratio, delete.retention.ms, min.compaction.lag.ms)
// from the topic snapshot at every planning round; cleanup.policy,
// segment.ms, segment.bytes and max.compaction.lag.ms reach it through the
// logs' engine.Config. Every compacted log is cleaned, __consumer_offsets
// included. Deleting a log (topic deletion, StopReplica, stray logs) and
// truncating one (a follower diverging from its leader) keep the cleaner
// away from it (AbortAndPause … Resume / Forget). Its JSON status is
// /cleaner on the HTTP listener; its metrics are on the broker's registry.
//
// Lock order: Server.topicMu → cleaner.Manager's lock (UpdateConfig,
// AbortAndPause under topicMu); the cleaner calls back into the server only
// for cleanerTopicConfig, which reads the atomic snapshots and takes no
// lock.

// newCleaner creates the broker's cleaner (not started: Start does).
func (s *Server) newCleaner(fs vfs.FS) error {
	cfg := s.layers.Load().Cleaner()
	c, err := cleaner.New(cleaner.Options{
		Engine:      s.mgr,
		Config:      &cfg,
		TopicConfig: s.cleanerTopicConfig,
		FS:          fs,
		Clock:       s.clock,
		Logger:      s.logger,
		Registry:    s.registry,
	})
	if err != nil {
		return fmt.Errorf("log cleaner: %w", err)
	}
	s.cleaner = c
	return nil
}

// cleanerTopicConfig is the cleaner's TopicConfigFunc: the partition's
// topic settings from the current snapshot (so AlterConfigs and
// IncrementalAlterConfigs apply at the next pass), the broker defaults for
// a log the snapshot does not know (yet).
func (s *Server) cleanerTopicConfig(tp engine.TopicPartition, _ engine.Config) cleaner.TopicConfig {
	if snap := s.topics.Load(); snap != nil {
		if t := snap.byName[tp.Topic]; t != nil {
			return t.settings.Cleaner
		}
	}
	return s.layers.Load().CleanerTopic(nil)
}

// applyCleanerConfig hands a changed log.cleaner.* configuration to the
// running cleaner (threads, dedupe buffer, throttle and backoff change
// live). Called after every change of the config layers.
func (s *Server) applyCleanerConfig() {
	if s.cleaner == nil {
		return
	}
	next := s.layers.Load().Cleaner()
	if next == s.cleaner.Config() {
		return
	}
	if err := s.cleaner.UpdateConfig(next); err != nil {
		s.logger.Error("log cleaner config not applied", "err", err)
	}
}

// deleteLog deletes a partition's log with the cleaner kept away: a
// running pass is aborted and waited for first, and the cleaner forgets the
// partition (state and checkpoint entry) once the log is gone.
func (s *Server) deleteLog(tp engine.TopicPartition) error {
	if s.cleaner == nil {
		return s.mgr.DeleteLog(tp)
	}
	s.cleaner.AbortAndPause(tp)
	if err := s.mgr.DeleteLog(tp); err != nil {
		s.cleaner.Resume(tp)
		return err
	}
	s.cleaner.Forget(tp)
	return nil
}

// aroundTruncate is replica.Options.AroundTruncate for l: the cleaner is
// paused (a running pass aborted and waited for) while the log is
// truncated, and its checkpoint lowered to the new log end, so records
// appended again count as dirty (Kafka's LogManager.truncateTo).
func (s *Server) aroundTruncate(l *engine.Log) func(truncate func() error) error {
	return func(truncate func() error) error {
		if s.cleaner == nil {
			return truncate()
		}
		tp := l.TopicPartition()
		s.cleaner.AbortAndPause(tp)
		defer s.cleaner.Resume(tp)
		err := truncate()
		s.cleaner.AfterTruncate(tp, l.LogEndOffset())
		return err
	}
}
