package engine

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

func TestAppendReadReopen(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 2048
	l := e.open(true, -1)
	ts := e.clk.Now().UnixMilli()
	var want int
	for i := 0; i < 200; i++ {
		res, err := l.Append(makeBatch(t, record.Codec(i%5), []testRecord{kv(2*i, ts), kv(2*i+1, ts+1)}), 3)
		if err != nil {
			t.Fatal(err)
		}
		if res.BaseOffset != Offset(want) || res.LastOffset != Offset(want+1) {
			t.Fatalf("append %d: got %d-%d want %d", i, res.BaseOffset, res.LastOffset, want)
		}
		want += 2
	}
	if n := len(l.Segments()); n < 10 {
		t.Fatalf("expected rolls, got %d segments", n)
	}
	check := func(l *Log) {
		t.Helper()
		got := readAll(t, l, 0)
		if len(got) != want {
			t.Fatalf("read %d records, want %d", len(got), want)
		}
		for i, r := range got {
			if r.offset != Offset(i) || !bytes.Equal(r.key, kv(i, 0).key) {
				t.Fatalf("record %d: offset %d key %q", i, r.offset, r.key)
			}
		}
		mid := readAll(t, l, 173)
		if len(mid) != want-173 || mid[0].offset != 173 {
			t.Fatalf("read from 173: %d records first %v", len(mid), mid[0].offset)
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = e.open(true, l.RecoveryPoint())
	check(l)
	if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(want, ts)}), 3); err != nil {
		t.Fatal(err)
	}
	want++
	check(l)
	l.Close()
	l = e.open(false, 0) // unclean: full recovery
	check(l)
	if _, err := l.Read(Offset(want+1), 100, Offset(want+1)); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past end: %v", err)
	}
	l.Close()
}
