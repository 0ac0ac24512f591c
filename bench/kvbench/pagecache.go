package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Page-cache control for the cold runs: every regular file under a
// directory is fdatasync'ed (dirty pages cannot be dropped) and then
// posix_fadvise(POSIX_FADV_DONTNEED)'d. Pages a process holds mapped stay
// resident; residentFraction (mincore) reports what is left, so the report
// shows how cold "cold" was.

func walkFiles(dir string, fn func(path string, size int64)) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			fn(p, fi.Size())
		}
		return nil
	})
}

// dropCache evicts dir's files from the page cache where the kernel allows.
func dropCache(dir string) {
	walkFiles(dir, func(p string, _ int64) {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			if f, err = os.Open(p); err != nil {
				return
			}
		}
		defer f.Close()
		unix.Fdatasync(int(f.Fd()))
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
}

// residentFraction is the share of dir's file pages in the page cache.
func residentFraction(dir string) float64 {
	var total, resident int64
	page := int64(os.Getpagesize())
	walkFiles(dir, func(p string, size int64) {
		if size == 0 {
			return
		}
		f, err := os.Open(p)
		if err != nil {
			return
		}
		defer f.Close()
		m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return
		}
		defer unix.Munmap(m)
		vec := make([]byte, (size+page-1)/page)
		if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
			return
		}
		for _, v := range vec {
			if v&1 != 0 {
				resident++
			}
		}
		total += int64(len(vec))
	})
	if total == 0 {
		return 0
	}
	return float64(resident) / float64(total)
}

// dirBytes is the total size of dir's regular files (apparent size).
func dirBytes(dir string) int64 {
	var n int64
	walkFiles(dir, func(_ string, size int64) { n += size })
	return n
}

// dirDiskBytes is the disk space dir's files occupy (allocated blocks), the
// figure for "disk bytes" (preallocated and sparse index files count as
// what they really use).
func dirDiskBytes(dir string) int64 {
	var n int64
	walkFiles(dir, func(p string, _ int64) {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			n += st.Blocks * 512
		}
	})
	return n
}
