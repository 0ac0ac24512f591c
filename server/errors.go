package server

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
)

// Kafka error codes are decided here, at the server edge, and nowhere else:
// handlers pass errors (engine sentinels, server sentinels or *kerr.Error)
// through errCode.

// engineErrors maps each engine sentinel to its Kafka error.
var engineErrors = []struct {
	err  error
	kerr *kerr.Error
}{
	{engine.ErrCorruptRecord, kerr.CorruptMessage},
	{engine.ErrInvalidRecord, kerr.InvalidRecord},
	{engine.ErrMessageTooLarge, kerr.MessageTooLarge},
	{engine.ErrRecordListTooLarge, kerr.RecordListTooLarge},
	{engine.ErrOffsetOutOfRange, kerr.OffsetOutOfRange},
	{engine.ErrOutOfOrderSequence, kerr.OutOfOrderSequenceNumber},
	{engine.ErrInvalidProducerEpoch, kerr.InvalidProducerEpoch},
	{engine.ErrUnsupportedCompression, kerr.UnsupportedCompressionType},
	{engine.ErrInvalidTimestamp, kerr.InvalidTimestamp},
	{engine.ErrStorage, kerr.KafkaStorageError},
	{engine.ErrClosed, kerr.NotLeaderForPartition}, // the log went away (deleted topic, shutdown): clients refresh metadata
}

// errCode returns the Kafka error code for err: 0 for nil, the code of a
// *kerr.Error anywhere in the chain, the mapped code of an engine sentinel,
// and UNKNOWN_SERVER_ERROR otherwise.
func errCode(err error) int16 {
	return toKerr(err).Code
}

// noError is the code of success, for symmetry in handlers.
const noError int16 = 0

// toKerr is errCode returning the *kerr.Error (nil-safe: nil → a zero
// error with code 0 is never returned; use errCode for codes).
func toKerr(err error) *kerr.Error {
	if err == nil {
		return &kerr.Error{Message: "NONE", Code: 0}
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke
	}
	for _, m := range engineErrors {
		if errors.Is(err, m.err) {
			return m.kerr
		}
	}
	return kerr.UnknownServerError
}

// errMessage is the error message for responses that carry one (nil when
// err is nil).
func errMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
