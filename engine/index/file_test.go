package index

import (
	"os"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

// TestDataEnd checks the hole detection that lets open skip the unwritten
// tail of a sparse preallocated file. File systems without hole support
// report everything as data, which dataEnd must accept (end = size).
func TestDataEnd(t *testing.T) {
	const size = 1 << 20
	open := func(t *testing.T, fill func(f *os.File)) (vfs.File, int64) {
		path := tmpFile(t, "d.index")
		f, err := os.Create(path)
		must(t, err)
		fill(f)
		must(t, f.Close())
		vf, err := vfs.Default.OpenFile(path, os.O_RDONLY, 0)
		must(t, err)
		t.Cleanup(func() { vf.Close() })
		return vf, fileSize(t, path)
	}
	t.Run("all hole", func(t *testing.T) {
		f, sz := open(t, func(f *os.File) { must(t, f.Truncate(size)) })
		if end := dataEnd(f, sz); end != 0 && end != sz {
			t.Fatalf("end %d", end)
		}
	})
	t.Run("data then hole", func(t *testing.T) {
		f, sz := open(t, func(f *os.File) {
			must(t, f.Truncate(size))
			_, err := f.WriteAt([]byte{1, 2, 3}, 10_000)
			must(t, err)
		})
		if end := dataEnd(f, sz); end < 10_003 {
			t.Fatalf("end %d is before the data", end)
		}
	})
	t.Run("hole then data at the end", func(t *testing.T) {
		f, sz := open(t, func(f *os.File) {
			_, err := f.WriteAt([]byte{1}, size-1)
			must(t, err)
		})
		if end := dataEnd(f, sz); end != sz {
			t.Fatalf("end %d, want %d", end, sz)
		}
	})
	t.Run("empty", func(t *testing.T) {
		f, sz := open(t, func(*os.File) {})
		if end := dataEnd(f, sz); end != 0 {
			t.Fatalf("end %d", end)
		}
	})
}

// TestCountEntries pins the trailing-zero rule on in-memory bytes.
func TestCountEntries(t *testing.T) {
	e := func(b ...byte) []byte { return b }
	cases := []struct {
		data  []byte
		slots int
		end   int64
		want  int
	}{
		{nil, 0, 0, 0},
		{make([]byte, 16), 2, 16, 1},
		{make([]byte, 16), 2, 0, 1},
		{e(0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0), 2, 16, 1},
		{e(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), 2, 16, 2},
		{e(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), 2, 9, 2},
		{e(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5), 2, 17, 2},
	}
	for i, c := range cases {
		if got := countEntries(c.data, 8, c.slots, c.end); got != c.want {
			t.Errorf("case %d: %d entries, want %d", i, got, c.want)
		}
	}
}

// failFS hands out files whose Truncate fails once failTruncate is set.
type failFS struct {
	vfs.FS
	failTruncate *bool
}

type failFile struct {
	vfs.File
	fail *bool
}

func (f failFile) Truncate(size int64) error {
	if *f.fail {
		return os.ErrPermission
	}
	return f.File.Truncate(size)
}

func (fs failFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := fs.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return failFile{f, fs.failTruncate}, nil
}

// TestResizeFailure: a failed ftruncate leaves the index mapped at the file's
// actual size with its entries intact.
func TestResizeFailure(t *testing.T) {
	fail := false
	fsys := failFS{vfs.Default, &fail}
	path := tmpFile(t, "f.index")
	x, err := OpenOffset(fsys, path, 0, 800, true)
	must(t, err)
	for i := range 10 {
		must(t, x.Append(int64(i), uint32(i)))
	}
	fail = true
	if err := x.TrimToValidSize(); err == nil {
		t.Fatal("trim succeeded")
	}
	if x.Entries() != 10 || x.MaxEntries() != 100 {
		t.Fatalf("entries %d max %d", x.Entries(), x.MaxEntries())
	}
	if off, _ := x.Lookup(5); off != 5 {
		t.Fatalf("lookup %d", off)
	}
	must(t, x.Append(10, 10))
	if err := x.Close(); err == nil {
		t.Fatal("close trimmed")
	}
	fail = false
	y := mustOpenOffset(t, path, 0, 800, false)
	if y.Entries() != 11 {
		t.Fatalf("reopened entries %d", y.Entries())
	}

	// Failing to extend a new file fails the open and leaves nothing open.
	fail = true
	if _, err := OpenTime(fsys, tmpFile(t, "g.timeindex"), 0, 120, true); err == nil {
		t.Fatal("open succeeded")
	}
}
