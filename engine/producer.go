package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"sort"
	"time"

	"github.com/kvlog/kvlog/engine/checkpoint"
	"github.com/kvlog/kvlog/engine/record"
	"github.com/kvlog/kvlog/engine/vfs"
)

// producerBatch is the sequence and offset range of one idempotent batch.
type producerBatch struct {
	firstSeq, lastSeq       int32
	firstOffset, lastOffset Offset
}

// producerEntry is what the log remembers per producer id: its epoch and its
// last (up to) five batches, enough to recognise retries of in-flight batches.
type producerEntry struct {
	epoch     int16
	batches   []producerBatch
	timestamp int64
	// txnFirst is the first offset of the producer's ongoing transaction
	// (inTxn); coordEpoch the coordinator epoch of its last marker
	// (hasCoord).
	txnFirst   Offset
	inTxn      bool
	coordEpoch int32
	hasCoord   bool
}

// snapshotTxnFields are the entry's CurrentTxnFirstOffset and
// CoordinatorEpoch as a snapshot stores them (-1: none).
func (e *producerEntry) snapshotTxnFields() (int64, int32) {
	first, coord := int64(-1), int32(-1)
	if e.inTxn {
		first = int64(e.txnFirst)
	}
	if e.hasCoord {
		coord = e.coordEpoch
	}
	return first, coord
}

const producerBatchesKept = 5

// producerState tracks idempotent producers for one log (caller holds Log.mu).
type producerState struct {
	m map[int64]*producerEntry
	// ongoing maps each producer with an ongoing transaction to the
	// transaction's first offset (entries with txnFirst >= 0).
	ongoing map[int64]Offset
}

func newProducerState() *producerState {
	return &producerState{m: map[int64]*producerEntry{}, ongoing: map[int64]Offset{}}
}

// firstOngoing is the smallest first offset of an ongoing transaction, -1
// when none is ongoing.
func (p *producerState) firstOngoing() Offset {
	first := Offset(-1)
	for _, o := range p.ongoing {
		if first < 0 || o < first {
			first = o
		}
	}
	return first
}

// completedTxn is a transaction ended by a marker at Marker.
type completedTxn struct {
	pid           int64
	first, marker Offset
	abort         bool
}

// endTxn applies a marker (control batch) at offset marker from pid at
// epoch: the epoch is taken (a newer one forgets the cached batches, as a
// bump does), and the producer's ongoing transaction, if any, ends. It
// returns the transaction ended; one with no data still ends at the
// marker (first == marker), as in Kafka.
func (p *producerState) endTxn(pid int64, epoch int16, coordEpoch int32, marker Offset, abort bool, now int64) completedTxn {
	e := p.m[pid]
	if e == nil {
		e = &producerEntry{epoch: epoch}
		p.m[pid] = e
	}
	if epoch != e.epoch {
		e.epoch = epoch
		e.batches = e.batches[:0]
	}
	e.coordEpoch, e.hasCoord = coordEpoch, true
	e.timestamp = now
	c := completedTxn{pid: pid, first: marker, marker: marker, abort: abort}
	if e.inTxn {
		c.first = e.txnFirst
		e.inTxn = false
		delete(p.ongoing, pid)
	}
	return c
}

// checkMarker applies Kafka's checks to a marker: an older producer epoch
// is fenced, as is an older coordinator epoch.
func (p *producerState) checkMarker(pid int64, epoch int16, coordEpoch int32) error {
	e := p.m[pid]
	if e == nil {
		return nil
	}
	if epoch < e.epoch {
		return fmt.Errorf("%w: marker for producer %d epoch %d older than %d", ErrInvalidProducerEpoch, pid, epoch, e.epoch)
	}
	if e.hasCoord && coordEpoch < e.coordEpoch {
		return fmt.Errorf("%w: marker for producer %d from coordinator epoch %d older than %d", ErrCoordinatorFenced, pid, coordEpoch, e.coordEpoch)
	}
	return nil
}

