package index

import "errors"

// Errors returned by this package. Returned errors wrap one of these with %w
// and name the index file.
var (
	// ErrCorruptIndex reports an index file whose size or contents cannot be a
	// valid index (Kafka's CorruptIndexException). The index should be deleted
	// or Reset and rebuilt from the log.
	ErrCorruptIndex = errors.New("index: corrupt index")
	// ErrIndexFull reports an append to an index with no free slot.
	ErrIndexFull = errors.New("index: index is full")
	// ErrInvalidOffset reports an append whose offset is not larger than the
	// last entry's offset (offset index) or is smaller than it (time index);
	// Kafka's InvalidOffsetException.
	ErrInvalidOffset = errors.New("index: offset out of order")
	// ErrInvalidTimestamp reports a time index append whose timestamp is
	// smaller than the last entry's timestamp (Kafka's IllegalStateException).
	ErrInvalidTimestamp = errors.New("index: timestamp out of order")
	// ErrOffsetOverflow reports an offset whose distance from the base offset
	// is negative or exceeds math.MaxInt32 (Kafka's IndexOffsetOverflowException).
	ErrOffsetOverflow = errors.New("index: relative offset overflow")
	// ErrReadOnly reports a write to an index opened read-only.
	ErrReadOnly = errors.New("index: index is read-only")
	// ErrClosed reports use of a closed or deleted index.
	ErrClosed = errors.New("index: index is closed")
)
