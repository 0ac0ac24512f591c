package checkpoint

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/kvlog/kvlog/engine/vfs"
)

// SyncedTailsFile is the log dir's synced-tail checkpoint (kvlog only, not
// Kafka's; see FORMAT.md, "Synced-tail checkpoint").
const SyncedTailsFile = "kvlog-synced-tail-checkpoint"

// Tail describes a partition's active segment when every byte of it was
// synced: the segment's base offset, its length in bytes and the offset
// after its last record, which was the partition's recovery point.
// Sealed says more: the segment's index files were, on stable storage, as
// a seal leaves them (written by a clean close, the segment not reopened
// since), so a restart need not reopen the segment to seal it.
type Tail struct {
	Base, Bytes, End int64
	Sealed           bool
}

// sealedField is the optional sixth field of an entry whose Sealed is set.
const sealedField = "sealed"

// Describes reports whether t (nil: no entry) is a segment of base
// offset base, bytes long, ending at end.
func (t *Tail) Describes(base, bytes, end int64) bool {
	return t != nil && t.Base == base && t.Bytes == bytes && t.End == end
}

// ReadTails reads a synced-tail checkpoint. A missing or empty file reads
// as an empty map; a file that does not parse returns an error matching
// ErrMalformed. If a partition appears twice the last line wins.
func ReadTails(fsys vfs.FS, path string) (map[TopicPartition]Tail, error) {
	data, err := readFile(fsys, path)
	if err != nil {
		return nil, err
	}
	return parseTails(path, data)
}

// WriteTails atomically replaces path with a synced-tail checkpoint
// holding m, lines sorted by topic then partition (ErrInvalidEntry for a
// bad topic name or a negative field, or an end below the base).
func WriteTails(fsys vfs.FS, path string, m map[TopicPartition]Tail) error {
	data, err := formatTails(m)
	if err != nil {
		return fmt.Errorf("checkpoint: write %s: %w", path, err)
	}
	return WriteFileAtomic(fsys, path, data)
}

func parseTails(path string, data []byte) (map[TopicPartition]Tail, error) {
	m := make(map[TopicPartition]Tail)
	err := parseFile(path, data, func(line int, text string, f []string) error {
		if len(f) != 5 && (len(f) != 6 || f[5] != sealedField) {
			return malformed(path, line, text, "want 5 fields: topic partition base bytes end, and optionally \"sealed\"")
		}
		if !validTopic(f[0]) {
			return malformed(path, line, text, "invalid topic name")
		}
		p, err := strconv.ParseInt(f[1], 10, 32)
		if err != nil || p < 0 {
			return malformed(path, line, text, "partition is not a non-negative int32")
		}
		var v [3]int64
		for i := range v {
			if v[i], err = strconv.ParseInt(f[2+i], 10, 64); err != nil || v[i] < 0 {
				return malformed(path, line, text, "base, bytes and end must be non-negative int64s")
			}
		}
		if v[2] < v[0] {
			return malformed(path, line, text, "end below the segment's base")
		}
		m[TopicPartition{Topic: f[0], Partition: int32(p)}] = Tail{Base: v[0], Bytes: v[1], End: v[2], Sealed: len(f) == 6}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func formatTails(m map[TopicPartition]Tail) ([]byte, error) {
	tps := make([]TopicPartition, 0, len(m))
	for tp, t := range m {
		if !validTopic(tp.Topic) || tp.Partition < 0 || t.Base < 0 || t.Bytes < 0 || t.End < t.Base {
			return nil, fmt.Errorf("%w: %q partition %d tail %+v", ErrInvalidEntry, tp.Topic, tp.Partition, t)
		}
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	lines := make([]string, len(tps))
	for i, tp := range tps {
		t := m[tp]
		lines[i] = tp.Topic + " " + strconv.FormatInt(int64(tp.Partition), 10) + " " + strconv.FormatInt(t.Base, 10) +
			" " + strconv.FormatInt(t.Bytes, 10) + " " + strconv.FormatInt(t.End, 10)
		if t.Sealed {
			lines[i] += " " + sealedField
		}
	}
	return formatFile(lines), nil
}
