package index

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/engine/vfs"
)

// warmSectionBytes is the size of Kafka's warm section: a lookup whose target
// is past the first entry of the last warmSectionBytes/entrySize entries
// searches only those entries, so in-sync lookups keep touching the same few
// pages (AbstractIndex.warmEntries).
const warmSectionBytes = 8192

// mmapFile is the entry-format-agnostic part of both indexes: the file, its
// mapping and the published entry count (Kafka's AbstractIndex).
type mmapFile struct {
	// mu serialises writer operations (appends, truncation, flush, remapping,
	// rename, close). Readers never take it.
	mu sync.Mutex

	fs       vfs.FS
	path     atomic.Pointer[string]
	es       int // entry size in bytes
	base     int64
	writable bool

	// Changed only with mu held. f is nil for a read-only index once it
	// is mapped, and for a deferred one. The mapping (nil when the file is
	// empty, closed or not created yet) is replaced only with no
	// concurrent readers (remap, close), except by materialize, which
	// stores it before any entry is published: readers load it before the
	// entry count (publishedIn).
	f            vfs.File
	mp           atomic.Pointer[[]byte]
	fileSize     int64 // current size of the file
	maxIndexSize int   // segment.index.bytes rounded down to a multiple of es
	closed       bool
	// deferred: a writable index with no entries whose file is not created
	// yet (NewOffset, NewTime): the first entry written creates, extends
	// and maps it (materialize); closing it before creates nothing.
	deferred bool
	// badSize records that the file's size at open was not a multiple of es;
	// SanityCheck reports it until Reset.
	badSize  bool
	openSize int64

	// n is the number of valid entries, published after their bytes are written.
	n atomic.Int64
	// sealed caps MaxEntries at the entry count after TrimToValidSize: the
	// file is cut to its entries but the mapping stays, so concurrent readers
	// are unaffected (they only touch published entries).
	sealed bool
	// bulk collects appended entries in pending instead of writing each
	// (BeginBulk); pending follows the published entries. Writer-only (mu).
	bulk    bool
	pending []byte
}

func (m *mmapFile) name() string { return *m.path.Load() }

// mapping returns the current mapping (nil when there is none).
func (m *mmapFile) mapping() []byte {
	if p := m.mp.Load(); p != nil {
		return *p
	}
	return nil
}

func (m *mmapFile) setMapping(b []byte) {
	if b == nil {
		m.mp.Store(nil)
		return
	}
	m.mp.Store(&b)
}

// published returns the entry count, never more than the mapping holds.
func (m *mmapFile) published() int { return m.publishedIn(m.mapping()) }

// publishedIn is the entry count a reader may use with data, a mapping it
// loaded before (a mapping is stored before the entries it holds are
// published).
func (m *mmapFile) publishedIn(data []byte) int {
	n := int(m.n.Load())
	if c := len(data) / m.es; n > c {
		n = c
	}
	return n
}

func (m *mmapFile) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorruptIndex, m.name(), fmt.Sprintf(format, args...))
}

// count is the writer's entry count: the published entries and the pending
// ones. Caller holds mu.
func (m *mmapFile) count() int { return m.published() + len(m.pending)/m.es }

// writerSlot returns slot i's bytes as the writer sees them (pending or
// written). Caller holds mu; i < count().
func (m *mmapFile) writerSlot(i int) []byte {
	if p := m.published(); i >= p {
		off := (i - p) * m.es
		return m.pending[off : off+m.es]
	}
	return m.mapping()[i*m.es : (i+1)*m.es]
}

// put appends one encoded entry at slot count(): in bulk mode it is kept in
// pending; otherwise it is written with pwrite, then published. The mapping
// is read-only: a write that finds the file system full fails here with an
// ordinary error (ENOSPC) instead of faulting on a mapped page. Caller holds mu.
func (m *mmapFile) put(e []byte) error {
	if m.bulk {
		m.pending = append(m.pending, e...)
		return nil
	}
	if err := m.materialize(); err != nil {
		return err
	}
	n := m.published()
	if err := m.writeAt(e, int64(n*m.es)); err != nil {
		return err
	}
	m.n.Store(int64(n + 1))
	return nil
}

