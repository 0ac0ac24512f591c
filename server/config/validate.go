package config

import (
	"fmt"
	"time"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/engine"
)

// ValidateBroker checks the rules across broker keys. The static file
// (Parse), dynamic broker configs (AlterConfigs and
// IncrementalAlterConfigs, the server's checkBrokerConfigs) and dynamic configs read back
// from the metadata store at start-up (Sanitize) all go through it,
// after each value passed its key's own check (Def.Validate). The
// bounds are Apache Kafka's (ZooKeeper-era, 3.x) where Kafka has them, plus
// those that keep one setting from exhausting the machine:
//
//   - topic defaults form a valid topic configuration;
//   - the log cleaner can run with its keys: at least room for one key per
//     thread's offset map, and at most 2 GiB per thread (Kafka's offset map
//     is one Java buffer, at most Integer.MAX_VALUE bytes);
//   - log.cleaner.dedupe.buffer.size at most half the machine's memory
//     (kvlog's: the offset maps are allocated and touched when the cleaner
//     threads start, as Kafka does, so a larger value can only end with the
//     process killed for lack of memory);
//   - the effective log retention is unlimited (negative) or at least 1 ms;
//   - replica.fetch.wait.max.ms at most replica.socket.timeout.ms and
//     replica.lag.time.max.ms;
//   - queued.max.request.bytes unbounded (<= 0) or at least
//     socket.request.max.bytes;
//   - kvlog.max.open.files derived (0) or between 64 and the process's
//     open file limit (RLIMIT_NOFILE): a budget above the limit would let
//     the engine run into EMFILE instead of closing cold segments.
//
// Unlike Kafka, kvlog does not require 1 MiB of offset map per cleaner
// thread: its cleaner maps a dirty section one key range at a time, so a
// small map is slow, not wrong.
func (l *Layers) ValidateBroker() error {
	if err := l.ValidateTopicConfigs(nil); err != nil {
		return err
	}
	get := l.Int
	cc := l.Cleaner()
	if err := cc.Validate(); err != nil {
		return err
	}
	if limit := machineMemory() / 2; limit > 0 && cc.DedupeBufferSize > limit {
		return fmt.Errorf("log.cleaner.dedupe.buffer.size %d is more than half of this machine's memory (%d bytes)", cc.DedupeBufferSize, limit)
	}
	if ms := l.TopicInt("retention.ms", nil); ms == 0 {
		return fmt.Errorf("log.retention.ms must be unlimited (-1) or, greater than or equal to 1")
	}
	wait := get("replica.fetch.wait.max.ms")
	if wait > get("replica.socket.timeout.ms") {
		return fmt.Errorf("replica.socket.timeout.ms should always be at least replica.fetch.wait.max.ms to prevent unnecessary socket timeouts")
	}
	if wait > get("replica.lag.time.max.ms") {
		return fmt.Errorf("replica.fetch.wait.max.ms should always be less than or equal to replica.lag.time.max.ms to prevent frequent changes in ISR")
	}
	if q := get("queued.max.request.bytes"); q > 0 && q < get("socket.request.max.bytes") {
		return fmt.Errorf("queued.max.request.bytes must be larger or equal to socket.request.max.bytes")
	}
	if f := get("kvlog.max.open.files"); f > 0 {
		if f < minOpenFiles {
			return fmt.Errorf("kvlog.max.open.files %d is below %d (0 derives it from the open file limit)", f, minOpenFiles)
		}
		if limit := engine.RlimitNofile(); limit > 0 && f > limit {
			return fmt.Errorf("kvlog.max.open.files %d is above this process's open file limit (RLIMIT_NOFILE) %d", f, limit)
		}
	}
	return nil
}

// Bounds of kvlog.max.open.files: a few segments' worth at least, and no
// more than a process could ever open.
const (
	minOpenFiles      = 64
	maxOpenFilesBound = 1 << 30
)

// maxCleanerThreads bounds log.cleaner.threads (kvlog's bound; Kafka has
// none): each thread is a goroutine with its own offset map, and a few per
// core already keep the disks busy.
const maxCleanerThreads = 1024

// maxIdleRollMs bounds kvlog.cleaner.idle.roll.ms (cleaner.MaxIdleRoll):
// segment.ms's default, after which an idle active segment is rolled by
// its age anyway.
const maxIdleRollMs = int64(cleaner.MaxIdleRoll / time.Millisecond)
