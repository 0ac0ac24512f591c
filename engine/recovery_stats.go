package engine

// RecoveryStats is what opening a log after an unclean shutdown did: the
// segments it rescanned (every batch checked, indexes rebuilt), the bytes
// of a torn or corrupt tail it cut off and the segments after that tail it
// deleted. Zero when the log was trusted as it was.
//
// TailRead says the active segment was read from its last index entry on
// to learn whether it ends exactly at the recovery point, because no entry
// of the log dir's synced-tail checkpoint vouched for it (FORMAT.md §5).
type RecoveryStats struct {
	Segments        int
	BytesTruncated  int64
	SegmentsDeleted int
	TailRead        bool
}

// Recovered reports what opening the log recovered (RecoveryStats).
func (l *Log) Recovered() RecoveryStats { return l.recovered }
