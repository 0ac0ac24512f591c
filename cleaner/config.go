package cleaner

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
	"github.com/kvlog/kvlog/engine"
)

// Config is the broker-wide cleaner configuration, Apache Kafka's
// log.cleaner.* settings. Every field can change at run time (UpdateConfig).
type Config struct {
	// Enable is log.cleaner.enable: when false, threads idle.
	Enable bool
	// Threads is log.cleaner.threads.
	Threads int
	// DedupeBufferSize is log.cleaner.dedupe.buffer.size: the total memory of
	// the offset maps, split evenly across threads. A pass whose map fills
	// also keeps its dirty records' digests, in an array at most the size
	// of its thread's map, or 32 MiB for smaller maps (see doc.go, "A
	// pass"), released with the map.
	DedupeBufferSize int64
	// LoadFactor is log.cleaner.io.buffer.load.factor: how full an offset map
	// may get. A dirty section with more keys is mapped one key range at a
	// time (see doc.go, "A pass").
	LoadFactor float64
	// IOMaxBytesPerSecond is log.cleaner.io.max.bytes.per.second: one throttle
	// shared by all threads, counting bytes read and written. +Inf or <= 0:
	// unlimited.
	IOMaxBytesPerSecond float64
	// Backoff is log.cleaner.backoff.ms: how long an idle thread sleeps.
	Backoff time.Duration
	// MinCleanableRatio is log.cleaner.min.cleanable.ratio, the default of
	// min.cleanable.dirty.ratio.
	MinCleanableRatio float64
	// DeleteRetention is log.cleaner.delete.retention.ms, the default of
	// delete.retention.ms.
	DeleteRetention time.Duration
	// MinCompactionLag is log.cleaner.min.compaction.lag.ms, the default of
	// min.compaction.lag.ms.
	MinCompactionLag time.Duration
	// BoundedTombstones is kvlog's answer to tombstones that Kafka keeps
	// forever on quiet partitions: a partition is also cleaned (whatever its
	// dirty ratio) when a tombstone it holds has passed its delete horizon,
	// or when its cleanable dirty section holds records older than
	// delete.retention.ms (so a tombstone gets its horizon stamped). With
	// rolls of idle active segments (segment.ms, capped by
	// max.compaction.lag.ms) a tombstone then lives at most about
	// roll time + 2 × delete.retention.ms + backoff. False: Kafka's rules only.
	BoundedTombstones bool
	// IdleRoll is kvlog.cleaner.idle.roll.ms: a compacted log whose active
	// segment holds data but has had no append for this long has it
	// rolled, when the log would then be due by its dirty ratio with the
	// rolled segment cleanable (IdleRollDue), and is cleaned as usual; a
	// changelog written and then left quiet is compacted at default topic
	// configs (Kafka never cleans its active segment). 0 disables it;
	// at most MaxIdleRoll.
	IdleRoll time.Duration
}

// DefaultIdleRoll is Config.IdleRoll's default, half a minute: far longer
// than the gaps between the batches of a partition being written (a
// producer's linger, a retry's backoff), so a steadily written
// partition keeps Kafka's segments, and short enough that a changelog left
// quiet is compacted within a minute of its last write (the threads wake
// for the roll: log.cleaner.backoff.ms does not add to it), before a
// restore that follows a stop of the application writing it.
const DefaultIdleRoll = 30 * time.Second

// MaxIdleRoll bounds Config.IdleRoll: segment.ms's default, after which the
// age rule (Log.RollIfIdle) rolls an idle active segment anyway.
const MaxIdleRoll = 7 * 24 * time.Hour

// DefaultConfig returns Kafka's defaults (and kvlog's bounded tombstones
// and idle rolls).
func DefaultConfig() Config {
	return Config{
		Enable:              true,
		Threads:             1,
		DedupeBufferSize:    128 << 20,
		LoadFactor:          0.9,
		IOMaxBytesPerSecond: math.Inf(1),
		Backoff:             15 * time.Second,
		MinCleanableRatio:   0.5,
		DeleteRetention:     24 * time.Hour,
		MinCompactionLag:    0,
		BoundedTombstones:   true,
		IdleRoll:            DefaultIdleRoll,
	}
}

