package vfs

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// CrashFS is an FS for tests that can simulate a power loss. It works on the
// real operating-system files (so File.Fd and File.OSFile hand out real
// descriptors the engine can mmap and sendfile from) and records, beside
// them, what a crash could still take away.
//
// # Model
//
// File contents. Every Write, WriteAt and Truncate made through a CrashFS
// file, and every O_TRUNC open, is an unsynced operation of the file (the
// inode: all handles of one file share the record). Sync on any handle of
// the file makes all of them durable. Crash keeps, per file, the synced
// content plus a prefix of the unsynced operations in the order they were
// made, and undoes the rest exactly (overwritten bytes and the old size are
// restored). How long a prefix is chosen by CrashOptions.KeepUnsynced. With
// CrashOptions.TornTail the first operation that is lost, when it is a
// write, is applied partially instead: a random non-empty prefix of it
// lands, holding the real bytes, zeros (the size reached the disk, the data
// did not) or random garbage, each with probability 1/3.
//
// Directory entries. Creating a file (OpenFile with O_CREATE of a missing
// name), MkdirAll, Rename, Remove and RemoveAll are directory operations.
// An operation becomes durable once every directory it changes has been
// passed to SyncDir: the parent of the name for create, mkdir, remove and
// remove-all; both parents for rename. Crash keeps a prefix (chosen the
// same way as for contents) of the operations that are not yet durable, in
// the order they were made, and undoes the rest newest first: a created
// file or directory is deleted (a directory with everything under it), a
// rename is reversed and the file it replaced comes back, a removed file
// or tree comes back. Removed files stay readable to CrashFS through a
// descriptor it holds, so they can be restored (with their post-crash
// content) until the removal is durable; restored files are new inodes
// with the old name, mode and content.
//
// After Crash every handle CrashFS gave out is invalid: its operations
// return ErrCrashed (reads and Stat may return os.ErrClosed) and Close is
// a no-op. The files on disk then hold the post-crash state and the CrashFS
// starts over with nothing unsynced, ready for the code under test to
// reopen them (a restart).
//
// # Limits
//
//   - Writes through memory mappings, and through the *os.File returned by
//     OSFile, are not tracked: they are neither lost nor torn by a crash
//     (they do get overwritten if a crash restores older bytes in the same
//     range). kvlog only writes indexes through mmap, and indexes are
//     caches rebuilt on recovery.
//   - Sync, SyncDir and SyncFS do not call fsync; durability is simulated,
//     never real. SyncFS makes everything durable: a CrashFS is one file
//     system.
//   - The lost writes of a file are always a suffix of its unsynced
//     operations (plus, with TornTail, one torn write). Real write-back may
//     persist pages out of order; a test that needs holes in the middle of
//     the unsynced tail must make them itself.
//   - Directory operations persist in the order they were made (a prefix
//     over all directories); undo is best effort when an undone operation
//     conflicts with a durable later one (a missing name is skipped).
//   - Directories are not content-tracked; renaming or removing a
//     directory is undone as a whole. Symbolic links are not supported.
//   - Every tracked file holds one extra descriptor until its operations
//     are durable and its handles are closed.
//   - Everything must go through this CrashFS: changes made behind its back
//     (os calls, other FS values) make undo information stale.
//   - Crash must not run while the code under test still uses its files:
//     stop it first. Crash shrinks and rewrites files, and touching a
//     memory mapping past the new end of a file raises SIGBUS.
type CrashFS struct {
	mu      sync.Mutex
	rng     *rand.Rand
	seq     uint64
	nodes   map[fileID]*crashNode
	handles map[*crashFile]struct{}
	dirOps  []*dirOp // not yet durable, oldest first

	tracing   bool
	traceRoot string
	trace     []string
}

// KeepMode says how much unsynced state survives a Crash.
type KeepMode int

const (
	// KeepRandom keeps a random prefix (possibly empty, possibly all) of the
	// unsynced operations of each file and of the directory operations.
	KeepRandom KeepMode = iota
	// KeepNone keeps only what was synced: the state after the least lucky
	// power loss.
	KeepNone
	// KeepAll keeps everything: a process crash with the page cache intact.
	KeepAll
)

