package engine

import (
	"math"
	"time"
)

// Config is one log's settings, with Apache Kafka's topic-config meaning.
// The server converts topic configs (segment.bytes, retention.ms, …) into it.
type Config struct {
	SegmentBytes       int64         // segment.bytes
	SegmentTime        time.Duration // segment.ms
	SegmentJitter      time.Duration // segment.jitter.ms
	SegmentIndexBytes  int           // segment.index.bytes
	IndexIntervalBytes int           // index.interval.bytes
	MaxMessageBytes    int           // max.message.bytes
	RetentionTime      time.Duration // retention.ms; < 0 = unlimited
	RetentionBytes     int64         // retention.bytes; < 0 = unlimited
	Compact            bool          // cleanup.policy contains compact
	Delete             bool          // cleanup.policy contains delete
	MaxCompactionLag   time.Duration // max.compaction.lag.ms
	LogAppendTime      bool          // message.timestamp.type=LogAppendTime
	// TimestampBeforeMaxMs and TimestampAfterMaxMs are
	// message.timestamp.before.max.ms and message.timestamp.after.max.ms:
	// how far a CreateTime record's timestamp may lie before or after the
	// broker's time (math.MaxInt64 = unchecked).
	TimestampBeforeMaxMs int64
	TimestampAfterMaxMs  int64
	FlushMessages        int64         // flush.messages; <= 0 or MaxInt64 = never
	FlushInterval        time.Duration // flush.ms; <= 0 = never
	FileDeleteDelay      time.Duration // file.delete.delay.ms
	Preallocate          bool          // preallocate (accepted; segments are not preallocated)
	// ProducerIDExpiration is the broker's producer.id.expiration.ms: an
	// idempotent producer idle this long (and not in a transaction) is
	// forgotten; <= 0 = never.
	ProducerIDExpiration time.Duration
	KeyIndex             bool // kvlog.key.index.enable: keep a key index when Compact
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:         1 << 30,
		SegmentTime:          7 * 24 * time.Hour,
		SegmentIndexBytes:    10 << 20,
		IndexIntervalBytes:   4096,
		MaxMessageBytes:      1048588,
		RetentionTime:        7 * 24 * time.Hour,
		RetentionBytes:       -1,
		Delete:               true,
		MaxCompactionLag:     time.Duration(math.MaxInt64),
		FlushMessages:        math.MaxInt64,
		TimestampBeforeMaxMs: math.MaxInt64,
		TimestampAfterMaxMs:  math.MaxInt64,
		FlushInterval:        time.Duration(math.MaxInt64),
		FileDeleteDelay:      time.Minute,
		ProducerIDExpiration: 24 * time.Hour,
		KeyIndex:             true,
	}
}

// rollTime is segment.ms, capped by max.compaction.lag.ms on compacted logs so
// the active segment becomes cleanable in time.
func (c Config) rollTime() time.Duration {
	t := c.SegmentTime
	if c.Compact && c.MaxCompactionLag > 0 && c.MaxCompactionLag < t {
		t = c.MaxCompactionLag
	}
	return t - c.SegmentJitter
}

func (c Config) indexBytes() int {
	if c.SegmentIndexBytes < 8*4 {
		return 8 * 4
	}
	return c.SegmentIndexBytes
}

func (c Config) flushEvery() int64 {
	if c.FlushMessages <= 0 {
		return math.MaxInt64
	}
	return c.FlushMessages
}
