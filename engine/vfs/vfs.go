// Package vfs is the file-system seam of the storage engine. The engine performs
// every file operation that recovery depends on (create, write, sync, truncate,
// rename, remove, directory sync) through an FS so that tests can substitute a
// crash-simulating implementation. Memory mappings are made from File.Fd(), so
// every implementation must hand out real operating-system files.
package vfs

import (
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// File is an open file. Writes append at the file's current offset (Write) or
// at an explicit position (WriteAt); Sync makes the written bytes durable
// (fdatasync).
type File interface {
	io.Reader
	io.Writer
	io.ReaderAt
	io.WriterAt
	io.Seeker
	io.Closer
	// Sync flushes written data to stable storage.
	Sync() error
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Stat returns the file's metadata.
	Stat() (os.FileInfo, error)
	// Fd returns the operating-system descriptor (for mmap and sendfile).
	Fd() uintptr
	// Name returns the path the file was opened with.
	Name() string
	// OSFile returns the underlying *os.File (for sendfile by the network layer).
	OSFile() *os.File
}

// FS opens files and changes directory entries.
type FS interface {
	// OpenFile opens name with os.OpenFile flags.
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Rename atomically replaces newpath with oldpath.
	Rename(oldpath, newpath string) error
	// Remove deletes a file or an empty directory.
	Remove(name string) error
	// RemoveAll deletes a directory tree.
	RemoveAll(name string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(name string, perm os.FileMode) error
	// ReadDir lists a directory sorted by name.
	ReadDir(name string) ([]os.DirEntry, error)
	// Stat returns a file's metadata.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the directory's entries (creates, renames, removes) durable.
	SyncDir(name string) error
	// SyncFS makes every earlier change on the file system holding name
	// durable — the contents of every file and every directory entry, made
	// through any descriptor — with one syncfs(2): the group commit of many
	// files at the cost of one file-system journal commit.
	SyncFS(name string) error
}

// Default is the operating system's file system.
var Default FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) OSFile() *os.File { return f.File }

// Sync uses fdatasync: file size changes are covered, other metadata is not needed.
func (f osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(f.File.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) RemoveAll(name string) error                  { return os.RemoveAll(name) }
func (osFS) MkdirAll(name string, perm os.FileMode) error { return os.MkdirAll(name, perm) }
func (osFS) ReadDir(name string) ([]os.DirEntry, error)   { return os.ReadDir(name) }
func (osFS) Stat(name string) (os.FileInfo, error)        { return os.Stat(name) }

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return &os.PathError{Op: "fsync dir", Path: name, Err: err}
	}
	return nil
}

// syncfsDirs holds one descriptor per directory passed to osFS.SyncFS, open
// for the life of the process: syncfs(2) reports the write-back errors of
// the file system that happened since the descriptor it is given was
// opened, so a descriptor opened for each call would miss an error the
// kernel's background write-back met before that call.
var syncfsDirs struct {
	sync.Mutex
	m map[string]*os.File
}

func (osFS) SyncFS(name string) error {
	abs, err := filepath.Abs(name)
	if err != nil {
		return err
	}
	syncfsDirs.Lock()
	d := syncfsDirs.m[abs]
	if d == nil {
		if d, err = os.Open(abs); err != nil {
			syncfsDirs.Unlock()
			return err
		}
		if syncfsDirs.m == nil {
			syncfsDirs.m = map[string]*os.File{}
		}
		syncfsDirs.m[abs] = d
	}
	syncfsDirs.Unlock()
	for {
		err := unix.Syncfs(int(d.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "syncfs", Path: abs, Err: err}
			}
			return nil
		}
	}
}
