package engine

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
)

// kafkaGolden is testdata/kafka-golden/records.json: what a real Apache
// Kafka broker served for each partition of the topic whose log directory
// it left in testdata/kafka-golden (written by compat/kafka's
// TestKafkaWrittenGolden -update, `make kafka-golden`).
type kafkaGolden struct {
	KafkaVersion string `json:"kafka_version"`
	Topic        string `json:"topic"`
	Partitions   []struct {
		Partition      int32               `json:"partition"`
		Codec          string              `json:"codec"`
		LogStartOffset int64               `json:"log_start_offset"`
		HighWatermark  int64               `json:"high_watermark"`
		Records        []kafkaGoldenRecord `json:"records"`
	} `json:"partitions"`
}

type kafkaGoldenRecord struct {
	Offset    int64             `json:"offset"`
	Timestamp int64             `json:"timestamp"`
	Key       string            `json:"key"`
	Value     *string           `json:"value"`
	Headers   map[string]string `json:"headers,omitempty"`
}

// TestKafkaGolden opens a log directory written by Apache Kafka (a
// compacted topic, one partition per codec, cleaned by Kafka's cleaner,
// stopped cleanly: its meta.properties in KRaft form, its checkpoints,
// partition.metadata and clean-shutdown file) and reads exactly the records
// Kafka served: every record through the segments, and every offset through
// Kafka's offset index. The
// files are Kafka's, byte for byte; nothing here needs Java. Beside
// TestGoldenLogDir, which pins what kvlog writes.
func TestKafkaGolden(t *testing.T) {
	src := filepath.Join("testdata", "kafka-golden")
	js, err := os.ReadFile(filepath.Join(src, "records.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want kafkaGolden
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Partitions) != 5 {
		t.Fatalf("manifest of Apache Kafka %s: %d partitions, want one per codec", want.KafkaVersion, len(want.Partitions))
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "records.json"))
	m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Logger: quietLogger})
	if err != nil {
		t.Fatalf("opening Apache Kafka %s's log dir: %v", want.KafkaVersion, err)
	}
	defer m.Close()
	if _, err := os.Stat(filepath.Join(dir, CleanShutdownFile)); !os.IsNotExist(err) {
		t.Errorf("Kafka's clean-shutdown file still there after the load (err %v)", err)
	}
	var dec record.Decoder
	for _, wp := range want.Partitions {
		tp := TopicPartition{Topic: want.Topic, Partition: wp.Partition}
		l, ok := m.Log(tp)
		if !ok {
			t.Errorf("%s (%s) not loaded", tp, wp.Codec)
			continue
		}
		if l.LogStartOffset() != Offset(wp.LogStartOffset) || l.LogEndOffset() != Offset(wp.HighWatermark) {
			t.Errorf("%s (%s): log start %d end %d, Kafka served %d..%d", tp, wp.Codec, l.LogStartOffset(), l.LogEndOffset(), wp.LogStartOffset, wp.HighWatermark)
		}
		l.SetHighWatermark(l.LogEndOffset())

		var got []kafkaGoldenRecord
		codecs := map[string]int{}
		err := l.ReadBatches(l.LogStartOffset(), l.LogEndOffset(), func(b record.Batch) error {
			if err := dec.ValidateStored(b); err != nil {
				return err
			}
			codecs[b.Codec().String()]++
			// Kafka's cleaner writes an emptied batch's header uncompressed.
			if c := b.Codec().String(); c != wp.Codec && b.NumRecords() > 0 {
				t.Errorf("%s: batch %d is %s, Kafka wrote it %s", tp, b.BaseOffset(), c, wp.Codec)
			}
			return dec.Records(b, func(r *record.Record) error {
				g := kafkaGoldenRecord{Offset: b.RecordOffset(r), Timestamp: b.RecordTimestamp(r), Key: string(r.Key)}
				if r.Value != nil {
					v := string(r.Value)
					g.Value = &v
				}
				for _, h := range r.Headers {
					if g.Headers == nil {
						g.Headers = map[string]string{}
					}
					g.Headers[string(h.Key)] = string(h.Value)
				}
				got = append(got, g)
				return nil
			})
		})
		if err != nil {
			t.Errorf("%s (%s): reading Kafka's segments: %v", tp, wp.Codec, err)
			continue
		}
		if codecs[wp.Codec] == 0 {
			t.Errorf("%s: no %s batch (codecs %v)", tp, wp.Codec, codecs)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(wp.Records)
		if !bytes.Equal(gj, wj) {
			t.Errorf("%s (%s): records differ from what Kafka served\nkvlog: %s\nkafka: %s", tp, wp.Codec, gj, wj)
		}

		// Kafka's offset index: a read at each offset starts with the batch
		// holding it (or, for an offset the cleaner removed, the next one).
		for _, r := range wp.Records {
			res, err := l.Read(Offset(r.Offset), 1<<20, l.LogEndOffset())
			if err != nil {
				t.Errorf("%s: read at %d: %v", tp, r.Offset, err)
				continue
			}
			raw, err := res.Bytes()
			res.Release()
			if err != nil || len(raw) < record.OffRecords {
				t.Errorf("%s: read at %d: %d bytes, %v", tp, r.Offset, len(raw), err)
				continue
			}
			if b := record.Batch(raw); b.BaseOffset() > r.Offset || b.LastOffset() < r.Offset {
				t.Errorf("%s: read at %d starts with batch %d..%d", tp, r.Offset, b.BaseOffset(), b.LastOffset())
			}
		}
	}
}

