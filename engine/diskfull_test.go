package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// TestDiskFull fills the file system under a log (vfs.FullFS: writes fail
// with ENOSPC, partially) while appends roll segments and add index entries
// at every batch: every refused append must be ErrStorage (KAFKA_STORAGE_ERROR
// at the server), every acknowledged record must stay readable while the
// disk is full, appends must succeed again once space is freed, and nothing
// acknowledged may be lost across a crash or a clean restart.
func TestDiskFull(t *testing.T) {
	e := newTestEnv(t)
	full := vfs.NewFullFS(vfs.Default)
	e.fs = full
	e.cfg.SegmentBytes = 2000
	e.cfg.IndexIntervalBytes = 1
	l := e.open(true, -1)
	acked := map[Offset]string{}
	value := bytes.Repeat([]byte("v"), 150)
	produce := func(i int) error {
		key := fmt.Sprintf("key-%d", i)
		b := makeBatch(t, record.CodecNone, []testRecord{{key: []byte(key), value: value, ts: e.clk.Now().UnixMilli()}})
		res, err := l.Append(b, 0)
		if err == nil {
			acked[res.BaseOffset] = key
		}
		return err
	}
	check := func(l *Log, when string) {
		t.Helper()
		got := map[Offset]string{}
		for _, r := range readAll(t, l, 0) {
			got[r.offset] = string(r.key)
		}
		for o, k := range acked {
			if got[o] != k {
				t.Fatalf("%s: acknowledged record %d (%s) reads as %q", when, o, k, got[o])
			}
		}
	}

	for i := 0; i < 20; i++ {
		if err := produce(i); err != nil {
			t.Fatal(err)
		}
	}
	full.SetSpace(3000)
	failures, i := 0, 20
	for ; i < 400 && failures < 30; i++ {
		if err := produce(i); err != nil {
			if !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("append %d on a full disk: %v, want ErrStorage wrapping ENOSPC", i, err)
			}
			failures++
		}
	}
	if full.Hits() == 0 || failures == 0 {
		t.Fatalf("the disk never filled (%d ENOSPC, %d failed appends)", full.Hits(), failures)
	}
	if len(l.Segments()) < 3 {
		t.Fatalf("want rolls before and while the disk is full, have %d segments", len(l.Segments()))
	}
	check(l, "disk full")
	// A batch the full disk cut short is not left behind the last whole one.
	if fi, err := os.Stat(activeLogPath(l)); err != nil || fi.Size() != l.active().size.Load() {
		t.Fatalf("active .log is %v bytes (%v), the log holds %d", fi.Size(), err, l.active().size.Load())
	}

	full.SetSpace(-1)
	for j := 0; j < 20; j++ {
		if err := produce(i + j); err != nil {
			t.Fatalf("append after space was freed: %v", err)
		}
	}
	check(l, "space freed")
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	crashClose(l)
	l = e.open(false, 0)
	check(l, "after a crash")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = e.open(true, -1)
	defer l.Close()
	check(l, "after a clean restart")
}

// TestRollFailureChangesNothing: a roll whose final time-index entry cannot
// be written leaves the old segment active and appendable.
func TestRollFailureChangesNothing(t *testing.T) {
	e := newTestEnv(t)
	full := vfs.NewFullFS(vfs.Default)
	e.fs = full
	l := e.open(true, -1)
	defer l.Close()
	fill(t, e, l, 3)
	full.SetSpace(0)
	if err := l.Roll(); !errors.Is(err, ErrStorage) {
		t.Fatalf("roll on a full disk: %v, want ErrStorage", err)
	}
	if n := len(l.Segments()); n != 1 {
		t.Fatalf("%d segments after a failed roll, want 1", n)
	}
	if m, _ := globDir(l.dir, LogSuffix); len(m) != 1 {
		t.Fatalf("files of the abandoned segment left behind: %v", m)
	}
	full.SetSpace(-1)
	fill(t, e, l, 1)
	if err := l.Roll(); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Segments()); n != 2 {
		t.Fatalf("%d segments after a roll, want 2", n)
	}
	if got := len(readAll(t, l, 0)); got != 12 {
		t.Fatalf("%d records, want 12", got)
	}
}
