package txn

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// StateTopic is the internal compacted topic holding transaction state.
const StateTopic = "__transaction_state"

// Record is one record of a __transaction_state partition, in Apache
// Kafka's schemas; a nil Value is a tombstone (the transactional id
// expired).
//
//	key   TransactionLogKey v0    (transactional id)
//	value TransactionLogValue v0  (producer id, epoch, timeout, state,
//	      partitions — null in Empty, last update and start timestamps)
//
// kvlog writes value version 0, as Kafka does for clients that do not
// use transaction version 2 (KIP-890); it reads versions 0 and 1 (v1's
// tagged fields — previous and next producer id, client transaction
// version — are read and ignored). Kafka's tools read kvlog's topic and
// kvlog replays Kafka's.
type Record struct {
	Key   []byte
	Value []byte
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s-%d", tp.Topic, tp.Partition) }

func compareTP(a, b TopicPartition) int {
	if c := strings.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return int(a.Partition) - int(b.Partition)
}

const (
	keyVersion   = 0
	valueVersion = 0
)

func encodeKey(id string) []byte {
	k := kmsg.TxnMetadataKey{Version: keyVersion, TransactionalID: id}
	return k.AppendTo(nil)
}

// snapshot is what one __transaction_state value holds.
type snapshot struct {
	producerID    int64
	producerEpoch int16
	timeoutMs     int32
	state         State
	partitions    []TopicPartition // sorted
	lastUpdateMs  int64
	startMs       int64
}

func encodeValue(s *snapshot) []byte {
	v := kmsg.NewTxnMetadataValue()
	v.Version = valueVersion
	v.ProducerID = s.producerID
	v.ProducerEpoch = s.producerEpoch
	v.TimeoutMillis = s.timeoutMs
	v.State = kmsg.TransactionState(s.state)
	if s.state != Empty {
		v.Topics = []kmsg.TxnMetadataValueTopic{}
		for _, tp := range s.partitions {
			if n := len(v.Topics); n == 0 || v.Topics[n-1].Topic != tp.Topic {
				v.Topics = append(v.Topics, kmsg.TxnMetadataValueTopic{Topic: tp.Topic})
			}
			t := &v.Topics[len(v.Topics)-1]
			t.Partitions = append(t.Partitions, tp.Partition)
		}
	}
	v.LastUpdateTimestamp = s.lastUpdateMs
	v.StartTimestamp = s.startMs
	return v.AppendTo(nil)
}

// decodeKey reads a key: ok is false for key versions other than 0
// (not a transaction record; skipped on replay).
func decodeKey(b []byte) (id string, ok bool, err error) {
	if len(b) < 2 {
		return "", false, fmt.Errorf("key of %d bytes", len(b))
	}
	if binary.BigEndian.Uint16(b) != keyVersion {
		return "", false, nil
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(b); err != nil {
		return "", false, fmt.Errorf("transaction log key: %w", err)
	}
	return k.TransactionalID, true, nil
}

func decodeValue(b []byte) (*snapshot, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("value of %d bytes", len(b))
	}
	if v := int16(binary.BigEndian.Uint16(b)); v < 0 || v > 1 {
		return nil, fmt.Errorf("transaction log value version %d", v)
	}
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(b); err != nil {
		return nil, fmt.Errorf("transaction log value: %w", err)
	}
	s := &snapshot{
		producerID:    v.ProducerID,
		producerEpoch: v.ProducerEpoch,
		timeoutMs:     v.TimeoutMillis,
		state:         State(v.State),
		lastUpdateMs:  v.LastUpdateTimestamp,
		startMs:       v.StartTimestamp,
	}
	if !s.state.valid() || s.state == PrepareEpochFence {
		return nil, fmt.Errorf("transaction log value: state %d", int8(v.State))
	}
	if s.state == Empty {
		v.Topics = nil // Empty has no partitions (written as null)
	}
	for _, t := range v.Topics {
		for _, p := range t.Partitions {
			s.partitions = append(s.partitions, TopicPartition{t.Topic, p})
		}
	}
	slices.SortFunc(s.partitions, compareTP)
	s.partitions = slices.Compact(s.partitions)
	return s, nil
}
