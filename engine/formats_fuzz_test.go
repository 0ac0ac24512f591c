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

// FuzzJournalDecode: the journal decoder never panics, and what it takes
// is exactly the encoding of the entries it returns: the header, then
// each entry re-encoded gives back the bytes up to where it stopped.
func FuzzJournalDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendJournalHeader(nil, 3))
	valid := appendJournalHeader(nil, 3)
	valid = appendJournalEntry(valid, journalEntry{Gen: 3, Kind: journalData, TP: TopicPartition{Topic: "t", Partition: 2}, Offset: 5, Payload: []byte("batches")})
	valid = appendJournalEntry(valid, journalEntry{Gen: 3, Kind: journalVoid, TP: TopicPartition{Topic: "t", Partition: 2}, Offset: 4})
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	damaged := append([]byte(nil), valid...)
	damaged[40] ^= 1
	f.Add(damaged)
	f.Fuzz(func(t *testing.T, buf []byte) {
		gen, ents, end, err := decodeJournal(buf)
		if err != nil {
			if len(ents) != 0 {
				t.Fatalf("entries with a damaged header: %v", err)
			}
			return
		}
		if end.At < journalHeaderSize || end.At > int64(len(buf)) || (end.Reason == "") != (end.At == int64(len(buf))) {
			t.Fatalf("stopped at %d of %d (%q)", end.At, len(buf), end.Reason)
		}
		re := appendJournalHeader(nil, gen)
		for _, e := range ents {
			if e.Gen != gen || (e.Kind != journalData && e.Kind != journalVoid) || (e.Kind == journalVoid && len(e.Payload) > 0) {
				t.Fatalf("accepted entry %+v in generation %d", e, gen)
			}
			re = appendJournalEntry(re, e)
		}
		if !bytes.Equal(re, buf[:end.At]) {
			t.Fatalf("%d accepted entries do not re-encode to the %d bytes taken", len(ents), end.At)
		}
	})
}
