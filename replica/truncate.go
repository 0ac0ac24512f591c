package replica

import (
	"github.com/kvlog/kvlog/engine/checkpoint"
)

// OffsetsForLeaderEpoch "undefined" answers.
const (
	UndefinedEpoch       = checkpoint.UndefinedEpoch
	UndefinedEpochOffset = Offset(checkpoint.UndefinedEpochOffset)
)

// EpochEndOffset is an OffsetsForLeaderEpoch answer: the largest epoch at or
// below the one asked for that the leader knows, and where it ends (the
// leader's LEO for its current epoch).
type EpochEndOffset struct {
	Epoch     int32
	EndOffset Offset
}

// EpochLookup is a leader epoch cache (engine/checkpoint.EpochCache).
type EpochLookup interface {
	EndOffsetFor(requestedEpoch int32, logEndOffset int64) (int32, int64)
	LatestEpoch() (int32, bool)
}

// EndOffsetForEpoch answers OffsetsForLeaderEpoch from a log's epoch cache
// and end offset (Kafka's UnifiedLog.endOffsetForEpoch): ok is false when the
// answer is undefined.
func EndOffsetForEpoch(c EpochLookup, epoch int32, leo Offset) (EpochEndOffset, bool) {
	e, off := c.EndOffsetFor(epoch, int64(leo))
	if off == checkpoint.UndefinedEpochOffset {
		return EpochEndOffset{Epoch: UndefinedEpoch, EndOffset: UndefinedEpochOffset}, false
	}
	return EpochEndOffset{Epoch: e, EndOffset: Offset(off)}, true
}

// TruncationOffset decides where a follower truncates given its leader's
// OffsetsForLeaderEpoch answer (KIP-101 with KIP-279's multi-round rule,
// Kafka's AbstractFetcherThread.getOffsetTruncationState):
//
//   - undefined end offset: the leader knows no epoch at or below ours
//     (or has none); truncate to fetchOffset, the follower's HW (done);
//   - undefined epoch with an offset: truncate to min(offset, LEO) (done);
//   - the follower knows no epoch at or below the leader's answer: truncate
//     to min(leader's offset, LEO) (done);
//   - the follower's largest epoch at or below the answer is smaller than
//     the answer's epoch (the follower never saw that epoch): truncate to the
//     end of the follower's epoch and ask again with it (not done);
//   - otherwise both know the epoch: truncate to min(leader's end, own end
//     of the epoch, LEO) (done).
//
// done reports whether truncation is complete; when false the follower must
// ask again with its (new) latest epoch.
func TruncationOffset(leader EpochEndOffset, local EpochLookup, leo, fetchOffset Offset) (offset Offset, done bool) {
	switch {
	case leader.EndOffset == UndefinedEpochOffset:
		return min(fetchOffset, leo), true
	case leader.Epoch == UndefinedEpoch:
		return min(leader.EndOffset, leo), true
	}
	own, ok := EndOffsetForEpoch(local, leader.Epoch, leo)
	if !ok {
		return min(leader.EndOffset, leo), true
	}
	if own.Epoch != leader.Epoch {
		return min(own.EndOffset, leo), false
	}
	return min(own.EndOffset, leader.EndOffset, leo), true
}

// CheckLeaderEpoch checks the current leader epoch a request carries
// (KIP-320) against the partition's: -1 skips the check, older is fenced,
// newer is unknown (this broker has not heard of it yet).
func CheckLeaderEpoch(current, requested int32) error {
	switch {
	case requested == -1 || requested == current:
		return nil
	case requested < current:
		return ErrFencedLeaderEpoch
	default:
		return ErrUnknownLeaderEpoch
	}
}
