package engine

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kvlog/kvlog/engine/checkpoint"
)

// On-disk names. Every file name the engine reads or writes is spelled here.
const (
	LogSuffix       = ".log"
	IndexSuffix     = ".index"
	TimeIndexSuffix = ".timeindex"
	SnapshotSuffix  = ".snapshot"
	TxnIndexSuffix  = ".txnindex"
	CleanedSuffix   = ".cleaned"
	SwapSuffix      = ".swap"
	DeletedSuffix   = ".deleted"

	LeaderEpochCheckpointFile   = "leader-epoch-checkpoint"
	PartitionMetadataFile       = "partition.metadata"
	RecoveryPointCheckpointFile = "recovery-point-offset-checkpoint"
	LogStartCheckpointFile      = "log-start-offset-checkpoint"
	CleanerCheckpointFile       = "cleaner-offset-checkpoint"
	CleanShutdownFile           = ".kafka_cleanshutdown"
	LockFile                    = ".lock" // flock(2)ed by the process owning the log dir
	MetaPropertiesFile          = "meta.properties"
	KeyIndexFile                = "kvlog-key-index.checkpoint" // per partition, FORMAT.md §8
	SyncedTailCheckpointFile    = checkpoint.SyncedTailsFile   // log dir, FORMAT.md §5

	// DeleteDirSuffix marks a partition directory scheduled for removal.
	DeleteDirSuffix = "-delete"
)

// TopicPartition names a partition.
type TopicPartition = checkpoint.TopicPartition

// offsetFileName is Kafka's 20-digit zero-padded base offset.
func offsetFileName(base Offset) string { return fmt.Sprintf("%020d", int64(base)) }

// LogFileName returns the path of a segment's .log file.
func LogFileName(dir string, base Offset) string {
	return filepath.Join(dir, offsetFileName(base)+LogSuffix)
}

// IndexFileName returns the path of a segment's offset index.
func IndexFileName(dir string, base Offset) string {
	return filepath.Join(dir, offsetFileName(base)+IndexSuffix)
}

// TimeIndexFileName returns the path of a segment's time index.
func TimeIndexFileName(dir string, base Offset) string {
	return filepath.Join(dir, offsetFileName(base)+TimeIndexSuffix)
}

// KeyIndexFileName returns the path of a partition's key-index checkpoint.
func KeyIndexFileName(dir string) string { return filepath.Join(dir, KeyIndexFile) }

// TxnIndexFileName returns the path of a segment's aborted-transaction index.
func TxnIndexFileName(dir string, base Offset) string {
	return filepath.Join(dir, offsetFileName(base)+TxnIndexSuffix)
}

// SnapshotFileName returns the path of a producer-state snapshot taken at offset.
func SnapshotFileName(dir string, offset Offset) string {
	return filepath.Join(dir, offsetFileName(offset)+SnapshotSuffix)
}

// PartitionDirName is "<topic>-<partition>".
func PartitionDirName(tp TopicPartition) string {
	return tp.Topic + "-" + strconv.Itoa(int(tp.Partition))
}

// ParsePartitionDirName splits "<topic>-<partition>"; topics may contain '-'.
func ParsePartitionDirName(name string) (TopicPartition, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return TopicPartition{}, false
	}
	p, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || p < 0 {
		return TopicPartition{}, false
	}
	return TopicPartition{Topic: name[:i], Partition: int32(p)}, true
}

// parseOffsetFileName splits "<20 digits><suffix...>" into the base offset and
// the remaining suffix (e.g. ".log", ".log.swap").
func parseOffsetFileName(name string) (Offset, string, bool) {
	if len(name) < 21 || name[20] != '.' {
		return 0, "", false
	}
	n, err := strconv.ParseInt(name[:20], 10, 64)
	if err != nil || n < 0 {
		return 0, "", false
	}
	return Offset(n), name[20:], true
}