// check validates b's producer epoch and sequence (Kafka's rules). It returns
// the original batch and true when b is a retry of a cached batch.
func (p *producerState) check(b record.Batch) (producerBatch, bool, error) {
	pid := b.ProducerID()
	if pid < 0 {
		return producerBatch{}, false, nil
	}
	e := p.m[pid]
	if e == nil {
		return producerBatch{}, false, nil
	}
	if e.inTxn && !b.IsTransactional() && b.ProducerEpoch() == e.epoch {
		return producerBatch{}, false, fmt.Errorf("%w: producer %d has an ongoing transaction", ErrInvalidTxnState, pid)
	}
	epoch, first := b.ProducerEpoch(), b.BaseSequence()
	last := seqAdd(first, b.LastOffsetDelta())
	switch {
	case epoch < e.epoch:
		return producerBatch{}, false, fmt.Errorf("%w: producer %d epoch %d older than %d", ErrInvalidProducerEpoch, pid, epoch, e.epoch)
	case epoch > e.epoch:
		if first != 0 {
			return producerBatch{}, false, fmt.Errorf("%w: producer %d new epoch %d starts at sequence %d", ErrOutOfOrderSequence, pid, epoch, first)
		}
		return producerBatch{}, false, nil
	}
	for _, c := range e.batches {
		if c.firstSeq == first && c.lastSeq == last {
			return c, true, nil
		}
	}
	if len(e.batches) == 0 {
		return producerBatch{}, false, nil
	}
	if want := seqAdd(e.batches[len(e.batches)-1].lastSeq, 1); first != want {
		return producerBatch{}, false, fmt.Errorf("%w: producer %d epoch %d sequence %d, expected %d", ErrOutOfOrderSequence, pid, epoch, first, want)
	}
	return producerBatch{}, false, nil
}

func seqAdd(s, d int32) int32 {
	if int64(s)+int64(d) > math.MaxInt32 {
		return int32(int64(s) + int64(d) - math.MaxInt32 - 1)
	}
	return s + d
}

// update records an appended data batch (not a control batch: endTxn).
// A transactional batch starts the producer's transaction when none is
// ongoing.
func (p *producerState) update(b record.Batch, now int64) {
	pid := b.ProducerID()
	if pid < 0 {
		return
	}
	e := p.m[pid]
	if e == nil {
		e = &producerEntry{epoch: b.ProducerEpoch()}
		p.m[pid] = e
	}
	if b.IsTransactional() && !e.inTxn {
		e.txnFirst, e.inTxn = Offset(b.BaseOffset()), true
		p.ongoing[pid] = e.txnFirst
	}
	if b.ProducerEpoch() != e.epoch {
		e.epoch = b.ProducerEpoch()
		e.batches = e.batches[:0]
	}
	pb := producerBatch{
		firstSeq: b.BaseSequence(), lastSeq: seqAdd(b.BaseSequence(), b.LastOffsetDelta()),
		firstOffset: Offset(b.BaseOffset()), lastOffset: Offset(b.LastOffset()),
	}
	if len(e.batches) == producerBatchesKept {
		copy(e.batches, e.batches[1:])
		e.batches = e.batches[:producerBatchesKept-1]
	}
	e.batches = append(e.batches, pb)
	e.timestamp = now
}

// expire forgets producers without an ongoing transaction whose last
// append is at least after old (Kafka's producer.id.expiration.ms; 0 or
// less: never), and returns how many. A retry from a forgotten producer is
// no longer recognised as a duplicate, as in Kafka.
func (p *producerState) expire(now int64, after time.Duration) int {
	if after <= 0 {
		return 0
	}
	n := 0
	for pid, e := range p.m {
		if !e.inTxn && now-e.timestamp >= after.Milliseconds() {
			delete(p.m, pid)
			n++
		}
	}
	return n
}

// Producer snapshot: Kafka's layout (version 1), engine/FORMAT.md §4:
// Version int16, CRC32C uint32 over everything after it, then an int32
// count of 46-byte entries (ProducerSnapshotEntry). kvlog keeps only each
// producer's last batch. This codec is the format's one definition: the
// engine loads and writes snapshots with it, `kvlog dump` prints them with
// it.
const (
	// ProducerSnapshotVersion is the only version written and read.
	ProducerSnapshotVersion = 1
	// ProducerSnapshotHeaderSize is the bytes before the first entry.
	ProducerSnapshotHeaderSize = 2 + 4 + 4
	// ProducerSnapshotEntrySize is the size of one entry.
	ProducerSnapshotEntrySize = 46
)

