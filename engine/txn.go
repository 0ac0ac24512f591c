package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/kvlog/kvlog/engine/record"
)

// Transactions in a partition log (Kafka's, engine/FORMAT.md §6):
//
//   - A producer's transactional data batches start its ongoing
//     transaction at the first one's base offset; the partition leader
//     ends it with a marker (AppendMarker): a control batch holding one
//     control record, COMMIT or ABORT.
//   - The last stable offset (LSO) is the first offset of the earliest
//     transaction still ongoing, or whose marker is not yet below the high
//     watermark; the high watermark when there is none. read_committed
//     consumers read only below it.
//   - Every aborted transaction is an entry of the .txnindex of the
//     segment holding its abort marker: producer id, first offset, last
//     offset (the marker's) and the LSO right after the abort. A
//     read_committed fetch gets the entries overlapping the range it reads
//     so the consumer can drop the aborted records.
//
// The entries of every segment are kept in memory (Log.aborted), loaded
// with the producer state (ensureLoaded) and written through to the file
// (opened, written and synced per abort marker, so an index costs no
// descriptor or mapping while idle; the open is charged to the budget like
// any other). Aborts are rare next to data, so the list stays small; the
// cleaner (which drops aborted data) is what will bound it.

// TxnIndex format: version int16 (0), producer id int64, first offset
// int64, last offset int64, last stable offset int64.
const (
	TxnIndexVersion   = 0
	TxnIndexEntrySize = 34
)

// Control record types (the key of a control record: version int16 0,
// type int16).
const (
	ControlAbort  int16 = 0
	ControlCommit int16 = 1
)

// AbortedTxn is one .txnindex entry.
type AbortedTxn struct {
	ProducerID       int64
	FirstOffset      Offset
	LastOffset       Offset // the abort marker's offset
	LastStableOffset Offset // the LSO once the transaction was aborted
}

// EncodeTxnIndexEntry appends a's 34-byte entry to dst.
func EncodeTxnIndexEntry(dst []byte, a AbortedTxn) []byte {
	dst = binary.BigEndian.AppendUint16(dst, TxnIndexVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(a.ProducerID))
	dst = binary.BigEndian.AppendUint64(dst, uint64(a.FirstOffset))
	dst = binary.BigEndian.AppendUint64(dst, uint64(a.LastOffset))
	return binary.BigEndian.AppendUint64(dst, uint64(a.LastStableOffset))
}

var errBadTxnIndex = errors.New("engine: corrupt transaction index")

// ParseTxnIndex decodes a .txnindex of the segment [base, next). A size
// that is not a whole number of entries, another version, an entry whose
// first offset is above its last, whose last offset lies outside the
// segment, or that does not follow the previous one's last offset, is
// corruption.
func ParseTxnIndex(buf []byte, base, next Offset) ([]AbortedTxn, error) {
	if len(buf)%TxnIndexEntrySize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of %d-byte entries", errBadTxnIndex, len(buf), TxnIndexEntrySize)
	}
	out := make([]AbortedTxn, 0, len(buf)/TxnIndexEntrySize)
	prev := Offset(-1)
	for pos := 0; pos < len(buf); pos += TxnIndexEntrySize {
		e := buf[pos:]
		if v := int16(binary.BigEndian.Uint16(e)); v != TxnIndexVersion {
			return nil, fmt.Errorf("%w: entry at byte %d: version %d", errBadTxnIndex, pos, v)
		}
		a := AbortedTxn{
			ProducerID:       int64(binary.BigEndian.Uint64(e[2:])),
			FirstOffset:      Offset(binary.BigEndian.Uint64(e[10:])),
			LastOffset:       Offset(binary.BigEndian.Uint64(e[18:])),
			LastStableOffset: Offset(binary.BigEndian.Uint64(e[26:])),
		}
		if a.FirstOffset < 0 || a.FirstOffset > a.LastOffset || a.LastOffset < base || (next >= 0 && a.LastOffset >= next) || a.LastOffset <= prev {
			return nil, fmt.Errorf("%w: entry at byte %d: offsets %d..%d outside segment %d..%d or out of order", errBadTxnIndex, pos, a.FirstOffset, a.LastOffset, base, next)
		}
		prev = a.LastOffset
		out = append(out, a)
	}
	return out, nil
}

