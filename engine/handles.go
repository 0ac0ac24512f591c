package engine

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kvlog/kvlog/engine/index"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/internal/clock"
	"golang.org/x/sys/unix"
)

// ErrResourceLimit is returned when an operation needs a file descriptor or
// a memory mapping and the engine's budget of them is spent by files in use
// (readers holding segments, appends in progress): nothing cold is left to
// close. The operation is refused; everything already open keeps serving.
// It wraps ErrStorage (KAFKA_STORAGE_ERROR): clients retry.
var ErrResourceLimit = fmt.Errorf("%w: open file or memory mapping budget exhausted", ErrStorage)

// handleCache is the engine's budget of open files and memory mappings and
// the cache of open segment handles that spends it (docs/storage.md, "Open
// files").
//
// Every file the engine opens goes through budgetFS, which charges one file
// per descriptor while it is open; every mapping (index files, a mapped
// .log) is charged by the handle that holds it. Every handle of a listed
// segment — active or not — is in a CLOCK ring: when a charge does not fit,
// the ring is swept for a handle nobody but its segment holds (no reader, no
// writer in the middle of an operation) and not used since the hand last
// passed it, which is closed to make room. An active segment whose handle
// was closed reopens it on its next append or read. When every handle is in
// use the charge is refused with ErrResourceLimit.
//
// Handles are reference counted: a handle is closed by the sweep only when
// its segment holds the sole reference, so nothing is closed or unmapped
// under a reader, and the budget is exact (what the sweep closes is freed at
// once).
//
// Lock order: segment.mu may be held when the cache's mu is taken (admit,
// forget, charges made while a segment opens its handle); the sweep holds
// mu only to pick a candidate and takes the candidate's segment.mu with
// TryLock after releasing it, so neither order can deadlock.
type handleCache struct {
	maxFiles    atomic.Int64
	maxMaps     atomic.Int64
	maxInactive int // bound on cached handles of inactive segments (<= 0: none)
	derived     bool

	mu       sync.Mutex
	files    int64   // descriptors open now
	maps     int64   // mappings held now
	inactive int     // handles in the ring whose segment is inactive
	hand     *handle // CLOCK hand; the ring is circular through next/prev
	n        int     // handles in the ring

	// waiters counts charges waiting for a handle to become free; wake is
	// closed (and replaced) when one may have (mu).
	waiters atomic.Int32
	wake    chan struct{}
	clk     clock.Clock // runs chargeWait

	// readPins counts handles held by read results (file ranges not yet
	// released, e.g. a fetch response being sent).
	readPins atomic.Int64

	refusals  atomic.Int64
	evictions atomic.Int64
	reopens   atomic.Int64
	copies    atomic.Int64
	// rebuilds counts index rebuilds from a .log (segment.rebuildIndexes)
	// and activeOpens the first opens of an active segment loaded lazily
	// (its tail read, its indexes checked): what a start-up or a close
	// paid per partition (tests).
	rebuilds    atomic.Int64
	activeOpens atomic.Int64
}

// pinsHeavy reports that read results hold handles worth half the file
// budget (an active segment's handle holds three descriptors), so a read
// should copy its bytes rather than hold one more.
func (hc *handleCache) pinsHeavy() bool {
	if 3*(hc.readPins.Load()+1) <= hc.maxFiles.Load()/2 && 2*(hc.readPins.Load()+1) <= hc.maxMaps.Load()/2 {
		return false
	}
	hc.copies.Add(1)
	return true
}

// chargeWait bounds how long a charge waits for handles in use (appends
// and fsyncs in flight, readers) to be released before it is refused: a
// burst of work on more partitions than the budget holds queues instead of
// failing, while a budget held for long (readers that never let go) is
// refused promptly enough for clients to retry.
const chargeWait = 2 * time.Second

// notify wakes charges waiting for a handle to become free.
func (hc *handleCache) notify() {
	if hc.waiters.Load() == 0 {
		return
	}
	hc.mu.Lock()
	close(hc.wake)
	hc.wake = make(chan struct{})
	hc.mu.Unlock()
}

// budgetLimits are the budget's bounds: open files and memory mappings.
type budgetLimits struct {
	files, maps int64
	derived     bool
}

// Budget defaults when not configured: the process's RLIMIT_NOFILE less a
// reserve for everything else the process opens (sockets above all), and
// vm.max_map_count less what the Go runtime, the heap and thread stacks map.
const (
	minFiles        = 16
	defaultReserved = 1024
	mapReserve      = 8192
	defaultMapCount = 65530
)