// ProducerSnapshotEntry is one producer of a snapshot: the producer's epoch
// and its last batch (last sequence and offset, and the offset span back to
// the batch's first offset), the coordinator epoch of its last marker (-1:
// none) and the first offset of its ongoing transaction (-1: none).
type ProducerSnapshotEntry struct {
	ProducerID            int64
	ProducerEpoch         int16
	LastSequence          int32
	LastOffset            int64
	OffsetDelta           int32
	Timestamp             int64 // broker time (ms) of the producer's last append
	CoordinatorEpoch      int32
	CurrentTxnFirstOffset int64
}

// ProducerSnapshot is a decoded producer-state snapshot file.
type ProducerSnapshot struct {
	Version int16
	CRC     uint32 // as stored
	Count   int32  // entry count as stored
	Entries []ProducerSnapshotEntry
}

// SnapshotDefect is one way a snapshot file breaks its format: what is
// wrong and at which byte of the file.
type SnapshotDefect struct {
	Pos    int64
	Reason string
}

func (d SnapshotDefect) Error() string {
	return fmt.Sprintf("%v at byte %d: %s", errBadSnapshot, d.Pos, d.Reason)
}

func (d SnapshotDefect) Unwrap() error { return errBadSnapshot }

// EncodeProducerSnapshot encodes entries (in the order given: ascending
// producer id) as a version-1 snapshot.
func EncodeProducerSnapshot(entries []ProducerSnapshotEntry) []byte {
	buf := make([]byte, ProducerSnapshotHeaderSize, ProducerSnapshotHeaderSize+len(entries)*ProducerSnapshotEntrySize)
	binary.BigEndian.PutUint16(buf[0:], ProducerSnapshotVersion)
	binary.BigEndian.PutUint32(buf[6:], uint32(len(entries)))
	for _, e := range entries {
		buf = binary.BigEndian.AppendUint64(buf, uint64(e.ProducerID))
		buf = binary.BigEndian.AppendUint16(buf, uint16(e.ProducerEpoch))
		buf = binary.BigEndian.AppendUint32(buf, uint32(e.LastSequence))
		buf = binary.BigEndian.AppendUint64(buf, uint64(e.LastOffset))
		buf = binary.BigEndian.AppendUint32(buf, uint32(e.OffsetDelta))
		buf = binary.BigEndian.AppendUint64(buf, uint64(e.Timestamp))
		buf = binary.BigEndian.AppendUint32(buf, uint32(e.CoordinatorEpoch))
		buf = binary.BigEndian.AppendUint64(buf, uint64(e.CurrentTxnFirstOffset))
	}
	binary.BigEndian.PutUint32(buf[2:], crc32.Checksum(buf[6:], crcTable))
	return buf
}