// Marker is a transaction marker for AppendMarker.
type Marker struct {
	ProducerID       int64
	ProducerEpoch    int16
	CoordinatorEpoch int32
	Commit           bool
}

// BuildMarkerBatch encodes m as a control batch (offset 0, timestamp ts).
func BuildMarkerBatch(m Marker, ts int64) []byte {
	typ := ControlAbort
	if m.Commit {
		typ = ControlCommit
	}
	key := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, 0), uint16(typ))
	val := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, 0), uint32(m.CoordinatorEpoch))
	bl := record.Builder{
		Attributes:    record.AttrTransactional | record.AttrControl,
		BaseTimestamp: ts, MaxTimestamp: -1, LastOffsetDelta: -1,
		ProducerID: m.ProducerID, ProducerEpoch: m.ProducerEpoch, BaseSequence: -1,
	}
	bl.Add(record.Record{Key: key, Value: val})
	b, err := bl.Build(nil)
	if err != nil {
		panic(fmt.Sprintf("engine: building a marker: %v", err)) // fixed-size, uncompressed: cannot fail
	}
	return b
}

// ControlType returns the type of a control batch's record (ControlAbort,
// ControlCommit); an unreadable one is an error.
func ControlType(b record.Batch) (int16, error) {
	typ := int16(-1)
	var dec record.Decoder
	err := dec.Records(b, func(r *record.Record) error {
		if len(r.Key) < 4 {
			return fmt.Errorf("%w: control record key of %d bytes", ErrCorruptRecord, len(r.Key))
		}
		typ = int16(binary.BigEndian.Uint16(r.Key[2:]))
		return nil
	})
	if err != nil {
		return -1, err
	}
	if typ < 0 {
		return -1, fmt.Errorf("%w: control batch without a record", ErrCorruptRecord)
	}
	return typ, nil
}

// AppendMarker ends producer m.ProducerID's transaction in this log with a
// COMMIT or ABORT marker, as the partition leader does on WriteTxnMarkers.
// A marker from an older producer epoch is ErrInvalidProducerEpoch, from
// an older coordinator epoch ErrCoordinatorFenced. An abort is added to
// the .txnindex (synced) before AppendMarker returns.
func (l *Log) AppendMarker(m Marker, leaderEpoch int32) (AppendResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return AppendResult{}, l.errorf("append marker", -1, -1, ErrClosed)
	}
	if err := l.ensureLoaded(); err != nil {
		return AppendResult{}, err
	}
	if err := l.producers.checkMarker(m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch); err != nil {
		return AppendResult{}, l.errorf("append marker", -1, l.LogEndOffset(), err)
	}
	cfg := l.Config()
	b := record.Batch(BuildMarkerBatch(m, l.clk.Now().UnixMilli()))
	base := l.LogEndOffset()
	b.SetBaseOffset(int64(base))
	b.SetPartitionLeaderEpoch(leaderEpoch)
	b.UpdateCRC()
	if err := l.appendBatches(b, cfg, base, base, b.MaxTimestamp(), 1); err != nil {
		return AppendResult{}, err
	}
	if leaderEpoch >= 0 && l.epochs != nil {
		if latest, ok := l.epochs.LatestEpoch(); !ok || leaderEpoch > latest {
			_ = l.epochs.AssignDeferred(leaderEpoch, int64(base))
		}
	}
	err := l.applyMarker(b, !m.Commit, true, l.clk.Now().UnixMilli())
	return AppendResult{BaseOffset: base, LastOffset: base, LogAppendTime: -1, LogStartOffset: l.LogStartOffset()}, err
}

// applyMarker ends the transaction of marker batch b (already in the
// log) in the producer state and the transaction state; an abort is
// added to the aborted list and, when write, to its segment's .txnindex.
// Caller holds l.mu, producers loaded.
func (l *Log) applyMarker(b record.Batch, abort, write bool, now int64) error {
	c := l.producers.endTxn(b.ProducerID(), b.ProducerEpoch(), markerCoordEpoch(b), Offset(b.BaseOffset()), abort, now)
	l.snapAt = -1
	first := l.producers.firstOngoing()
	l.txnMu.Lock()
	l.firstOngoing = first
	if c.marker >= l.HighWatermark() {
		l.unreplicated = append(l.unreplicated, c)
	}
	var a AbortedTxn
	if abort {
		lso := c.marker + 1
		if first >= 0 {
			lso = first
		}
		a = AbortedTxn{ProducerID: c.pid, FirstOffset: c.first, LastOffset: c.marker, LastStableOffset: lso}
		l.aborted = append(l.aborted, a)
	}
	l.txnMu.Unlock()
	if !abort || !write {
		return nil
	}
	return l.writeTxnIndexEntry(a)
}