// writePending writes the pending entries with one pwrite and publishes
// them; on failure they are dropped (the index stays a valid, sparser
// prefix). Caller holds mu.
func (m *mmapFile) writePending() error {
	if len(m.pending) == 0 {
		return nil
	}
	if err := m.materialize(); err != nil {
		m.pending = m.pending[:0]
		return err
	}
	n := m.published()
	k := len(m.pending) / m.es
	err := m.writeAt(m.pending, int64(n*m.es))
	m.pending = m.pending[:0]
	if err != nil {
		return err
	}
	m.n.Store(int64(n + k))
	return nil
}

func (m *mmapFile) writeAt(b []byte, off int64) error {
	if _, err := m.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("index: write %s at %d: %w", m.name(), off, err)
	}
	return nil
}

// zeros is a source of zero bytes for clearing slots with pwrite.
var zeros [64 << 10]byte

// writeZeros clears [from, to) of the file. Caller holds mu.
func (m *mmapFile) writeZeros(from, to int64) error {
	for from < to {
		n := min(to-from, int64(len(zeros)))
		if err := m.writeAt(zeros[:n], from); err != nil {
			return err
		}
		from += n
	}
	return nil
}

// BeginBulk makes later appends collect in memory until EndBulk (or Flush,
// TrimToValidSize, Resize, TruncateTo, Reset, Close), which writes them with
// one pwrite: for rebuilding an index from its .log, where an entry per
// system call would dominate. Until then the entries are not visible to
// readers; the caller must not let readers use the index meanwhile.
func (m *mmapFile) BeginBulk() {
	m.mu.Lock()
	m.bulk = true
	m.mu.Unlock()
}

// EndBulk writes and publishes the entries appended since BeginBulk and
// returns to writing each append at once.
func (m *mmapFile) EndBulk() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bulk = false
	if m.closed {
		return nil
	}
	return m.writePending()
}

func (m *mmapFile) wrap(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", sentinel, m.name(), fmt.Sprintf(format, args...))
}

// open opens or creates the index file and maps it. See OpenOffset.
func (m *mmapFile) open(fsys vfs.FS, path string, base int64, es int, maxIndexSize int, writable bool) error {
	m.fs, m.es, m.base, m.writable = fsys, es, base, writable
	m.path.Store(&path)
	if maxIndexSize < 0 || maxIndexSize > math.MaxInt32 {
		return fmt.Errorf("index: %s: invalid max index size %d", path, maxIndexSize)
	}
	m.maxIndexSize = maxIndexSize / es * es
	if writable && m.maxIndexSize < es {
		return fmt.Errorf("index: %s: invalid max index size %d (entry size %d)", path, maxIndexSize, es)
	}

	return m.openFile()
}

// deferOpen sets m up as a writable index with no entries whose file at
// path is created when the first entry is written. See NewOffset.
func (m *mmapFile) deferOpen(fsys vfs.FS, path string, base int64, es int, maxIndexSize int) error {
	m.fs, m.es, m.base, m.writable = fsys, es, base, true
	m.path.Store(&path)
	if maxIndexSize < es || maxIndexSize > math.MaxInt32 {
		return fmt.Errorf("index: %s: invalid max index size %d (entry size %d)", path, maxIndexSize, es)
	}
	m.maxIndexSize = maxIndexSize / es * es
	m.deferred = true
	return nil
}

// materialize creates (or opens) the file of a deferred index, extends it
// to its maximum size and maps it. Caller holds mu; nothing otherwise.
func (m *mmapFile) materialize() error {
	if !m.deferred {
		return nil
	}
	if err := m.openFile(); err != nil {
		// Still deferred and usable: the entry is not written (the index
		// stays a valid, empty prefix) and a later one tries again.
		m.closed, m.badSize = false, false
		m.n.Store(0)
		m.fileSize, m.openSize = 0, 0
		return err
	}
	m.deferred = false
	return nil
}

// Deferred reports whether the index has no file yet (NewOffset, NewTime).
func (m *mmapFile) Deferred() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deferred
}

