package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// TestAppendValidation: Append refuses what a leader must refuse, with the
// engine sentinel the server maps to the Kafka error, and appends nothing;
// on a compacted log a record with a null key is refused (naming the
// record), on a delete-policy log it is accepted.
func TestAppendValidation(t *testing.T) {
	for _, compact := range []bool{false, true} {
		e := newTestEnv(t)
		e.cfg.Compact = compact
		l := e.open(true, -1)
		ts := e.clk.Now().UnixMilli()
		refuse := func(name string, batch []byte, want error, msg string) {
			t.Helper()
			leo := l.LogEndOffset()
			_, err := l.Append(batch, 0)
			if !errors.Is(err, want) {
				t.Fatalf("compact=%v %s: %v, want %v", compact, name, err, want)
			}
			if msg != "" && !strings.Contains(err.Error(), msg) {
				t.Fatalf("compact=%v %s: %v, want it to say %q", compact, name, err, msg)
			}
			if l.LogEndOffset() != leo {
				t.Fatalf("compact=%v %s: log end moved from %d to %d", compact, name, leo, l.LogEndOffset())
			}
		}
		for _, c := range []record.Codec{record.CodecNone, record.CodecLZ4, record.CodecZstd} {
			recs := []testRecord{kv(0, ts), kv(1, ts), {key: nil, value: []byte("v"), ts: ts}, kv(3, ts)}
			nullKey := makeBatch(t, c, recs)
			if compact {
				refuse(c.String()+"/null key", nullKey, ErrInvalidRecord, "record 2 has a null key")
			} else if _, err := l.Append(nullKey, 0); err != nil {
				t.Fatalf("%v: null key refused on a delete-policy log: %v", c, err)
			}
			// A tombstone (keyed, null value) is fine everywhere.
			recs[2] = testRecord{key: []byte("k2"), value: nil, ts: ts}
			if _, err := l.Append(makeBatch(t, c, recs), 0); err != nil {
				t.Fatalf("compact=%v %v: keyed batch refused: %v", compact, c, err)
			}
		}

		good := makeBatch(t, record.CodecNone, []testRecord{kv(0, ts), kv(1, ts)})
		corrupt := append([]byte(nil), good...)
		corrupt[len(corrupt)-1] ^= 1
		refuse("bad crc", corrupt, ErrCorruptRecord, "CRC")

		codec := append(record.Batch(nil), good...)
		codec.SetAttributes(6)
		codec.UpdateCRC()
		refuse("unsupported codec", codec, ErrUnsupportedCompression, "")

		control := append(record.Batch(nil), good...)
		control.SetAttributes(record.AttrControl | record.AttrTransactional)
		control.UpdateCRC()
		refuse("control batch", control, ErrInvalidRecord, "control batch")

		var bl record.Builder
		bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
		bl.Add(record.Record{OffsetDelta: 0, Key: []byte("a"), Value: []byte("1")})
		bl.Add(record.Record{OffsetDelta: 0, Key: []byte("b"), Value: []byte("2")})
		bl.LastOffsetDelta = 1
		dup, err := bl.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		refuse("offset delta not index", dup, ErrInvalidRecord, "record 1 has offset delta 0")

		trailing := append(record.Batch(nil), good...)
		trailing = append(trailing, 0)
		trailing.SetBaseOffset(0)
		n := uint32(len(trailing) - record.LogOverhead)
		trailing[record.OffLength], trailing[record.OffLength+1], trailing[record.OffLength+2], trailing[record.OffLength+3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		trailing.UpdateCRC()
		refuse("bytes after the records", trailing, ErrInvalidRecord, "1 bytes after the 2 declared records")

		if _, err := l.Append(good, 0); err != nil {
			t.Fatalf("compact=%v: good batch refused after the refusals: %v", compact, err)
		}
		l.Close()
	}
}