// CrashOptions selects the outcome of a simulated crash. The zero value is
// KeepRandom without torn writes.
type CrashOptions struct {
	KeepUnsynced KeepMode
	// TornTail tears the first lost write of each file instead of dropping
	// it whole (see the CrashFS model).
	TornTail bool
	// KeepFile, when set, chooses the outcome for the content of one file
	// instead of KeepUnsynced when it returns ok: a test builds an exact
	// combination of files that kept and lost their unsynced writes. It
	// is called with the absolute path the file had when CrashFS began
	// tracking it. Directory operations always follow KeepUnsynced.
	KeepFile func(path string) (mode KeepMode, ok bool)
}

// ErrCrashed is returned by handles that were open when Crash ran.
var ErrCrashed = errors.New("vfs: file handle invalidated by a simulated crash")

var _ FS = (*CrashFS)(nil)

// NewCrashFS returns a CrashFS whose crash outcomes are drawn from a PRNG
// seeded with seed: the same operations and seed give the same post-crash
// state.
func NewCrashFS(seed int64) *CrashFS {
	return &CrashFS{
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x6b766c6f67)),
		nodes:   make(map[fileID]*crashNode),
		handles: make(map[*crashFile]struct{}),
	}
}

type fileID struct{ dev, ino uint64 }

// crashNode is the record of one tracked file (inode).
type crashNode struct {
	id   fileID
	seq  uint64   // creation order, for deterministic crashes
	path string   // absolute path when tracking began (CrashOptions.KeepFile)
	own  *os.File // CrashFS's own descriptor: reads old bytes, undoes, restores
	ops  []contentOp
	refs int // open handles plus pending directory operations using own
}

// contentOp is one unsynced change to a file with what is needed to undo it.
type contentOp struct {
	truncate bool
	off      int64  // write offset, or the new size of a truncate
	data     []byte // bytes written
	oldSize  int64
	oldData  []byte // bytes the write overwrote / the shrink cut off (trailing zeros trimmed)
}

type dirOpKind int

const (
	opCreate dirOpKind = iota
	opMkdir
	opRemove
	opRemoveDir
	opRename
	opRemoveAll
)

type dirOp struct {
	kind     dirOpKind
	path     string // absolute
	newPath  string // rename target
	unsynced map[string]bool
	node     *crashNode     // removed file, or the file a rename replaced
	mode     os.FileMode    // of the removed/replaced entry
	repDir   bool           // rename replaced an (empty) directory
	tree     []removedEntry // remove-all, parents before children
}

type removedEntry struct {
	rel  string
	dir  bool
	mode os.FileMode
	node *crashNode
}

// StartTrace starts recording the operations made through c, with paths
// relative to root ("" keeps them absolute); it discards an earlier trace.
func (c *CrashFS) StartTrace(root string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tracing, c.trace = true, nil
	c.traceRoot = ""
	if root != "" {
		c.traceRoot = absPath(root)
	}
}

// StopTrace stops recording and returns the trace: one line per operation,
// "create p", "mkdir p", "write p off n", "truncate p size", "sync p",
// "rename a b", "remove p", "removeall p", "syncdir p", "syncfs p", "crash".
func (c *CrashFS) StopTrace() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.trace
	c.tracing, c.trace = false, nil
	return t
}

// tracef records one trace line (callers pass paths through c.rel).
// Caller holds c.mu.
func (c *CrashFS) tracef(format string, args ...any) {
	if c.tracing {
		c.trace = append(c.trace, fmt.Sprintf(format, args...))
	}
}

func (c *CrashFS) rel(p string) string {
	if c.traceRoot == "" {
		return p
	}
	if r, err := filepath.Rel(c.traceRoot, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

func absPath(name string) string {
	if a, err := filepath.Abs(name); err == nil {
		return a
	}
	return filepath.Clean(name)
}

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}
}

// nodeAt returns the record of the regular file at path, creating it (and
// opening CrashFS's own descriptor) on first use. Caller holds c.mu.
func (c *CrashFS) nodeAt(path string) (*crashNode, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	return c.nodeFor(idOf(fi), path)
}

func (c *CrashFS) nodeFor(id fileID, path string) (*crashNode, error) {
	if n, ok := c.nodes[id]; ok {
		return n, nil
	}
	own, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		own, err = os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("vfs: crashfs cannot track %s: %w", path, err)
		}
	}
	c.seq++
	n := &crashNode{id: id, seq: c.seq, own: own, path: path}
	c.nodes[id] = n
	return n, nil
}

// forget drops a node nobody needs any more. Caller holds c.mu.
func (c *CrashFS) forget(n *crashNode) {
	if n == nil || n.refs > 0 || len(n.ops) > 0 {
		return
	}
	if c.nodes[n.id] == n {
		delete(c.nodes, n.id)
	}
	n.own.Close()
}