// openFile opens (writable: or creates) the file at m's path and maps it.
func (m *mmapFile) openFile() error {
	path, writable := m.name(), m.writable
	flag := os.O_RDONLY
	if writable {
		flag = os.O_RDWR | os.O_CREATE
	}
	f, err := m.fs.OpenFile(path, flag, 0o644)
	if err != nil {
		return fmt.Errorf("index: open %s: %w", path, err)
	}
	m.f = f
	if err := m.load(); err != nil {
		if uerr := m.unmap(); uerr != nil {
			err = errors.Join(err, uerr)
		}
		if cerr := f.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("index: close %s: %w", path, cerr))
		}
		m.f = nil
		m.closed = true
		return err
	}
	if !writable {
		// A read-only index needs its descriptor no more: the mapping
		// stays valid after close, and nothing is written. Kafka closes
		// index files once mapped too, so a segment costs one descriptor.
		err := f.Close()
		m.f = nil
		if err != nil {
			_ = m.unmap()
			m.closed = true
			return fmt.Errorf("index: close %s: %w", path, err)
		}
	}
	return nil
}

func (m *mmapFile) load() error {
	fi, err := m.f.Stat()
	if err != nil {
		return fmt.Errorf("index: stat %s: %w", m.name(), err)
	}
	size := fi.Size()
	m.openSize, m.fileSize = size, size
	if size > math.MaxInt32 {
		// segment.index.bytes is a Java int: no index file can be this large.
		return m.corrupt("size %d exceeds the largest possible index", size)
	}
	m.badSize = size%int64(m.es) != 0
	slots := int(size) / m.es

	mapSize := int(size)
	if m.writable && m.maxIndexSize > mapSize {
		// Extend first (never shrink before the existing entries are counted).
		// The extension is a hole: it takes no space until entries are
		// written into it with pwrite, which reports a full file system as
		// an error. Nothing is ever written through the mapping, so no page
		// fault can need space (a fault that cannot get it is a SIGBUS).
		if err := m.f.Truncate(int64(m.maxIndexSize)); err != nil {
			return fmt.Errorf("index: extend %s: %w", m.name(), err)
		}
		mapSize = m.maxIndexSize
		m.fileSize = int64(mapSize)
	}
	data, err := mmapFd(m.f, mapSize)
	if err != nil {
		return fmt.Errorf("index: mmap %s: %w", m.name(), err)
	}
	m.setMapping(data)

	n := countEntries(data, m.es, slots, dataEnd(m.f, size))
	m.n.Store(int64(n))
	if !m.writable {
		return nil
	}
	// Keep the invariant "every slot at or past the entry count is zero" so a
	// later unclean shutdown leaves a detectable tail: clear the partial entry
	// a size that is not a multiple of es left behind.
	if end := min(int(size), len(data)); slots*m.es < end {
		if err := m.writeZeros(int64(slots*m.es), int64(end)); err != nil {
			return err
		}
	}
	if want := max(m.maxIndexSize, n*m.es); want != len(data) || int64(want) != m.fileSize {
		return m.remap(want)
	}
	return nil
}

// countEntries returns the number of valid entries among the first slots
// entries of data: trailing all-zero entries are the unwritten tail of a
// preallocated file, not entries, except that slot 0 may hold a genuine
// all-zero entry. Bytes at or past end are known to be zero (a file hole).
func countEntries(data []byte, es, slots int, end int64) int {
	n := slots
	if e := (end + int64(es) - 1) / int64(es); e < int64(n) {
		n = int(e)
	}
	for n > 0 && allZero(data[(n-1)*es:n*es]) {
		n--
	}
	if n == 0 && slots > 0 {
		n = 1
	}
	return n
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// dataEnd returns the end of the file's last data region, below size: bytes
// past it are a hole and read as zero. It lets open skip the never-written
// tail of a sparse preallocated file without faulting its pages in. On any
// doubt it returns size (scan everything); an end reported too low could only
// drop trailing entries, which keeps the index a valid (sparser) prefix.
func dataEnd(f vfs.File, size int64) int64 {
	fd := int(f.Fd())
	var end, off int64
	for off < size {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if err == unix.ENXIO {
				break
			}
			return size
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil || h <= d {
			return size
		}
		end, off = h, h
	}
	return min(end, size)
}

// mmapFd maps the first size bytes of f read-only. Writers use pwrite; the
// shared mapping shows what they wrote (both are the file's page cache).
func mmapFd(f vfs.File, size int) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	// Index pages are touched one at a time (appends at the end, binary
	// searches), never streamed: without MADV_RANDOM each first touch of
	// a preallocated (sparse) index page faults in a whole readahead
	// window of zero pages, which cost most of the broker's CPU when
	// producing to many fresh partitions.
	_ = unix.Madvise(b, unix.MADV_RANDOM)
	return b, nil
}

