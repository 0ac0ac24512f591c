package checkpoint

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/kvlog/kvlog/engine/vfs"
)

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// String returns "topic-partition", the partition directory's name.
func (tp TopicPartition) String() string {
	return tp.Topic + "-" + strconv.FormatInt(int64(tp.Partition), 10)
}

// maxTopicLen is Kafka's limit on topic names.
const maxTopicLen = 249

// validTopic reports whether name is a legal Kafka topic name:
// 1..249 characters of [a-zA-Z0-9._-], not "." or "..".
func validTopic(name string) bool {
	if name == "" || len(name) > maxTopicLen || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ReadOffsets reads an offset checkpoint (recovery-point-offset-checkpoint,
// log-start-offset-checkpoint, cleaner-offset-checkpoint). A missing or
// empty file reads as an empty map. A file that does not parse returns an
// error matching ErrMalformed (a *MalformedError). If a partition appears
// twice the last line wins, as in Kafka.
func ReadOffsets(fsys vfs.FS, path string) (map[TopicPartition]int64, error) {
	data, err := readFile(fsys, path)
	if err != nil {
		return nil, err
	}
	return parseOffsets(path, data)
}

// WriteOffsets atomically replaces path with an offset checkpoint holding m,
// lines sorted by topic then partition. Topics must be legal Kafka topic
// names and partitions and offsets non-negative (else ErrInvalidEntry).
func WriteOffsets(fsys vfs.FS, path string, m map[TopicPartition]int64) error {
	data, err := formatOffsets(m)
	if err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", path, err)
	}
	return WriteFileAtomic(fsys, path, data)
}

func parseOffsets(path string, data []byte) (map[TopicPartition]int64, error) {
	m := make(map[TopicPartition]int64)
	err := parseFile(path, data, func(line int, text string, f []string) error {
		if len(f) != 3 {
			return malformed(path, line, text, "want 3 fields: topic partition offset")
		}
		if !validTopic(f[0]) {
			return malformed(path, line, text, "invalid topic name")
		}
		p, err := strconv.ParseInt(f[1], 10, 32)
		if err != nil || p < 0 {
			return malformed(path, line, text, "partition is not a non-negative int32")
		}
		off, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || off < 0 {
			return malformed(path, line, text, "offset is not a non-negative int64")
		}
		m[TopicPartition{Topic: f[0], Partition: int32(p)}] = off
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func formatOffsets(m map[TopicPartition]int64) ([]byte, error) {
	tps := make([]TopicPartition, 0, len(m))
	for tp, off := range m {
		if !validTopic(tp.Topic) || tp.Partition < 0 || off < 0 {
			return nil, fmt.Errorf("%w: %q partition %d offset %d", ErrInvalidEntry, tp.Topic, tp.Partition, off)
		}
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	lines := make([]string, len(tps))
	for i, tp := range tps {
		lines[i] = tp.Topic + " " + strconv.FormatInt(int64(tp.Partition), 10) + " " + strconv.FormatInt(m[tp], 10)
	}
	return formatFile(lines), nil
}
