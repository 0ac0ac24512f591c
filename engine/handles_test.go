package engine

import (
	"math/rand/v2"
	"os"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// TestOpenHandlesBounded reads at random offsets across many segments with a
// small handle cache: the number of open descriptors stays bounded by the
// cache (plus readers in flight), not by the number of segments.
func TestOpenHandlesBounded(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 1024
	hc := newHandleCache(budgetLimits{files: 1 << 20, maps: 1 << 20}, 8)
	l, err := OpenLog(e.dir, TopicPartition{Topic: "topic"}, e.cfg, LogOptions{Clock: e.clk, Logger: quietLogger, CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1, handles: hc})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ts := e.clk.Now().UnixMilli()
	for i := 0; l.LogEndOffset() < 3000; i++ {
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts), kv(i, ts), kv(i, ts)}), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(l.Segments()); n < 100 {
		t.Fatalf("want many segments, got %d", n)
	}
	base := openFDs(t)
	rng := rand.New(rand.NewPCG(3, 4))
	peak := 0
	for i := 0; i < 3000; i++ {
		r, err := l.Read(Offset(rng.Int64N(int64(l.LogEndOffset()))), 512, l.LogEndOffset())
		if err != nil {
			t.Fatal(err)
		}
		r.Release()
		if i%100 == 0 {
			peak = max(peak, openFDs(t)-base)
		}
	}
	if n := openFDs(t) - base; n > 8+2 || peak > 8+64+2 {
		t.Fatalf("open descriptors grew by %d (peak %d) with a cache of 8 over %d segments", n, peak, len(l.Segments()))
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}
