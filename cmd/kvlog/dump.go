package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/kvlog/kvlog/engine"
	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/index"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/spf13/cobra"
)

// dumper prints files and counts the problems it finds.
type dumper struct {
	w        *bufio.Writer
	deep     bool
	values   bool
	verify   bool
	maxBytes int
	problems int
	verified map[string]bool // index files already verified
}

// firstVerify reports whether path has not been verified yet, and marks it.
func (d *dumper) firstVerify(path string) bool {
	if d.verified == nil {
		d.verified = map[string]bool{}
	}
	p, err := filepath.Abs(path)
	if err != nil {
		p = path
	}
	if d.verified[p] {
		return false
	}
	d.verified[p] = true
	return true
}

func (a *app) dumpCmd() *cobra.Command {
	d := &dumper{}
	cmd := &cobra.Command{
		Use:   "dump FILE|DIR...",
		Short: "Inspect segment, index, snapshot and checkpoint files offline (DumpLogSegments)",
		Long: `Print the contents of kvlog (and Apache Kafka) data files without a broker:

  .log          record batch headers; --deep adds every record (decompressing
                compressed batches), --values prints keys and values
  .index        offset index entries; .timeindex time index entries
  .snapshot     producer-state snapshot entries (CRC checked)
  .txnindex     aborted transactions (checked as the broker loads them)
  *-checkpoint  offset checkpoints and the leader-epoch checkpoint
  kvlog-key-index.checkpoint  a compacted partition's key index (CRC and
                every entry checked, as the broker loads it)

A directory argument dumps every such file in it; a log directory's
partition directories (<topic>-<partition>) are dumped too. Files of a
segment pending deletion (.deleted) or of a clean pass not yet installed
(.cleaned, .swap) are listed as skipped when found in a directory (name one
to dump it; it is not verified). --verify-index checks the .index and
.timeindex of each segment against its .log: every entry must name a batch
that exists, at the position it says, with the timestamp the .log implies.
The never-written slot 0 of a preallocated index (an active segment's, or
one left by an unclean stop) is not an entry. Corruption (a torn or zeroed
tail, a CRC mismatch, a bad length, offsets out of order, a wrong index
entry) is reported with its file, byte position and reason; the exit code
is then 4.`,
		Example: `  kvlog dump data/user-profiles-0/00000000000000000000.log --deep --values
  kvlog dump data/user-profiles-0 --verify-index
  kvlog dump data --verify-index`,
		Args: minArgs(1, "file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d.w = bufio.NewWriterSize(a.stdout, 64<<10)
			defer d.w.Flush()
			files, err := expandDumpArgs(args)
			if err != nil {
				return err
			}
			for i, f := range files {
				if i > 0 {
					d.w.WriteByte('\n')
				}
				if f.skip != "" {
					fmt.Fprintf(d.w, "Skipping %s: %s\n", f.path, f.skip)
					continue
				}
				if err := d.dumpFile(f.path); err != nil {
					d.w.Flush()
					return err
				}
			}
			d.w.Flush()
			if d.problems > 0 {
				return &exitError{code: exitCorruption, err: fmt.Errorf("dump: %d problem(s) found", d.problems)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&d.deep, "deep", "d", false, "print every record, decompressing compressed batches (deep iteration)")
	cmd.Flags().BoolVarP(&d.values, "values", "v", false, "print record keys and values (implies --deep)")
	cmd.Flags().BoolVar(&d.verify, "verify-index", false, "check .index and .timeindex files against their .log")
	cmd.Flags().IntVar(&d.maxBytes, "max-value-bytes", 0, "cut printed keys and values to this many bytes (0: whole)")
	return cmd
}

// dumpTarget is a file to dump, or to list as skipped with the reason.
type dumpTarget struct {
	path string
	skip string
}

// expandDumpArgs replaces directories by the data files in them: a
// partition directory's files, or a log directory's own files followed by
// those of each partition directory in it.
func expandDumpArgs(args []string) ([]dumpTarget, error) {
	var out []dumpTarget
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("dump: %w", err)
		}
		if !st.IsDir() {
			out = append(out, dumpTarget{path: a})
			continue
		}
		found, err := dirTargets(a, true)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 && isPartitionDir(filepath.Base(filepath.Clean(a))) {
			found = []dumpTarget{{path: a, skip: emptyPartition}}
		}
		if len(found) == 0 {
			return nil, usageErr("dump: %s: no segment, index, snapshot or checkpoint files in it or in partition directories under it", a)
		}
		out = append(out, found...)
	}
	return out, nil
}

// dirTargets lists dir's data files (sorted, transient ones as skipped) and,
// when descend is set, then those of its partition directories.
func dirTargets(dir string, descend bool) ([]dumpTarget, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	var out []dumpTarget
	var subdirs []string
	for _, e := range ents { // os.ReadDir sorts by name
		name := e.Name()
		if e.IsDir() {
			if descend && isPartitionDir(name) {
				subdirs = append(subdirs, name)
			}
			continue
		}
		if fileKind(name) == "" {
			continue
		}
		t := dumpTarget{path: filepath.Join(dir, name)}
		t.skip = transientReason(name)
		out = append(out, t)
	}
	for _, sd := range subdirs {
		p := filepath.Join(dir, sd)
		if strings.HasSuffix(sd, engine.DeleteDirSuffix) {
			out = append(out, dumpTarget{path: p, skip: "partition directory of a deleted topic, pending removal"})
			continue
		}
		sub, err := dirTargets(p, false)
		if err != nil {
			return nil, err
		}
		if len(sub) == 0 {
			sub = []dumpTarget{{path: p, skip: emptyPartition}}
		}
		out = append(out, sub...)
	}
	return out, nil
}

// emptyPartition is what a partition directory without files is: a
// partition never written has no segment file (the broker creates it with
// the first record).
const emptyPartition = "an empty partition, no segment file yet (created with its first record)"

// isPartitionDir reports whether name looks like <topic>-<partition>
// (possibly scheduled for deletion).
func isPartitionDir(name string) bool {
	name = strings.TrimSuffix(name, engine.DeleteDirSuffix)
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return false
	}
	_, err := strconv.ParseUint(name[i+1:], 10, 31)
	return err == nil
}

