package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/vfs"
)

// The start-up manifest (FORMAT.md §10): at a clean shutdown, after every
// log is closed and synced and before the clean-shutdown marker, each log
// dir gets a file describing what a start-up reads from each partition
// directory (its segment files and their sizes, its producer snapshots,
// its leader-epoch entries, its key-index checkpoint's coverage), so that
// the next clean start-up reads one file per log dir instead of listing
// every partition directory and reading files in each. It is used only
// with the clean-shutdown marker, it is removed at start-up with the
// marker (before anything in the dir changes), and a partition directory
// changed after it was written is listed as before: its change time must
// be the one recorded, which is older than the manifest (Close waits for
// the file-system clock to pass it).

// ManifestFile is the start-up manifest's name in a log dir.
const ManifestFile = "kvlog-start-manifest"

const (
	manifestMagic   = "KVSM"
	manifestVersion = 1
	// manifestMaxTopic bounds a topic name's length (Kafka's limit is 249).
	manifestMaxTopic = 1 << 10
)

// segmentFile is a segment's .log file as listed.
type segmentFile struct {
	base Offset
	size int64
}

// dirListing is what loading a log takes from its directory's listing:
// the segments' .log files, the producer snapshots, whether the
// leader-epoch and key-index checkpoints exist, and what a load cleans
// up first (files of an interrupted swap or delete, temporary files,
// index files without their .log).
type dirListing struct {
	segs      []segmentFile // by base offset
	snapshots []Offset      // ascending
	hasEpochs bool
	// epochsKnown: epochs is the leader-epoch checkpoint's content (from
	// the manifest), not read again.
	epochsKnown bool
	epochs      []checkpoint.EpochEntry
	hasKeyIndex bool
	// covers is the key-index checkpoint's coverage when known (from the
	// manifest; -1 unknown: read from the file).
	covers    Offset
	leftovers bool     // swap, delete or temporary files: finishInterruptedSwaps
	orphans   []string // index files without their .log
}

// scanListing reads a partition directory's entries (sorted by name). Only
// each .log file is stat'ed (for its size).
func scanListing(ents []os.DirEntry) (*dirListing, error) {
	return scanListingSized(ents, func(_ Offset, e os.DirEntry) (int64, error) {
		fi, err := e.Info()
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	})
}

// scanListingSized is scanListing with the .log files' sizes from size.
func scanListingSized(ents []os.DirEntry, size func(base Offset, e os.DirEntry) (int64, error)) (*dirListing, error) {
	ls := &dirListing{covers: -1}
	logs := make(map[Offset]bool, 2)
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, DeletedSuffix) || strings.HasSuffix(name, CleanedSuffix) || strings.HasSuffix(name, SwapSuffix) || strings.HasSuffix(name, ".tmp") {
			ls.leftovers = true
		}
		base, suffix, ok := parseOffsetFileName(name)
		if !ok {
			switch name {
			case LeaderEpochCheckpointFile:
				ls.hasEpochs = true
			case KeyIndexFile:
				ls.hasKeyIndex = true
			}
			continue
		}
		switch suffix {
		case LogSuffix:
			n, err := size(base, e)
			if err != nil {
				return nil, fmt.Errorf("segment %d: %w: %w", base, ErrStorage, err)
			}
			ls.segs = append(ls.segs, segmentFile{base: base, size: n})
			logs[base] = true
		case SnapshotSuffix:
			ls.snapshots = append(ls.snapshots, base)
		}
	}
	for _, e := range ents {
		if base, suffix, ok := parseOffsetFileName(e.Name()); ok && (suffix == IndexSuffix || suffix == TimeIndexSuffix) && !logs[base] {
			ls.orphans = append(ls.orphans, e.Name())
		}
	}
	sort.Slice(ls.segs, func(i, j int) bool { return ls.segs[i].base < ls.segs[j].base })
	sort.Slice(ls.snapshots, func(i, j int) bool { return ls.snapshots[i] < ls.snapshots[j] })
	return ls, nil
}