func (m *mmapFile) unmap() error {
	data := m.mapping()
	if data == nil {
		return nil
	}
	m.setMapping(nil)
	err := unix.Munmap(data)
	if err != nil {
		return fmt.Errorf("index: munmap %s: %w", m.name(), err)
	}
	return nil
}

// remap sets the file's size to size and maps it again. Caller holds mu, the
// index is writable, and no reader uses the mapping.
func (m *mmapFile) remap(size int) error {
	if err := m.unmap(); err != nil {
		return err
	}
	var err error
	if terr := m.f.Truncate(int64(size)); terr != nil {
		err = fmt.Errorf("index: resize %s to %d: %w", m.name(), size, terr)
		// Map whatever the file now holds so the index stays usable.
		fi, serr := m.f.Stat()
		if serr != nil {
			return errors.Join(err, fmt.Errorf("index: stat %s: %w", m.name(), serr))
		}
		size = int(min(fi.Size(), math.MaxInt32))
	}
	m.fileSize = int64(size)
	data, merr := mmapFd(m.f, size)
	if merr != nil {
		return errors.Join(err, fmt.Errorf("index: mmap %s: %w", m.name(), merr))
	}
	m.setMapping(data)
	if n := m.published(); int64(n) != m.n.Load() {
		m.n.Store(int64(n))
	}
	return err
}

// setEntries drops the entries at and after slot k. Caller holds mu.
func (m *mmapFile) setEntries(k int) {
	_ = m.writePending()
	old := m.published()
	if k >= old {
		return
	}
	m.n.Store(int64(k))
	if m.writable {
		// Zero the dropped slots: they must read as the unwritten tail if the
		// process dies before they are rewritten. Best effort: should the
		// write fail, a clean close trims them off, and after an unclean
		// stop recovery rebuilds every index it cannot trust.
		_ = m.writeZeros(int64(k*m.es), int64(old*m.es))
	}
}

func (m *mmapFile) checkWritable() error {
	if m.closed {
		return m.wrap(ErrClosed, "write")
	}
	if !m.writable {
		return m.wrap(ErrReadOnly, "write")
	}
	return nil
}

// Entries returns the number of valid entries.
func (m *mmapFile) Entries() int { return m.published() }

// MaxEntries returns the number of entries the current mapping can hold.
// Writers compare it with count(), readers with Entries().
func (m *mmapFile) MaxEntries() int {
	if m.sealed {
		return m.published()
	}
	if m.deferred {
		return m.maxIndexSize / m.es
	}
	return len(m.mapping()) / m.es
}

// SizeInBytes returns the number of bytes used by valid entries.
func (m *mmapFile) SizeInBytes() int { return m.published() * m.es }

// BaseOffset returns the base offset of the segment the index belongs to.
func (m *mmapFile) BaseOffset() int64 { return m.base }

// Path returns the index file's current path.
func (m *mmapFile) Path() string { return m.name() }

// Writable reports whether the index was opened for writing.
func (m *mmapFile) Writable() bool { return m.writable }

// CanAppendOffset reports whether offset can be stored relative to the base
// offset: 0 <= offset-base <= math.MaxInt32. The segment rolls when the next
// batch's last offset cannot be.
func (m *mmapFile) CanAppendOffset(offset int64) bool {
	rel := offset - m.base
	return offset >= m.base && rel <= math.MaxInt32
}

// Flush makes the index durable. The mapping is MAP_SHARED, so its dirty pages
// are the file's page cache: File.Sync (fdatasync) writes them exactly as
// msync(MS_SYNC) would on Linux, and goes through the vfs seam so crash tests
// see the sync point. Flushing a read-only index does nothing. Flush may run
// concurrently with appends.
func (m *mmapFile) Flush() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return m.wrap(ErrClosed, "flush")
	}
	if !m.writable {
		return nil
	}
	if err := m.writePending(); err != nil {
		return err
	}
	if m.deferred {
		return nil // no entry: nothing on disk to make durable
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("index: flush %s: %w", m.name(), err)
	}
	return nil
}