// transientReason says why a file is not part of the live log ("" when it
// is): a segment renamed for deletion, or the output of a clean pass not yet
// installed. Such files are not verified against their neighbours, which
// may belong to another segment by now.
func transientReason(name string) string {
	switch {
	case strings.HasSuffix(name, engine.DeletedSuffix):
		return "pending deletion (" + engine.DeletedSuffix + ")"
	case strings.HasSuffix(name, engine.CleanedSuffix):
		return "output of a log-cleaner pass not yet installed (" + engine.CleanedSuffix + ")"
	case strings.HasSuffix(name, engine.SwapSuffix):
		return "log-cleaner output being installed (" + engine.SwapSuffix + ")"
	}
	return ""
}

// fileKind classifies a data file by name: "log", "index", "timeindex",
// "snapshot", "epoch", "offsets" or "" (unknown).
func fileKind(name string) string {
	switch name {
	case checkpoint.LeaderEpochFile:
		return "epoch"
	case checkpoint.RecoveryPointFile, checkpoint.LogStartOffsetFile, checkpoint.CleanerOffsetFile:
		return "offsets"
	case engine.KeyIndexFile:
		return "keyindex"
	}
	if _, suffix, ok := segmentName(name); ok {
		// <base>.log, <base>.log.deleted, <base>.index.swap, ...
		ext := strings.TrimPrefix(suffix, ".")
		if i := strings.IndexByte(ext, '.'); i >= 0 {
			ext = ext[:i]
		}
		switch ext {
		case "log", "index", "timeindex", "snapshot", "txnindex":
			return ext
		}
	}
	return ""
}

// segmentName splits "<20 digits>.<suffix>".
func segmentName(name string) (int64, string, bool) {
	if len(name) < 21 || name[20] != '.' {
		return 0, "", false
	}
	base, err := strconv.ParseInt(name[:20], 10, 64)
	if err != nil || base < 0 {
		return 0, "", false
	}
	return base, name[20:], true
}

func (d *dumper) problem(file string, pos int64, format string, args ...any) {
	d.problems++
	if pos >= 0 {
		fmt.Fprintf(d.w, "CORRUPTION %s at position %d: %s\n", file, pos, fmt.Sprintf(format, args...))
	} else {
		fmt.Fprintf(d.w, "CORRUPTION %s: %s\n", file, fmt.Sprintf(format, args...))
	}
}

