package group

import (
	"errors"
	"time"
)

// Config is the coordinator's configuration, from the broker's group and
// offsets keys.
type Config struct {
	// Partitions is the number of __consumer_offsets partitions: the
	// existing topic's count, else offsets.topic.num.partitions.
	Partitions int32
	// MinSessionTimeout and MaxSessionTimeout bound what a member may ask
	// for (group.min/max.session.timeout.ms).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// InitialRebalanceDelay delays the first rebalance of an empty group so
	// that members starting together land in one generation
	// (group.initial.rebalance.delay.ms).
	InitialRebalanceDelay time.Duration
	// MaxSize is group.max.size.
	MaxSize int
	// OffsetsRetention is how long offsets of an empty group (or of a
	// group that only stores offsets) are kept (offsets.retention.minutes).
	OffsetsRetention time.Duration
	// OffsetsRetentionCheckInterval is how often expired offsets are
	// removed (offsets.retention.check.interval.ms).
	OffsetsRetentionCheckInterval time.Duration
	// MaxMetadataSize bounds a committed offset's metadata string
	// (offset.metadata.max.bytes).
	MaxMetadataSize int
	// NewMemberJoinTimeout is how long a member that joined for the first
	// time is kept while it waits for the rebalance (Kafka: 5 minutes).
	NewMemberJoinTimeout time.Duration
}

// DefaultConfig has Apache Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		Partitions:                    50,
		MinSessionTimeout:             6 * time.Second,
		MaxSessionTimeout:             30 * time.Minute,
		InitialRebalanceDelay:         3 * time.Second,
		MaxSize:                       1<<31 - 1,
		OffsetsRetention:              7 * 24 * time.Hour,
		OffsetsRetentionCheckInterval: 10 * time.Minute,
		MaxMetadataSize:               4096,
		NewMemberJoinTimeout:          5 * time.Minute,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Partitions <= 0:
		return errors.New("group: Partitions must be positive")
	case c.MaxSize <= 0:
		return errors.New("group: MaxSize must be positive")
	case c.OffsetsRetentionCheckInterval <= 0:
		return errors.New("group: OffsetsRetentionCheckInterval must be positive")
	case c.NewMemberJoinTimeout <= 0:
		return errors.New("group: NewMemberJoinTimeout must be positive")
	}
	return nil
}
