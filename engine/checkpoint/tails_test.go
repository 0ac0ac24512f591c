package checkpoint

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

func TestSyncedTailsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), SyncedTailsFile)
	m := map[TopicPartition]Tail{
		{"orders", 3}:  {Base: 412, Bytes: 1873, End: 500},
		{"orders", 10}: {Base: 0, Bytes: 0, End: 0},
		{"a", 0}:       {Base: 7, Bytes: 0, End: 7},
		{"a", 1}:       {Base: 7, Bytes: 80, End: 8, Sealed: true},
	}
	if err := WriteTails(vfs.Default, path, m); err != nil {
		t.Fatal(err)
	}
	if got, want := readBytes(t, path), "0\n4\na 0 7 0 7\na 1 7 80 8 sealed\norders 3 412 1873 500\norders 10 0 0 0\n"; got != want {
		t.Fatalf("file %q, want %q", got, want)
	}
	back, err := ReadTails(vfs.Default, path)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(back, m) {
		t.Fatalf("read back %v, want %v", back, m)
	}
	if m, err := ReadTails(vfs.Default, filepath.Join(t.TempDir(), "missing")); err != nil || len(m) != 0 {
		t.Fatalf("missing file: %v %v", m, err)
	}
}

func TestSyncedTailsMalformed(t *testing.T) {
	for _, body := range []string{
		"0\n1\norders 3 412 1873\n",       // four fields
		"0\n1\norders 3 412 1873 500 1\n", // six, the sixth not "sealed"
		"0\n1\norders 3 412 1873 500 sealed x\n",
		"0\n1\norders 3 412 -1 500\n", // negative length
		"0\n1\norders 3 412 10 411\n", // end below the base
		"0\n1\nor/ders 3 0 0 0\n",     // topic name
		"0\n2\norders 3 0 0 0\n",      // count
	} {
		path := filepath.Join(t.TempDir(), SyncedTailsFile)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadTails(vfs.Default, path); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", body, err)
		}
	}
	if err := WriteTails(vfs.Default, filepath.Join(t.TempDir(), SyncedTailsFile), map[TopicPartition]Tail{{"t", 0}: {Base: 5, End: 4}}); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("end below base written: %v", err)
	}
}

func TestTailDescribes(t *testing.T) {
	var none *Tail
	if none.Describes(0, 0, 0) {
		t.Fatal("no entry describes a segment")
	}
	tl := &Tail{Base: 10, Bytes: 100, End: 20}
	if !tl.Describes(10, 100, 20) || tl.Describes(10, 101, 20) || tl.Describes(11, 100, 20) || tl.Describes(10, 100, 19) {
		t.Fatal("Describes is not an exact match")
	}
}
