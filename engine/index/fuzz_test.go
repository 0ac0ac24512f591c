package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

// modelEntries is the entry count open must find in content: size/es slots
// less trailing all-zero slots, keeping slot 0.
func modelEntries(content []byte, es int) int {
	slots := len(content) / es
	n := slots
	for n > 1 && allZero(content[(n-1)*es:n*es]) {
		n--
	}
	return n
}

func fuzzSeeds(f *testing.F, es int) {
	f.Add([]byte{}, int64(0), uint16(64), int64(0), false)
	f.Add([]byte{1, 2, 3}, int64(0), uint16(64), int64(5), true)
	f.Add(make([]byte, 4*es), int64(10), uint16(4*es), int64(10), true)
	f.Add(bytes.Repeat([]byte{0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, 6), int64(100), uint16(1000), int64(101), false)
	f.Add(bytes.Repeat([]byte{0xff}, 5*es+1), int64(-5), uint16(7), int64(-1), true)
	var b []byte
	for i := range 50 {
		if es == OffsetEntrySize {
			b = binary.BigEndian.AppendUint32(b, uint32(i*3))
			b = binary.BigEndian.AppendUint32(b, uint32(i*100))
		} else {
			b = binary.BigEndian.AppendUint64(b, uint64(i*7+1))
			b = binary.BigEndian.AppendUint32(b, uint32(i))
		}
	}
	f.Add(b, int64(1000), uint16(2000), int64(1060), true)
	f.Add(append(b, make([]byte, 300)...), int64(0), uint16(2000), int64(60), false)
}

// fuzzDir returns the directory a fuzz worker writes its index file in.
// Executions within a worker run one at a time, so they share one directory
// and file name. A memory file system is preferred when there is one: on a
// journaling file system creating, truncating and removing files costs
// milliseconds, far more than an execution. The unit tests cover the disk.
func fuzzDir(f *testing.F) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "kvlog-index-fuzz-"); err == nil {
			f.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return f.TempDir()
}

// fuzzIndex is what the checks both index kinds' fuzz targets share use.
type fuzzIndex interface {
	Entries() int
	MaxEntries() int
	SanityCheck() error
	TruncateTo(int64)
	Close() error
}

// checkFuzzEntries checks the entry count open found in content (es-byte
// entries) against the model and the capacity, and returns it.
func checkFuzzEntries(t *testing.T, x fuzzIndex, content []byte, es int) int {
	t.Helper()
	n := x.Entries()
	if want := modelEntries(content, es); n != want {
		t.Fatalf("entries %d, want %d", n, want)
	}
	if n > x.MaxEntries() {
		t.Fatalf("entries %d > max %d", n, x.MaxEntries())
	}
	return n
}

// checkFuzzSanity checks that SanityCheck fails, with ErrCorruptIndex
// naming path, exactly when wantCorrupt.
func checkFuzzSanity(t *testing.T, x fuzzIndex, path string, wantCorrupt bool) {
	t.Helper()
	err := x.SanityCheck()
	if (err != nil) != wantCorrupt {
		t.Fatalf("SanityCheck = %v, want corrupt %v", err, wantCorrupt)
	}
	if err != nil && (!errors.Is(err, ErrCorruptIndex) || !strings.Contains(err.Error(), path)) {
		t.Fatalf("SanityCheck error %v", err)
	}
}

// checkFuzzTruncate checks that TruncateTo never adds to the n entries.
func checkFuzzTruncate(t *testing.T, x fuzzIndex, target int64, n int) {
	t.Helper()
	x.TruncateTo(target)
	if x.Entries() > n {
		t.Fatal("TruncateTo added entries")
	}
}

// checkFuzzClosed closes a writable index and checks the file holds exactly
// the first n entries of content (es bytes each), plus one if appended.
func checkFuzzClosed(t *testing.T, x fuzzIndex, path string, content []byte, n, es int, appended bool) {
	t.Helper()
	if err := x.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantLen := n * es
	if appended {
		wantLen += es
	}
	if len(got) != wantLen || !bytes.Equal(got[:n*es], content[:n*es]) {
		t.Fatalf("closed file has %d bytes, want %d", len(got), wantLen)
	}
}

