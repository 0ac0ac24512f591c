package engine

import (
	"os"
	"testing"
)

// TestRecoveredStats: a log opened after an unclean stop with a torn tail
// reports what recovery rescanned and cut off (the broker logs it).
func TestRecoveredStats(t *testing.T) {
	e := newTestEnv(t)
	l := e.open(true, -1)
	fill(t, e, l, 6)
	path := activeLogPath(l)
	crashClose(l)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, full[:len(full)-7], 0o644); err != nil {
		t.Fatal(err)
	}
	l = e.open(false, 0)
	defer crashClose(l)
	r := l.Recovered()
	if r.Segments < 1 || r.BytesTruncated <= 0 {
		t.Fatalf("recovered %+v: want a rescanned segment and truncated bytes", r)
	}
}