func (d *dumper) dumpFile(path string) error {
	name := filepath.Base(path)
	kind := fileKind(name)
	fmt.Fprintf(d.w, "Dumping %s\n", path)
	switch kind {
	case "log":
		base, _, _ := segmentName(name)
		return d.dumpLog(path, base)
	case "index":
		base, _, _ := segmentName(name)
		return dumpIndex(d, offsetIndexKind, path, base)
	case "timeindex":
		base, _, _ := segmentName(name)
		return dumpIndex(d, timeIndexKind, path, base)
	case "snapshot":
		return d.dumpSnapshot(path)
	case "txnindex":
		base, _, _ := segmentName(name)
		return d.dumpTxnIndex(path, base)
	case "epoch":
		return d.dumpEpochs(path)
	case "offsets":
		return d.dumpOffsets(path)
	case "keyindex":
		return d.dumpKeyIndex(path)
	}
	return usageErr("dump: %s: unknown file type (want .log, .index, .timeindex, .snapshot, .txnindex or a checkpoint file)", path)
}

// batchInfo is what index verification needs from a .log.
type batchInfo struct {
	pos       int64
	last      int64
	maxTS     int64
	runningTS int64 // max MaxTimestamp of the segment's batches up to this one
}

// scanLog walks the batches of a .log, calling fn for each well-framed one,
// and returns the position where framing stopped and why (nil at a clean end).
func scanLog(buf []byte, fn func(pos int64, b record.Batch)) (int64, error) {
	pos := int64(0)
	for int64(len(buf)) > pos {
		b, _, err := record.ReadBatch(buf[pos:])
		if err != nil {
			return pos, err
		}
		fn(pos, b)
		pos += int64(len(b))
	}
	return pos, nil
}

func (d *dumper) dumpLog(path string, base int64) error {
	buf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	fmt.Fprintf(d.w, "Log starting offset: %d\n", base)
	deep := d.deep || d.values
	var dec record.Decoder
	prevLast := base - 1
	var batches []batchInfo
	running := int64(-1)
	end, ferr := scanLog(buf, func(pos int64, b record.Batch) {
		crcErr := b.VerifyCRC()
		running = max(running, b.MaxTimestamp())
		batches = append(batches, batchInfo{pos: pos, last: b.LastOffset(), maxTS: b.MaxTimestamp(), runningTS: running})
		lastSeq := int32(-1)
		if b.BaseSequence() >= 0 {
			lastSeq = b.BaseSequence() + b.LastOffsetDelta()
		}
		horizon := "OptionalLong.empty"
		if h, ok := b.DeleteHorizon(); ok {
			horizon = fmt.Sprintf("OptionalLong[%d]", h)
		}
		tsType := "CreateTime"
		if b.LogAppendTime() {
			tsType = "LogAppendTime"
		}
		fmt.Fprintf(d.w, "baseOffset: %d lastOffset: %d count: %d baseSequence: %d lastSequence: %d producerId: %d producerEpoch: %d partitionLeaderEpoch: %d isTransactional: %t isControl: %t deleteHorizonMs: %s position: %d %s: %d size: %d magic: %d compresscodec: %s crc: %d isvalid: %t\n",
			b.BaseOffset(), b.LastOffset(), b.NumRecords(), b.BaseSequence(), lastSeq, b.ProducerID(), b.ProducerEpoch(),
			b.PartitionLeaderEpoch(), b.IsTransactional(), b.IsControl(), horizon, pos, tsType, b.MaxTimestamp(), len(b), b.Magic(),
			b.Codec(), b.CRC(), crcErr == nil)
		if crcErr != nil {
			d.problem(path, pos, "batch at offset %d: %v", b.BaseOffset(), crcErr)
		}
		if b.BaseOffset() <= prevLast {
			d.problem(path, pos, "batch base offset %d not above the previous batch's last offset %d", b.BaseOffset(), prevLast)
		}
		if b.LastOffsetDelta() < 0 {
			d.problem(path, pos, "negative last offset delta %d", b.LastOffsetDelta())
		}
		prevLast = max(prevLast, b.LastOffset())
		if !deep {
			return
		}
		err := dec.Records(b, func(r *record.Record) error {
			d.printRecord(b, r)
			return nil
		})
		if err != nil {
			d.problem(path, pos, "records of batch at offset %d: %v", b.BaseOffset(), err)
		}
	})
	if ferr != nil {
		reason := ferr.Error()
		if isZero(buf[end:]) {
			reason = "zeroed tail (" + reason + ")"
		}
		d.problem(path, end, "%s; %d byte(s) from here on not read", reason, int64(len(buf))-end)
	}
	fmt.Fprintf(d.w, "Batches: %d, valid bytes: %d of %d\n", len(batches), end, len(buf))
	if why := transientReason(filepath.Base(path)); d.verify && why != "" {
		fmt.Fprintf(d.w, "Verify: skipped, the file is %s\n", why)
	} else if d.verify {
		dir := filepath.Dir(path)
		stem := fmt.Sprintf("%020d", base)
		for _, sib := range []string{stem + ".index", stem + ".timeindex"} {
			p := filepath.Join(dir, sib)
			if _, err := os.Stat(p); err != nil {
				fmt.Fprintf(d.w, "Verify %s: not present\n", sib)
				continue
			}
			if !d.firstVerify(p) {
				continue
			}
			if strings.HasSuffix(sib, ".index") {
				verifyIndex(d, offsetIndexKind, p, base, batches)
			} else {
				verifyIndex(d, timeIndexKind, p, base, batches)
			}
		}
	}
	return nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return len(b) > 0
}