// openKafkaGolden loads a copy of testdata/kafka-golden with cfg for every
// partition and returns the manager and the manifest.
func openKafkaGolden(t *testing.T, cfg Config) (*Manager, kafkaGolden) {
	t.Helper()
	src := filepath.Join("testdata", "kafka-golden")
	js, err := os.ReadFile(filepath.Join(src, "records.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want kafkaGolden
	if err := json.Unmarshal(js, &want); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "records.json"))
	m, err := OpenManager(ManagerOptions{Dirs: []string{dir}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
	if err != nil {
		t.Fatalf("opening Apache Kafka %s's log dir: %v", want.KafkaVersion, err)
	}
	t.Cleanup(func() { m.Close() })
	return m, want
}

// TestKafkaGoldenTimestampsAfterCleanLoad: right after a log dir is loaded
// from a clean shutdown, before anything reads a segment, the inactive
// segments' largest timestamps are known, as in Kafka, which reads a
// segment's max timestamp from the last entry of its time index on first
// use (LogSegment.maxTimestampSoFar). So a ListOffsets by timestamp finds
// records in inactive segments, ListOffsets -3 sees their timestamps, and
// retention.ms deletes old inactive segments at the first check.
//
// TestKafkaGoldenTimestampsAfterCleanLoad: segments loaded after a clean
// shutdown (no rescan) know their largest timestamps, from the time index's
// last entry as Kafka reads them, so OffsetForTimestamp, MaxTimestamp and
// time retention see every segment.
func TestKafkaGoldenTimestampsAfterCleanLoad(t *testing.T) {
	m, want := openKafkaGolden(t, DefaultConfig())
	for _, wp := range want.Partitions {
		tp := TopicPartition{Topic: want.Topic, Partition: wp.Partition}
		l, _ := m.Log(tp)
		l.SetHighWatermark(l.LogEndOffset())
		for _, s := range l.Segments() {
			if s.Size > 0 && s.LargestTimestamp < 0 {
				t.Errorf("%s: segment %d loaded with largest timestamp %d", tp, s.BaseOffset, s.LargestTimestamp)
			}
		}
		maxTs := int64(-1)
		for _, r := range wp.Records {
			maxTs = max(maxTs, r.Timestamp)
			// The first record kept at or after r's timestamp is r or an
			// earlier one (the records' timestamps rise with their offsets).
			off, _, found, err := l.OffsetForTimestamp(r.Timestamp)
			if err != nil || !found || int64(off) > r.Offset {
				t.Errorf("%s: offset for timestamp %d: %d (found %v, %v), want at most %d", tp, r.Timestamp, off, found, err, r.Offset)
			}
		}
		if ts, _, err := l.MaxTimestamp(); err != nil || ts != maxTs {
			t.Errorf("%s: max timestamp %d (%v), want %d", tp, ts, err, maxTs)
		}
	}
	// Kafka's records are from 2024: a one-day retention.ms deletes every
	// inactive segment at the first check.
	cfg := DefaultConfig()
	cfg.RetentionTime = 24 * time.Hour
	m, want = openKafkaGolden(t, cfg)
	for _, wp := range want.Partitions {
		l, _ := m.Log(TopicPartition{Topic: want.Topic, Partition: wp.Partition})
		if n := l.EnforceRetention(); n == 0 || len(l.Segments()) != 1 {
			t.Errorf("%s-%d: retention.ms deleted %d segments, %d left; want only the active one left", want.Topic, wp.Partition, n, len(l.Segments()))
		}
	}
}
