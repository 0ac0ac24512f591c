package engine

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvlog/kvlog/engine/record"
)

// fill appends n three-record batches and returns their encoded sizes.
func fill(t *testing.T, e *testEnv, l *Log, n int) []int {
	t.Helper()
	ts := e.clk.Now().UnixMilli()
	sizes := make([]int, n)
	for i := 0; i < n; i++ {
		b := makeBatch(t, record.Codec(i%5), []testRecord{kv(3*i, ts), kv(3*i+1, ts), kv(3*i+2, ts)})
		sizes[i] = len(b)
		if _, err := l.Append(b, 0); err != nil {
			t.Fatal(err)
		}
	}
	return sizes
}

// crashClose abandons a log without a clean close (files stay as written).
func crashClose(l *Log) {
	l.closed.Store(true)
	l.wg.Wait()
	l.closeSegments()
}

func assertRecords(t *testing.T, l *Log, n int) {
	t.Helper()
	if l.LogEndOffset() != Offset(n) {
		t.Fatalf("log end %d, want %d", l.LogEndOffset(), n)
	}
	got := readAll(t, l, 0)
	if len(got) != n {
		t.Fatalf("%d records survive, want %d", len(got), n)
	}
	for i, r := range got {
		if r.offset != Offset(i) || string(r.key) != string(kv(i, 0).key) || string(r.value) != string(kv(i, 0).value) {
			t.Fatalf("record %d corrupt: %+v", i, r)
		}
	}
	// The log must accept appends at its end afterwards.
	if _, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(n, 0)}), 0); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
}

func activeLogPath(l *Log) string { return LogFileName(l.dir, l.active().base) }

func TestRecoverTornLastBatchAtEveryByte(t *testing.T) {
	e := newTestEnv(t)
	l := e.open(true, -1)
	sizes := fill(t, e, l, 6)
	path := activeLogPath(l)
	crashClose(l)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	last := sizes[len(sizes)-1]
	for cut := 1; cut < last; cut++ {
		if err := os.WriteFile(path, full[:len(full)-cut], 0o644); err != nil {
			t.Fatal(err)
		}
		l := e.open(false, 0)
		assertRecords(t, l, 15)
		crashClose(l)
	}
}

