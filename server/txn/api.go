package txn

// The types of the coordinator's API, free of wire versions: the broker's
// handlers (package server) translate requests into these.

// InitRequest is an InitProducerId with a transactional id.
type InitRequest struct {
	TransactionalID string
	TimeoutMs       int32
	// Expected is the producer's current id and epoch (v3+, KIP-360: a
	// producer recovering from an abortable error keeps its id); nil
	// when the producer starts afresh.
	Expected *ProducerIDEpoch
}

// ProducerIDEpoch is a producer id with an epoch.
type ProducerIDEpoch struct {
	ProducerID int64
	Epoch      int16
}

// InitResult answers an InitRequest: the id and epoch to use, or Err.
type InitResult struct {
	ProducerID int64
	Epoch      int16
	Err        error
}

// MarkerRequest asks the leaders of Partitions to write a commit or
// abort marker for the producer's transaction (WriteTxnMarkers).
type MarkerRequest struct {
	TransactionalID  string
	ProducerID       int64
	ProducerEpoch    int16
	Commit           bool
	CoordinatorEpoch int32
	Partitions       []TopicPartition
}

// Description is a transactional id as DescribeTransactions reports it.
type Description struct {
	TransactionalID string
	State           State
	ProducerID      int64
	ProducerEpoch   int16
	TimeoutMs       int32
	StartMs         int64 // -1: no transaction
	Partitions      []TopicPartition
}

// Listing is one transactional id in a ListTransactions answer.
type Listing struct {
	TransactionalID string
	ProducerID      int64
	State           State
}

// ListFilter selects ListTransactions' answer; zero fields select all.
type ListFilter struct {
	States      []State
	ProducerIDs []int64
	// MinDurationMs (KIP-994): only transactions running at least this
	// long (<= 0: all).
	MinDurationMs int64
}
