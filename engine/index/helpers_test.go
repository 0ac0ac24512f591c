package index

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/engine/vfs"
)

func tmpFile(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(t.TempDir(), name)
}

func mustOpenOffset(t testing.TB, path string, base int64, maxSize int, writable bool) *OffsetIndex {
	t.Helper()
	x, err := OpenOffset(vfs.Default, path, base, maxSize, writable)
	if err != nil {
		t.Fatalf("OpenOffset(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

func mustOpenTime(t testing.TB, path string, base int64, maxSize int, writable bool) *TimeIndex {
	t.Helper()
	x, err := OpenTime(vfs.Default, path, base, maxSize, writable)
	if err != nil {
		t.Fatalf("OpenTime(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = x.Close() })
	return x
}

// crash simulates an unclean shutdown: the mapping and the file are released
// without trimming, so a preallocated file keeps its zero tail.
func (m *mmapFile) crash(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.closeLocked(); err != nil {
		t.Fatalf("crash: %v", err)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err, sentinel error, path string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v, want %v", err, sentinel)
	}
	if path != "" && !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name %s", err, path)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