func TestRecoverCorruptionTable(t *testing.T) {
	// segmentSizes, set by a poke, is what the check of a case that must
	// not truncate compares with.
	var segmentSizes map[Offset]int64
	type setup struct {
		// manager: the log lives in a log dir opened by a Manager, so the
		// clean-shutdown marker and the log-dir checkpoints take part.
		manager bool
		// segmentBytes, when set, overrides the case's segment size.
		segmentBytes int64
		// check, when set, replaces assertRecords(survive).
		check func(t *testing.T, l *Log)
	}
	special := map[string]setup{
		"base_offset_jump_past_next_segment": {segmentBytes: 700},
		"recovery_checkpoint_unreadable_after_clean_shutdown": {manager: true, check: func(t *testing.T, l *Log) {
			if got := l.LogEndOffset(); got != 18 {
				t.Fatalf("log end %d, want 18", got)
			}
			segs := l.Segments()
			if len(segs) != len(segmentSizes) {
				t.Fatalf("%d segments after restart, %d before", len(segs), len(segmentSizes))
			}
			for _, s := range segs {
				if s.Size != segmentSizes[s.BaseOffset] {
					t.Fatalf("segment %d: %d bytes after restart, %d before", s.BaseOffset, s.Size, segmentSizes[s.BaseOffset])
				}
			}
			res, err := l.Append(makeBatch(t, record.CodecNone, []testRecord{kv(18, 0)}), 0)
			if err != nil || res.BaseOffset != 18 {
				t.Fatalf("append after restart: offset %d, %v; want 18", res.BaseOffset, err)
			}
		}},
	}
	cases := []struct {
		name    string
		poke    func(t *testing.T, e *testEnv, l *Log, sizes []int)
		clean   bool
		survive int
	}{
		{"bad_crc_mid_active", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			// Flip a byte inside the records of the 4th batch.
			pos := int64(sizes[0] + sizes[1] + sizes[2] + record.HeaderSize + 2)
			flipByte(t, activeLogPath(l), pos)
		}, false, 9},
		{"bad_length_mid_active", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			pos := int64(sizes[0] + sizes[1] + 8)
			writeAt(t, activeLogPath(l), pos, []byte{0x7f, 0xff, 0xff, 0xff})
		}, false, 6},
		{"zeroed_tail", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			appendBytes(t, activeLogPath(l), make([]byte, 8192))
		}, false, 18},
		{"garbage_tail", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			appendBytes(t, activeLogPath(l), []byte("this is not a record batch, it is garbage left by a torn write"))
		}, false, 18},
		{"index_missing", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			removeAll(t, l.dir, IndexSuffix)
		}, true, 18},
		{"timeindex_missing", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			removeAll(t, l.dir, TimeIndexSuffix)
		}, true, 18},
		{"index_truncated", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			truncateAll(t, l.dir, IndexSuffix, 3)
		}, true, 18},
		{"timeindex_truncated", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			truncateAll(t, l.dir, TimeIndexSuffix, 5)
		}, true, 18},
		{"index_garbage", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			garbageAll(t, l.dir, IndexSuffix)
		}, true, 18},
		{"timeindex_garbage", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			garbageAll(t, l.dir, TimeIndexSuffix)
		}, true, 18},
		{"index_garbage_unclean", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			garbageAll(t, l.dir, IndexSuffix)
		}, false, 18},
		// A forward jump of a batch's base offset (outside the CRC) in the
		// middle of a segment: the next batch starts inside the jumped
		// range, continuing from the batch before it. The jumped batch is
		// cut, not kept with offsets 609..611 as the log end.
		{"base_offset_jump_mid_active", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			setBaseOffset(t, activeLogPath(l), int64(sizes[0]+sizes[1]+sizes[2]), 9+600)
		}, false, 9},
		{"base_offset_jump_first_batch", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			setBaseOffset(t, activeLogPath(l), 0, 600)
		}, false, 0},
		// The last batch of the first (inactive) segment jumps past the
		// next segment's base: it is cut there and the later segments go,
		// as for any corruption.
		{"base_offset_jump_past_next_segment", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			segs := l.Segments()
			if len(segs) != 2 || segs[1].BaseOffset != 15 {
				t.Fatalf("want segments at 0 and 15: %+v", segs)
			}
			last := int(segs[1].BaseOffset/3) - 1 // the last batch of segment 0
			pos := 0
			for _, n := range sizes[:last] {
				pos += n
			}
			setBaseOffset(t, LogFileName(l.dir, 0), int64(pos), int64(segs[1].BaseOffset)+100)
		}, false, 12},
		// The clean-shutdown marker is present but the recovery-point
		// checkpoint cannot be read, and an old segment holds a bad byte:
		// the checkpoint counts as missing, the clean shutdown still means
		// every log is flushed to its end, and nothing is rescanned or
		// truncated; the next offset follows every acknowledged one.
		{"recovery_checkpoint_unreadable_after_clean_shutdown", func(t *testing.T, e *testEnv, l *Log, sizes []int) {
			root := filepath.Dir(l.dir)
			if _, err := os.Stat(filepath.Join(root, CleanShutdownFile)); err != nil {
				t.Fatalf("no clean-shutdown marker: %v", err)
			}
			writeFile(t, filepath.Join(root, RecoveryPointCheckpointFile), []byte("0\n1\ntopic 0 \x00garbage"))
			flipByte(t, LogFileName(l.dir, 0), int64(sizes[0]+record.HeaderSize+2))
			segmentSizes = map[Offset]int64{}
			for _, s := range l.Segments() {
				fi, err := os.Stat(s.Path)
				if err != nil {
					t.Fatal(err)
				}
				segmentSizes[s.BaseOffset] = fi.Size()
			}
		}, true, 18},
	}
	for _, tc := range cases {
		sp := special[tc.name]
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.cfg.SegmentBytes = 1 << 20 // one segment: corruption lands in the active one
			if tc.clean {
				e.cfg.SegmentBytes = 700 // several segments: every index file is damaged
			}
			if sp.segmentBytes > 0 {
				e.cfg.SegmentBytes = sp.segmentBytes
			}
			var m *Manager
			var l *Log
			if sp.manager {
				m, l = e.openManager()
			} else {
				l = e.open(true, -1)
			}
			sizes := fill(t, e, l, 6)
			switch {
			case sp.manager && tc.clean:
				if err := m.Close(); err != nil {
					t.Fatal(err)
				}
			case sp.manager:
				crashManager(m)
			case tc.clean:
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			default:
				crashClose(l)
			}
			tc.poke(t, e, l, sizes)
			if sp.manager {
				m, l = e.openManager()
				defer m.Close()
			} else {
				l = e.open(tc.clean, 0)
				defer l.Close()
			}
			if sp.check != nil {
				sp.check(t, l)
			} else {
				assertRecords(t, l, tc.survive)
			}
		})
	}
}

