package engine

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestProducerSnapshotCodec: the exported codec round-trips what the
// producer state writes, and reports each defect at its byte; the engine's
// loader refuses exactly the snapshots with defects.
func TestProducerSnapshotCodec(t *testing.T) {
	p := newProducerState()
	p.m[9] = &producerEntry{epoch: 2, timestamp: 1700000000000, batches: []producerBatch{{firstSeq: 5, lastSeq: 7, firstOffset: 40, lastOffset: 42}}}
	p.m[3] = &producerEntry{epoch: 0, timestamp: 1700000000001, batches: []producerBatch{{firstSeq: 0, lastSeq: 0, firstOffset: 10, lastOffset: 10}}}
	buf := p.encodeSnapshot()
	s, defects := ParseProducerSnapshot(buf)
	if len(defects) != 0 {
		t.Fatalf("defects in a written snapshot: %v", defects)
	}
	want := []ProducerSnapshotEntry{
		{ProducerID: 3, ProducerEpoch: 0, LastSequence: 0, LastOffset: 10, OffsetDelta: 0, Timestamp: 1700000000001, CoordinatorEpoch: -1, CurrentTxnFirstOffset: -1},
		{ProducerID: 9, ProducerEpoch: 2, LastSequence: 7, LastOffset: 42, OffsetDelta: 2, Timestamp: 1700000000000, CoordinatorEpoch: -1, CurrentTxnFirstOffset: -1},
	}
	if s.Version != ProducerSnapshotVersion || s.Count != 2 || !reflect.DeepEqual(s.Entries, want) {
		t.Fatalf("parsed %+v", s)
	}
	if got := EncodeProducerSnapshot(s.Entries); string(got) != string(buf) {
		t.Fatal("re-encoding differs")
	}
	q, err := decodeSnapshot(buf)
	if err != nil || !reflect.DeepEqual(q.m, p.m) {
		t.Fatalf("loaded %+v, %v", q, err)
	}

	for _, c := range []struct {
		name string
		mut  func([]byte) []byte
		pos  int64
		msg  string
	}{
		{"short", func(b []byte) []byte { return b[:9] }, 0, "shorter than the 10-byte header"},
		{"version", func(b []byte) []byte { binary.BigEndian.PutUint16(b, 2); return b }, 0, "version 2, want 1"},
		{"crc", func(b []byte) []byte { b[20] ^= 1; return b }, 2, "CRC-32C mismatch"},
		{"count", func(b []byte) []byte { return EncodeProducerSnapshot(want)[:len(b)-1] }, 6, "entry count 2 does not match the file size 101"},
		{"negative delta", func(b []byte) []byte {
			e := append([]ProducerSnapshotEntry(nil), want...)
			e[1].OffsetDelta = -3
			return EncodeProducerSnapshot(e)
		}, ProducerSnapshotHeaderSize + ProducerSnapshotEntrySize + 22, "entry 1 (producer 9): negative offset delta -3"},
	} {
		b := c.mut(append([]byte(nil), buf...))
		_, defects := ParseProducerSnapshot(b)
		found := false
		for _, d := range defects {
			found = found || d.Pos == c.pos && strings.Contains(d.Reason, c.msg)
		}
		if !found {
			t.Errorf("%s: defects %v, want %q at byte %d", c.name, defects, c.msg, c.pos)
		}
		if _, err := decodeSnapshot(b); !errors.Is(err, errBadSnapshot) {
			t.Errorf("%s: loaded by the engine (%v)", c.name, err)
		}
	}
}