// ParseProducerSnapshot decodes buf as far as it goes: the header when buf
// holds one, then every whole entry (as many as the bytes hold when the
// stored count disagrees with the size). It returns each defect found: a
// buffer shorter than the header, another version, a CRC mismatch, a count
// that does not match the size, a negative offset delta. A snapshot is
// valid only without defects.
func ParseProducerSnapshot(buf []byte) (ProducerSnapshot, []SnapshotDefect) {
	var s ProducerSnapshot
	if len(buf) < ProducerSnapshotHeaderSize {
		return s, []SnapshotDefect{{0, fmt.Sprintf("%d bytes: shorter than the %d-byte header", len(buf), ProducerSnapshotHeaderSize)}}
	}
	var defects []SnapshotDefect
	s.Version = int16(binary.BigEndian.Uint16(buf[0:]))
	s.CRC = binary.BigEndian.Uint32(buf[2:])
	s.Count = int32(binary.BigEndian.Uint32(buf[6:]))
	if s.Version != ProducerSnapshotVersion {
		defects = append(defects, SnapshotDefect{0, fmt.Sprintf("version %d, want %d", s.Version, ProducerSnapshotVersion)})
	}
	if got := crc32.Checksum(buf[6:], crcTable); got != s.CRC {
		defects = append(defects, SnapshotDefect{2, fmt.Sprintf("CRC-32C mismatch: stored %d, computed %d", s.CRC, got)})
	}
	n := int64(s.Count)
	if n < 0 || int64(len(buf)-ProducerSnapshotHeaderSize) != n*ProducerSnapshotEntrySize {
		defects = append(defects, SnapshotDefect{6, fmt.Sprintf("entry count %d does not match the file size %d", s.Count, len(buf))})
		n = int64((len(buf) - ProducerSnapshotHeaderSize) / ProducerSnapshotEntrySize)
	}
	s.Entries = make([]ProducerSnapshotEntry, 0, n)
	for i := int64(0); i < n; i++ {
		pos := ProducerSnapshotHeaderSize + i*ProducerSnapshotEntrySize
		e := buf[pos:]
		ent := ProducerSnapshotEntry{
			ProducerID:            int64(binary.BigEndian.Uint64(e[0:])),
			ProducerEpoch:         int16(binary.BigEndian.Uint16(e[8:])),
			LastSequence:          int32(binary.BigEndian.Uint32(e[10:])),
			LastOffset:            int64(binary.BigEndian.Uint64(e[14:])),
			OffsetDelta:           int32(binary.BigEndian.Uint32(e[22:])),
			Timestamp:             int64(binary.BigEndian.Uint64(e[26:])),
			CoordinatorEpoch:      int32(binary.BigEndian.Uint32(e[34:])),
			CurrentTxnFirstOffset: int64(binary.BigEndian.Uint64(e[38:])),
		}
		if ent.OffsetDelta < 0 {
			defects = append(defects, SnapshotDefect{pos + 22, fmt.Sprintf("entry %d (producer %d): negative offset delta %d", i, ent.ProducerID, ent.OffsetDelta)})
		}
		s.Entries = append(s.Entries, ent)
	}
	return s, defects
}

var errBadSnapshot = errors.New("engine: corrupt producer snapshot")

func (p *producerState) encodeSnapshot() []byte {
	pids := make([]int64, 0, len(p.m))
	for pid, e := range p.m {
		if len(e.batches) > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	entries := make([]ProducerSnapshotEntry, 0, len(pids))
	for _, pid := range pids {
		e := p.m[pid]
		b := e.batches[len(e.batches)-1]
		txnFirst, coordEpoch := e.snapshotTxnFields()
		entries = append(entries, ProducerSnapshotEntry{
			ProducerID: pid, ProducerEpoch: e.epoch, LastSequence: b.lastSeq,
			LastOffset: int64(b.lastOffset), OffsetDelta: int32(b.lastOffset - b.firstOffset), Timestamp: e.timestamp,
			CoordinatorEpoch: coordEpoch, CurrentTxnFirstOffset: txnFirst,
		})
	}
	return EncodeProducerSnapshot(entries)
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func decodeSnapshot(buf []byte) (*producerState, error) {
	s, defects := ParseProducerSnapshot(buf)
	if len(defects) > 0 {
		return nil, defects[0]
	}
	p := newProducerState()
	for _, e := range s.Entries {
		if e.CurrentTxnFirstOffset >= 0 {
			p.ongoing[e.ProducerID] = Offset(e.CurrentTxnFirstOffset)
		}
		pe := &producerEntry{
			epoch:     e.ProducerEpoch,
			timestamp: e.Timestamp,
			batches: []producerBatch{{
				firstSeq: seqAdd(e.LastSequence, -e.OffsetDelta), lastSeq: e.LastSequence,
				firstOffset: Offset(e.LastOffset) - Offset(e.OffsetDelta), lastOffset: Offset(e.LastOffset),
			}},
		}
		if e.CurrentTxnFirstOffset >= 0 {
			pe.txnFirst, pe.inTxn = Offset(e.CurrentTxnFirstOffset), true
		}
		if e.CoordinatorEpoch >= 0 {
			pe.coordEpoch, pe.hasCoord = e.CoordinatorEpoch, true
		}
		p.m[e.ProducerID] = pe
	}
	return p, nil
}

// snapshot writes <offset>.snapshot atomically.
func (p *producerState) snapshot(fs vfs.FS, dir string, at Offset) error {
	return checkpoint.WriteFileAtomic(fs, SnapshotFileName(dir, at), p.encodeSnapshot())
}

// writeSnapshotUnsynced writes <offset>.snapshot in place, unsynced (a
// shutdown: its file-system sync makes it durable). No rename is needed:
// a snapshot cut short by a crash fails its CRC at load, which then takes
// the next older snapshot (or replays from the log start), as Kafka's
// snapshots are written in place too.
func (p *producerState) writeSnapshotUnsynced(fsys vfs.FS, dir string, at Offset) error {
	path := SnapshotFileName(dir, at)
	f, err := fsys.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("engine: producer snapshot %s: %w: %w", path, ErrStorage, err)
	}
	_, err = f.Write(p.encodeSnapshot())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = fsys.Remove(path)
		return fmt.Errorf("engine: producer snapshot %s: %w: %w", path, ErrStorage, err)
	}
	return nil
}

