package config

import (
	"fmt"
	"math"

	"github.com/kvlog/kvlog/cleaner"
)

// Cleaner resolves the broker-wide log cleaner configuration from the
// log.cleaner.* keys. log.cleaner.threads=0 (Kafka: no cleaner threads)
// disables cleaning.
func (l *Layers) Cleaner() cleaner.Config {
	c := cleaner.DefaultConfig()
	c.Enable = l.Bool("log.cleaner.enable")
	c.Threads = int(l.Int("log.cleaner.threads"))
	if c.Threads < 1 {
		c.Enable, c.Threads = false, 1
	}
	c.DedupeBufferSize = l.Int("log.cleaner.dedupe.buffer.size")
	c.LoadFactor = l.Float("log.cleaner.io.buffer.load.factor")
	c.IOMaxBytesPerSecond = l.Float("log.cleaner.io.max.bytes.per.second")
	if c.IOMaxBytesPerSecond >= math.MaxFloat64 { // Kafka's "unlimited"
		c.IOMaxBytesPerSecond = math.Inf(1)
	}
	c.Backoff = l.Duration("log.cleaner.backoff.ms")
	c.MinCleanableRatio = l.Float("log.cleaner.min.cleanable.ratio")
	c.DeleteRetention = l.Duration("log.cleaner.delete.retention.ms")
	c.MinCompactionLag = l.Duration("log.cleaner.min.compaction.lag.ms")
	c.BoundedTombstones = l.Bool("kvlog.cleaner.bounded.tombstones")
	c.IdleRoll = l.Duration("kvlog.cleaner.idle.roll.ms")
	return c
}

// CleanerTopic resolves the topic-level settings the cleaner reads beside
// engine.Config.
func (l *Layers) CleanerTopic(overrides map[string]string) cleaner.TopicConfig {
	return cleaner.TopicConfig{
		MinCleanableRatio: l.TopicFloat("min.cleanable.dirty.ratio", overrides),
		DeleteRetention:   l.TopicDuration("delete.retention.ms", overrides),
		MinCompactionLag:  l.TopicDuration("min.compaction.lag.ms", overrides),
	}
}

// CheckCleanerReconfig validates a dynamic change of the cleaner's keys
// (next replacing cur) as Kafka's LogCleaner.validateReconfiguration does:
// at least one thread, and the thread count at most halved or doubled at a
// time; plus what the cleaner itself cannot run with (a dedupe buffer with
// no room for a key per thread).
func CheckCleanerReconfig(cur, next *Layers) error {
	curThreads := cur.Int("log.cleaner.threads")
	threads := next.Int("log.cleaner.threads")
	if threads != curThreads {
		switch {
		case threads < 1:
			return fmt.Errorf("log.cleaner.threads should be at least 1")
		case threads < curThreads/2:
			return fmt.Errorf("log.cleaner.threads cannot be reduced to less than half the current value %d", curThreads)
		case threads > curThreads*2:
			return fmt.Errorf("log.cleaner.threads cannot be increased to more than double the current value %d", curThreads)
		}
	}
	return next.Cleaner().Validate()
}