func (d *dumper) printRecord(b record.Batch, r *record.Record) {
	fmt.Fprintf(d.w, "| offset: %d %s: %d keySize: %d valueSize: %d sequence: %d headerKeys: [",
		b.RecordOffset(r), map[bool]string{true: "LogAppendTime", false: "CreateTime"}[b.LogAppendTime()], b.RecordTimestamp(r),
		lenOrNull(r.Key), lenOrNull(r.Value), seqOf(b, r))
	for i, h := range r.Headers {
		if i > 0 {
			d.w.WriteByte(',')
		}
		d.w.Write(h.Key)
	}
	d.w.WriteByte(']')
	if d.values {
		fmt.Fprintf(d.w, " key: %s payload: %s", d.show(r.Key), d.show(r.Value))
	}
	d.w.WriteByte('\n')
}

func seqOf(b record.Batch, r *record.Record) int32 {
	if b.BaseSequence() < 0 {
		return -1
	}
	return b.BaseSequence() + r.OffsetDelta
}

func lenOrNull(b []byte) int {
	if b == nil {
		return -1
	}
	return len(b)
}

func (d *dumper) show(b []byte) string {
	if b == nil {
		return "null"
	}
	if d.maxBytes > 0 && len(b) > d.maxBytes {
		return strconv.Quote(string(b[:d.maxBytes])) + "…"
	}
	s := string(b)
	if strconv.CanBackquote(s) && !strings.ContainsAny(s, " \t") {
		return s
	}
	return strconv.Quote(s)
}

// loadBatches scans the .log next to an index file, for verification.
func loadBatches(logPath string) ([]batchInfo, error) {
	buf, err := os.ReadFile(logPath)
	if err != nil {
		return nil, err
	}
	var out []batchInfo
	running := int64(-1)
	scanLog(buf, func(pos int64, b record.Batch) {
		running = max(running, b.MaxTimestamp())
		out = append(out, batchInfo{pos: pos, last: b.LastOffset(), maxTS: b.MaxTimestamp(), runningTS: running})
	})
	return out, nil
}

// indexFile is what dump needs of both kinds of index.
type indexFile interface {
	Entries() int
	SanityCheck() error
	Verify() error
	Close() error
}

// indexKind is what differs between dumping a .index and a .timeindex.
type indexKind[X indexFile] struct {
	open       func(fs vfs.FS, path string, base int64, maxSize int, writable bool) (X, error)
	entrySize  int
	printEntry func(d *dumper, x X, i int)
	// zeroEntry reports whether entry i is all zero bytes.
	zeroEntry func(x X, i int) bool
	// checkEntries reports the first n entries that disagree with the
	// batches of the segment's .log.
	checkEntries func(d *dumper, path string, x X, n int, batches []batchInfo)
}

// entries is the number of entries of an index file: its entry count, less
// the never-written slot 0 of a preallocated file (longer than its entries:
// an active segment's index, or one an unclean stop left untrimmed) whose
// only "entry" is all zeros. The index package counts that slot, because an
// all-zero entry can be genuine; kvlog and Kafka never write one there
// (the first entry comes after index.interval.bytes) except for records
// with timestamp 0, whose time-index entry checks out either way.
func (k indexKind[X]) entries(path string, x X) int {
	n := x.Entries()
	if n != 1 || !k.zeroEntry(x, 0) {
		return n
	}
	if st, err := os.Stat(path); err == nil && st.Size() > int64(k.entrySize) {
		return 0
	}
	return n
}

