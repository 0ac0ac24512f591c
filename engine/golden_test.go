package engine

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/internal/clock"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// TestGoldenLogDir writes a small log directory with a fixed clock and fixed
// batches (two segments, index entries, an idempotent producer, a leader
// epoch) and compares every file byte for byte with testdata/golden. Run with
// -update to regenerate after a deliberate format change.
func TestGoldenLogDir(t *testing.T) {
	root := t.TempDir()
	clk := clock.NewManual(time.UnixMilli(1_700_000_000_000))
	cfg := DefaultConfig()
	cfg.SegmentBytes = 600
	cfg.IndexIntervalBytes = 100
	m, err := OpenManager(ManagerOptions{Dirs: []string{root}, Clock: clk, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.CreateLog(TopicPartition{Topic: "golden", Partition: 0}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		var bl record.Builder
		bl.Attributes = int16(record.CodecNone)
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = 7, 0, int32(2*i)
		bl.BaseTimestamp = 1_700_000_000_000 + int64(i)*1000
		bl.LastOffsetDelta, bl.MaxTimestamp = -1, -1
		bl.Add(record.Record{OffsetDelta: 0, Key: []byte{'k', byte('0' + i)}, Value: bytes.Repeat([]byte{byte('a' + i)}, 40)})
		bl.Add(record.Record{OffsetDelta: 1, TimestampDelta: 5, Key: []byte{'k', byte('0' + i)}, Value: nil})
		batch, err := bl.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(batch, int32(i/4)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "golden")
	if *update {
		_ = os.RemoveAll(golden)
		if err := os.CopyFS(golden, os.DirFS(root)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == ManifestFile {
			// It records the directories' change times: checked for
			// what it describes instead (TestManifestWrittenAfterTheDirs).
			return nil
		}
		got = append(got, rel)
		want, err := os.ReadFile(filepath.Join(golden, rel))
		if err != nil {
			t.Errorf("%s: not in golden set (run with -update if the format changed on purpose)", rel)
			return nil
		}
		have, _ := os.ReadFile(p)
		if !bytes.Equal(have, want) {
			t.Errorf("%s differs from golden (%d bytes vs %d)", rel, len(have), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 8 {
		t.Fatalf("only %d files written: %v", len(got), got)
	}
	wantFiles, _ := filepath.Glob(filepath.Join(golden, "*", "*"))
	if len(wantFiles)+5 != len(got) { // plus the five log-dir level files (.lock included)
		t.Errorf("file sets differ: wrote %v", got)
	}
}

// TestKmsgBatchRoundTrip appends batches encoded by franz-go's kmsg and
// checks they read back unchanged but for the fields the broker stamps.
func TestKmsgBatchRoundTrip(t *testing.T) {
	e := newTestEnv(t)
	l := e.open(true, -1)
	defer l.Close()
	var sent []kmsg.RecordBatch
	for i := 0; i < 20; i++ {
		var recs []byte
		n := 1 + i%4
		for j := 0; j < n; j++ {
			r := kmsg.Record{OffsetDelta: int32(j), TimestampDelta64: int64(j), Key: []byte{byte(j)}, Value: bytes.Repeat([]byte{'x'}, 10*i)}
			if j == 1 {
				r.Headers = []kmsg.Header{{Key: "h", Value: []byte("v")}}
			}
			r.Length = int32(len(r.AppendTo(nil)) - 1) // AppendTo includes the length varint; recompute below
			recs = appendRecord(recs, r)
		}
		rb := kmsg.RecordBatch{
			FirstOffset: 0, PartitionLeaderEpoch: -1, Magic: 2, Attributes: 0,
			LastOffsetDelta: int32(n - 1), FirstTimestamp: 1_700_000_000_000, MaxTimestamp: 1_700_000_000_000 + int64(n-1),
			ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(n), Records: recs,
		}
		raw := rb.AppendTo(nil)
		rb.Length = int32(len(raw) - 12)
		raw = rb.AppendTo(nil)
		crcBatch := record.Batch(raw)
		crcBatch.UpdateCRC()
		rb.CRC = int32(crcBatch.CRC())
		if _, err := l.Append(append([]byte(nil), crcBatch...), 5); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		sent = append(sent, rb)
	}
	i := 0
	err := l.ReadBatches(0, l.LogEndOffset(), func(b record.Batch) error {
		var got kmsg.RecordBatch
		if err := got.ReadFrom(b); err != nil {
			return err
		}
		want := sent[i]
		want.FirstOffset, want.PartitionLeaderEpoch = got.FirstOffset, 5
		if got.FirstOffset != int64(sumRecords(sent[:i])) {
			t.Errorf("batch %d at offset %d", i, got.FirstOffset)
		}
		if !bytes.Equal(got.AppendTo(nil), want.AppendTo(nil)) {
			t.Errorf("batch %d changed in the log", i)
		}
		i++
		return nil
	})
	if err != nil || i != len(sent) {
		t.Fatalf("read %d batches: %v", i, err)
	}
}

func appendRecord(dst []byte, r kmsg.Record) []byte {
	body := r.AppendTo(nil)
	return append(dst, body...)
}

func sumRecords(bs []kmsg.RecordBatch) int {
	n := 0
	for _, b := range bs {
		n += int(b.NumRecords)
	}
	return n
}