// fuzzFile writes content as the index file in dir.
func fuzzFile(t *testing.T, dir string, content []byte, ext string) string {
	path := filepath.Join(dir, "00000000000000000000"+ext)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// FuzzOpenOffset writes arbitrary bytes as an offset index file and opens it
// read-only or writable. Invariants:
//   - nothing panics (open, SanityCheck, Verify, Lookup, Entry, LastOffset,
//     TruncateTo, Append, Close);
//   - open succeeds whenever the file exists, unless writable with a
//     maxIndexSize below one entry;
//   - Entries() is size/8 less trailing all-zero entries (slot 0 kept), and
//     never more than MaxEntries();
//   - SanityCheck fails, with ErrCorruptIndex naming the file, exactly when
//     the size is not a multiple of 8 or the last offset is below the base;
//   - Lookup returns (base, 0) or an existing entry whose offset is <= the
//     target; when Verify passes it returns the linear-scan answer;
//   - a writable index accepts an append just past its last offset unless
//     full or out of relative range, and Close trims the file to exactly the
//     entries, whose bytes are the original prefix plus the appended entry.
func FuzzOpenOffset(f *testing.F) {
	fuzzSeeds(f, OffsetEntrySize)
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, content []byte, base int64, maxSize uint16, target int64, writable bool) {
		path := fuzzFile(t, dir, content, ".index")
		x, err := OpenOffset(vfs.Default, path, base, int(maxSize), writable)
		if err != nil {
			if writable && int(maxSize) < OffsetEntrySize {
				return
			}
			t.Fatalf("open: %v", err)
		}
		defer x.Close()
		n := checkFuzzEntries(t, x, content, OffsetEntrySize)
		keys := make([]int64, n)
		for i := range n {
			keys[i] = base + int64(int32(binary.BigEndian.Uint32(content[i*8:])))
			if off, pos := x.Entry(i); off != keys[i] || pos != binary.BigEndian.Uint32(content[i*8+4:]) {
				t.Fatalf("Entry(%d) = (%d, %d)", i, off, pos)
			}
		}
		wantCorrupt := len(content)%OffsetEntrySize != 0 || (n > 0 && keys[n-1] < base)
		checkFuzzSanity(t, x, path, wantCorrupt)
		verified := x.Verify() == nil
		for _, tg := range []int64{target, base, base - 1, x.LastOffset(), target ^ base} {
			off, pos := x.Lookup(tg)
			slot := -1
			for i := range n {
				if keys[i] == off && binary.BigEndian.Uint32(content[i*8+4:]) == pos {
					slot = i
				}
			}
			none := off == base && pos == 0
			if slot < 0 && !none {
				t.Fatalf("Lookup(%d) = (%d, %d): not an entry", tg, off, pos)
			}
			if !none && off > tg {
				t.Fatalf("Lookup(%d) = (%d, %d): above the target", tg, off, pos)
			}
			if verified {
				want := floorModel(keys, tg)
				if (want < 0 && (off != base || pos != 0)) || (want >= 0 && off != keys[want]) {
					t.Fatalf("Lookup(%d) = %d, model slot %d", tg, off, want)
				}
			}
		}
		if !writable {
			checkFuzzTruncate(t, x, target, n)
			return
		}
		next := x.LastOffset() + 1
		if n == 0 {
			next = base
		}
		err = x.Append(next, 42)
		appended := err == nil
		if !appended && !errors.Is(err, ErrIndexFull) && !errors.Is(err, ErrOffsetOverflow) && !errors.Is(err, ErrInvalidOffset) {
			t.Fatalf("append: %v", err)
		}
		if !appended && !x.IsFull() && x.CanAppendOffset(next) && next > x.LastOffset() {
			t.Fatalf("append refused: %v", err)
		}
		checkFuzzClosed(t, x, path, content, n, OffsetEntrySize, appended)
	})
}

