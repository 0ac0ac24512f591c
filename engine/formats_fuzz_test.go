package engine

import (
	"bytes"
	"testing"
)

// FuzzProducerSnapshot feeds arbitrary bytes to the producer-snapshot
// decoders. Neither may panic; the strict decoder (the one a restart uses)
// accepts exactly the files the lenient parser (the one kvlog dump uses)
// finds no defect in; and an accepted file is the canonical encoding of
// its entries, so nothing in it was skipped or misread.
func FuzzProducerSnapshot(f *testing.F) {
	f.Add([]byte{})
	f.Add(EncodeProducerSnapshot(nil))
	f.Add(EncodeProducerSnapshot([]ProducerSnapshotEntry{
		{ProducerID: 1, ProducerEpoch: 0, LastSequence: 4, LastOffset: 10, OffsetDelta: 4, Timestamp: 1_700_000_000_000, CoordinatorEpoch: -1, CurrentTxnFirstOffset: -1},
		{ProducerID: 7, ProducerEpoch: 3, LastSequence: 0, LastOffset: 11, OffsetDelta: 0, Timestamp: 1_700_000_000_001, CoordinatorEpoch: 2, CurrentTxnFirstOffset: 11},
	}))
	damaged := EncodeProducerSnapshot([]ProducerSnapshotEntry{{ProducerID: 9, LastSequence: 2, LastOffset: 5, OffsetDelta: 2, CoordinatorEpoch: -1, CurrentTxnFirstOffset: -1}})
	damaged[len(damaged)-1] ^= 1
	f.Add(damaged)
	f.Fuzz(func(t *testing.T, buf []byte) {
		s, defects := ParseProducerSnapshot(buf)
		p, err := decodeSnapshot(buf)
		if (err == nil) != (len(defects) == 0) {
			t.Fatalf("decodeSnapshot err %v but ParseProducerSnapshot defects %v", err, defects)
		}
		if err != nil {
			return
		}
		if got := EncodeProducerSnapshot(s.Entries); !bytes.Equal(got, buf) {
			t.Fatalf("accepted snapshot is not the encoding of its %d entries", len(s.Entries))
		}
		if len(p.m) > len(s.Entries) {
			t.Fatalf("decoded %d producers from %d entries", len(p.m), len(s.Entries))
		}
	})
}

// FuzzTxnIndex feeds arbitrary bytes, and a segment range, to the
// transaction-index decoder: it must not panic, and what it accepts lies
// inside the segment, is in order, and re-encodes to the same bytes.
func FuzzTxnIndex(f *testing.F) {
	f.Add([]byte{}, int64(0), int64(-1))
	var valid []byte
	valid = EncodeTxnIndexEntry(valid, AbortedTxn{ProducerID: 3, FirstOffset: 2, LastOffset: 5, LastStableOffset: 2})
	valid = EncodeTxnIndexEntry(valid, AbortedTxn{ProducerID: 4, FirstOffset: 1, LastOffset: 9, LastStableOffset: 1})
	f.Add(valid, int64(0), int64(10))
	f.Add(valid, int64(6), int64(10))
	f.Add(valid[:len(valid)-3], int64(0), int64(-1))
	f.Fuzz(func(t *testing.T, buf []byte, base, next int64) {
		out, err := ParseTxnIndex(buf, Offset(base), Offset(next))
		if err != nil {
			return
		}
		var re []byte
		prev := Offset(-1)
		for _, a := range out {
			if a.FirstOffset < 0 || a.FirstOffset > a.LastOffset || a.LastOffset < Offset(base) || (next >= 0 && a.LastOffset >= Offset(next)) || a.LastOffset <= prev {
				t.Fatalf("accepted entry %+v outside segment [%d,%d) or out of order", a, base, next)
			}
			prev = a.LastOffset
			re = EncodeTxnIndexEntry(re, a)
		}
		if !bytes.Equal(re, buf) {
			t.Fatalf("accepted index of %d entries does not re-encode to its bytes", len(out))
		}
	})
}