var offsetIndexKind = indexKind[*index.OffsetIndex]{
	open:      index.OpenOffset,
	entrySize: index.OffsetEntrySize,
	printEntry: func(d *dumper, x *index.OffsetIndex, i int) {
		off, pos := x.Entry(i)
		fmt.Fprintf(d.w, "offset: %d position: %d\n", off, pos)
	},
	zeroEntry: func(x *index.OffsetIndex, i int) bool {
		off, pos := x.Entry(i)
		return off == x.BaseOffset() && pos == 0
	},
	checkEntries: func(d *dumper, path string, x *index.OffsetIndex, n int, batches []batchInfo) {
		byPos := make(map[int64]batchInfo, len(batches))
		for _, b := range batches {
			byPos[b.pos] = b
		}
		for i := 0; i < n; i++ {
			off, pos := x.Entry(i)
			b, ok := byPos[int64(pos)]
			switch {
			case !ok:
				d.problem(path, int64(i)*index.OffsetEntrySize, "entry %d (offset %d → position %d): no batch starts at that position of the .log", i, off, pos)
			case b.last != off:
				d.problem(path, int64(i)*index.OffsetEntrySize, "entry %d (offset %d → position %d): the batch there ends at offset %d", i, off, pos, b.last)
			}
		}
	},
}

var timeIndexKind = indexKind[*index.TimeIndex]{
	open:      index.OpenTime,
	entrySize: index.TimeEntrySize,
	printEntry: func(d *dumper, x *index.TimeIndex, i int) {
		ts, off := x.Entry(i)
		fmt.Fprintf(d.w, "timestamp: %d offset: %d\n", ts, off)
	},
	zeroEntry: func(x *index.TimeIndex, i int) bool {
		ts, off := x.Entry(i)
		return ts == 0 && off == x.BaseOffset()
	},
	checkEntries: func(d *dumper, path string, x *index.TimeIndex, n int, batches []batchInfo) {
		byLast := make(map[int64]batchInfo, len(batches))
		for _, b := range batches {
			byLast[b.last] = b
		}
		for i := 0; i < n; i++ {
			ts, off := x.Entry(i)
			b, ok := byLast[off]
			switch {
			case !ok:
				d.problem(path, int64(i)*index.TimeEntrySize, "entry %d (timestamp %d → offset %d): no batch of the .log ends at that offset", i, ts, off)
			case b.runningTS != ts:
				d.problem(path, int64(i)*index.TimeEntrySize, "entry %d (timestamp %d → offset %d): the largest timestamp up to that batch is %d", i, ts, off, b.runningTS)
			}
		}
	},
}

// dumpIndex prints an index file's entries and checks it: on its own, or
// with --verify against the batches of the .log next to it.
func dumpIndex[X indexFile](d *dumper, k indexKind[X], path string, base int64) error {
	x, err := k.open(vfs.Default, path, base, 10<<20, false)
	if err != nil {
		d.problem(path, -1, "%v", err)
		return nil
	}
	defer x.Close()
	n := k.entries(path, x)
	for i := 0; i < n; i++ {
		k.printEntry(d, x, i)
	}
	if n < x.Entries() {
		fmt.Fprintf(d.w, "(preallocated, no entries written)\n")
	}
	if !d.verify {
		if err := x.SanityCheck(); err != nil {
			d.problem(path, -1, "%v", err)
		}
	} else if why := transientReason(filepath.Base(path)); why != "" {
		fmt.Fprintf(d.w, "Verify: skipped, the file is %s\n", why)
		if err := x.SanityCheck(); err != nil {
			d.problem(path, -1, "%v", err)
		}
	} else if d.firstVerify(path) {
		logPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".log"
		batches, err := loadBatches(logPath)
		if err != nil {
			fmt.Fprintf(d.w, "Verify: no .log to check against (%v)\n", err)
			return nil
		}
		checkIndex(d, k, path, x, batches)
	}
	return nil
}

// verifyIndex checks an index file against the batches of its .log.
func verifyIndex[X indexFile](d *dumper, k indexKind[X], path string, base int64, batches []batchInfo) {
	x, err := k.open(vfs.Default, path, base, 10<<20, false)
	if err != nil {
		d.problem(path, -1, "%v", err)
		return
	}
	defer x.Close()
	checkIndex(d, k, path, x, batches)
}