// TrimToValidSize cuts the file to exactly the valid entries (on roll and
// close). The mapping is kept as it is, so readers running concurrently keep
// working: they only touch published entries, which all lie inside the file.
// Afterwards the index is full (appends fail with ErrIndexFull) until Resize.
func (m *mmapFile) TrimToValidSize() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkWritable(); err != nil {
		return err
	}
	return m.trimLocked()
}

func (m *mmapFile) trimLocked() error {
	if err := m.writePending(); err != nil {
		return err
	}
	if m.deferred {
		// A sealed segment has both index files, as in Kafka: an empty
		// one is created now.
		f, err := m.fs.OpenFile(m.name(), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("index: create %s: %w", m.name(), err)
		}
		if err := f.Truncate(0); err != nil {
			_ = f.Close()
			return fmt.Errorf("index: trim %s to 0: %w", m.name(), err)
		}
		m.f, m.fileSize, m.deferred = f, 0, false
		m.sealed = true
		return nil
	}
	want := int64(m.published() * m.es)
	if want != m.fileSize {
		if err := m.f.Truncate(want); err != nil {
			return fmt.Errorf("index: trim %s to %d: %w", m.name(), want, err)
		}
		m.fileSize = want
	}
	m.sealed = true
	return nil
}

// Resize sets the file and mapping to maxIndexSize rounded down to a multiple
// of the entry size, never dropping valid entries (the size is at least the
// entries' size), and remembers it as the index's maximum size. Used when a
// trimmed index becomes active again. Requires that no reader uses the index.
func (m *mmapFile) Resize(maxIndexSize int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkWritable(); err != nil {
		return err
	}
	if maxIndexSize < 0 || maxIndexSize > math.MaxInt32 {
		return fmt.Errorf("index: %s: invalid max index size %d", m.name(), maxIndexSize)
	}
	if err := m.writePending(); err != nil {
		return err
	}
	m.maxIndexSize = maxIndexSize / m.es * m.es
	m.sealed = false
	if m.deferred {
		return nil
	}
	want := max(m.maxIndexSize, m.published()*m.es)
	if want == len(m.mapping()) && int64(want) == m.fileSize {
		return nil
	}
	return m.remap(want)
}

// Rename renames the index file through the vfs; the mapping stays valid.
func (m *mmapFile) Rename(newPath string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.name()
	if err := m.fs.Rename(old, newPath); err != nil && !(m.deferred && errors.Is(err, fs.ErrNotExist)) {
		return fmt.Errorf("index: rename %s: %w", old, err)
	}
	m.path.Store(&newPath)
	return nil
}

// Close trims a writable index to its valid entries, unmaps it and closes the
// file. Closing twice is a no-op. Requires that no reader uses the index.
func (m *mmapFile) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	var err error
	if m.writable && !m.deferred {
		err = m.trimLocked()
	}
	return errors.Join(err, m.closeLocked())
}

func (m *mmapFile) closeLocked() error {
	m.pending = nil
	err := m.unmap()
	m.n.Store(0)
	m.closed = true
	if m.f != nil {
		if cerr := m.f.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("index: close %s: %w", m.name(), cerr))
		}
		m.f = nil
	}
	return err
}

// Delete unmaps and closes the index without trimming it, then removes the
// file; a file that no longer exists is not an error. Requires that no reader
// uses the index.
func (m *mmapFile) Delete() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	if !m.closed {
		err = m.closeLocked()
	}
	if rerr := m.fs.Remove(m.name()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("index: delete %s: %w", m.name(), rerr))
	}
	return err
}

// sanitySize reports a file whose size is not a multiple of the entry size.
func (m *mmapFile) sanitySize() error {
	if m.badSize {
		return m.corrupt("size %d is not a multiple of the entry size %d", m.openSize, m.es)
	}
	if m.fileSize%int64(m.es) != 0 {
		return m.corrupt("size %d is not a multiple of the entry size %d", m.fileSize, m.es)
	}
	return nil
}