// deriveLimits turns configured values (0: derived) into limits.
func deriveLimits(files, maps, reserved int) budgetLimits {
	var l budgetLimits
	l.files, l.maps = int64(files), int64(maps)
	if files <= 0 {
		l.derived = true
		l.files = derivedFiles(reserved)
	}
	if maps <= 0 {
		l.derived = true
		l.maps = derivedMaps()
	}
	return l
}

// RlimitNofile returns the process's current limit on open files (0 when
// unknown).
func RlimitNofile() int64 {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<40 {
		return 0
	}
	return int64(r.Cur)
}

// derivedFiles is RLIMIT_NOFILE less reserved (defaultReserved when <= 0),
// the reserve being capped at a quarter of the limit.
func derivedFiles(reserved int) int64 {
	return filesWithin(RlimitNofile(), reserved)
}

// filesWithin is the file budget under an open-file limit (1024 when
// unknown) with reserved descriptors kept for the rest of the process. The
// reserve is capped at a quarter of the limit: with max.connections at its
// default (unbounded) the reserve is the cap, and a broker with one written
// partition per descriptor up to three quarters of its limit keeps every
// active segment open instead of closing and reopening them in turn (a
// producer writing to every partition in each request touches them in the
// same order each time, the worst case for any cache smaller than the set).
func filesWithin(limit int64, reserved int) int64 {
	if limit <= 0 {
		limit = 1024
	}
	r := int64(reserved)
	if r <= 0 {
		r = defaultReserved
	}
	r = min(r, limit/4)
	return max(limit-r, minFiles)
}

// MaxMapCount reads vm.max_map_count (defaultMapCount when unreadable).
func MaxMapCount() int64 {
	b, err := os.ReadFile("/proc/sys/vm/max_map_count")
	if err != nil {
		return defaultMapCount
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return defaultMapCount
	}
	return n
}

func derivedMaps() int64 {
	n := MaxMapCount()
	return max(n-min(mapReserve, n/4), minFiles)
}

// newHandleCache returns a budget with the given limits and at most
// maxInactive cached handles of inactive segments (<= 0: bounded by the
// budget only), whose charges wait on clk.
func newHandleCache(lim budgetLimits, maxInactive int, clk clock.Clock) *handleCache {
	hc := &handleCache{maxInactive: maxInactive, derived: lim.derived, wake: make(chan struct{}), clk: clk}
	hc.setLimits(lim)
	return hc
}

func (hc *handleCache) setLimits(lim budgetLimits) {
	hc.maxFiles.Store(max(lim.files, minFiles))
	hc.maxMaps.Store(max(lim.maps, minFiles))
}

// refresh re-derives derived limits (RLIMIT_NOFILE may be changed on a
// running process) and closes cold handles until the budget fits them.
func (hc *handleCache) refresh(reserved int) {
	if hc == nil {
		return
	}
	if hc.derived {
		hc.setLimits(budgetLimits{files: derivedFiles(reserved), maps: derivedMaps()})
	}
	_ = hc.charge(0, 0)
}

// BudgetStats is the engine's use of its file and mapping budget.
type BudgetStats struct {
	OpenFiles, MaxOpenFiles int64 // descriptors open, and the bound
	Mappings, MaxMappings   int64 // memory mappings held, and the bound
	CachedHandles           int   // segment handles open (the CLOCK ring)
	Evictions               int64 // handles closed to make room, in total
	Reopens                 int64 // handles of active segments reopened after an eviction
	Refusals                int64 // operations refused with ErrResourceLimit
	CopiedReads             int64 // reads served from memory instead of file ranges
}

func (hc *handleCache) stats() BudgetStats {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return BudgetStats{
		OpenFiles: hc.files, MaxOpenFiles: hc.maxFiles.Load(),
		Mappings: hc.maps, MaxMappings: hc.maxMaps.Load(),
		CachedHandles: hc.n,
		Evictions:     hc.evictions.Load(), Reopens: hc.reopens.Load(), Refusals: hc.refusals.Load(),
		CopiedReads: hc.copies.Load(),
	}
}