// Validate reports settings the cleaner cannot run with.
func (c Config) Validate() error {
	switch {
	case c.Threads < 1:
		return fmt.Errorf("cleaner: log.cleaner.threads %d < 1", c.Threads)
	case c.LoadFactor <= 0 || c.LoadFactor > 1:
		return fmt.Errorf("cleaner: log.cleaner.io.buffer.load.factor %v not in (0, 1]", c.LoadFactor)
	case float64(c.DedupeBufferSize/int64(c.Threads)/EntrySize)*c.LoadFactor < 1:
		return fmt.Errorf("cleaner: log.cleaner.dedupe.buffer.size %d gives each of %d threads no room for a key", c.DedupeBufferSize, c.Threads)
	case c.mapBytes() > MaxMapBytes:
		return fmt.Errorf("cleaner: log.cleaner.dedupe.buffer.size %d gives each of %d threads %d bytes; at most %d (2 GiB) per thread", c.DedupeBufferSize, c.Threads, c.mapBytes(), int64(MaxMapBytes))
	case c.Backoff < 0:
		return fmt.Errorf("cleaner: log.cleaner.backoff.ms %v < 0", c.Backoff)
	case c.MinCleanableRatio < 0 || c.MinCleanableRatio > 1:
		return fmt.Errorf("cleaner: log.cleaner.min.cleanable.ratio %v not in [0, 1]", c.MinCleanableRatio)
	case c.DeleteRetention < 0 || c.MinCompactionLag < 0:
		return fmt.Errorf("cleaner: negative retention or lag")
	case c.IdleRoll < 0 || c.IdleRoll > MaxIdleRoll:
		return fmt.Errorf("cleaner: kvlog.cleaner.idle.roll.ms %v not in [0, %v]", c.IdleRoll, MaxIdleRoll)
	}
	return nil
}

// MaxMapBytes bounds one thread's offset map: Kafka's is one Java buffer,
// at most Integer.MAX_VALUE bytes.
const MaxMapBytes = math.MaxInt32

// mapBytes is each thread's offset map size.
func (c Config) mapBytes() int64 { return c.DedupeBufferSize / int64(c.Threads) }

// TopicConfig holds the per-topic settings the cleaner reads that
// engine.Config does not carry. They belong in engine.Config next to
// MaxCompactionLag (the server converts all topic configs in one place);
// until they move, the cleaner takes them from Options.TopicConfig.
type TopicConfig struct {
	MinCleanableRatio float64       // min.cleanable.dirty.ratio
	DeleteRetention   time.Duration // delete.retention.ms
	MinCompactionLag  time.Duration // min.compaction.lag.ms
}

// TopicConfigFunc returns a partition's topic-level cleaner settings; cfg is
// the log's current engine.Config. It is called at every planning round and
// every pass, so a topic config change applies to the next pass.
type TopicConfigFunc func(tp engine.TopicPartition, cfg engine.Config) TopicConfig

// defaults returns the topic config made of the broker defaults.
func (c Config) defaults() TopicConfig {
	return TopicConfig{MinCleanableRatio: c.MinCleanableRatio, DeleteRetention: c.DeleteRetention, MinCompactionLag: c.MinCompactionLag}
}

// status is c as the status document shows it (an unlimited
// IOMaxBytesPerSecond, +Inf, which JSON cannot hold, as -1).
func (c Config) status() cleanerstatus.Config {
	return cleanerstatus.Config{
		Enable: c.Enable, Threads: c.Threads, DedupeBufferSize: c.DedupeBufferSize, LoadFactor: c.LoadFactor,
		IOMaxBytesPerSecond: cleanerstatus.IORate(c.IOMaxBytesPerSecond), BackoffMs: c.Backoff.Milliseconds(),
		MinCleanableRatio: c.MinCleanableRatio, DeleteRetentionMs: c.DeleteRetention.Milliseconds(), MinCompactionLagMs: c.MinCompactionLag.Milliseconds(),
		BoundedTombstones: c.BoundedTombstones, IdleRollMs: c.IdleRoll.Milliseconds(),
	}
}

// MarshalJSON writes c as the status document's config.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.status()) }
