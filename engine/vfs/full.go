package vfs

import (
	"io/fs"
	"os"
	"sync"
	"syscall"
)

// FullFS passes operations to an underlying FS while simulating a file
// system that runs out of space: it has a budget of bytes that writes may
// still add, and a write that needs more writes what fits and fails with
// ENOSPC (wrapped in *fs.PathError, as the operating system reports it).
// Overwriting bytes inside a file also consumes the budget; extending a file
// with Truncate does not (the extension is a hole, as on Linux file
// systems). Memory mappings are not covered: the engine must never write
// through one. A negative budget is unlimited.
type FullFS struct {
	FS
	mu    sync.Mutex
	space int64
	hits  int
}

// NewFullFS wraps fs with unlimited space.
func NewFullFS(fs FS) *FullFS { return &FullFS{FS: fs, space: -1} }

// SetSpace sets how many more bytes writes may add (n < 0: unlimited).
func (f *FullFS) SetSpace(n int64) {
	f.mu.Lock()
	f.space = n
	f.mu.Unlock()
}

// Hits reports how many writes failed with ENOSPC.
func (f *FullFS) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// take reserves up to n bytes and returns how many may be written.
func (f *FullFS) take(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.space < 0 || int64(n) <= f.space {
		if f.space >= 0 {
			f.space -= int64(n)
		}
		return n
	}
	k := int(f.space)
	f.space = 0
	f.hits++
	return k
}

// OpenFile wraps the opened file so its writes draw on the budget.
func (f *FullFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &fullFile{File: file, fs: f}, nil
}

type fullFile struct {
	File
	fs *FullFS
}

func (f *fullFile) enospc(op string) error {
	return &fs.PathError{Op: op, Path: f.Name(), Err: syscall.ENOSPC}
}

func (f *fullFile) Write(p []byte) (int, error) {
	k := f.fs.take(len(p))
	n, err := f.File.Write(p[:k])
	if err == nil && k < len(p) {
		err = f.enospc("write")
	}
	return n, err
}

func (f *fullFile) WriteAt(p []byte, off int64) (int, error) {
	k := f.fs.take(len(p))
	n, err := f.File.WriteAt(p[:k], off)
	if err == nil && k < len(p) {
		err = f.enospc("pwrite")
	}
	return n, err
}
