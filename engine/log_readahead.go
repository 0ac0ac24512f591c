package engine

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Read-ahead of cold reads.
//
// A read measures the batches it serves by walking their headers (one
// small read per batch, readRange), and the network layer then sends the
// bytes between them with sendfile. On a log that is not in the page cache
// both go to the disk, and the kernel sees neither as one sequential
// stream: the walk's reads are a page every batch apart (the kernel reads
// each alone, synchronously, as random reads), and sendfile only starts
// after the walk. So a read of a large range whose end is not cached asks
// the kernel to read the whole range at once (POSIX_FADV_WILLNEED: the
// reads are queued together and complete while the walk goes on). A read
// that continues a sequential reader (it starts at the segment's start or
// where the segment's last read cut by its byte limit stopped) and is cut
// by its byte limit again, more batches after it, does the same for the
// next range of the same length, where that reader's next fetch will
// start: the disk reads it while this range is sent and the consumer
// handles it. A one-off read at another position is not followed, so
// its advice never goes beyond the range it serves. A range whose last
// page is cached is left alone (warm reads pay one probe, no advice), and
// so is a range under readaheadMin, which the kernel's own read-ahead
// handles.

const (
	// readaheadMin is the smallest range worth advising.
	readaheadMin = 256 << 10
	// readaheadChunkMin is the length of one advice call when the
	// device's read-ahead window is unknown: the kernel reads at most
	// that window (128 KiB by default) for one WILLNEED call, so longer
	// ranges are advised in pieces of the window's size
	// (readaheadChunk).
	readaheadChunkMin = 128 << 10
	// readaheadChunkMax bounds one call's length (the kernel reads 2 MiB
	// at a time within a call).
	readaheadChunkMax = 2 << 20
)

// readaheadOps is how a read gives the advice: cached reports whether
// the byte at off of f is in the page cache, willNeed asks for [off,
// off+n) of f to be read in the background, and later runs the advice of
// the next range off the reader's path. Tests replace them (readahead).
type readaheadOps struct {
	cached   func(f *os.File, off int64) bool
	willNeed func(f *os.File, off, n int64)
	later    func(fn func())
}

var defaultReadahead = readaheadOps{cachedNoWait, adviseWillNeed, func(fn func()) { go fn() }}

// readahead holds the operations in use (nil: defaultReadahead).
var readahead atomic.Pointer[readaheadOps]

func raOps() *readaheadOps {
	if ops := readahead.Load(); ops != nil {
		return ops
	}
	return &defaultReadahead
}

// adviseCold asks the kernel to read [from, to) of f unless the range is
// short or its last byte is cached already.
func adviseCold(f *os.File, from, to int64) {
	ops := raOps()
	if f == nil || to-from < readaheadMin || ops.cached(f, to-1) {
		return
	}
	ops.willNeed(f, from, to-from)
}

// cachedNoWait reads the byte at off with RWF_NOWAIT, which fails with
// EAGAIN instead of waiting for the disk when the page is not cached (or
// is still being read). Any other failure (a kernel or file system
// without RWF_NOWAIT) counts as not cached: the advice then costs a
// lookup of cached pages, nothing more.
func cachedNoWait(f *os.File, off int64) bool {
	var b [1]byte
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	cerr := rc.Control(func(fd uintptr) {
		n, err = unix.Preadv2(int(fd), [][]byte{b[:]}, off, unix.RWF_NOWAIT)
	})
	return cerr == nil && err == nil && n == 1
}

// adviseWillNeed advises [off, off+n) of f in pieces the kernel reads
// whole. Failures are ignored: advice is only a hint. (The descriptor
// stays valid during Control even if the file is closed meanwhile.)
func adviseWillNeed(f *os.File, off, n int64) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		chunk := readaheadChunk(int(fd))
		for end := off + n; off < end; off += chunk {
			_ = unix.Fadvise(int(fd), off, min(chunk, end-off), unix.FADV_WILLNEED)
		}
	})
}

// raWindows caches the read-ahead window per device (its bdi's
// read_ahead_kb).
var raWindows sync.Map // uint64 (st_dev) → int64

// readaheadChunk is the advice length for the file fd: its device's
// read-ahead window, within [readaheadChunkMin, readaheadChunkMax].
func readaheadChunk(fd int) int64 {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return readaheadChunkMin
	}
	if w, ok := raWindows.Load(st.Dev); ok {
		return w.(int64)
	}
	w := int64(readaheadChunkMin)
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if b, err := os.ReadFile(p); err == nil {
		if kb, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			w = min(max(kb<<10, readaheadChunkMin), readaheadChunkMax)
		}
	}
	raWindows.Store(st.Dev, w)
	return w
}
