package index

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// TestNewIndexCreatesItsFileWithTheFirstEntry: a deferred index (NewOffset,
// NewTime) has no file, mapping or descriptor until an entry is written;
// it reads as empty, has room for maxIndexSize of entries, and closing,
// flushing, truncating or renaming it creates nothing. Its first entry
// creates and maps the file, and a roll's TrimToValidSize creates an empty
// one.
func TestNewIndexCreatesItsFileWithTheFirstEntry(t *testing.T) {
	dir := t.TempDir()
	oPath, tPath := filepath.Join(dir, "0.index"), filepath.Join(dir, "0.timeindex")
	oi, err := NewOffset(vfs.Default, oPath, 100, 4096)
	must(t, err)
	ti, err := NewTime(vfs.Default, tPath, 100, 4096/8*12)
	must(t, err)
	if !oi.Deferred() || !ti.Deferred() {
		t.Fatal("new indexes not deferred")
	}
	if oi.Entries() != 0 || oi.IsFull() || oi.MaxEntries() != 4096/OffsetEntrySize || ti.IsFull() {
		t.Fatalf("deferred offset index: %d entries, full %v, max %d", oi.Entries(), oi.IsFull(), oi.MaxEntries())
	}
	if off, pos := oi.Lookup(150); off != 100 || pos != 0 {
		t.Fatalf("lookup in an empty index: %d %d", off, pos)
	}
	if ts, off := ti.Lookup(5); ts != NoTimestamp || off != 100 {
		t.Fatalf("time lookup in an empty index: %d %d", ts, off)
	}
	oi.TruncateTo(100)
	ti.Reset()
	must(t, oi.Flush())
	must(t, oi.SanityCheck())
	must(t, ti.Verify())
	must(t, oi.Resize(8192))
	must(t, oi.Rename(oPath+".swap"))
	must(t, oi.Rename(oPath))
	if exists(t, oPath) || exists(t, tPath) {
		t.Fatal("a deferred index created its file before any entry")
	}

	// The first entry creates, extends and maps the file.
	must(t, oi.Append(120, 4200))
	if oi.Deferred() || !exists(t, oPath) || oi.Entries() != 1 {
		t.Fatalf("after the first entry: deferred %v, file %v, %d entries", oi.Deferred(), exists(t, oPath), oi.Entries())
	}
	if off, pos := oi.Lookup(150); off != 120 || pos != 4200 {
		t.Fatalf("lookup: %d %d", off, pos)
	}
	if fileSize(t, oPath) != 8192 {
		t.Fatalf("file of %d bytes, want the resized maximum 8192", fileSize(t, oPath))
	}
	must(t, oi.Close())
	if fileSize(t, oPath) != OffsetEntrySize {
		t.Fatalf("closed file of %d bytes, want one entry", fileSize(t, oPath))
	}

	// A deferred index closed without an entry leaves no file; a trimmed
	// (sealed) one leaves an empty one.
	must(t, ti.Close())
	if exists(t, tPath) {
		t.Fatal("closing a deferred index created its file")
	}
	ti, err = NewTime(vfs.Default, tPath, 100, 4096/8*12)
	must(t, err)
	must(t, ti.TrimToValidSize())
	if !exists(t, tPath) || fileSize(t, tPath) != 0 || ti.Deferred() {
		t.Fatal("a sealed deferred index has no empty file")
	}
	if err := ti.MaybeAppend(7, 101, false); !errors.Is(err, ErrIndexFull) {
		t.Fatalf("append to a trimmed index: %v", err)
	}
	must(t, ti.Resize(4096/8*12))
	must(t, ti.MaybeAppend(7, 101, false))
	must(t, ti.Close())
	y := mustOpenTime(t, tPath, 100, 0, false)
	if ts, off := y.LastEntry(); ts != 7 || off != 101 {
		t.Fatalf("reopened: %d %d", ts, off)
	}
}

// TestNewIndexBulk: entries appended in bulk to a deferred index create
// the file when written (a rebuild of a segment's indexes).
func TestNewIndexBulk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.index")
	oi, err := NewOffset(vfs.Default, path, 0, 4096)
	must(t, err)
	oi.BeginBulk()
	must(t, oi.Append(5, 100))
	must(t, oi.Append(9, 200))
	if exists(t, path) {
		t.Fatal("bulk entries written before EndBulk")
	}
	must(t, oi.EndBulk())
	if oi.Entries() != 2 || !exists(t, path) {
		t.Fatalf("after EndBulk: %d entries, file %v", oi.Entries(), exists(t, path))
	}
	must(t, oi.Close())
}