// charge reserves files descriptors and maps mappings, closing cold handles
// as needed. When every handle is in use it waits up to chargeWait on the
// budget's clock for one to be released, then refuses with
// ErrResourceLimit.
func (hc *handleCache) charge(files, maps int64) error {
	var deadline time.Time
	// Each failed attempt moves the hand; two full turns (every used bit
	// cleared once) without a fit means everything is in use.
	for attempts := 0; ; attempts++ {
		hc.mu.Lock()
		if hc.files+files <= hc.maxFiles.Load() && hc.maps+maps <= hc.maxMaps.Load() {
			hc.files += files
			hc.maps += maps
			hc.mu.Unlock()
			return nil
		}
		var cand *handle
		if attempts <= 2*hc.n+2 {
			cand = hc.candidateLocked(false)
		}
		if cand != nil {
			hc.mu.Unlock()
			cand.tryEvict()
			continue
		}
		if files == 0 && maps == 0 {
			hc.mu.Unlock()
			return nil // a refresh: nothing wanted
		}
		now := hc.clk.Now()
		if deadline.IsZero() {
			deadline = now.Add(chargeWait)
		}
		if !now.Before(deadline) {
			hc.mu.Unlock()
			hc.refusals.Add(1)
			return ErrResourceLimit
		}
		wake := hc.wake
		hc.waiters.Add(1)
		hc.mu.Unlock()
		t := clock.NewTimer(hc.clk, deadline.Sub(now))
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
		hc.waiters.Add(-1)
		attempts = 0
	}
}

// uncharge returns what charge reserved.
func (hc *handleCache) uncharge(files, maps int64) {
	if files == 0 && maps == 0 {
		return
	}
	hc.mu.Lock()
	hc.files -= files
	hc.maps -= maps
	hc.mu.Unlock()
	hc.notify()
}

// candidateLocked advances the hand to the next handle that may be closed:
// not used since the hand last passed it and, by a racy look the eviction
// confirms, held by its segment alone. inactiveOnly restricts it to handles
// of inactive segments. Caller holds mu.
func (hc *handleCache) candidateLocked(inactiveOnly bool) *handle {
	for i := 0; i < 2*hc.n; i++ {
		h := hc.hand
		hc.hand = h.next
		if inactiveOnly && !h.inactive {
			continue
		}
		if h.used.Swap(false) {
			continue
		}
		if h.refs.Load() == 1 {
			return h
		}
	}
	return nil
}

// admit puts h, the current handle of its segment, in the ring. Caller holds
// h.seg.mu.
func (hc *handleCache) admit(h *handle) {
	hc.mu.Lock()
	if h.inRing {
		hc.mu.Unlock()
		return
	}
	h.inRing = true
	h.inactive = !h.seg.active
	if hc.hand == nil {
		h.next, h.prev = h, h
		hc.hand = h
	} else {
		// Just behind the hand: the last the sweep reaches.
		p := hc.hand.prev
		h.prev, h.next = p, hc.hand
		p.next = h
		hc.hand.prev = h
	}
	hc.n++
	if h.inactive {
		hc.inactive++
	}
	over := hc.maxInactive > 0 && hc.inactive > hc.maxInactive
	hc.mu.Unlock()
	if over {
		hc.trimInactive()
	}
}

// deactivated records that h's segment stopped being active (sealed).
// Caller holds h.seg.mu.
func (hc *handleCache) deactivated(h *handle) {
	hc.mu.Lock()
	if !h.inRing || h.inactive {
		hc.mu.Unlock()
		return
	}
	h.inactive = true
	hc.inactive++
	over := hc.maxInactive > 0 && hc.inactive > hc.maxInactive
	hc.mu.Unlock()
	if over {
		hc.trimInactive()
	}
}

// trimInactive closes cold handles of inactive segments beyond maxInactive.
// Handles in use stay (they close when released and swept later).
func (hc *handleCache) trimInactive() {
	for attempts := 0; ; attempts++ {
		hc.mu.Lock()
		if hc.inactive <= hc.maxInactive || attempts > 2*hc.n+2 {
			hc.mu.Unlock()
			return
		}
		cand := hc.candidateLocked(true)
		hc.mu.Unlock()
		if cand == nil {
			return
		}
		cand.tryEvict()
	}
}

// forget takes h out of the ring. Caller holds h.seg.mu (or owns h alone).
func (hc *handleCache) forget(h *handle) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if !h.inRing {
		return
	}
	h.inRing = false
	if h.next == h {
		hc.hand = nil
	} else {
		h.prev.next = h.next
		h.next.prev = h.prev
		if hc.hand == h {
			hc.hand = h.next
		}
	}
	h.next, h.prev = nil, nil
	hc.n--
	if h.inactive {
		hc.inactive--
	}
}

