package txn

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The bytes of __transaction_state records, laid out by hand from Kafka's
// TransactionLogKey v0 / TransactionLogValue v0 schemas.
func TestRecordBytes(t *testing.T) {
	if got, want := encodeKey("tx"), []byte{0, 0, 0, 2, 't', 'x'}; !bytes.Equal(got, want) {
		t.Fatalf("key %x, want %x", got, want)
	}
	s := &snapshot{
		producerID: 7, producerEpoch: 3, timeoutMs: 60000, state: Ongoing,
		partitions:   []TopicPartition{{"a", 0}, {"a", 2}, {"b", 1}},
		lastUpdateMs: 1700000000001, startMs: 1700000000000,
	}
	var w []byte
	be := binary.BigEndian
	w = be.AppendUint16(w, 0)              // version
	w = be.AppendUint64(w, 7)              // producer id
	w = be.AppendUint16(w, 3)              // epoch
	w = be.AppendUint32(w, 60000)          // timeout
	w = append(w, 1)                       // status Ongoing
	w = be.AppendUint32(w, 2)              // topics
	w = append(be.AppendUint16(w, 1), 'a') // topic a
	w = be.AppendUint32(w, 2)              // partitions
	w = be.AppendUint32(be.AppendUint32(w, 0), 2)
	w = append(be.AppendUint16(w, 1), 'b')
	w = be.AppendUint32(be.AppendUint32(w, 1), 1)
	w = be.AppendUint64(w, 1700000000001)
	w = be.AppendUint64(w, 1700000000000)
	if got := encodeValue(s); !bytes.Equal(got, w) {
		t.Fatalf("value\n got %x\nwant %x", got, w)
	}
	back, err := decodeValue(w)
	if err != nil {
		t.Fatal(err)
	}
	if back.producerID != 7 || back.producerEpoch != 3 || back.state != Ongoing || !slices.Equal(back.partitions, s.partitions) ||
		back.startMs != s.startMs || back.lastUpdateMs != s.lastUpdateMs || back.timeoutMs != 60000 {
		t.Fatalf("decoded %+v", back)
	}
	// Empty writes null partitions, as Kafka does.
	e := encodeValue(&snapshot{producerID: 1, state: Empty, startMs: -1})
	if n := int32(be.Uint32(e[2+8+2+4+1:])); n != -1 {
		t.Fatalf("Empty partitions length %d, want -1 (null)", n)
	}
}

// Values of version 1 (Kafka 4's, with tagged fields) are read.
func TestDecodeValueV1(t *testing.T) {
	v := kmsg.NewTxnMetadataValue()
	v.Version = 1
	v.ProducerID = 9
	v.ProducerEpoch = 4
	v.TimeoutMillis = 1000
	v.State = kmsg.TransactionState(PrepareAbort)
	v.Topics = []kmsg.TxnMetadataValueTopic{{Topic: "t", Partitions: []int32{3}}}
	v.PreviousProducerID = 8
	v.NextProducerID = 10
	v.ClientTransactionVersion = 2
	s, err := decodeValue(v.AppendTo(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s.producerID != 9 || s.state != PrepareAbort || !slices.Equal(s.partitions, []TopicPartition{{"t", 3}}) {
		t.Fatalf("%+v", s)
	}
	if _, err := decodeValue([]byte{0, 2, 1}); err == nil {
		t.Fatal("value version 2 accepted")
	}
	bad := encodeValue(&snapshot{producerID: 1, state: Empty, startMs: -1})
	bad[2+8+2+4] = 7 // PrepareEpochFence is never written
	if _, err := decodeValue(bad); err == nil {
		t.Fatal("state PrepareEpochFence accepted")
	}
	if _, ok, err := decodeKey([]byte{0, 1, 0, 0}); ok || err != nil {
		t.Fatalf("key version 1: ok %v err %v, want skipped", ok, err)
	}
}

// FuzzDecodeRecord: decoding never panics, and what decodes re-encodes to
// a value that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeKey("x"), encodeValue(&snapshot{producerID: 1, producerEpoch: 2, timeoutMs: 3, state: Ongoing, partitions: []TopicPartition{{"a", 1}}}))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		decodeKey(key)
		s, err := decodeValue(value)
		if err != nil {
			return
		}
		again, err := decodeValue(encodeValue(s))
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if again.producerID != s.producerID || again.state != s.state || !slices.Equal(again.partitions, s.partitions) {
			t.Fatalf("re-decoded %+v, want %+v", again, s)
		}
	})
}
