package engine

// RecoveryStats is what opening a log after an unclean shutdown did: the
// segments it rescanned (every batch checked, indexes rebuilt), the bytes
// of a torn or corrupt tail it cut off and the segments after that tail it
// deleted. Zero when the log was trusted as it was.
type RecoveryStats struct {
	Segments        int
	BytesTruncated  int64
	SegmentsDeleted int
}

// Recovered reports what opening the log recovered (RecoveryStats).
func (l *Log) Recovered() RecoveryStats { return l.recovered }