func checkIndex[X indexFile](d *dumper, k indexKind[X], path string, x X, batches []batchInfo) {
	before := d.problems
	if err := x.SanityCheck(); err != nil {
		d.problem(path, -1, "%v", err)
	} else if err := x.Verify(); err != nil {
		d.problem(path, -1, "%v", err)
	}
	n := k.entries(path, x)
	k.checkEntries(d, path, x, n, batches)
	if d.problems == before {
		fmt.Fprintf(d.w, "Verify %s: %d entries OK\n", filepath.Base(path), n)
	}
}

// dumpSnapshot prints a producer-state snapshot (engine/FORMAT.md §4),
// decoded by the engine's codec, with every defect it reports.
func (d *dumper) dumpSnapshot(path string) error {
	buf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	s, defects := engine.ParseProducerSnapshot(buf)
	if len(buf) >= engine.ProducerSnapshotHeaderSize {
		fmt.Fprintf(d.w, "version: %d crc: %d entries: %d\n", s.Version, s.CRC, s.Count)
	}
	for _, def := range defects {
		d.problem(path, def.Pos, "%s", def.Reason)
	}
	for _, e := range s.Entries {
		fmt.Fprintf(d.w, "producerId: %d producerEpoch: %d lastSequence: %d lastOffset: %d offsetDelta: %d timestamp: %d coordinatorEpoch: %d currentTxnFirstOffset: %d\n",
			e.ProducerID, e.ProducerEpoch, e.LastSequence, e.LastOffset, e.OffsetDelta, e.Timestamp, e.CoordinatorEpoch, e.CurrentTxnFirstOffset)
	}
	return nil
}

// dumpTxnIndex prints a transaction index (engine/FORMAT.md §4a), decoded
// by the engine's codec; a defect that would make the broker rebuild the
// log's indexes is reported. The next segment's base is not known here,
// so an entry past the segment's end is not caught.
func (d *dumper) dumpTxnIndex(path string, base int64) error {
	buf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	entries, err := engine.ParseTxnIndex(buf, engine.Offset(base), -1)
	if err != nil {
		d.problem(path, -1, "%v", err)
		return nil
	}
	for _, a := range entries {
		fmt.Fprintf(d.w, "producerId: %d firstOffset: %d lastOffset: %d lastStableOffset: %d\n", a.ProducerID, a.FirstOffset, a.LastOffset, a.LastStableOffset)
	}
	return nil
}

// dumpKeyIndex prints a key-index checkpoint (engine/FORMAT.md §8),
// decoded by the engine's codec; a defect that would make the broker
// rebuild the index from the log is reported.
func (d *dumper) dumpKeyIndex(path string) error {
	buf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	c, err := engine.ParseKeyIndexCheckpoint(buf)
	if err != nil {
		d.problem(path, -1, "%v (the broker rebuilds the index from the log)", err)
		return nil
	}
	fmt.Fprintf(d.w, "version: %d digest: %d covers: %d entries: %d\n", c.Version, c.DigestID, c.Covers, len(c.Entries))
	sort.Slice(c.Entries, func(i, j int) bool { return c.Entries[i].Offset < c.Entries[j].Offset })
	for _, e := range c.Entries {
		fmt.Fprintf(d.w, "offset: %d digest: %016x tombstone: %v\n", e.Offset, e.Digest, e.Tombstone)
	}
	return nil
}

func (d *dumper) dumpEpochs(path string) error {
	c, err := checkpoint.OpenEpochCache(vfs.Default, path)
	if err != nil {
		d.reportCheckpoint(path, err)
		return nil
	}
	for _, e := range c.Entries() {
		fmt.Fprintf(d.w, "epoch: %d startOffset: %d\n", e.Epoch, e.StartOffset)
	}
	return nil
}

func (d *dumper) dumpOffsets(path string) error {
	m, err := checkpoint.ReadOffsets(vfs.Default, path)
	if err != nil {
		d.reportCheckpoint(path, err)
		return nil
	}
	tps := make([]checkpoint.TopicPartition, 0, len(m))
	for tp := range m {
		tps = append(tps, tp)
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
	for _, tp := range tps {
		fmt.Fprintf(d.w, "topic: %s partition: %d offset: %d\n", tp.Topic, tp.Partition, m[tp])
	}
	return nil
}

func (d *dumper) reportCheckpoint(path string, err error) {
	var me *checkpoint.MalformedError
	if errors.As(err, &me) {
		d.problem(path, -1, "line %d (%q): %s", me.Line, me.Text, me.Reason)
		return
	}
	d.problem(path, -1, "%v", err)
}
