package checkpoint

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

// TestDeferredMutationsBackToTheFile: deferred mutations that end where
// the file is leave nothing to write; others are written by Flush.
func TestDeferredMutationsBackToTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), LeaderEpochFile)
	c := NewEpochCache(vfs.Default, path)
	if err := c.Assign(2, 10); err != nil {
		t.Fatal(err)
	}
	c.TruncateFromEndDeferred(10)
	if len(c.Entries()) != 0 {
		t.Fatalf("entries %v after truncating to 10", c.Entries())
	}
	if err := c.AssignDeferred(2, 10); err != nil {
		t.Fatal(err)
	}
	if p, err := c.Stage(); err != nil || p != "" {
		t.Fatalf("staged %q %v with the entries the file holds", p, err)
	}
	c.TruncateFromEndDeferred(10)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	back, err := OpenEpochCache(vfs.Default, path)
	if err != nil || len(back.Entries()) != 0 {
		t.Fatalf("file after a flushed truncation: %v %v", back.Entries(), err)
	}
	if err := back.AssignDeferred(4, 12); err != nil {
		t.Fatal(err)
	}
	if err := back.Flush(); err != nil {
		t.Fatal(err)
	}
	if again, _ := OpenEpochCache(vfs.Default, path); !slices.Equal(again.Entries(), []EpochEntry{{4, 12}}) {
		t.Fatalf("file %v", again.Entries())
	}
}
