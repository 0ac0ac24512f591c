package main

import (
	"strconv"
	"strings"
	"time"
)

// parseTime reads a point in time as the commands take it: Unix
// milliseconds ("1735689600000"), RFC 3339 ("2025-01-01T00:00:00Z", or
// without a zone for local time, Kafka's kafka-consumer-groups
// --to-datetime form "2025-01-01T00:00:00.000"), a date ("2025-01-01",
// local midnight), or a duration before now ("-1h30m", "now").
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now, nil
	}
	if strings.HasPrefix(s, "-") {
		if d, err := time.ParseDuration(s[1:]); err == nil {
			return now.Add(-d), nil
		}
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return time.UnixMilli(ms), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z0700", "2006-01-02T15:04:05Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	for _, layout := range []string{"2006-01-02T15:04:05.000", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usageErr("%q is not a time: give Unix milliseconds, RFC 3339 (2025-01-01T00:00:00Z), a date (2025-01-01) or a duration ago (-1h)", s)
}

// fmtTime prints a record timestamp (ms) in UTC, with the milliseconds.
func fmtTime(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

// partitionList parses -p values: "0,2,5" or repeated.
func parsePartitions(ps []int32) (map[int32]bool, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make(map[int32]bool, len(ps))
	for _, p := range ps {
		if p < 0 {
			return nil, usageErr("partition %d: partitions are >= 0", p)
		}
		out[p] = true
	}
	return out, nil
}
