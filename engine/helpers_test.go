package engine

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
)

var quietLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// testRecord is the model's view of one record.
type testRecord struct {
	key, value []byte // nil = null
	ts         int64
}

// makeBatch encodes records as a producer would (base offset 0).
func makeBatch(t testing.TB, codec record.Codec, recs []testRecord) []byte {
	t.Helper()
	var bl record.Builder
	bl.Attributes = int16(codec)
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
	bl.BaseTimestamp = recs[0].ts
	bl.LastOffsetDelta = -1
	bl.MaxTimestamp = -1
	for i, r := range recs {
		bl.Add(record.Record{OffsetDelta: int32(i), TimestampDelta: r.ts - recs[0].ts, Key: r.key, Value: r.value})
	}
	b, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kv(i int, ts int64) testRecord {
	return testRecord{key: []byte(fmt.Sprintf("k%d", i)), value: []byte(fmt.Sprintf("value-%d", i)), ts: ts}
}

type testEnv struct {
	t   testing.TB
	dir string
	fs  vfs.FS
	clk *clock.Manual
	cfg Config
}

func newTestEnv(t testing.TB) *testEnv {
	cfg := DefaultConfig()
	cfg.IndexIntervalBytes = 256
	cfg.SegmentIndexBytes = 4096
	return &testEnv{t: t, dir: t.TempDir() + "/topic-0", fs: vfs.Default, clk: clock.NewManual(time.UnixMilli(1_700_000_000_000)), cfg: cfg}
}

func (e *testEnv) open(clean bool, rp Offset) *Log {
	e.t.Helper()
	l, err := OpenLog(e.dir, TopicPartition{Topic: "topic", Partition: 0}, e.cfg, LogOptions{
		FS: e.fs, Clock: e.clk, Logger: quietLogger, CleanShutdown: clean, RecoveryPoint: rp, LogStartOffset: -1,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// openManager opens a Manager on the log dir holding e.dir (whose
// partition is topic-0) and returns it with that partition's log.
func (e *testEnv) openManager() (*Manager, *Log) {
	e.t.Helper()
	m, err := OpenManager(ManagerOptions{Dirs: []string{filepath.Dir(e.dir)}, FS: e.fs, Clock: e.clk, Logger: quietLogger,
		ConfigFor: func(TopicPartition) Config { return e.cfg }})
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := m.CreateLog(TopicPartition{Topic: "topic", Partition: 0}, e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return m, l
}

// readAll returns every record from offset from to the log end, via Read.
func readAll(t testing.TB, l *Log, from Offset) []readRecord {
	t.Helper()
	var out []readRecord
	var dec record.Decoder
	err := l.ReadBatches(from, l.LogEndOffset(), func(b record.Batch) error {
		if err := b.VerifyCRC(); err != nil {
			return err
		}
		return dec.Records(b, func(r *record.Record) error {
			o := Offset(b.BaseOffset() + int64(r.OffsetDelta))
			if o < from {
				return nil
			}
			out = append(out, readRecord{offset: o, key: clone(r.Key), value: clone(r.Value), ts: b.BaseTimestamp() + r.TimestampDelta})
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type readRecord struct {
	offset     Offset
	key, value []byte
	ts         int64
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