// listDir lists the log's directory for its load: it completes or rolls
// back an interrupted swap first and removes orphan index files.
func (l *Log) listDir() (*dirListing, error) {
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, l.errorf("open", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	if needsSwapCompletion(ents) {
		if err := l.finishInterruptedSwaps(); err != nil {
			return nil, err
		}
		if ents, err = l.fs.ReadDir(l.dir); err != nil {
			return nil, l.errorf("open", -1, -1, fmt.Errorf("%w: %w", ErrStorage, err))
		}
	}
	ls, err := scanListing(ents)
	if err != nil {
		return nil, l.errorf("open", -1, -1, err)
	}
	for _, name := range ls.orphans {
		_ = l.fs.Remove(filepath.Join(l.dir, name)) // orphan index
	}
	ls.orphans = nil
	return ls, nil
}

// keyIndexCovers is the key-index checkpoint's coverage: as recorded, or
// read from its header.
func (ls *dirListing) keyIndexCovers(fsys vfs.FS, dir string) (Offset, error) {
	if ls.covers >= 0 {
		return ls.covers, nil
	}
	return readKeyIndexCovers(fsys, KeyIndexFileName(dir))
}

// manifestEntry is one partition's record in a manifest.
type manifestEntry struct {
	tp    TopicPartition
	end   Offset // the log end at the close, which was its recovery point
	ctime int64  // the partition directory's change time, ns
	ls    dirListing
}

// manifest is a log dir's start-up manifest as read.
type manifest struct {
	mtime   int64 // the file's modification time, ns
	entries map[TopicPartition]*manifestEntry
}

// changeTime is path's status change time in nanoseconds (false when the
// file system does not report one).
func changeTime(fsys vfs.FS, path string) (int64, bool) {
	fi, err := fsys.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ctim.Nano(), true
}

// modTime is the modification time of an open file in nanoseconds.
func modTime(f vfs.File) (int64, bool) {
	fi, err := f.Stat()
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Mtim.Nano(), true
}

// listing returns tp's recorded directory listing when it can stand in
// for listing dir: tp is recorded, with the checkpointed recovery point
// rp as its end, and its directory's change time is the recorded one,
// older than the manifest (nothing changed in the directory since).
func (mf *manifest) listing(fsys vfs.FS, tp TopicPartition, dir string, rp Offset) *dirListing {
	if mf == nil {
		return nil
	}
	e := mf.entries[tp]
	if e == nil || e.end != rp {
		return nil
	}
	ct, ok := changeTime(fsys, dir)
	if !ok || ct != e.ctime || ct >= mf.mtime {
		return nil
	}
	ls := e.ls
	return &ls
}

// readManifest reads dir's start-up manifest; nil when there is none or it
// is unusable (a torn or corrupt file is logged and ignored: every
// partition is then listed).
func (m *Manager) readManifest(dir string) *manifest {
	path := filepath.Join(dir, ManifestFile)
	f, err := m.opts.FS.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.opts.Logger.Warn("start-up manifest unreadable; listing every partition", "dir", dir, "err", err)
		}
		return nil
	}
	defer f.Close()
	mtime, ok := modTime(f)
	if !ok {
		return nil
	}
	data, err := io.ReadAll(f)
	if err == nil {
		var entries map[TopicPartition]*manifestEntry
		if entries, err = decodeManifest(data); err == nil {
			return &manifest{mtime: mtime, entries: entries}
		}
	}
	m.opts.Logger.Warn("start-up manifest unusable; listing every partition", "dir", dir, "err", err)
	return nil
}

// errManifest is a manifest that does not decode.
var errManifest = errors.New("malformed start-up manifest")

// encodeManifest lays out entries (FORMAT.md §10), grouped by topic.
func encodeManifest(entries []*manifestEntry) []byte {
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i].tp, entries[j].tp
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	var topics int32
	for i, e := range entries {
		if i == 0 || e.tp.Topic != entries[i-1].tp.Topic {
			topics++
		}
	}
	b := make([]byte, 0, 16+len(entries)*80)
	b = append(b, manifestMagic...)
	b = binary.BigEndian.AppendUint16(b, manifestVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(topics))
	for i := 0; i < len(entries); {
		j := i
		for j < len(entries) && entries[j].tp.Topic == entries[i].tp.Topic {
			j++
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(entries[i].tp.Topic)))
		b = append(b, entries[i].tp.Topic...)
		b = binary.BigEndian.AppendUint32(b, uint32(j-i))
		for _, e := range entries[i:j] {
			b = binary.BigEndian.AppendUint32(b, uint32(e.tp.Partition))
			b = binary.BigEndian.AppendUint64(b, uint64(e.end))
			b = binary.BigEndian.AppendUint64(b, uint64(e.ctime))
			b = binary.BigEndian.AppendUint64(b, uint64(e.ls.covers))
			b = binary.BigEndian.AppendUint32(b, uint32(len(e.ls.segs)))
			for _, s := range e.ls.segs {
				b = binary.BigEndian.AppendUint64(b, uint64(s.base))
				b = binary.BigEndian.AppendUint64(b, uint64(s.size))
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(e.ls.snapshots)))
			for _, o := range e.ls.snapshots {
				b = binary.BigEndian.AppendUint64(b, uint64(o))
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(e.ls.epochs)))
			for _, ep := range e.ls.epochs {
				b = binary.BigEndian.AppendUint32(b, uint32(ep.Epoch))
				b = binary.BigEndian.AppendUint64(b, uint64(ep.StartOffset))
			}
		}
		i = j
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoliTable))
}

