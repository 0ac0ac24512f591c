package engine

import (
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/record"
)

// TestLargestTimestampSurvivesRestart writes several segments with old
// record timestamps and reopens the log, cleanly and after a crash with the
// recovery point at the log end (nothing rescanned): every inactive
// segment's largest timestamp must come back (from its time index), so
// time retention deletes them, ListOffsets by timestamp finds the first
// segment and the max-timestamp lookup answers.
func TestLargestTimestampSurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clean bool
	}{{"clean", true}, {"crash", false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.cfg.SegmentBytes = 700
			e.cfg.RetentionTime = -1
			l := e.open(true, -1)
			old := int64(1_000_000) // far before the test clock
			for i := 0; i < 30; i++ {
				ts := old + int64(i)
				b := makeBatch(t, record.CodecNone, []testRecord{kv(2*i, ts), kv(2*i+1, ts)})
				if _, err := l.Append(b, 0); err != nil {
					t.Fatal(err)
				}
			}
			segsBefore := l.Segments()
			if len(segsBefore) < 4 {
				t.Fatalf("want several segments, have %d", len(segsBefore))
			}
			l.SetHighWatermark(l.LogEndOffset()) // a restart's high watermark: the log end
			wantMax, wantAt, err := l.MaxTimestamp()
			if err != nil {
				t.Fatal(err)
			}
			leo := l.LogEndOffset()
			if tc.clean {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				crashClose(l)
			}
			l = e.open(tc.clean, leo)
			defer l.Close()

			for i, s := range l.Segments() {
				if s.LargestTimestamp != segsBefore[i].LargestTimestamp {
					t.Errorf("segment %d: largest timestamp %d after restart, %d before", s.BaseOffset, s.LargestTimestamp, segsBefore[i].LargestTimestamp)
				}
			}
			if ts, at, err := l.MaxTimestamp(); err != nil || ts != wantMax || at != wantAt {
				t.Errorf("max timestamp (%d, %d, %v) after restart, (%d, %d) before", ts, at, err, wantMax, wantAt)
			}
			if off, ts, ok, err := l.OffsetForTimestamp(0); err != nil || !ok || off != 0 || ts != old {
				t.Errorf("offset for timestamp 0: %d (ts %d, found %v, %v), want 0", off, ts, ok, err)
			}
			if off, _, ok, err := l.OffsetForTimestamp(old + 10); err != nil || !ok || off != 20 {
				t.Errorf("offset for timestamp %d: %d (found %v, %v), want 20", old+10, off, ok, err)
			}

			cfg := l.Config()
			cfg.RetentionTime = time.Hour
			l.SetConfig(cfg)
			n := l.EnforceRetention()
			if n != len(segsBefore)-1 {
				t.Fatalf("retention deleted %d segments, want %d (all but the active one)", n, len(segsBefore)-1)
			}
		})
	}
}

// TestLargestTimestampFallsBackToScan: a segment whose time index holds no
// usable entry (here: every record has timestamp 0, so the only candidate
// entry is indistinguishable from an unwritten slot) learns its largest
// timestamp from its batch headers.
func TestLargestTimestampFallsBackToScan(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 700
	l := e.open(true, -1)
	for i := 0; i < 12; i++ {
		ts := int64(0)
		if i == 3 {
			ts = -1 // no timestamp
		}
		if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(i, ts)}), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = e.open(true, -1)
	defer l.Close()
	for _, s := range l.Segments() {
		if s.LargestTimestamp != 0 {
			t.Errorf("segment %d: largest timestamp %d, want 0", s.BaseOffset, s.LargestTimestamp)
		}
	}
	if off, _, ok, err := l.OffsetForTimestamp(0); err != nil || !ok || off != 0 {
		t.Errorf("offset for timestamp 0: %d (found %v, %v), want 0", off, ok, err)
	}
}