func (c *CrashFS) addDirOp(op *dirOp, dirs ...string) {
	op.unsynced = make(map[string]bool, len(dirs))
	for _, d := range dirs {
		op.unsynced[d] = true
	}
	c.dirOps = append(c.dirOps, op)
}

// readRange reads [off, off+n) of n's file, short at EOF.
func readRange(f *os.File, off, n int64) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	buf := make([]byte, n)
	m, err := f.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return buf[:m], nil
}

func trimZeros(b []byte) []byte {
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	if i == 0 {
		return nil
	}
	return b[:i]
}

// OpenFile opens name like os.OpenFile, recording a create when O_CREATE
// makes a new file and a truncation when O_TRUNC empties an existing one.
func (c *CrashFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	abs := absPath(name)
	fi, statErr := os.Lstat(abs)
	existed := statErr == nil
	var truncOp *contentOp
	var truncNode *crashNode
	if existed && fi.Mode().IsRegular() && flag&os.O_TRUNC != 0 && flag&(os.O_WRONLY|os.O_RDWR) != 0 && fi.Size() > 0 {
		n, err := c.nodeFor(idOf(fi), abs)
		if err != nil {
			return nil, err
		}
		old, err := readRange(n.own, 0, fi.Size())
		if err != nil {
			c.forget(n)
			return nil, err
		}
		truncNode = n
		truncOp = &contentOp{truncate: true, off: 0, oldSize: fi.Size(), oldData: trimZeros(old)}
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		c.forget(truncNode)
		return nil, err
	}
	h := &crashFile{fs: c, f: f, abs: abs, append: flag&os.O_APPEND != 0}
	fi, err = f.Stat()
	if err != nil {
		f.Close()
		c.forget(truncNode)
		return nil, err
	}
	if fi.Mode().IsRegular() {
		n, err := c.nodeFor(idOf(fi), abs)
		if err != nil {
			f.Close()
			return nil, err
		}
		n.refs++
		h.n = n
		if truncOp != nil && n == truncNode {
			n.ops = append(n.ops, *truncOp)
			c.tracef("truncate %s 0", c.rel(abs))
		}
	}
	if !existed {
		c.addDirOp(&dirOp{kind: opCreate, path: abs}, filepath.Dir(abs))
		c.tracef("create %s", c.rel(abs))
	}
	c.handles[h] = struct{}{}
	return h, nil
}

// Rename renames like os.Rename, remembering a replaced file so a crash can
// bring it back.
func (c *CrashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	oldAbs, newAbs := absPath(oldpath), absPath(newpath)
	op := &dirOp{kind: opRename, path: oldAbs, newPath: newAbs}
	if fi, err := os.Lstat(newAbs); err == nil && oldAbs != newAbs {
		if _, err := os.Lstat(oldAbs); err == nil {
			op.mode = fi.Mode().Perm()
			switch {
			case fi.Mode().IsRegular():
				n, err := c.nodeFor(idOf(fi), newAbs)
				if err != nil {
					return err
				}
				n.refs++
				op.node = n
			case fi.IsDir():
				op.repDir = true
			}
		}
	}
	if err := os.Rename(oldpath, newpath); err != nil {
		if op.node != nil {
			op.node.refs--
			c.forget(op.node)
		}
		return err
	}
	if oldAbs == newAbs {
		return nil
	}
	c.addDirOp(op, filepath.Dir(oldAbs), filepath.Dir(newAbs))
	c.tracef("rename %s %s", c.rel(oldAbs), c.rel(newAbs))
	return nil
}

// Remove removes a file or an empty directory, keeping a removed file's
// content reachable until the removal is durable.
func (c *CrashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	abs := absPath(name)
	fi, err := os.Lstat(abs)
	if err != nil {
		return os.Remove(name) // the error os gives
	}
	op := &dirOp{kind: opRemoveDir, path: abs, mode: fi.Mode().Perm()}
	if fi.Mode().IsRegular() {
		n, err := c.nodeFor(idOf(fi), abs)
		if err != nil {
			return err
		}
		op.kind, op.node = opRemove, n
		n.refs++
	}
	if err := os.Remove(name); err != nil {
		if op.node != nil {
			op.node.refs--
			c.forget(op.node)
		}
		return err
	}
	c.addDirOp(op, filepath.Dir(abs))
	c.tracef("remove %s", c.rel(abs))
	return nil
}

