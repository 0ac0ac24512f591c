// Package cleanerstatus is the log cleaner's status document: the JSON a
// kvlog broker serves at Path on its HTTP listener and `kvlog cleaner
// status` reads. The cleaner fills it (cleaner.Manager.Status); this package
// alone defines its shape, so the broker and the CLI cannot drift apart. It
// imports nothing of kvlog.
package cleanerstatus

import (
	"math"
	"time"
)

// Path is where the broker's HTTP listener serves the status (GET, JSON).
const Path = "/cleaner"

// Status is the cleaner's state for operators.
type Status struct {
	Enabled               bool      `json:"enabled"`
	Threads               int       `json:"threads"`
	Config                Config    `json:"config"`
	LastRun               time.Time `json:"last_run"`
	TimeSinceLastRunMs    int64     `json:"time_since_last_run_ms"`
	MaxDirtyRatio         float64   `json:"max_dirty_ratio"`
	UncleanablePartitions int       `json:"uncleanable_partitions"`
	// MapBytes is the offset map memory held now: allocated at a thread's
	// first pass, let go after the cleaner has been idle.
	MapBytes int64 `json:"map_bytes"`
	// ThreadErrors lists threads that could not allocate their offset map
	// (they clean nothing until an allocation succeeds).
	ThreadErrors []ThreadError `json:"thread_errors,omitempty"`
	// Partitions are ordered by topic and partition.
	Partitions []PartitionStatus `json:"partitions"`
}

// Config is the cleaner's current configuration, Apache Kafka's
// log.cleaner.* settings (see cleaner.Config).
type Config struct {
	Enable           bool    `json:"enable"`
	Threads          int     `json:"threads"`
	DedupeBufferSize int64   `json:"dedupe_buffer_size"`
	LoadFactor       float64 `json:"load_factor"`
	// IOMaxBytesPerSecond is -1 when unlimited (JSON has no +Inf).
	IOMaxBytesPerSecond float64 `json:"io_max_bytes_per_second"`
	// Durations are whole milliseconds, as Kafka's *.ms settings.
	BackoffMs          int64   `json:"backoff_ms"`
	MinCleanableRatio  float64 `json:"min_cleanable_ratio"`
	DeleteRetentionMs  int64   `json:"delete_retention_ms"`
	MinCompactionLagMs int64   `json:"min_compaction_lag_ms"`
	BoundedTombstones  bool    `json:"bounded_tombstones"`
	// IdleRollMs is kvlog.cleaner.idle.roll.ms (0: off).
	IdleRollMs int64 `json:"idle_roll_ms"`
}

// Unlimited is IOMaxBytesPerSecond's value for no throttle.
const Unlimited = -1

// IORate returns rate as IOMaxBytesPerSecond holds it: Unlimited for no
// limit (<= 0, +Inf or NaN).
func IORate(rate float64) float64 {
	if rate <= 0 || math.IsInf(rate, 1) || math.IsNaN(rate) {
		return Unlimited
	}
	return rate
}

// ThreadError is a cleaner thread's failure to allocate its offset map.
type ThreadError struct {
	Thread int       `json:"thread"`
	Error  string    `json:"error"`
	Since  time.Time `json:"since"`
}

// PartitionStatus describes one compacted partition. Ratios and offsets are
// from the cleaner's last planning round.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// State is idle, in-progress, aborting, paused or uncleanable.
	State                  string  `json:"state"`
	DirtyRatio             float64 `json:"dirty_ratio"`
	FirstDirtyOffset       int64   `json:"first_dirty_offset"`
	FirstUncleanableOffset int64   `json:"first_uncleanable_offset"`
	CleanBytes             int64   `json:"clean_bytes"`
	CleanableBytes         int64   `json:"cleanable_bytes"`
	// Due is why the partition would be cleaned now (a Pass.Reason), empty
	// when it is not due.
	Due           string     `json:"due,omitempty"`
	Passes        int        `json:"passes"`
	LastCleanTime *time.Time `json:"last_clean_time,omitempty"`
	LastPass      *Pass      `json:"last_pass,omitempty"`
	// TombstoneHorizon is the earliest known tombstone expiry.
	TombstoneHorizon *time.Time `json:"tombstone_horizon,omitempty"`
	Uncleanable      bool       `json:"uncleanable"`
	// Error is the cause of an uncleanable partition, or why the last pass
	// was abandoned.
	Error string `json:"error,omitempty"`
}

// Pass describes one clean pass (see cleaner.PassStats).
type Pass struct {
	Start time.Time `json:"start"`
	// DurationMs and MapDurationMs (the time spent building the offset
	// map) are milliseconds, with a fraction: a small pass takes less
	// than one.
	DurationMs    float64 `json:"duration_ms"`
	MapDurationMs float64 `json:"map_duration_ms"`
	// Reason is why the partition was cleaned: dirty-ratio,
	// max-compaction-lag, tombstones or stale-dirty.
	Reason string `json:"reason"`

	FirstDirty       int64 `json:"first_dirty_offset"`
	FirstUncleanable int64 `json:"first_uncleanable_offset"`
	EndOffset        int64 `json:"end_offset"` // everything below is clean

	MapFull  bool `json:"map_full"`  // the dirty section was mapped in key ranges
	MapScans int  `json:"map_scans"` // scans of the dirty section that built the map

	MapBytesRead   int64   `json:"map_bytes_read"` // all scans, the clean section's included
	MapRecords     int64   `json:"map_records"`
	MapUtilization float64 `json:"map_utilization"` // the fullest scan's
	// MapArrayRecords: records of the dirty section the first scan kept
	// for the later key ranges, which map them without reading the log.
	MapArrayRecords int64 `json:"map_array_records"`

	BytesRead       int64 `json:"bytes_read"`    // bytes of the recopied segments
	BytesWritten    int64 `json:"bytes_written"` // bytes of the cleaned segments swapped in
	RecordsRead     int64 `json:"records_read"`
	RecordsRetained int64 `json:"records_retained"`

	BatchesCopied     int64 `json:"batches_copied"`    // unchanged, copied byte for byte
	BatchesRewritten  int64 `json:"batches_rewritten"` // re-encoded with their codec
	BatchesEmptied    int64 `json:"batches_emptied"`   // kept as empty batches (producer state, group end)
	BatchesDropped    int64 `json:"batches_dropped"`
	TombstonesDropped int64 `json:"tombstones_dropped"`
	HorizonsStamped   int64 `json:"horizons_stamped"`
	KeylessDropped    int64 `json:"keyless_dropped"`
	AbortedRecords    int64 `json:"aborted_records"` // records of aborted transactions removed
	MarkersStamped    int64 `json:"markers_stamped"` // transaction markers with no data left given a delete horizon
	MarkersRemoved    int64 `json:"markers_removed"` // transaction markers removed after their horizon

	Groups        int `json:"groups"`
	GroupsSkipped int `json:"groups_skipped"` // single segments with nothing to change: not rewritten

	// TombstoneHorizon is the earliest delete horizon (Unix ms) among the
	// retained batches holding tombstones below EndOffset, MaxInt64 if none.
	TombstoneHorizon int64 `json:"tombstone_horizon_ms"`
}

// Reclaimed is what the pass freed: the bytes of the segments it recopied
// less those of the cleaned segments swapped in.
func (p *Pass) Reclaimed() int64 { return p.BytesRead - p.BytesWritten }

// Millis is d in milliseconds with a fraction (DurationMs).
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