// snapshotOffsets lists the snapshot files in dir, ascending.
func snapshotOffsets(fs vfs.FS, dir string) []Offset {
	ents, err := fs.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []Offset
	for _, e := range ents {
		if o, suffix, ok := parseOffsetFileName(e.Name()); ok && suffix == SnapshotSuffix {
			out = append(out, o)
		}
	}
	return out
}

// loadProducerState reads the newest valid snapshot at or below end and
// returns it with its offset; snapshots above end are deleted. listed, when
// not nil, are the snapshot offsets found in dir (ascending).
func loadProducerState(fs vfs.FS, dir string, end Offset, listed []Offset) (*producerState, Offset) {
	offs := listed
	if offs == nil {
		offs = snapshotOffsets(fs, dir)
	}
	for i := len(offs) - 1; i >= 0; i-- {
		path := SnapshotFileName(dir, offs[i])
		if offs[i] > end {
			_ = fs.Remove(path)
			continue
		}
		data, err := readWholeFile(fs, path)
		if err != nil {
			continue
		}
		if p, err := decodeSnapshot(data); err == nil {
			return p, offs[i]
		}
	}
	return newProducerState(), -1
}

// pruneSnapshots keeps the newest few snapshots and removes those below keepFrom.
func pruneSnapshots(fs vfs.FS, dir string, keepFrom Offset) {
	offs := snapshotOffsets(fs, dir)
	for i, o := range offs {
		if o < keepFrom && i < len(offs)-2 {
			_ = fs.Remove(SnapshotFileName(dir, o))
		}
	}
}

func readWholeFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// ExpireProducers forgets the idempotent producers idle for longer than
// the log's ProducerIDExpiration and not in a transaction, as Kafka's
// periodic producer expiration does; the manager runs it with retention.
// A log whose producer state is not loaded yet is skipped (the load
// expires them). It returns how many producers were forgotten.
func (l *Log) ExpireProducers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() || l.producers == nil {
		return 0
	}
	n := l.producers.expire(l.clk.Now().UnixMilli(), l.Config().ProducerIDExpiration)
	if n > 0 {
		l.snapAt = -1 // the next snapshot leaves them out
	}
	return n
}

// ProducerInfo is one producer a partition tracks, as Kafka's
// DescribeProducers reports it.
type ProducerInfo struct {
	ProducerID    int64
	ProducerEpoch int16
	// LastSequence is the last sequence of the producer's newest batch
	// (-1: none kept).
	LastSequence  int32
	LastTimestamp int64
	// CoordinatorEpoch is the coordinator epoch of the producer's last
	// marker (-1: none).
	CoordinatorEpoch int32
	// TxnStartOffset is the first offset of its ongoing transaction (-1:
	// none).
	TxnStartOffset Offset
}

// Producers returns every producer the log tracks, by producer id.
func (l *Log) Producers() ([]ProducerInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, l.errorf("producers", -1, -1, ErrClosed)
	}
	if err := l.ensureLoaded(); err != nil {
		return nil, err
	}
	out := make([]ProducerInfo, 0, len(l.producers.m))
	for pid, e := range l.producers.m {
		first, coord := e.snapshotTxnFields()
		pi := ProducerInfo{ProducerID: pid, ProducerEpoch: e.epoch, LastSequence: -1, LastTimestamp: e.timestamp, CoordinatorEpoch: coord, TxnStartOffset: Offset(first)}
		if n := len(e.batches); n > 0 {
			pi.LastSequence = e.batches[n-1].lastSeq
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProducerID < out[j].ProducerID })
	return out, nil
}