// RemoveAll removes a tree, keeping what is needed to restore it until the
// removal is durable.
func (c *CrashFS) RemoveAll(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	abs := absPath(name)
	if _, err := os.Lstat(abs); err != nil {
		return os.RemoveAll(name)
	}
	op := &dirOp{kind: opRemoveAll, path: abs}
	release := func() {
		for _, e := range op.tree {
			if e.node != nil {
				e.node.refs--
				c.forget(e.node)
			}
		}
	}
	err := filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(abs, p)
		e := removedEntry{rel: rel, dir: d.IsDir(), mode: fi.Mode().Perm()}
		if fi.Mode().IsRegular() {
			n, err := c.nodeFor(idOf(fi), p)
			if err != nil {
				return err
			}
			n.refs++
			e.node = n
		} else if !d.IsDir() {
			return fmt.Errorf("vfs: crashfs cannot restore %s (%v)", p, fi.Mode().Type())
		}
		op.tree = append(op.tree, e)
		return nil
	})
	if err != nil {
		release()
		return err
	}
	if err := os.RemoveAll(name); err != nil {
		release() // partial removal is not modeled
		return err
	}
	c.addDirOp(op, filepath.Dir(abs))
	c.tracef("removeall %s", c.rel(abs))
	return nil
}

// MkdirAll creates the missing directories of name, each one recorded as a
// create in its parent.
func (c *CrashFS) MkdirAll(name string, perm os.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	abs := absPath(name)
	var missing []string
	for p := abs; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(name, perm); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		c.addDirOp(&dirOp{kind: opMkdir, path: missing[i]}, filepath.Dir(missing[i]))
		c.tracef("mkdir %s", c.rel(missing[i]))
	}
	return nil
}

// ReadDir lists a directory sorted by name.
func (c *CrashFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

// Stat returns a file's metadata.
func (c *CrashFS) Stat(name string) (os.FileInfo, error) { return os.Stat(name) }

// SyncDir makes the directory operations on name's entries durable. It does
// not call fsync.
func (c *CrashFS) SyncDir(name string) error {
	fi, err := os.Stat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &os.PathError{Op: "fsync dir", Path: name, Err: syscall.ENOTDIR}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	abs := absPath(name)
	kept := c.dirOps[:0]
	for _, op := range c.dirOps {
		delete(op.unsynced, abs)
		if len(op.unsynced) > 0 {
			kept = append(kept, op)
			continue
		}
		c.releaseDirOp(op)
	}
	clear(c.dirOps[len(kept):])
	c.dirOps = kept
	c.tracef("syncdir %s", c.rel(abs))
	return nil
}

// SyncFS makes every unsynced change durable: the contents of every file
// and every directory operation (a CrashFS models one file system, as
// syncfs(2) syncs the one holding name). It does not call syncfs.
func (c *CrashFS) SyncFS(name string) error {
	if _, err := os.Stat(name); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		n.ops = nil
	}
	for _, op := range c.dirOps {
		c.releaseDirOp(op)
	}
	c.dirOps = nil
	for _, n := range c.nodes {
		c.forget(n)
	}
	c.tracef("syncfs %s", c.rel(absPath(name)))
	return nil
}

func (c *CrashFS) releaseDirOp(op *dirOp) {
	if op.node != nil {
		op.node.refs--
		c.forget(op.node)
	}
	for _, e := range op.tree {
		if e.node != nil {
			e.node.refs--
			c.forget(e.node)
		}
	}
}

// Crash simulates a power loss with the zero CrashOptions (KeepRandom, no
// torn writes). See CrashWith.
func (c *CrashFS) Crash() error { return c.CrashWith(CrashOptions{}) }

