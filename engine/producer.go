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
}

const producerBatchesKept = 5

// producerState tracks idempotent producers for one log (caller holds Log.mu).
type producerState struct {
	m map[int64]*producerEntry
}

func newProducerState() *producerState { return &producerState{m: map[int64]*producerEntry{}} }

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

// update records an appended batch.
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

// truncate forgets batches at or above end (log truncation); producers left
// with no batch are dropped.
func (p *producerState) truncate(end Offset) {
	for pid, e := range p.m {
		kept := e.batches[:0]
		for _, b := range e.batches {
			if b.lastOffset < end {
				kept = append(kept, b)
			}
		}
		e.batches = kept
		if len(kept) == 0 {
			delete(p.m, pid)
		}
	}
}

// Producer snapshot: Kafka's layout (version 1): Version int16, CRC32C uint32
// over everything after it, then an int32 count of 46-byte entries:
// ProducerId int64, ProducerEpoch int16, LastSequence int32, LastOffset int64,
// OffsetDelta int32, Timestamp int64, CoordinatorEpoch int32,
// CurrentTxnFirstOffset int64. Only each producer's last batch is kept.
const (
	snapshotVersion   = 1
	snapshotEntrySize = 46
	snapshotHeader    = 2 + 4 + 4
)

var errBadSnapshot = errors.New("engine: corrupt producer snapshot")

func (p *producerState) encodeSnapshot() []byte {
	pids := make([]int64, 0, len(p.m))
	for pid, e := range p.m {
		if len(e.batches) > 0 {
			pids = append(pids, pid)
		}
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	buf := make([]byte, snapshotHeader, snapshotHeader+len(pids)*snapshotEntrySize)
	binary.BigEndian.PutUint16(buf[0:], snapshotVersion)
	binary.BigEndian.PutUint32(buf[6:], uint32(len(pids)))
	for _, pid := range pids {
		e := p.m[pid]
		b := e.batches[len(e.batches)-1]
		buf = binary.BigEndian.AppendUint64(buf, uint64(pid))
		buf = binary.BigEndian.AppendUint16(buf, uint16(e.epoch))
		buf = binary.BigEndian.AppendUint32(buf, uint32(b.lastSeq))
		buf = binary.BigEndian.AppendUint64(buf, uint64(b.lastOffset))
		buf = binary.BigEndian.AppendUint32(buf, uint32(b.lastOffset-b.firstOffset))
		buf = binary.BigEndian.AppendUint64(buf, uint64(e.timestamp))
		buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // coordinator epoch -1
		buf = binary.BigEndian.AppendUint64(buf, math.MaxUint64) // no open transaction (-1)
	}
	binary.BigEndian.PutUint32(buf[2:], crc32.Checksum(buf[6:], crcTable))
	return buf
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func decodeSnapshot(buf []byte) (*producerState, error) {
	if len(buf) < snapshotHeader {
		return nil, fmt.Errorf("%w: %d bytes", errBadSnapshot, len(buf))
	}
	if v := binary.BigEndian.Uint16(buf); v != snapshotVersion {
		return nil, fmt.Errorf("%w: version %d", errBadSnapshot, v)
	}
	if crc := binary.BigEndian.Uint32(buf[2:]); crc != crc32.Checksum(buf[6:], crcTable) {
		return nil, fmt.Errorf("%w: crc mismatch", errBadSnapshot)
	}
	n := int64(int32(binary.BigEndian.Uint32(buf[6:])))
	if n < 0 || int64(len(buf)-snapshotHeader) != n*snapshotEntrySize {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errBadSnapshot, n, len(buf))
	}
	p := newProducerState()
	for e := buf[snapshotHeader:]; len(e) > 0; e = e[snapshotEntrySize:] {
		pid := int64(binary.BigEndian.Uint64(e))
		lastSeq := int32(binary.BigEndian.Uint32(e[10:]))
		lastOff := Offset(binary.BigEndian.Uint64(e[14:]))
		delta := int32(binary.BigEndian.Uint32(e[22:]))
		if delta < 0 {
			return nil, fmt.Errorf("%w: negative offset delta", errBadSnapshot)
		}
		p.m[pid] = &producerEntry{
			epoch:     int16(binary.BigEndian.Uint16(e[8:])),
			timestamp: int64(binary.BigEndian.Uint64(e[26:])),
			batches: []producerBatch{{
				firstSeq: seqAdd(lastSeq, -delta), lastSeq: lastSeq,
				firstOffset: lastOff - Offset(delta), lastOffset: lastOff,
			}},
		}
	}
	return p, nil
}

// snapshot writes <offset>.snapshot atomically.
func (p *producerState) snapshot(fs vfs.FS, dir string, at Offset) error {
	return checkpoint.WriteFileAtomic(fs, SnapshotFileName(dir, at), p.encodeSnapshot())
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