// publishOngoing publishes the producer state's earliest ongoing
// transaction to readers. Caller holds l.mu.
func (l *Log) publishOngoing() {
	first := l.producers.firstOngoing()
	l.txnMu.Lock()
	l.firstOngoing = first
	l.txnMu.Unlock()
}

// resetTxnState forgets the producer and transaction state (a truncation):
// the next use reloads both from the snapshots, indexes and log. Caller
// holds l.mu.
func (l *Log) resetTxnState() {
	l.producers = nil
	l.snapshots = nil
	l.txnReady.Store(false)
	l.txnMu.Lock()
	l.firstOngoing, l.unreplicated, l.aborted = -1, nil, nil
	l.txnMu.Unlock()
}

// forgetAborted drops the aborted transactions whose marker lies in the
// deleted segment [base, next). Caller holds l.mu.
func (l *Log) forgetAborted(base, next Offset) {
	l.txnMu.Lock()
	defer l.txnMu.Unlock()
	kept := l.aborted[:0]
	for _, a := range l.aborted {
		if a.LastOffset < base || a.LastOffset >= next {
			kept = append(kept, a)
		}
	}
	clear(l.aborted[len(kept):])
	l.aborted = kept
}

// markerCoordEpoch reads the coordinator epoch from a marker's value
// (version int16, coordinator epoch int32); -1 when unreadable.
func markerCoordEpoch(b record.Batch) int32 {
	epoch := int32(-1)
	var dec record.Decoder
	_ = dec.Records(b, func(r *record.Record) error {
		if len(r.Value) >= 6 {
			epoch = int32(binary.BigEndian.Uint32(r.Value[2:]))
		}
		return nil
	})
	return epoch
}