// CrashWith simulates a power loss: it invalidates every open handle,
// rewrites the files on disk to a state the model allows after a crash (see
// CrashFS), and forgets everything unsynced. Errors undoing individual
// operations are joined; names that no longer exist are skipped.
func (c *CrashFS) CrashWith(opts CrashOptions) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for h := range c.handles {
		h.dead.Store(true)
		h.f.Close()
	}
	c.handles = make(map[*crashFile]struct{})

	nodes := make([]*crashNode, 0, len(c.nodes))
	for _, n := range c.nodes {
		nodes = append(nodes, n)
	}
	// Nodes of removed or replaced files stay in c.nodes while a pending
	// directory operation holds them. Sorting by creation order makes the
	// outcome depend on the seed only.
	slices.SortFunc(nodes, func(a, b *crashNode) int { return cmp.Compare(a.seq, b.seq) })
	for _, n := range nodes {
		if len(n.ops) == 0 {
			continue
		}
		mode := opts.KeepUnsynced
		if opts.KeepFile != nil {
			if m, ok := opts.KeepFile(n.path); ok {
				mode = m
			}
		}
		keep := c.pick(len(n.ops), mode)
		for i := len(n.ops) - 1; i >= keep; i-- {
			if err := undoContent(n.own, n.ops[i]); err != nil {
				errs = append(errs, err)
			}
		}
		if opts.TornTail && keep < len(n.ops) && !n.ops[keep].truncate && len(n.ops[keep].data) > 0 {
			if err := c.tear(n.own, n.ops[keep]); err != nil {
				errs = append(errs, err)
			}
		}
	}

	keep := c.pick(len(c.dirOps), opts.KeepUnsynced)
	for i := len(c.dirOps) - 1; i >= keep; i-- {
		if err := undoDir(c.dirOps[i]); err != nil {
			errs = append(errs, err)
		}
	}

	for _, n := range nodes {
		n.own.Close()
	}
	c.nodes = make(map[fileID]*crashNode)
	c.dirOps = nil
	c.tracef("crash")
	return errors.Join(errs...)
}

// pick returns how many of n unsynced operations survive.
func (c *CrashFS) pick(n int, mode KeepMode) int {
	switch mode {
	case KeepNone:
		return 0
	case KeepAll:
		return n
	default:
		return c.rng.IntN(n + 1)
	}
}

func undoContent(f *os.File, op contentOp) error {
	if op.truncate {
		if err := f.Truncate(op.oldSize); err != nil {
			return err
		}
		if len(op.oldData) > 0 {
			if _, err := f.WriteAt(op.oldData, op.off); err != nil {
				return err
			}
		}
		return nil
	}
	if len(op.oldData) > 0 {
		if _, err := f.WriteAt(op.oldData, op.off); err != nil {
			return err
		}
	}
	return f.Truncate(op.oldSize)
}

func (c *CrashFS) tear(f *os.File, op contentOp) error {
	m := 1 + c.rng.IntN(len(op.data))
	buf := make([]byte, m)
	switch c.rng.IntN(3) {
	case 0:
		copy(buf, op.data)
	case 1: // zeros
	case 2:
		for i := range buf {
			buf[i] = byte(c.rng.Uint32())
		}
	}
	_, err := f.WriteAt(buf, op.off)
	return err
}