// setBaseOffset rewrites the BaseOffset field (outside the CRC) of the
// batch at pos.
func setBaseOffset(t *testing.T, path string, pos, base int64) {
	t.Helper()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(base))
	writeAt(t, path, pos, b[:])
}

func flipByte(t *testing.T, path string, pos int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, pos); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, pos int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, pos); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
}

func matching(t *testing.T, dir, suffix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s files in %s", suffix, dir)
	}
	return m
}

func removeAll(t *testing.T, dir, suffix string) {
	for _, p := range matching(t, dir, suffix) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

func truncateAll(t *testing.T, dir, suffix string, n int64) {
	for _, p := range matching(t, dir, suffix) {
		if err := os.Truncate(p, n); err != nil {
			t.Fatal(err)
		}
	}
}

func garbageAll(t *testing.T, dir, suffix string) {
	for _, p := range matching(t, dir, suffix) {
		g := make([]byte, 96)
		for i := range g {
			g[i] = byte(i*37 + 11)
		}
		if err := os.WriteFile(p, g, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func globDir(dir, suffix string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, "*"+suffix))
}

// TestMisleadingIndexEntry damages an inactive segment's offset index so it
// still passes the sanity check but points inside a batch: reads must still
// return the right records.
func TestMisleadingIndexEntry(t *testing.T) {
	e := newTestEnv(t)
	e.cfg.SegmentBytes = 700 // segment 0 is inactive: only the cheap sanity check runs on its index
	e.cfg.IndexIntervalBytes = 1
	l := e.open(true, -1)
	fill(t, e, l, 12)
	if len(l.Segments()) < 2 {
		t.Fatal("want several segments")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	idx := IndexFileName(l.dir, 0)
	data := readFile(t, idx)
	if len(data) < 16 {
		t.Fatalf("index too small: %d bytes", len(data))
	}
	// Second entry: keep its offset, move its position 7 bytes into a batch.
	pos := uint32(data[12])<<24 | uint32(data[13])<<16 | uint32(data[14])<<8 | uint32(data[15])
	pos += 7
	data[12], data[13], data[14], data[15] = byte(pos>>24), byte(pos>>16), byte(pos>>8), byte(pos)
	writeFile(t, idx, data)
	l = e.open(true, -1)
	defer l.Close()
	for o := Offset(0); o < l.LogEndOffset(); o++ {
		r, err := l.Read(o, 1, l.LogEndOffset())
		if err != nil {
			t.Fatalf("read %d: %v", o, err)
		}
		data, err := r.Bytes()
		r.Release()
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := record.ReadBatch(data)
		if err != nil || b.VerifyCRC() != nil || Offset(b.BaseOffset()) > o || Offset(b.LastOffset()) < o {
			t.Fatalf("read %d: wrong batch (%v)", o, err)
		}
	}
}
