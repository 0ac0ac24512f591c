package engine

import (
	"errors"
	"fmt"
)

// Sentinel errors. The server maps each to one Kafka error code (server/errors.go).
var (
	ErrCorruptRecord          = errors.New("engine: corrupt record batch")                // CORRUPT_MESSAGE
	ErrInvalidRecord          = errors.New("engine: invalid record")                      // INVALID_RECORD
	ErrMessageTooLarge        = errors.New("engine: batch larger than max.message.bytes") // MESSAGE_TOO_LARGE
	ErrRecordListTooLarge     = errors.New("engine: batch larger than a segment")         // RECORD_LIST_TOO_LARGE
	ErrOffsetOutOfRange       = errors.New("engine: offset out of range")                 // OFFSET_OUT_OF_RANGE
	ErrOutOfOrderSequence     = errors.New("engine: out of order sequence number")        // OUT_OF_ORDER_SEQUENCE_NUMBER
	ErrInvalidProducerEpoch   = errors.New("engine: invalid producer epoch")              // INVALID_PRODUCER_EPOCH
	ErrUnsupportedCompression = errors.New("engine: unsupported compression codec")       // UNSUPPORTED_COMPRESSION_TYPE
	ErrInvalidTimestamp       = errors.New("engine: invalid timestamp")                   // INVALID_TIMESTAMP
	ErrStorage                = errors.New("engine: storage error")                       // KAFKA_STORAGE_ERROR
	ErrClosed                 = errors.New("engine: log closed")                          // KAFKA_STORAGE_ERROR / NOT_LEADER
	ErrInvalidTxnState        = errors.New("engine: invalid transaction state")           // INVALID_TXN_STATE
	ErrCoordinatorFenced      = errors.New("engine: transaction coordinator fenced")      // TRANSACTION_COORDINATOR_FENCED
)

// LogError says which partition (and where) an operation failed. It wraps the cause.
type LogError struct {
	TP      TopicPartition
	Segment Offset // base offset of the segment, -1 when not segment-specific
	Offset  Offset // offset involved, -1 when unknown
	Op      string
	Err     error
}

func (e *LogError) Error() string {
	s := fmt.Sprintf("%s %s", e.TP, e.Op)
	if e.Segment >= 0 {
		s += fmt.Sprintf(" segment %d", e.Segment)
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf(" offset %d", e.Offset)
	}
	return s + ": " + e.Err.Error()
}

func (e *LogError) Unwrap() error { return e.Err }

func (l *Log) errorf(op string, seg, off Offset, err error) error {
	return &LogError{TP: l.tp, Segment: seg, Offset: off, Op: op, Err: err}
}
