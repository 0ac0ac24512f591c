package txn

import (
	"errors"
	"time"
)

// Config is the coordinator's configuration, from the broker's
// transaction keys.
type Config struct {
	// Partitions is the number of __transaction_state partitions: the
	// existing topic's count, else transaction.state.log.num.partitions.
	Partitions int32
	// MaxTimeout bounds the timeout a producer may ask for
	// (transaction.max.timeout.ms).
	MaxTimeout time.Duration
	// IDExpiration is how long a transactional id without a transaction
	// in progress is kept after its last update
	// (transactional.id.expiration.ms).
	IDExpiration time.Duration
	// AbortTimedOutInterval is how often transactions running past their
	// timeout are looked for and aborted
	// (transaction.abort.timed.out.transaction.cleanup.interval.ms).
	AbortTimedOutInterval time.Duration
	// RemoveExpiredInterval is how often expired transactional ids are
	// removed (transaction.remove.expired.transaction.cleanup.interval.ms).
	RemoveExpiredInterval time.Duration
	// MarkerRetryBackoff is the wait before markers a partition did not
	// take (no leader, not enough replicas) are sent again, and before a
	// failed completion record is written again.
	MarkerRetryBackoff time.Duration
}

// DefaultConfig has Apache Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		Partitions:            50,
		MaxTimeout:            15 * time.Minute,
		IDExpiration:          7 * 24 * time.Hour,
		AbortTimedOutInterval: 10 * time.Second,
		RemoveExpiredInterval: time.Hour,
		MarkerRetryBackoff:    100 * time.Millisecond,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Partitions <= 0:
		return errors.New("txn: Partitions must be positive")
	case c.MaxTimeout <= 0:
		return errors.New("txn: MaxTimeout must be positive")
	case c.IDExpiration <= 0:
		return errors.New("txn: IDExpiration must be positive")
	case c.AbortTimedOutInterval <= 0 || c.RemoveExpiredInterval <= 0:
		return errors.New("txn: cleanup intervals must be positive")
	case c.MarkerRetryBackoff <= 0:
		return errors.New("txn: MarkerRetryBackoff must be positive")
	}
	return nil
}
