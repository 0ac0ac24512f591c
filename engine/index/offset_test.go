package index

import (
	"bytes"
	"errors"
	"io/fs"
	"math"
	"os"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

// TestOffsetGoldenBytes pins the on-disk layout against bytes written by hand
// from Kafka's format: 4-byte big-endian relative offset, 4-byte big-endian
// position, preallocated with zeros until trimmed.
func TestOffsetGoldenBytes(t *testing.T) {
	path := tmpFile(t, "00000000000000000100.index")
	x := mustOpenOffset(t, path, 100, 64+7, true) // rounded down to 64
	if got := fileSize(t, path); got != 64 {
		t.Fatalf("preallocated size %d, want 64", got)
	}
	must(t, x.Append(100, 0))
	must(t, x.Append(105, 4200))
	must(t, x.Append(1_000_100, 0x01020304))
	must(t, x.Append(100+math.MaxInt32, 0xFFFFFFFF))
	want := []byte{
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // rel 0, pos 0
		0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x10, 0x68, // rel 5, pos 4200
		0x00, 0x0F, 0x42, 0x40, 0x01, 0x02, 0x03, 0x04, // rel 1000000, pos 0x01020304
		0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // rel MaxInt32, pos MaxUint32
	}
	must(t, x.Flush())
	pre := readFile(t, path)
	if len(pre) != 64 || !bytes.Equal(pre[:32], want) || !allZero(pre[32:]) {
		t.Fatalf("preallocated file:\n% x\nwant\n% x followed by 32 zero bytes", pre, want)
	}
	must(t, x.Close())
	if got := readFile(t, path); !bytes.Equal(got, want) {
		t.Fatalf("trimmed file:\n% x\nwant\n% x", got, want)
	}

	// And the other direction: hand-written bytes read back.
	r := mustOpenOffset(t, path, 100, 0, false)
	if r.Entries() != 4 {
		t.Fatalf("entries %d, want 4", r.Entries())
	}
	for i, w := range []struct {
		off int64
		pos uint32
	}{{100, 0}, {105, 4200}, {1_000_100, 0x01020304}, {100 + math.MaxInt32, 0xFFFFFFFF}} {
		if off, pos := r.Entry(i); off != w.off || pos != w.pos {
			t.Fatalf("entry %d = (%d, %d), want (%d, %d)", i, off, pos, w.off, w.pos)
		}
	}
	must(t, r.Verify())
}

func TestOffsetNewIndex(t *testing.T) {
	path := tmpFile(t, "a.index")
	x := mustOpenOffset(t, path, 50, 1000, true)
	if x.MaxEntries() != 125 || x.Entries() != 0 || x.IsFull() || x.SizeInBytes() != 0 {
		t.Fatalf("max %d entries %d full %v", x.MaxEntries(), x.Entries(), x.IsFull())
	}
	if x.BaseOffset() != 50 || x.LastOffset() != 50 || x.Path() != path || !x.Writable() {
		t.Fatalf("base %d last %d path %s", x.BaseOffset(), x.LastOffset(), x.Path())
	}
	if off, pos := x.Lookup(1 << 40); off != 50 || pos != 0 {
		t.Fatalf("empty lookup = (%d, %d)", off, pos)
	}
	if off, pos := x.Entry(0); off != 50 || pos != 0 {
		t.Fatalf("Entry(0) of empty = (%d, %d)", off, pos)
	}
	must(t, x.SanityCheck())
	must(t, x.Verify())

	for _, size := range []int{0, 7, -1, math.MaxInt32 + 1} {
		if _, err := OpenOffset(vfs.Default, tmpFile(t, "b.index"), 0, size, true); err == nil {
			t.Fatalf("maxIndexSize %d accepted", size)
		}
	}
	if _, err := OpenOffset(vfs.Default, tmpFile(t, "missing.index"), 0, 0, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: %v", err)
	}
}

func TestOffsetAppendErrors(t *testing.T) {
	path := tmpFile(t, "a.index")
	x := mustOpenOffset(t, path, 1000, 32, true) // 4 entries
	wantErr(t, x.Append(999, 0), ErrOffsetOverflow, path)
	must(t, x.Append(1000, 0)) // relative offset 0 is a valid first entry
	wantErr(t, x.Append(1000, 10), ErrInvalidOffset, path)
	wantErr(t, x.Append(990, 10), ErrInvalidOffset, path)
	must(t, x.Append(1010, 100))
	wantErr(t, x.Append(1010, 200), ErrInvalidOffset, path)
	wantErr(t, x.Append(1000+math.MaxInt32+1, 200), ErrOffsetOverflow, path)
	if !x.CanAppendOffset(1000+math.MaxInt32) || x.CanAppendOffset(1000+math.MaxInt32+1) || x.CanAppendOffset(999) {
		t.Fatal("CanAppendOffset")
	}
	must(t, x.Append(1000+math.MaxInt32, 300))
	wantErr(t, x.Append(1000+math.MaxInt32, 400), ErrInvalidOffset, path)
	if x.Entries() != 3 || x.LastOffset() != 1000+math.MaxInt32 {
		t.Fatalf("entries %d last %d", x.Entries(), x.LastOffset())
	}
}

func TestOffsetFull(t *testing.T) {
	path := tmpFile(t, "a.index")
	x := mustOpenOffset(t, path, 0, 24, true)
	for i := range 3 {
		if x.IsFull() {
			t.Fatalf("full after %d entries", i)
		}
		must(t, x.Append(int64(i*10), uint32(i*100)))
	}
	if !x.IsFull() {
		t.Fatal("not full after 3 of 3 entries")
	}
	wantErr(t, x.Append(100, 1000), ErrIndexFull, path)
	if x.Entries() != 3 {
		t.Fatalf("entries %d", x.Entries())
	}
}

func TestOffsetTruncateTo(t *testing.T) {
	path := tmpFile(t, "a.index")
	x := mustOpenOffset(t, path, 100, 1024, true)
	for i := range 10 {
		must(t, x.Append(100+int64(i)*10, uint32(i)*1000)) // 100, 110, ..., 190
	}
	x.TruncateTo(1000) // above the last entry: no effect
	if x.Entries() != 10 {
		t.Fatalf("entries %d, want 10", x.Entries())
	}
	x.TruncateTo(190) // exact: drops 190
	if x.Entries() != 9 || x.LastOffset() != 180 {
		t.Fatalf("entries %d last %d", x.Entries(), x.LastOffset())
	}
	x.TruncateTo(155) // between: drops 160 and up
	if x.Entries() != 6 || x.LastOffset() != 150 {
		t.Fatalf("entries %d last %d", x.Entries(), x.LastOffset())
	}
	if off, pos := x.Lookup(1 << 50); off != 150 || pos != 5000 {
		t.Fatalf("lookup after truncate = (%d, %d)", off, pos)
	}
	must(t, x.Append(151, 5001)) // appends continue after the new last entry
	x.TruncateTo(100)            // at the first entry: drops everything
	if x.Entries() != 0 || x.LastOffset() != 100 {
		t.Fatalf("entries %d last %d", x.Entries(), x.LastOffset())
	}
	if !allZero(x.mapping()) {
		t.Fatal("dropped slots not zeroed")
	}
	must(t, x.Append(100, 0))
	x.TruncateTo(50) // below the base offset: drops everything
	if x.Entries() != 0 {
		t.Fatalf("entries %d", x.Entries())
	}
}

func TestOffsetResetTrimResizeReopen(t *testing.T) {
	path := tmpFile(t, "a.index")
	x := mustOpenOffset(t, path, 0, 800, true)
	for i := range 40 {
		must(t, x.Append(int64(i)*3, uint32(i)*50))
	}
	must(t, x.TrimToValidSize())
	if fileSize(t, path) != 320 || x.MaxEntries() != 40 || !x.IsFull() {
		t.Fatalf("after trim: size %d max %d", fileSize(t, path), x.MaxEntries())
	}
	wantErr(t, x.Append(1000, 0), ErrIndexFull, path)
	must(t, x.Resize(1600))
	if fileSize(t, path) != 1600 || x.MaxEntries() != 200 || x.Entries() != 40 {
		t.Fatalf("after resize: size %d max %d entries %d", fileSize(t, path), x.MaxEntries(), x.Entries())
	}
	must(t, x.Append(1000, 5000))
	must(t, x.Resize(16)) // never drops entries
	if fileSize(t, path) != 41*8 || x.Entries() != 41 || !x.IsFull() {
		t.Fatalf("after shrinking resize: size %d entries %d", fileSize(t, path), x.Entries())
	}
	must(t, x.Resize(800+5)) // rounded down
	if fileSize(t, path) != 800 {
		t.Fatalf("size %d", fileSize(t, path))
	}
	must(t, x.Close())
	must(t, x.Close()) // idempotent
	if fileSize(t, path) != 41*8 {
		t.Fatalf("closed size %d, want %d", fileSize(t, path), 41*8)
	}
	wantErr(t, x.Append(2000, 0), ErrClosed, path)
	wantErr(t, x.Flush(), ErrClosed, path)
	wantErr(t, x.SanityCheck(), ErrClosed, path)
	if off, _ := x.Lookup(10); off != 0 {
		t.Fatalf("lookup on closed index = %d", off)
	}
	x.TruncateTo(0)
	x.Reset()

	// Reopen writable: extended to maxIndexSize again, entries intact.
	y := mustOpenOffset(t, path, 0, 8000, true)
	if fileSize(t, path) != 8000 || y.Entries() != 41 || y.LastOffset() != 1000 {
		t.Fatalf("reopen: size %d entries %d last %d", fileSize(t, path), y.Entries(), y.LastOffset())
	}
	must(t, y.Verify())
	if off, pos := y.Lookup(62); off != 60 || pos != 1000 {
		t.Fatalf("lookup(62) = (%d, %d)", off, pos)
	}
	y.Reset()
	if y.Entries() != 0 || y.MaxEntries() != 1000 {
		t.Fatalf("after reset: entries %d max %d", y.Entries(), y.MaxEntries())
	}
	must(t, y.Append(7, 7))
	must(t, y.Close())
	if got := readFile(t, path); !bytes.Equal(got, []byte{0, 0, 0, 7, 0, 0, 0, 7}) {
		t.Fatalf("file % x", got)
	}

	// Reopen read-only: mapped at exact size.
	z := mustOpenOffset(t, path, 0, 8000, false)
	if z.Entries() != 1 || z.MaxEntries() != 1 || z.Writable() {
		t.Fatalf("read-only: entries %d max %d", z.Entries(), z.MaxEntries())
	}
	wantErr(t, z.Append(8, 8), ErrReadOnly, path)
	wantErr(t, z.Resize(80), ErrReadOnly, path)
	wantErr(t, z.TrimToValidSize(), ErrReadOnly, path)
	must(t, z.Flush())
	z.TruncateTo(7) // allowed: only the count changes
	if z.Entries() != 0 {
		t.Fatalf("entries %d", z.Entries())
	}
	must(t, z.Close())
	if got := readFile(t, path); !bytes.Equal(got, []byte{0, 0, 0, 7, 0, 0, 0, 7}) {
		t.Fatalf("read-only close changed the file: % x", got)
	}

	// A trimmed index that gets no entries is an empty file; reopening it
	// read-only maps nothing.
	e := mustOpenOffset(t, tmpFile(t, "e.index"), 0, 80, true)
	must(t, e.TrimToValidSize())
	if e.MaxEntries() != 0 || !e.IsFull() {
		t.Fatalf("empty trimmed: max %d", e.MaxEntries())
	}
	wantErr(t, e.Append(1, 1), ErrIndexFull, e.Path())
	must(t, e.Close())
	r := mustOpenOffset(t, e.Path(), 0, 80, false)
	if r.Entries() != 0 || r.MaxEntries() != 0 || r.LastOffset() != 0 {
		t.Fatal("empty read-only index")
	}
	if off, pos := r.Lookup(5); off != 0 || pos != 0 {
		t.Fatal("lookup on empty read-only index")
	}
	must(t, r.SanityCheck())
}

// TestOffsetLargerThanMax reopens an index that holds more entries than a
// smaller segment.index.bytes allows: nothing is dropped, the index is full.
func TestOffsetLargerThanMax(t *testing.T) {
	path := tmpFile(t, "a.index")
	x := mustOpenOffset(t, path, 0, 800, true)
	for i := range 50 {
		must(t, x.Append(int64(i), uint32(i)))
	}
	x.crash(t) // untrimmed: 800 bytes, 50 entries
	y := mustOpenOffset(t, path, 0, 80, true)
	if y.Entries() != 50 || !y.IsFull() || fileSize(t, path) != 400 {
		t.Fatalf("entries %d size %d", y.Entries(), fileSize(t, path))
	}
}

// TestOffsetUncleanShutdownTail reopens preallocated files that were never
// trimmed: the trailing all-zero entries are not entries.
func TestOffsetUncleanShutdownTail(t *testing.T) {
	t.Run("sparse", func(t *testing.T) {
		path := tmpFile(t, "a.index")
		x := mustOpenOffset(t, path, 500, 1<<20, true)
		for i := range 1000 {
			must(t, x.Append(500+int64(i)*7, uint32(i)*4096))
		}
		must(t, x.Flush())
		x.crash(t)
		if fileSize(t, path) != 1<<20 {
			t.Fatal("crash trimmed the file")
		}
		for _, writable := range []bool{false, true} {
			y := mustOpenOffset(t, path, 500, 1<<20, writable)
			if y.Entries() != 1000 || y.LastOffset() != 500+999*7 {
				t.Fatalf("writable=%v: entries %d last %d", writable, y.Entries(), y.LastOffset())
			}
			must(t, y.Verify())
			y.crash(t)
		}
	})
	t.Run("dense", func(t *testing.T) {
		// The same content written out densely (no file holes).
		path := tmpFile(t, "a.index")
		b := make([]byte, 4096)
		copy(b, []byte{0, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0, 4, 0, 0, 0, 10})
		writeFile(t, path, b)
		y := mustOpenOffset(t, path, 0, 4096, false)
		if y.Entries() != 2 || y.LastOffset() != 4 {
			t.Fatalf("entries %d last %d", y.Entries(), y.LastOffset())
		}
	})
	t.Run("zero first entry", func(t *testing.T) {
		path := tmpFile(t, "a.index")
		x := mustOpenOffset(t, path, 500, 4096, true)
		must(t, x.Append(500, 0))
		x.crash(t)
		y := mustOpenOffset(t, path, 500, 4096, true)
		if y.Entries() != 1 {
			t.Fatalf("entries %d", y.Entries())
		}
		if off, pos := y.Entry(0); off != 500 || pos != 0 {
			t.Fatalf("entry 0 = (%d, %d)", off, pos)
		}
		wantErr(t, y.Append(500, 0), ErrInvalidOffset, path)
		must(t, y.Append(501, 10))
	})
	t.Run("never written", func(t *testing.T) {
		// A preallocated file with no entries reads as one entry (0, 0) at
		// slot 0: indistinguishable from a genuine first entry, and harmless
		// (Lookup answers (base, 0) either way).
		path := tmpFile(t, "a.index")
		x := mustOpenOffset(t, path, 500, 4096, true)
		x.crash(t)
		y := mustOpenOffset(t, path, 500, 4096, false)
		if y.Entries() != 1 || y.LastOffset() != 500 {
			t.Fatalf("entries %d", y.Entries())
		}
		if off, pos := y.Lookup(1000); off != 500 || pos != 0 {
			t.Fatalf("lookup = (%d, %d)", off, pos)
		}
	})
	t.Run("zero entry in the middle", func(t *testing.T) {
		// Only the tail is trimmed; a zero entry inside is garbage that
		// Verify reports.
		path := tmpFile(t, "a.index")
		writeFile(t, path, []byte{0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0})
		y := mustOpenOffset(t, path, 0, 0, false)
		if y.Entries() != 3 {
			t.Fatalf("entries %d", y.Entries())
		}
		must(t, y.SanityCheck())
		wantErr(t, y.Verify(), ErrCorruptIndex, path)
	})
	t.Run("truncate then crash", func(t *testing.T) {
		// TruncateTo zeroes the dropped slots, so they are not resurrected.
		path := tmpFile(t, "a.index")
		x := mustOpenOffset(t, path, 0, 4096, true)
		for i := range 100 {
			must(t, x.Append(int64(i+1), uint32(i)))
		}
		x.TruncateTo(41)
		must(t, x.Append(45, 1000))
		x.crash(t)
		y := mustOpenOffset(t, path, 0, 4096, true)
		if y.Entries() != 41 || y.LastOffset() != 45 {
			t.Fatalf("entries %d last %d", y.Entries(), y.LastOffset())
		}
		must(t, y.Verify())
		y.Reset()
		y.crash(t)
		z := mustOpenOffset(t, path, 0, 4096, true)
		if z.Entries() != 1 { // all zero: slot 0 reads as (0, 0)
			t.Fatalf("entries after reset+crash %d", z.Entries())
		}
	})
}

// TestOffsetCorruptFiles opens files that cannot be valid indexes: every API
// keeps working without panicking and SanityCheck names the file.
func TestOffsetCorruptFiles(t *testing.T) {
	cases := []struct {
		name    string
		content []byte
		entries int
		corrupt bool
	}{
		{"empty", nil, 0, false},
		{"short", []byte{1, 2, 3}, 0, true},
		{"one and a half", []byte{0, 0, 0, 1, 0, 0, 0, 1, 9, 9, 9, 9}, 1, true},
		{"size 9", []byte{0, 0, 0, 5, 0, 0, 0, 1, 0}, 1, true},
		{"negative relative offset", []byte{0, 0, 0, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 2}, 2, true},
		{"garbage", []byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}, 2, false},
	}
	for _, c := range cases {
		for _, writable := range []bool{false, true} {
			t.Run(c.name, func(t *testing.T) {
				path := tmpFile(t, "c.index")
				writeFile(t, path, c.content)
				x := mustOpenOffset(t, path, 10, 64, writable)
				if x.Entries() != c.entries {
					t.Fatalf("entries %d, want %d", x.Entries(), c.entries)
				}
				err := x.SanityCheck()
				if c.corrupt {
					wantErr(t, err, ErrCorruptIndex, path)
				} else if err != nil {
					t.Fatalf("SanityCheck: %v", err)
				}
				for _, target := range []int64{math.MinInt64, -1, 0, 10, 11, 1 << 40, math.MaxInt64} {
					x.Lookup(target)
				}
				for i := -1; i <= x.Entries(); i++ {
					x.Entry(i)
				}
				_ = x.Verify()
				x.LastOffset()
				x.TruncateTo(12)
				if writable {
					x.Reset()
					must(t, x.SanityCheck()) // a rebuild starts clean
					must(t, x.Append(10, 0))
					must(t, x.Append(11, 100))
					must(t, x.Close())
					if got := readFile(t, path); !bytes.Equal(got, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 100}) {
						t.Fatalf("rebuilt file % x", got)
					}
				}
			})
		}
	}
	t.Run("too large", func(t *testing.T) {
		path := tmpFile(t, "big.index")
		f, err := os.Create(path)
		must(t, err)
		must(t, f.Truncate(math.MaxInt32+8))
		must(t, f.Close())
		_, err = OpenOffset(vfs.Default, path, 0, 0, false)
		wantErr(t, err, ErrCorruptIndex, path)
	})
}

func TestOffsetRenameDelete(t *testing.T) {
	path := tmpFile(t, "a.index")
	x := mustOpenOffset(t, path, 0, 80, true)
	must(t, x.Append(3, 3))
	newPath := path + ".deleted"
	must(t, x.Rename(newPath))
	if x.Path() != newPath {
		t.Fatalf("path %s", x.Path())
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("old path still exists")
	}
	must(t, x.Append(4, 4)) // the mapping survives the rename
	if err := x.Rename(path + ".nodir/x"); err == nil {
		t.Fatal("rename into a missing directory succeeded")
	}
	if x.Path() != newPath {
		t.Fatalf("path changed by a failed rename: %s", x.Path())
	}
	must(t, x.Delete())
	if _, err := os.Stat(newPath); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("file not deleted")
	}
	must(t, x.Delete()) // already gone: not an error
	wantErr(t, x.Append(5, 5), ErrClosed, newPath)
	if x.Entries() != 0 {
		t.Fatal("entries after delete")
	}
	must(t, x.Close())
}
