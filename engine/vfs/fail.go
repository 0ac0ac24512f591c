package vfs

import (
	"errors"
	"os"
	"sync"
)

// ErrInjected is what a FailFS returns once its budget is spent.
var ErrInjected = errors.New("vfs: injected failure: the process died")

// FailFS passes operations to an underlying FS until its budget of mutating
// operations (open for writing, write, truncate, sync, rename, remove, mkdir,
// directory sync) is spent; from then on every mutating operation fails with
// ErrInjected, as if the process had died just before it. Tests use it to stop
// a multi-step file protocol after each of its steps (combine with CrashFS to
// also lose what was not synced). A negative budget is unlimited.
type FailFS struct {
	FS
	mu     sync.Mutex
	budget int
	dead   bool
}

// NewFailFS wraps fs with an unlimited budget.
func NewFailFS(fs FS) *FailFS { return &FailFS{FS: fs, budget: -1} }

// SetBudget allows n more mutating operations (n < 0: unlimited).
func (f *FailFS) SetBudget(n int) {
	f.mu.Lock()
	f.budget, f.dead = n, false
	f.mu.Unlock()
}

// Exhausted reports whether an operation was refused since the last SetBudget.
func (f *FailFS) Exhausted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dead
}

func (f *FailFS) op() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget < 0 {
		return nil
	}
	if f.budget == 0 {
		f.dead = true
		return ErrInjected
	}
	f.budget--
	return nil
}

func (f *FailFS) do(op func() error) error {
	if err := f.op(); err != nil {
		return err
	}
	return op()
}

// OpenFile counts opens for writing.
func (f *FailFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC) != 0 {
		if err := f.op(); err != nil {
			return nil, err
		}
	}
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &failFile{File: file, fs: f}, nil
}

// Rename counts as a mutating operation.
func (f *FailFS) Rename(a, b string) error { return f.do(func() error { return f.FS.Rename(a, b) }) }

// Remove counts as a mutating operation.
func (f *FailFS) Remove(name string) error { return f.do(func() error { return f.FS.Remove(name) }) }

// RemoveAll counts as a mutating operation.
func (f *FailFS) RemoveAll(name string) error {
	return f.do(func() error { return f.FS.RemoveAll(name) })
}

// MkdirAll counts as a mutating operation.
func (f *FailFS) MkdirAll(name string, perm os.FileMode) error {
	return f.do(func() error { return f.FS.MkdirAll(name, perm) })
}

// SyncDir counts as a mutating operation.
func (f *FailFS) SyncDir(name string) error { return f.do(func() error { return f.FS.SyncDir(name) }) }

// SyncFS counts as a mutating operation.
func (f *FailFS) SyncFS(name string) error { return f.do(func() error { return f.FS.SyncFS(name) }) }

type failFile struct {
	File
	fs *FailFS
}

func (f *failFile) Write(p []byte) (int, error) {
	if err := f.fs.op(); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *failFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.op(); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *failFile) Truncate(n int64) error {
	return f.fs.do(func() error { return f.File.Truncate(n) })
}

func (f *failFile) Sync() error { return f.fs.do(func() error { return f.File.Sync() }) }