// manifestReader decodes big-endian fields, remembering the first overrun.
type manifestReader struct {
	b   []byte
	bad bool
}

func (r *manifestReader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *manifestReader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *manifestReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *manifestReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// count reads a count of items of at least size bytes each, refusing one
// the rest of the data cannot hold.
func (r *manifestReader) count(size int) int {
	n := int(r.u32())
	if r.bad || n > len(r.b)/size {
		r.bad = true
		return 0
	}
	return n
}

// decodeManifest checks and decodes a manifest file's bytes. Every entry
// must be well formed: the CRC matches, counts fit the file, segments and
// snapshots strictly ascend, epochs strictly ascend in both fields, no
// offset or size is negative, and no partition appears twice.
func decodeManifest(data []byte) (map[TopicPartition]*manifestEntry, error) {
	if len(data) < len(manifestMagic)+2+4+4 {
		return nil, fmt.Errorf("%w: %d bytes", errManifest, len(data))
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, castagnoliTable) != binary.BigEndian.Uint32(data[len(data)-4:]) {
		return nil, fmt.Errorf("%w: CRC mismatch", errManifest)
	}
	r := &manifestReader{b: body}
	if string(r.take(len(manifestMagic))) != manifestMagic {
		return nil, fmt.Errorf("%w: bad magic", errManifest)
	}
	if v := r.u16(); v != manifestVersion {
		return nil, fmt.Errorf("%w: version %d", errManifest, v)
	}
	out := map[TopicPartition]*manifestEntry{}
	topics := r.count(2 + 1 + 4)
	for range topics {
		n := int(r.u16())
		if n == 0 || n > manifestMaxTopic {
			return nil, fmt.Errorf("%w: topic name of %d bytes", errManifest, n)
		}
		topic := string(r.take(n))
		parts := r.count(4 + 8*3 + 4*3)
		for range parts {
			e := &manifestEntry{}
			e.tp = TopicPartition{Topic: topic, Partition: int32(r.u32())}
			e.end = Offset(r.u64())
			e.ctime = int64(r.u64())
			e.ls.covers = Offset(r.u64())
			e.ls.hasKeyIndex = e.ls.covers >= 0
			segs := r.count(16)
			if segs > 0 {
				e.ls.segs = make([]segmentFile, segs)
			}
			for i := range e.ls.segs {
				e.ls.segs[i] = segmentFile{base: Offset(r.u64()), size: int64(r.u64())}
				if s := e.ls.segs[i]; s.base < 0 || s.size < 0 || i > 0 && s.base <= e.ls.segs[i-1].base {
					return nil, fmt.Errorf("%w: %s: segment %d of %d bytes out of order", errManifest, e.tp, s.base, s.size)
				}
			}
			snaps := r.count(8)
			e.ls.snapshots = make([]Offset, snaps)
			for i := range e.ls.snapshots {
				e.ls.snapshots[i] = Offset(r.u64())
				if o := e.ls.snapshots[i]; o < 0 || i > 0 && o <= e.ls.snapshots[i-1] {
					return nil, fmt.Errorf("%w: %s: snapshot %d out of order", errManifest, e.tp, o)
				}
			}
			epochs := r.count(12)
			if epochs > 0 {
				e.ls.epochs = make([]checkpoint.EpochEntry, epochs)
			}
			for i := range e.ls.epochs {
				ep := checkpoint.EpochEntry{Epoch: int32(r.u32()), StartOffset: int64(r.u64())}
				if ep.Epoch < 0 || ep.StartOffset < 0 || i > 0 && (ep.Epoch <= e.ls.epochs[i-1].Epoch || ep.StartOffset <= e.ls.epochs[i-1].StartOffset) {
					return nil, fmt.Errorf("%w: %s: leader epoch %d at %d out of order", errManifest, e.tp, ep.Epoch, ep.StartOffset)
				}
				e.ls.epochs[i] = ep
			}
			e.ls.epochsKnown = true
			e.ls.hasEpochs = len(e.ls.epochs) > 0
			if r.bad {
				return nil, fmt.Errorf("%w: truncated", errManifest)
			}
			if e.tp.Partition < 0 || e.end < 0 {
				return nil, fmt.Errorf("%w: %s ending at %d", errManifest, e.tp, e.end)
			}
			if _, dup := out[e.tp]; dup {
				return nil, fmt.Errorf("%w: %s twice", errManifest, e.tp)
			}
			out[e.tp] = e
		}
	}
	if r.bad || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last entry", errManifest, len(r.b))
	}
	return out, nil
}