// writeTxnIndexEntry appends a to the .txnindex of the segment holding
// its marker and syncs it. Caller holds l.mu.
func (l *Log) writeTxnIndexEntry(a AbortedTxn) error {
	segs := l.segments()
	i, ok := floorSegment(segs, a.LastOffset)
	if !ok {
		return nil
	}
	s := segs[i]
	path := TxnIndexFileName(l.dir, s.base)
	f, err := l.fs.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return l.errorf("write txnindex", s.base, a.LastOffset, storageErr(err))
	}
	st, err := f.Stat()
	if err == nil {
		n := st.Size() - st.Size()%TxnIndexEntrySize // a torn entry is overwritten
		_, err = f.WriteAt(EncodeTxnIndexEntry(nil, a), n)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return l.errorf("write txnindex", s.base, a.LastOffset, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	l.dirDirty.Store(true)
	return nil
}

// LastStableOffset is the last stable offset: the first offset of the
// earliest transaction not yet decided and replicated, else the high
// watermark. Every record below it is committed and decided (the cleaner
// cleans only below it). When the producer state cannot be loaded it is
// the log start offset (nothing is stable), and the failure is logged.
func (l *Log) LastStableOffset() Offset {
	if err := l.ensureTxnLoaded(); err != nil {
		l.logger.Error("producer state unavailable", "partition", l.tp.String(), "err", err)
		return l.LogStartOffset()
	}
	hw := l.HighWatermark()
	l.txnMu.Lock()
	defer l.txnMu.Unlock()
	lso := hw
	if l.firstOngoing >= 0 && l.firstOngoing < lso {
		lso = l.firstOngoing
	}
	kept := l.unreplicated[:0]
	for _, c := range l.unreplicated {
		if c.marker >= hw {
			kept = append(kept, c)
			if c.first < lso {
				lso = c.first
			}
		}
	}
	clear(l.unreplicated[len(kept):])
	l.unreplicated = kept
	return lso
}

// LoadedLastStableOffset is LastStableOffset when the log's producer
// state is loaded, else the high watermark, never loading it: what a
// read_uncommitted fetch reports, for which the field is informational,
// without loading a lazily opened log.
func (l *Log) LoadedLastStableOffset() Offset {
	if !l.txnReady.Load() {
		return l.HighWatermark()
	}
	return l.LastStableOffset()
}

// AbortedTxns returns the aborted transactions overlapping [from, to):
// those whose marker is at or above from and whose first offset is below
// to, in marker order.
func (l *Log) AbortedTxns(from, to Offset) ([]AbortedTxn, error) {
	if err := l.ensureTxnLoaded(); err != nil {
		return nil, err
	}
	l.txnMu.Lock()
	defer l.txnMu.Unlock()
	i := sort.Search(len(l.aborted), func(i int) bool { return l.aborted[i].LastOffset >= from })
	var out []AbortedTxn
	for _, a := range l.aborted[i:] {
		if a.FirstOffset < to {
			out = append(out, a)
		}
	}
	return out, nil
}

// ensureTxnLoaded loads the producer and transaction state of a log opened
// lazily (readers asking for the LSO or aborted transactions).
func (l *Log) ensureTxnLoaded() error {
	if l.txnReady.Load() {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return l.errorf("read", -1, -1, ErrClosed)
	}
	return l.ensureLoaded()
}

// loadTxnIndexes reads the .txnindex of every segment. Entries at or
// above end (records recovery cut off) are dropped and their files cut.
// ok is false when a file is corrupt: the caller then rebuilds all of
// them.
func (l *Log) loadTxnIndexes(end Offset) (out []AbortedTxn, ok bool) {
	if segs := l.segments(); l.fresh && len(segs) == 1 && segs[0].isUnborn() {
		// A new partition's first load of its producer state (its first
		// append): nothing was ever written in its directory that a
		// transaction index comes from.
		return nil, true
	}
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, false
	}
	segs := l.segments()
	for _, e := range ents {
		o, suffix, isOff := parseOffsetFileName(e.Name())
		if !isOff || suffix != TxnIndexSuffix {
			continue
		}
		i, found := floorSegment(segs, o)
		if !found {
			_ = l.fs.Remove(TxnIndexFileName(l.dir, o)) // its segment is gone
			continue
		}
		// After a cleaner pass merged segments, a .txnindex may be named
		// after a base that is now inside a segment: it belongs to that one.
		next := Offset(-1)
		if i+1 < len(segs) {
			next = segs[i+1].base
		}
		path := TxnIndexFileName(l.dir, o)
		data, err := readWholeFile(l.fs, path)
		if err != nil {
			return nil, false
		}
		// Entries past the log end (recovery cut their markers off) are
		// dropped first, then the rest must be valid.
		keep := len(data) - len(data)%TxnIndexEntrySize
		for keep >= TxnIndexEntrySize && Offset(binary.BigEndian.Uint64(data[keep-TxnIndexEntrySize+18:])) >= end {
			keep -= TxnIndexEntrySize
		}
		if keep < len(data) && len(data)%TxnIndexEntrySize == 0 {
			if err := truncateFileAt(l, path, int64(keep)); err != nil {
				return nil, false
			}
			data = data[:keep]
		}
		as, err := ParseTxnIndex(data, segs[i].base, next)
		if err != nil {
			l.logger.Warn("transaction index corrupt, rebuilding", "partition", l.tp.String(), "file", path, "err", err)
			return nil, false
		}
		out = append(out, as...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastOffset < out[j].LastOffset })
	for k := 1; k < len(out); k++ {
		if out[k].LastOffset == out[k-1].LastOffset {
			l.logger.Warn("transaction indexes overlap, rebuilding", "partition", l.tp.String(), "offset", int64(out[k].LastOffset))
			return nil, false
		}
	}
	return out, true
}

func truncateFileAt(l *Log, path string, n int64) error {
	f, err := l.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(n)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeTxnIndexes deletes every .txnindex of the log (before a rebuild).
func (l *Log) removeTxnIndexes() {
	ents, _ := l.fs.ReadDir(l.dir)
	for _, e := range ents {
		if o, suffix, ok := parseOffsetFileName(e.Name()); ok && suffix == TxnIndexSuffix {
			_ = l.fs.Remove(TxnIndexFileName(l.dir, o))
		}
	}
}

// readBatchAt reads the whole batch whose header is at pos of s.
func readBatchAt(r io.ReaderAt, pos int64, hdr []byte) (record.Batch, error) {
	n := record.Batch(hdr).Size()
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, pos); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return record.Batch(buf), nil
}
