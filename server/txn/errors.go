package txn

import "errors"

// The coordinator's errors. Each names one of Kafka's transaction error
// codes; the server maps them to codes at its edge (server/errors.go), so
// this package never deals in wire numbers. Errors returned by the
// coordinator wrap exactly one of these (a Store error is wrapped in
// ErrCoordinatorNotAvailable, or ErrNotCoordinator when the store says
// so).
var (
	ErrInvalidRequest            = errors.New("txn: invalid request")
	ErrCoordinatorNotAvailable   = errors.New("txn: coordinator not available")
	ErrNotCoordinator            = errors.New("txn: not the coordinator for this transactional id")
	ErrCoordinatorLoadInProgress = errors.New("txn: coordinator is loading")
	ErrInvalidTransactionTimeout = errors.New("txn: transaction timeout outside (0, transaction.max.timeout.ms]")
	ErrConcurrentTransactions    = errors.New("txn: a state change of this transactional id is in progress")
	ErrProducerFenced            = errors.New("txn: producer fenced by a newer epoch")
	ErrInvalidProducerIDMapping  = errors.New("txn: producer id does not match the transactional id")
	ErrInvalidTxnState           = errors.New("txn: request invalid in the transaction's state")
	ErrTransactionalIDNotFound   = errors.New("txn: transactional id not found")
	// ErrUnknownServerError: the store refused a write it will always
	// refuse (a record larger than the topic accepts).
	ErrUnknownServerError = errors.New("txn: unknown server error")
)

// Errors a MarkerWriter reports per partition (others are retried).
var (
	// ErrMarkerPartitionGone: the partition no longer exists (its topic
	// was deleted); the coordinator stops sending it markers, as Kafka
	// does, and completes the transaction without it.
	ErrMarkerPartitionGone = errors.New("txn: marker partition no longer exists")
	// ErrMarkerFenced: the partition refused the marker because a newer
	// coordinator (a higher coordinator epoch) or producer epoch wrote to
	// it; this coordinator is stale and stops sending the transaction's
	// markers (its successor resumes them).
	ErrMarkerFenced = errors.New("txn: marker fenced by a newer coordinator or producer epoch")
)