// manifestEntryOf records a closed log's directory for the manifest; false
// when the directory holds anything a load would clean up first (it is
// then listed at the next start), or cannot be read.
func (l *Log) manifestEntryOf() (*manifestEntry, bool) {
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, false
	}
	// The closed log's own state agrees with its files: its segments are
	// the .log files listed, as long as it holds them (a segment's .log is
	// only appended to, never preallocated), and the leader-epoch
	// checkpoint holds its entries (close installed them).
	// An unborn active segment has no file (segment.unborn): a load
	// without .log files makes it again.
	segs := l.segments()
	sizes := make(map[Offset]int64, len(segs))
	born := 0
	for _, s := range segs {
		if s.isUnborn() {
			continue
		}
		sizes[s.base] = s.size.Load()
		born++
	}
	ls, err := scanListingSized(ents, func(base Offset, _ os.DirEntry) (int64, error) {
		n, ok := sizes[base]
		if !ok {
			return 0, os.ErrNotExist
		}
		return n, nil
	})
	if err != nil || ls.leftovers || len(ls.orphans) > 0 || len(ls.segs) != born {
		return nil, false
	}
	ls.epochs = l.epochs.Entries()
	ls.epochsKnown = true
	if !ls.hasEpochs && len(ls.epochs) > 0 {
		return nil, false // entries without their file: not what a start-up would read
	}
	ls.covers = -1
	if ls.hasKeyIndex {
		c, err := readKeyIndexCovers(l.fs, KeyIndexFileName(l.dir))
		if err != nil || c < 0 {
			return nil, false
		}
		ls.covers = c
	}
	ct, ok := changeTime(l.fs, l.dir)
	if !ok {
		return nil, false
	}
	return &manifestEntry{tp: l.tp, end: l.LogEndOffset(), ctime: ct, ls: *ls}, true
}

// manifestClockWait bounds how long writeManifests waits for the file
// system's clock to pass the partition directories' last change.
const manifestClockWait = 2 * time.Second

// writeManifests writes each log dir's start-up manifest after a clean
// close (every log closed and synced, the checkpoints written), before
// the clean-shutdown marker, from the entries closeLogs recorded for logs
// (nil: none). A dir whose manifest cannot be written gets none: its next
// start lists every partition, as without one.
func (m *Manager) writeManifests(logs []*Log, entries []*manifestEntry) {
	perDir := map[string][]*manifestEntry{}
	newest := map[string]int64{}
	for i, e := range entries {
		if e == nil {
			continue
		}
		d := filepath.Dir(logs[i].dir)
		perDir[d] = append(perDir[d], e)
		newest[d] = max(newest[d], e.ctime)
	}
	for _, d := range m.opts.Dirs {
		if err := m.writeManifest(d, perDir[d], newest[d]); err != nil {
			m.opts.Logger.Warn("start-up manifest not written; the next start lists every partition", "dir", d, "err", err)
		}
	}
}

// writeManifest writes one log dir's manifest atomically (a temporary
// file, synced, renamed into place, the dir synced), its modification
// time after newest, the latest change time of its partition
// directories: a partition directory changed after the manifest then has
// a newer change time than the manifest, whatever the file system's
// timestamp granularity.
func (m *Manager) writeManifest(dir string, entries []*manifestEntry, newest int64) error {
	fsys := m.opts.FS
	path := filepath.Join(dir, ManifestFile)
	tmp := path + checkpoint.TmpSuffix
	data := encodeManifest(entries)
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("engine: write %s: %w", path, err)
	}
	deadline := time.Now().Add(manifestClockWait)
	for {
		if _, err = f.WriteAt(data, 0); err != nil {
			break
		}
		if mt, ok := modTime(f); !ok || mt > newest || time.Now().After(deadline) {
			// Past the deadline the entries not older than the file are
			// ignored at start-up (listed as before).
			break
		}
		// The file system's clock has not ticked since the last change
		// of a partition directory: write again after it has.
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		_ = fsys.Remove(tmp)
		return fmt.Errorf("engine: write %s: %w", path, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("engine: write %s: %w", path, err)
	}
	return nil
}

// removeManifest removes dir's start-up manifest at start-up: from here
// on the dir changes, and only the next clean close describes it again.
func (m *Manager) removeManifest(dir string) error {
	path := filepath.Join(dir, ManifestFile)
	for _, p := range []string{path, path + checkpoint.TmpSuffix} {
		if err := m.opts.FS.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("engine: remove %s: %w: %w", p, ErrStorage, err)
		}
	}
	return nil
}