// FuzzOpenTime writes arbitrary bytes as a time index file and opens it
// read-only or writable. Invariants:
//   - nothing panics (open, SanityCheck, Verify, Lookup, Entry, LastEntry,
//     TruncateTo, MaybeAppend, Close);
//   - open succeeds whenever the file exists, unless writable with a
//     maxIndexSize below one entry;
//   - Entries() is size/12 less trailing all-zero entries (slot 0 kept), and
//     never more than MaxEntries();
//   - SanityCheck fails, with ErrCorruptIndex naming the file, exactly when
//     the size is not a multiple of 12, the last timestamp is below the first,
//     or the last offset is below the base;
//   - Lookup returns (NoTimestamp, base) or an existing entry whose timestamp
//     is <= the target; when Verify passes it returns the linear-scan answer;
//   - a writable index takes a roll-time MaybeAppend(last+1, lastOffset, true)
//     unless it has no free slot or the entry is rejected as out of order or
//     range, and Close trims the file to exactly the entries, whose bytes are
//     the original prefix plus the appended entry.
func FuzzOpenTime(f *testing.F) {
	fuzzSeeds(f, TimeEntrySize)
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, content []byte, base int64, maxSize uint16, target int64, writable bool) {
		path := fuzzFile(t, dir, content, ".timeindex")
		x, err := OpenTime(vfs.Default, path, base, int(maxSize), writable)
		if err != nil {
			if writable && int(maxSize) < TimeEntrySize {
				return
			}
			t.Fatalf("open: %v", err)
		}
		defer x.Close()
		n := checkFuzzEntries(t, x, content, TimeEntrySize)
		keys := make([]int64, n)
		offs := make([]int64, n)
		for i := range n {
			keys[i] = int64(binary.BigEndian.Uint64(content[i*12:]))
			offs[i] = base + int64(int32(binary.BigEndian.Uint32(content[i*12+8:])))
			if ts, off := x.Entry(i); ts != keys[i] || off != offs[i] {
				t.Fatalf("Entry(%d) = (%d, %d)", i, ts, off)
			}
		}
		wantCorrupt := len(content)%TimeEntrySize != 0 || (n > 0 && (keys[n-1] < keys[0] || offs[n-1] < base))
		checkFuzzSanity(t, x, path, wantCorrupt)
		verified := x.Verify() == nil
		lastTs, lastOff := x.LastEntry()
		for _, tg := range []int64{target, lastTs, lastTs - 1, 0, target ^ base} {
			ts, off := x.Lookup(tg)
			slot := -1
			for i := range n {
				if keys[i] == ts && offs[i] == off {
					slot = i
				}
			}
			none := ts == NoTimestamp && off == base
			if slot < 0 && !none {
				t.Fatalf("Lookup(%d) = (%d, %d): not an entry", tg, ts, off)
			}
			if !none && ts > tg {
				t.Fatalf("Lookup(%d) = (%d, %d): above the target", tg, ts, off)
			}
			if verified {
				want := floorModel(keys, tg)
				if (want < 0 && (ts != NoTimestamp || off != base)) || (want >= 0 && ts != keys[want]) {
					t.Fatalf("Lookup(%d) = %d, model slot %d", tg, ts, want)
				}
			}
		}
		if !writable {
			checkFuzzTruncate(t, x, target, n)
			return
		}
		err = x.MaybeAppend(lastTs+1, lastOff, true)
		appended := err == nil && x.Entries() == n+1
		if err != nil && !errors.Is(err, ErrIndexFull) && !errors.Is(err, ErrOffsetOverflow) &&
			!errors.Is(err, ErrInvalidOffset) && !errors.Is(err, ErrInvalidTimestamp) {
			t.Fatalf("append: %v", err)
		}
		if err != nil && n < x.MaxEntries() && x.CanAppendOffset(lastOff) && lastTs+1 > lastTs {
			t.Fatalf("append refused: %v", err)
		}
		checkFuzzClosed(t, x, path, content, n, TimeEntrySize, appended)
	})
}
