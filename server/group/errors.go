package group

import "errors"

// The coordinator's errors. Each names one of Kafka's group error codes;
// the server maps them to codes at its edge (server/errors.go), so this
// package never deals in wire numbers. Errors returned by the coordinator
// wrap exactly one of these (or a Store error, wrapped in
// ErrCoordinatorNotAvailable).
var (
	ErrInvalidGroupID            = errors.New("group: invalid group id")
	ErrCoordinatorNotAvailable   = errors.New("group: coordinator not available")
	ErrNotCoordinator            = errors.New("group: not the coordinator for this group")
	ErrCoordinatorLoadInProgress = errors.New("group: coordinator is loading")
	ErrInvalidSessionTimeout     = errors.New("group: session timeout outside group.min/max.session.timeout.ms")
	ErrUnknownMemberID           = errors.New("group: unknown member id")
	ErrMemberIDRequired          = errors.New("group: member id required; rejoin with the id given")
	ErrIllegalGeneration         = errors.New("group: illegal generation")
	ErrRebalanceInProgress       = errors.New("group: rebalance in progress")
	ErrInconsistentGroupProtocol = errors.New("group: inconsistent group protocol")
	ErrFencedInstanceID          = errors.New("group: fenced instance id")
	ErrGroupMaxSizeReached       = errors.New("group: group.max.size reached")
	ErrGroupIDNotFound           = errors.New("group: group id not found")
	ErrNonEmptyGroup             = errors.New("group: group is not empty")
	ErrGroupSubscribedToTopic    = errors.New("group: group is subscribed to the topic")
	ErrOffsetMetadataTooLarge    = errors.New("group: offset metadata too large")
	// ErrRecordTooLarge: the store refused a write as larger than the
	// offsets topic accepts (max.message.bytes, segment.bytes). Kafka
	// answers a group metadata write (JoinGroup, SyncGroup) that fails so
	// with UNKNOWN_SERVER_ERROR, not a retriable error, since retrying
	// sends the same bytes; an offset commit with ErrInvalidCommitOffsetSize.
	ErrRecordTooLarge          = errors.New("group: record too large for the offsets topic")
	ErrInvalidCommitOffsetSize = errors.New("group: offset commit too large for the offsets topic")
	// ErrUnstableOffsetCommit: OffsetFetch with require_stable for a
	// partition with a transactional offset commit not yet committed or
	// aborted.
	ErrUnstableOffsetCommit = errors.New("group: a transactional offset commit of the partition is pending")
)