// tryEvict closes h if it is still its segment's handle and nobody else
// holds it. It never blocks on the segment (TryLock): a busy segment is
// passed over.
func (h *handle) tryEvict() bool {
	s := h.seg
	if !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	if s.h != h || h.refs.Load() != 1 {
		return false
	}
	s.h = nil
	hc := s.log.handles
	hc.forget(h)
	hc.evictions.Add(1)
	if s.active {
		// The active segment's files are left as a seal leaves them: the
		// largest timestamp in the time index and both indexes trimmed, so
		// a close or a restart finds them complete without reopening.
		sealed := true
		s.idxDeferred = h.oidx.Deferred() || h.tidx.Deferred()
		if s.idxDeferred {
			// An index without a file yet stays so (a reopen finds it
			// missing and empty); the seal reopens the segment to
			// create it.
			sealed = false
		} else if ts := s.maxTs.Load(); ts >= 0 {
			if err := h.tidx.MaybeAppend(ts, s.offsetOfMaxTs.Load(), true); err != nil && !errors.Is(err, index.ErrIndexFull) {
				sealed = false
			}
		}
		s.sealedOnDisk = sealed
	}
	// Closed here, under the segment's lock, so a reopen of the same files
	// (an active segment's indexes are resized on open) starts after it.
	h.refs.Store(0)
	h.close()
	return true
}

// evictCold closes every handle nobody but its segment holds, whatever its
// use (tests: every later access reopens).
func (hc *handleCache) evictCold() int {
	hc.mu.Lock()
	var cands []*handle
	for i, h := 0, hc.hand; i < hc.n; i, h = i+1, h.next {
		cands = append(cands, h)
	}
	hc.mu.Unlock()
	n := 0
	for _, h := range cands {
		if h.tryEvict() {
			n++
		}
	}
	return n
}

func (hc *handleCache) close() {}

// budgetFS charges every descriptor opened through it to the budget.
type budgetFS struct {
	vfs.FS
	hc *handleCache
}

type budgetFile struct {
	vfs.File
	hc     *handleCache
	closed atomic.Bool
}

func (f *budgetFile) Close() error {
	err := f.File.Close()
	if !f.closed.Swap(true) {
		f.hc.uncharge(1, 0)
	}
	return err
}

// isFDLimit reports the operating system's "too many open files".
func isFDLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// withFD runs op with one descriptor charged; when the operating system is
// out of descriptors anyway (the process's limit was lowered, or other
// parts of the process use more than their reserve) it closes a cold
// handle and tries again, and refuses with ErrResourceLimit when none is
// left. keep says whether op's descriptor stays open (charged) on success.
func (b budgetFS) withFD(name string, keep bool, op func() error) error {
	if err := b.hc.charge(1, 0); err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	err := op()
	for tries := 0; err != nil && isFDLimit(err) && tries < 64; tries++ {
		b.hc.mu.Lock()
		cand := b.hc.candidateLocked(false)
		b.hc.mu.Unlock()
		if cand == nil {
			break
		}
		cand.tryEvict()
		err = op()
	}
	if err != nil || !keep {
		b.hc.uncharge(1, 0)
	}
	if err != nil && isFDLimit(err) {
		b.hc.refusals.Add(1)
		return fmt.Errorf("%w: %w", ErrResourceLimit, err)
	}
	return err
}

func (b budgetFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	var f vfs.File
	err := b.withFD(name, true, func() error {
		var err error
		f, err = b.FS.OpenFile(name, flag, perm)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &budgetFile{File: f, hc: b.hc}, nil
}

func (b budgetFS) ReadDir(name string) ([]os.DirEntry, error) {
	var ents []os.DirEntry
	err := b.withFD(name, false, func() error {
		var err error
		ents, err = b.FS.ReadDir(name)
		return err
	})
	return ents, err
}

func (b budgetFS) SyncDir(name string) error {
	return b.withFD(name, false, func() error { return b.FS.SyncDir(name) })
}

func (b budgetFS) SyncFS(name string) error {
	return b.withFD(name, false, func() error { return b.FS.SyncFS(name) })
}

func (b budgetFS) RemoveAll(name string) error {
	return b.withFD(name, false, func() error { return b.FS.RemoveAll(name) })
}

// wrapFS returns fs charging hc, unless it already does.
func (hc *handleCache) wrapFS(fs vfs.FS) vfs.FS {
	if b, ok := fs.(budgetFS); ok && b.hc == hc {
		return fs
	}
	return budgetFS{FS: fs, hc: hc}
}