func ignoreMissing(err error) error {
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func undoDir(op *dirOp) error {
	switch op.kind {
	case opCreate:
		return ignoreMissing(os.Remove(op.path))
	case opMkdir:
		return os.RemoveAll(op.path)
	case opRemove:
		return restoreFile(op.path, op.node, op.mode)
	case opRemoveDir:
		if err := os.Mkdir(op.path, op.mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return ignoreMissing(err)
		}
		return nil
	case opRename:
		if err := os.Rename(op.newPath, op.path); err != nil {
			return ignoreMissing(err)
		}
		if op.node != nil {
			return restoreFile(op.newPath, op.node, op.mode)
		}
		if op.repDir {
			return ignoreMissing(os.Mkdir(op.newPath, op.mode))
		}
		return nil
	case opRemoveAll:
		for _, e := range op.tree {
			p := filepath.Join(op.path, e.rel)
			if e.dir {
				if err := os.Mkdir(p, e.mode); err != nil && !errors.Is(err, fs.ErrExist) {
					return ignoreMissing(err)
				}
				continue
			}
			if err := restoreFile(p, e.node, e.mode); err != nil {
				return err
			}
		}
		return nil
	}
	return nil
}

// restoreFile recreates path with the current content of n's file.
func restoreFile(path string, n *crashNode, mode os.FileMode) error {
	fi, err := n.own.Stat()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return ignoreMissing(err) // parent gone for good
	}
	_, err = io.Copy(f, io.NewSectionReader(n.own, 0, fi.Size()))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// crashFile is a handle given out by CrashFS.
type crashFile struct {
	fs     *CrashFS
	f      *os.File
	n      *crashNode // nil for directories
	abs    string
	append bool
	dead   atomic.Bool
	closed bool // guarded by fs.mu
}

func (h *crashFile) errDead(op string) error {
	return &os.PathError{Op: op, Path: h.f.Name(), Err: ErrCrashed}
}

func (h *crashFile) Read(p []byte) (int, error) {
	if h.dead.Load() {
		return 0, h.errDead("read")
	}
	return h.f.Read(p)
}

func (h *crashFile) ReadAt(p []byte, off int64) (int, error) {
	if h.dead.Load() {
		return 0, h.errDead("read")
	}
	return h.f.ReadAt(p, off)
}

func (h *crashFile) Seek(offset int64, whence int) (int64, error) {
	if h.dead.Load() {
		return 0, h.errDead("seek")
	}
	return h.f.Seek(offset, whence)
}

func (h *crashFile) Stat() (os.FileInfo, error) {
	if h.dead.Load() {
		return nil, h.errDead("stat")
	}
	return h.f.Stat()
}

func (h *crashFile) Fd() uintptr      { return h.f.Fd() }
func (h *crashFile) Name() string     { return h.f.Name() }
func (h *crashFile) OSFile() *os.File { return h.f }

func (h *crashFile) Write(p []byte) (int, error) {
	c := h.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.dead.Load() {
		return 0, h.errDead("write")
	}
	if h.n == nil {
		return h.f.Write(p)
	}
	var off int64
	var err error
	if h.append {
		var fi os.FileInfo
		if fi, err = h.f.Stat(); err == nil {
			off = fi.Size()
		}
	} else {
		off, err = h.f.Seek(0, io.SeekCurrent)
	}
	if err != nil {
		return 0, err
	}
	op, err := h.prepareWrite(off, len(p))
	if err != nil {
		return 0, err
	}
	n, err := h.f.Write(p)
	h.recordWrite(op, p[:n])
	return n, err
}

func (h *crashFile) WriteAt(p []byte, off int64) (int, error) {
	c := h.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.dead.Load() {
		return 0, h.errDead("write")
	}
	if h.n == nil || h.append || off < 0 {
		return h.f.WriteAt(p, off) // os reports the misuse
	}
	op, err := h.prepareWrite(off, len(p))
	if err != nil {
		return 0, err
	}
	n, err := h.f.WriteAt(p, off)
	h.recordWrite(op, p[:n])
	return n, err
}

// prepareWrite captures what a write of n bytes at off will overwrite.
func (h *crashFile) prepareWrite(off int64, n int) (contentOp, error) {
	fi, err := h.n.own.Stat()
	if err != nil {
		return contentOp{}, err
	}
	op := contentOp{off: off, oldSize: fi.Size()}
	if off < op.oldSize {
		op.oldData, err = readRange(h.n.own, off, min(int64(n), op.oldSize-off))
	}
	return op, err
}

func (h *crashFile) recordWrite(op contentOp, written []byte) {
	if len(written) == 0 {
		return
	}
	op.data = slices.Clone(written)
	if int64(len(op.oldData)) > int64(len(written)) {
		op.oldData = op.oldData[:len(written)]
	}
	h.n.ops = append(h.n.ops, op)
	h.fs.tracef("write %s %d %d", h.fs.rel(h.abs), op.off, len(written))
}

func (h *crashFile) Truncate(size int64) error {
	c := h.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.dead.Load() {
		return h.errDead("truncate")
	}
	if h.n == nil || size < 0 {
		return h.f.Truncate(size)
	}
	fi, err := h.n.own.Stat()
	if err != nil {
		return err
	}
	op := contentOp{truncate: true, off: size, oldSize: fi.Size()}
	if size < op.oldSize {
		old, err := readRange(h.n.own, size, op.oldSize-size)
		if err != nil {
			return err
		}
		op.oldData = trimZeros(old)
	}
	if err := h.f.Truncate(size); err != nil {
		return err
	}
	if size != op.oldSize {
		h.n.ops = append(h.n.ops, op)
	}
	c.tracef("truncate %s %d", c.rel(h.abs), size)
	return nil
}

// Sync makes every earlier change to the file durable, through whichever
// handle it was made. It does not call fsync.
func (h *crashFile) Sync() error {
	c := h.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.dead.Load() {
		return h.errDead("fdatasync")
	}
	if h.closed {
		return &os.PathError{Op: "fdatasync", Path: h.f.Name(), Err: os.ErrClosed}
	}
	if h.n != nil {
		h.n.ops = nil
	}
	c.tracef("sync %s", c.rel(h.abs))
	return nil
}

// Close closes the handle; after a crash it does nothing.
func (h *crashFile) Close() error {
	c := h.fs
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.dead.Load() {
		return nil
	}
	if h.closed {
		return h.f.Close() // os reports the double close
	}
	h.closed = true
	delete(c.handles, h)
	err := h.f.Close()
	if h.n != nil {
		h.n.refs--
		c.forget(h.n)
	}
	return err
}
