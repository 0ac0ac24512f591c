package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/engine/vfs"
)

// ErrDirLocked says a log dir is locked by another process (or another
// Manager of this one): a second broker must not load a live data directory.
var ErrDirLocked = errors.New("engine: log dir in use")

// DirLocks holds the exclusive locks of a set of log dirs: an flock(2) on
// each dir's .lock file, as Apache Kafka's LogManager takes one per log dir.
// The lock lives as long as the descriptor, so a process that dies (even by
// SIGKILL) releases it; the file itself stays (deleting it on release would
// let a third process lock a fresh file while a second still waits on the
// old one).
type DirLocks struct {
	dirs  []string
	files []*os.File
}

// NormalizeDirs returns dirs made absolute and cleaned, so that every path
// the engine builds under a dir, and every comparison between them, uses one
// spelling ("./data", "data" and "/cwd/data/" are the same dir). A dir
// listed twice is an error.
func NormalizeDirs(dirs []string) ([]string, error) {
	if len(dirs) == 0 {
		return nil, errors.New("engine: no log dirs")
	}
	out := make([]string, 0, len(dirs))
	seen := map[string]bool{}
	for _, d := range dirs {
		if d == "" {
			return nil, errors.New("engine: empty log dir name")
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("engine: log dir %s: %w", d, err)
		}
		if seen[abs] {
			return nil, fmt.Errorf("engine: log dir %s listed twice", abs)
		}
		seen[abs] = true
		out = append(out, abs)
	}
	return out, nil
}

// LockDirs normalises dirs (NormalizeDirs), creates any that is missing and
// takes each one's lock without waiting. Nothing else in a dir is read or
// written. When a dir is already locked it releases what it took and
// returns an error wrapping ErrDirLocked that names the dir and its lock
// file.
func LockDirs(fs vfs.FS, dirs []string) (*DirLocks, error) {
	if fs == nil {
		fs = vfs.Default
	}
	norm, err := NormalizeDirs(dirs)
	if err != nil {
		return nil, err
	}
	dl := &DirLocks{dirs: norm}
	for _, d := range norm {
		if err := fs.MkdirAll(d, 0o755); err != nil {
			dl.Release()
			return nil, fmt.Errorf("engine: log dir %s: %w: %w", d, ErrStorage, err)
		}
		path := filepath.Join(d, LockFile)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			dl.Release()
			return nil, fmt.Errorf("engine: log dir %s: lock %s: %w: %w", d, path, ErrStorage, err)
		}
		if err := flockNB(f); err != nil {
			f.Close()
			dl.Release()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s is locked (%s) by another kvlogd or tool using the same log dir", ErrDirLocked, d, path)
			}
			return nil, fmt.Errorf("engine: log dir %s: lock %s: %w: %w", d, path, ErrStorage, err)
		}
		dl.files = append(dl.files, f)
	}
	return dl, nil
}

func flockNB(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			return err
		}
	}
}

// Dirs returns the locked dirs, normalised.
func (dl *DirLocks) Dirs() []string { return dl.dirs }

// Release unlocks every dir. Safe to call more than once.
func (dl *DirLocks) Release() {
	if dl == nil {
		return
	}
	for _, f := range dl.files {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}
	dl.files = nil
}
