package server

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/replica"
	"github.com/kvlog/kvlog/server/group"
	"github.com/kvlog/kvlog/server/txn"
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
	{engine.ErrKeyIndexDisabled, kerr.InvalidRequest},
	{engine.ErrInvalidRecord, kerr.InvalidRecord},
	{engine.ErrMessageTooLarge, kerr.MessageTooLarge},
	{engine.ErrRecordListTooLarge, kerr.RecordListTooLarge},
	{engine.ErrOffsetOutOfRange, kerr.OffsetOutOfRange},
	{engine.ErrOutOfOrderSequence, kerr.OutOfOrderSequenceNumber},
	{engine.ErrInvalidProducerEpoch, kerr.InvalidProducerEpoch},
	{engine.ErrCoordinatorFenced, kerr.TransactionCoordinatorFenced},
	{engine.ErrInvalidTxnState, kerr.InvalidTxnState},
	{engine.ErrUnsupportedCompression, kerr.UnsupportedCompressionType},
	{engine.ErrInvalidTimestamp, kerr.InvalidTimestamp},
	{engine.ErrStorage, kerr.KafkaStorageError},
	{engine.ErrClosed, kerr.NotLeaderForPartition}, // the log went away (deleted topic, shutdown): clients refresh metadata
	// Replication (cluster mode).
	{replica.ErrNotLeader, kerr.NotLeaderForPartition},
	{replica.ErrNotReplica, kerr.NotLeaderForPartition},
	{replica.ErrNotEnoughReplicas, kerr.NotEnoughReplicas},
	{replica.ErrNotEnoughReplicasAfterAppend, kerr.NotEnoughReplicasAfterAppend},
	{replica.ErrFencedLeaderEpoch, kerr.FencedLeaderEpoch},
	{replica.ErrUnknownLeaderEpoch, kerr.UnknownLeaderEpoch},
	{replica.ErrStaleState, kerr.StaleControllerEpoch},
	{replica.ErrTimedOut, kerr.RequestTimedOut},
}

// groupErrors maps each group coordinator sentinel to its Kafka error.
var groupErrors = []struct {
	err  error
	kerr *kerr.Error
}{
	{group.ErrInvalidGroupID, kerr.InvalidGroupID},
	{group.ErrCoordinatorNotAvailable, kerr.CoordinatorNotAvailable},
	{group.ErrNotCoordinator, kerr.NotCoordinator},
	{group.ErrCoordinatorLoadInProgress, kerr.CoordinatorLoadInProgress},
	{group.ErrInvalidSessionTimeout, kerr.InvalidSessionTimeout},
	{group.ErrUnknownMemberID, kerr.UnknownMemberID},
	{group.ErrMemberIDRequired, kerr.MemberIDRequired},
	{group.ErrIllegalGeneration, kerr.IllegalGeneration},
	{group.ErrRebalanceInProgress, kerr.RebalanceInProgress},
	{group.ErrInconsistentGroupProtocol, kerr.InconsistentGroupProtocol},
	{group.ErrFencedInstanceID, kerr.FencedInstanceID},
	{group.ErrGroupMaxSizeReached, kerr.GroupMaxSizeReached},
	{group.ErrGroupIDNotFound, kerr.GroupIDNotFound},
	{group.ErrNonEmptyGroup, kerr.NonEmptyGroup},
	{group.ErrGroupSubscribedToTopic, kerr.GroupSubscribedToTopic},
	{group.ErrOffsetMetadataTooLarge, kerr.OffsetMetadataTooLarge},
	{group.ErrInvalidCommitOffsetSize, kerr.InvalidCommitOffsetSize},
	{group.ErrRecordTooLarge, kerr.UnknownServerError},
	{group.ErrUnstableOffsetCommit, kerr.UnstableOffsetCommit},
}

// txnErrors maps each transaction coordinator sentinel to its Kafka error.
var txnErrors = []struct {
	err  error
	kerr *kerr.Error
}{
	{txn.ErrInvalidRequest, kerr.InvalidRequest},
	{txn.ErrCoordinatorNotAvailable, kerr.CoordinatorNotAvailable},
	{txn.ErrNotCoordinator, kerr.NotCoordinator},
	{txn.ErrCoordinatorLoadInProgress, kerr.CoordinatorLoadInProgress},
	{txn.ErrInvalidTransactionTimeout, kerr.InvalidTransactionTimeout},
	{txn.ErrConcurrentTransactions, kerr.ConcurrentTransactions},
	{txn.ErrProducerFenced, kerr.ProducerFenced},
	{txn.ErrInvalidProducerIDMapping, kerr.InvalidProducerIDMapping},
	{txn.ErrInvalidTxnState, kerr.InvalidTxnState},
	{txn.ErrTransactionalIDNotFound, kerr.TransactionalIDNotFound},
	{txn.ErrUnknownServerError, kerr.UnknownServerError},
	{txn.ErrMarkerPartitionGone, kerr.UnknownTopicOrPartition},
}

// errCode returns the Kafka error code for err: 0 for nil, the code of a
// *kerr.Error anywhere in the chain, the mapped code of a group, transaction or engine sentinel,
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
	for _, m := range groupErrors {
		if errors.Is(err, m.err) {
			return m.kerr
		}
	}
	for _, m := range txnErrors {
		if errors.Is(err, m.err) {
			return m.kerr
		}
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
