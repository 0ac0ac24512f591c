package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/kvlog/kvlog/engine/record"
)

// The key index (docs in FORMAT.md §8): for a log with Config.Compact and
// Config.KeyIndex, a digest → offset table giving the newest record of
// every key digest, so that Lookup answers a key's latest value without
// replaying the log.
//
// Appends do nothing for the index: produce throughput is untouched. The
// table reflects every record below `applied`; a lookup first catches it
// up, reading the records from `applied` to the last stable offset (LSO,
// the high watermark when there is no ongoing transaction) from the log,
// in offset order, skipping those of aborted transactions. So the table is
// exactly the read_committed state as of `applied`; a truncation above it
// (a follower's uncommitted tail) changes nothing, one below drops the
// table, which is reloaded from its checkpoint or rebuilt from the log.
//
// Invariant: for every key K whose newest record below `applied` is a
// value (not a tombstone), the entry of digest(K) is at or above that
// record's offset, and the record an entry points at is the newest of its
// own key. A lookup reads the record the entry points at and compares the
// key: equal keys answer directly; a different key (a digest collision), a
// missing record (the cleaner removed an expired tombstone) or an entry at
// or above the LSO (a new leader whose high watermark is below what this
// replica applied) make the lookup scan the log for the digest, exactly,
// and repair the entry.

// keyDigest is the index's key digest: XXH64 with seed 0. Tests replace it
// (with keyDigestID) to force collisions.
var (
	keyDigest   = xxhash.Sum64
	keyDigestID = int16(1)
)

// ErrKeyIndexDisabled: the log has no key index (not compacted, or
// kvlog.key.index.enable=false).
var ErrKeyIndexDisabled = errors.New("engine: no key index on this log (cleanup.policy without compact, or kvlog.key.index.enable=false)")

type keyIndex struct {
	mu       sync.Mutex
	tab      digestTable
	applied  Offset // every record below is in tab (or skipped: aborted)
	digest   func([]byte) uint64
	digestID int16
	ckptAt   Offset // what the checkpoint on disk covers (-1: none)
	changed  int64  // entries purged since the checkpoint (keyindex_purge.go)

	replayed  int64 // records read from the log (load and catch-ups)
	slowScans atomic.Int64

	// purgeDone is closed when the purge goroutine last started for this
	// index (keyindex_purge.go) ends; nil when none started. Guarded by
	// purgeMu.
	purgeMu   sync.Mutex
	purgeDone chan struct{}
}

func newKeyIndex() *keyIndex {
	return &keyIndex{digest: keyDigest, digestID: keyDigestID, ckptAt: -1}
}

// KeyIndexStats describes a log's key index.
type KeyIndexStats struct {
	Loaded    bool
	Entries   int
	Bytes     int64  // RAM of the table
	Applied   Offset // records below are in the table
	SlowScans int64  // lookups that scanned the log (collisions, repairs)
	Replayed  int64  // records this index read from the log (after its checkpoint)
	Loads     int64  // times the log loaded an index (a truncation below it reloads)
}

// KeyIndexStats reports the key index's size; Loaded is false when it was
// not loaded yet (it loads on first Lookup or LoadKeyIndex).
func (l *Log) KeyIndexStats() KeyIndexStats {
	ki := l.kidx.Load()
	if ki == nil {
		return KeyIndexStats{}
	}
	ki.mu.Lock()
	defer ki.mu.Unlock()
	return KeyIndexStats{Loaded: true, Entries: ki.tab.len(), Bytes: ki.tab.bytes(), Applied: ki.applied, SlowScans: ki.slowScans.Load(), Replayed: ki.replayed, Loads: l.kidxLoads.Load()}
}

func (c Config) keyIndexed() bool { return c.Compact && c.KeyIndex }

// errCatchUpStop stops a catch-up early (transaction state reloading).
var errCatchUpStop = errors.New("catch-up stopped")

// catchUp reads the records from applied to limit from the log into the
// table, skipping those of aborted transactions, and advances applied.
// Caller holds ki.mu (never l.mu nor txnMu: it reads the aborted list
// without loading it, and stops before a transactional record when that
// list is being reloaded).
func (l *Log) catchUp(ki *keyIndex, limit Offset) error {
	from := max(ki.applied, l.LogStartOffset())
	if from >= limit {
		ki.applied = max(ki.applied, min(limit, from))
		return nil
	}
	stop := limit
	var aborted []AbortedTxn
	abortedRead := false
	dec := decoders.Get().(*record.Decoder)
	defer decoders.Put(dec)
	var puts putBatch
	defer puts.flush(&ki.tab)
	err := l.scanHeaders(from, limit, func(h record.Batch, body func() (record.Batch, error)) error {
		if h.IsControl() {
			return nil
		}
		pid := int64(-1)
		if h.IsTransactional() {
			if !abortedRead {
				var ok bool
				if aborted, ok = l.abortedIfLoaded(from, limit); !ok {
					stop = max(from, Offset(h.BaseOffset()))
					return errCatchUpStop
				}
				abortedRead = true
			}
			pid = h.ProducerID()
		}
		b, err := body()
		if err != nil {
			return err
		}
		base := Offset(b.BaseOffset())
		return dec.Keys(b, func(delta int32, key []byte, tomb bool) {
			o := base + Offset(delta)
			if o < from || o >= limit || (pid >= 0 && isAborted(aborted, pid, o)) {
				return
			}
			puts.add(&ki.tab, ki.digest(key), encodeEntry(o, tomb))
			ki.replayed++
		})
	})
	if err != nil && !errors.Is(err, errCatchUpStop) {
		return l.errorf("key index catch-up", -1, from, err)
	}
	ki.applied = stop
	return nil
}

// abortedIfLoaded is AbortedTxns without loading the transaction state
// (its caller may hold locks a load takes): ok is false when it is not
// loaded.
func (l *Log) abortedIfLoaded(from, to Offset) ([]AbortedTxn, bool) {
	if !l.txnReady.Load() {
		return nil, false
	}
	l.txnMu.Lock()
	defer l.txnMu.Unlock()
	i := sort.Search(len(l.aborted), func(i int) bool { return l.aborted[i].LastOffset >= from })
	out := []AbortedTxn{}
	for _, a := range l.aborted[i:] {
		if a.FirstOffset < to {
			out = append(out, a)
		}
	}
	return out, true
}

// isAborted reports whether the record at off of producer pid belongs to
// one of aborted (sorted by marker offset).
func isAborted(aborted []AbortedTxn, pid int64, off Offset) bool {
	i := sort.Search(len(aborted), func(i int) bool { return aborted[i].LastOffset >= off })
	for _, a := range aborted[i:] {
		if a.ProducerID == pid {
			return a.FirstOffset <= off
		}
	}
	return false
}

// LoadKeyIndex loads the key index now (from its checkpoint and the log
// after it, or by scanning the log) instead of on the first Lookup.
func (l *Log) LoadKeyIndex() error {
	_, err := l.keyIndexLoaded()
	return err
}

func (l *Log) keyIndexLoaded() (*keyIndex, error) {
	if !l.Config().keyIndexed() {
		return nil, l.errorf("lookup", -1, -1, ErrKeyIndexDisabled)
	}
	if ki := l.kidx.Load(); ki != nil {
		return ki, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, l.errorf("lookup", -1, -1, ErrClosed)
	}
	if err := l.ensureLoaded(); err != nil {
		return nil, err
	}
	return l.loadKeyIndexLocked()
}

// loadKeyIndexLocked builds the key index: the checkpoint when it is valid
// and covers no more than the log, then the records after it up to the
// last stable offset. Caller holds l.mu, log loaded.
func (l *Log) loadKeyIndexLocked() (*keyIndex, error) {
	if ki := l.kidx.Load(); ki != nil {
		return ki, nil
	}
	ki := newKeyIndex()
	leo, start := l.LogEndOffset(), l.LogStartOffset()
	from := start
	path := KeyIndexFileName(l.dir)
	minOff := Offset(math.MaxInt64)
	covers, err := readKeyIndexCheckpoint(l.fs, path, ki.digestID, leo, &ki.tab, &minOff)
	switch {
	case err == nil:
		ki.ckptAt = covers
		if covers > from {
			from = covers
		}
		if minOff < start {
			ki.tab.deleteIf(func(_, v uint64) bool { o, _ := decodeEntry(v); return o < start })
		}
	case errors.Is(err, errNoKeyIndexCheckpoint):
		ki.tab = digestTable{}
	default:
		l.logger.Warn("key index checkpoint not used; rebuilding the index from the log", "partition", l.tp.String(), "file", path, "err", err)
		ki.tab = digestTable{}
		_ = l.fs.Remove(path)
	}
	ki.applied = from
	// The records after the checkpoint are read now, while appends wait
	// (l.mu): the first lookup finds the index current.
	lso := l.LastStableOffset()
	ki.mu.Lock()
	err = l.catchUp(ki, lso)
	ki.mu.Unlock()
	if err != nil {
		return nil, err
	}
	l.kidxLoads.Add(1)
	l.kidx.Store(ki)
	if !l.Config().keyIndexed() {
		// Disabled meanwhile (SetConfig stores the config, then drops the
		// index; this stores the index, then reads the config).
		l.kidx.Store(nil)
		return nil, l.errorf("lookup", -1, -1, ErrKeyIndexDisabled)
	}
	return ki, nil
}

// keyIndexTruncated adjusts the index to a log cut at leo (truncation).
// Caller holds l.mu.
func (l *Log) keyIndexTruncated(leo Offset, full bool) {
	l.kcache.clear()
	if ki := l.kidx.Load(); ki != nil {
		ki.mu.Lock()
		if full || leo < ki.applied {
			l.kidx.Store(nil)
		}
		ki.mu.Unlock()
	}
	l.kidxFileMu.Lock()
	defer l.kidxFileMu.Unlock()
	path := KeyIndexFileName(l.dir)
	if c, err := readKeyIndexCovers(l.fs, path); err == nil && (full || c > leo) {
		if err := l.fs.Remove(path); err == nil {
			l.dirDirty.Store(true)
			_ = l.fs.SyncDir(l.dir)
		}
	}
}

// keyIndexStartMoved drops the entries below the new log start (retention,
// DeleteRecords): every key whose newest record is below it is gone.
// Caller holds l.mu.
func (l *Log) keyIndexStartMoved(start Offset) {
	ki := l.kidx.Load()
	if ki == nil {
		return
	}
	ki.mu.Lock()
	defer ki.mu.Unlock()
	ki.tab.deleteIf(func(_, v uint64) bool { o, _ := decodeEntry(v); return o < start })
	if ki.applied < start {
		ki.applied = start
	}
}

// keyIndexOff drops the in-memory index (config change or close).
func (l *Log) keyIndexOff() {
	l.kidx.Store(nil)
	l.kcache.clear()
}

// KeyLookup is a key's latest record as Lookup found it.
type KeyLookup struct {
	// Found is false for a key never written, deleted (its latest record
	// is a tombstone) or whose records are all gone.
	Found       bool
	Offset      Offset
	Timestamp   int64
	LeaderEpoch int32
	Key         []byte
	Value       []byte
	Headers     []record.Header
	// Limit is the offset the answer is taken at: the last stable offset
	// (the high watermark without transactions). Records at or above it
	// were not considered.
	Limit Offset
}

// Lookup returns the latest committed record of key: the newest record
// with that key below the last stable offset, not in an aborted
// transaction. The log must be compacted with its key index enabled
// (ErrKeyIndexDisabled). Values are copies.
func (l *Log) Lookup(key []byte) (KeyLookup, error) {
	if key == nil {
		return KeyLookup{}, l.errorf("lookup", -1, -1, fmt.Errorf("%w: null key", ErrInvalidRecord))
	}
	if l.closed.Load() {
		return KeyLookup{}, l.errorf("lookup", -1, -1, ErrClosed)
	}
	ki, err := l.keyIndexLoaded()
	if err != nil {
		return KeyLookup{}, err
	}
	lso := l.LastStableOffset()
	d := ki.digest(key)
	ki.mu.Lock()
	if lso > ki.applied {
		if err := l.catchUp(ki, lso); err != nil {
			ki.mu.Unlock()
			return KeyLookup{}, err
		}
	}
	v, ok := ki.tab.get(d)
	ki.mu.Unlock()
	res := KeyLookup{Limit: lso}
	if !ok {
		return res, nil
	}
	off, tomb := decodeEntry(v)
	if off < l.LogStartOffset() && off < lso {
		return res, nil
	}
	if off < lso {
		rec, found, err := l.readRecord(off, lso)
		if err != nil {
			return res, err
		}
		if found && bytes.Equal(rec.Key, key) {
			if tomb || rec.Value == nil {
				return res, nil
			}
			rec.Limit = lso
			return rec, nil
		}
	}
	return l.lookupByScan(ki, key, d, v, lso)
}

type scanned struct {
	off  Offset
	tomb bool
}

// lookupByScan answers key by reading every record of the log below lso
// whose key has digest d, and repairs d's entry when the table has not
// moved since: the newest offset among the live keys with that digest, or
// no entry when there are none.
func (l *Log) lookupByScan(ki *keyIndex, key []byte, d, v uint64, lso Offset) (KeyLookup, error) {
	ki.slowScans.Add(1)
	latest, err := l.scanDigest(ki, d, lso)
	if err != nil {
		return KeyLookup{Limit: lso}, err
	}
	ki.mu.Lock()
	if cur, ok := ki.tab.get(d); ok && cur == v && l.kidx.Load() == ki && ki.applied == lso {
		best := Offset(-1)
		for _, s := range latest {
			if !s.tomb && s.off > best {
				best = s.off
			}
		}
		if best < 0 {
			ki.tab.del(d)
		} else {
			ki.tab.put(d, encodeEntry(best, false))
		}
	}
	ki.mu.Unlock()
	s, ok := latest[string(key)]
	if !ok || s.tomb {
		return KeyLookup{Limit: lso}, nil
	}
	rec, found, err := l.readRecord(s.off, lso)
	if err != nil || !found || !bytes.Equal(rec.Key, key) || rec.Value == nil {
		if err == nil {
			err = l.errorf("lookup", -1, s.off, fmt.Errorf("%w: record vanished during the lookup", ErrOffsetOutOfRange))
		}
		return KeyLookup{Limit: lso}, err
	}
	rec.Limit = lso
	return rec, nil
}

// scanDigest returns the newest record below limit of each key with
// digest d (aborted transactions skipped).
func (l *Log) scanDigest(ki *keyIndex, d uint64, limit Offset) (map[string]scanned, error) {
	out, err := l.scanDigests(ki, func(x uint64) bool { return x == d }, limit)
	if err != nil || out[d] == nil {
		return map[string]scanned{}, err
	}
	return out[d], nil
}

// scanDigests reads the whole log below limit and returns, for each digest
// that want accepts, the newest record of each key with that digest
// (aborted transactions skipped).
func (l *Log) scanDigests(ki *keyIndex, want func(uint64) bool, limit Offset) (map[uint64]map[string]scanned, error) {
	start := l.LogStartOffset()
	out := map[uint64]map[string]scanned{}
	if start >= limit {
		return out, nil
	}
	aborted, err := l.AbortedTxns(start, limit)
	if err != nil {
		return nil, err
	}
	dec := decoders.Get().(*record.Decoder)
	defer decoders.Put(dec)
	err = l.scanHeaders(start, limit, func(h record.Batch, body func() (record.Batch, error)) error {
		if h.IsControl() {
			return nil
		}
		b, err := body()
		if err != nil {
			return err
		}
		base := Offset(b.BaseOffset())
		return dec.Keys(b, func(delta int32, key []byte, tomb bool) {
			o := base + Offset(delta)
			if o < start || o >= limit {
				return
			}
			d := ki.digest(key)
			if !want(d) || (b.IsTransactional() && isAborted(aborted, b.ProducerID(), o)) {
				return
			}
			m := out[d]
			if m == nil {
				m = map[string]scanned{}
				out[d] = m
			}
			m[string(key)] = scanned{off: o, tomb: tomb}
		})
	})
	if err != nil {
		return nil, l.errorf("lookup scan", -1, start, err)
	}
	return out, nil
}

// readRecord reads the record at offset off (below limit; its batch may
// hold records above: only off's record is used). found is false when no
// record has that offset any more. A compressed batch read (decompressed)
// is kept in the log's lookup cache for the next lookups of its records.
func (l *Log) readRecord(off, limit Offset) (KeyLookup, bool, error) {
	if off >= limit {
		return KeyLookup{}, false, nil
	}
	dec := decoders.Get().(*record.Decoder)
	defer decoders.Put(dec)
	hdr, section, gen, ok := l.kcache.get(off)
	var at skipKey // the uncompressed batch's place in a segment file, for its skips
	if !ok {
		b, h, pos, rel, found := l.readBatchFast(off)
		defer rel.release() // b may alias a mapping or a pooled buffer until then
		if found {
			at = skipKey{h: h, pos: pos}
		} else {
			var err error
			if b, err = l.readBatchSlow(off); err != nil || b == nil {
				return KeyLookup{}, false, err
			}
		}
		if b.IsControl() || Offset(b.BaseOffset()) > off || Offset(b.LastOffset()) < off {
			return KeyLookup{}, false, nil
		}
		var err error
		if section, err = dec.Section(b); err != nil {
			return KeyLookup{}, false, l.errorf("lookup", -1, off, fmt.Errorf("%w: %w", ErrCorruptRecord, err))
		}
		hdr = b[:record.HeaderSize:record.HeaderSize]
		if b.Codec() != record.CodecNone {
			// Compressed batches only: reading an uncompressed one again
			// costs less than keeping it. A copy: the decoder's buffer
			// is reused.
			section = bytes.Clone(section)
			l.kcache.put(gen, hdr, section)
			at = skipKey{}
		}
	}
	var r record.Record
	n, delta := hdr.NumRecords(), int32(off-Offset(hdr.BaseOffset()))
	p := section
	if at.h != nil && lookupSkips {
		from, skipped := l.skipFrom(at, Offset(hdr.BaseOffset()), section, n, delta)
		p, n = section[from:], n-skipped
	}
	found, err := dec.RecordAt(p, n, delta, &r)
	if err != nil {
		return KeyLookup{}, false, l.errorf("lookup", -1, off, fmt.Errorf("%w: %w", ErrCorruptRecord, err))
	}
	if !found {
		return KeyLookup{}, false, nil
	}
	// One allocation for the key, the value and the headers' bytes.
	size := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		size += len(h.Key) + len(h.Value)
	}
	buf := make([]byte, 0, size)
	take := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	out := KeyLookup{
		Found:       r.Value != nil,
		Offset:      off,
		Timestamp:   hdr.RecordTimestamp(&r),
		LeaderEpoch: hdr.PartitionLeaderEpoch(),
		Key:         take(r.Key),
		Value:       take(r.Value),
	}
	if len(r.Headers) > 0 {
		out.Headers = make([]record.Header, len(r.Headers))
		for i, h := range r.Headers {
			out.Headers[i] = record.Header{Key: take(h.Key), Value: take(h.Value)}
		}
	}
	return out, true, nil
}

// readBatchSlow reads the batch holding off through Read (every header
// passed is checked); nil when none holds it.
func (l *Log) readBatchSlow(off Offset) (record.Batch, error) {
	r, err := l.Read(off, 1, l.LogEndOffset())
	if err != nil {
		if errors.Is(err, ErrOffsetOutOfRange) {
			return nil, nil
		}
		return nil, err
	}
	buf, err := r.Bytes()
	r.Release()
	if err != nil {
		return nil, l.errorf("lookup", -1, off, fmt.Errorf("%w: %w", ErrStorage, err))
	}
	for len(buf) > 0 {
		var b record.Batch
		if b, buf, err = record.ReadBatch(buf); err != nil {
			return nil, l.errorf("lookup", -1, off, fmt.Errorf("%w: %w", ErrCorruptRecord, err))
		}
		if Offset(b.LastOffset()) >= off {
			return b, nil
		}
	}
	return nil, nil
}

// lookupHeadRead is how much readBatchFast's pread path reads at a batch
// position first: the header and, for small batches, the whole batch.
const lookupHeadRead = 4 << 10

var lookupBufs = sync.Pool{New: func() any { b := make([]byte, lookupHeadRead); return &b }}

// lookupMmap: lookups read through the segments' mappings (tests turn
// it off to exercise the pread path).
var lookupMmap = true

// batchRelease gives back what readBatchFast's batch aliases: a pooled
// buffer, the segment's handle (a value: no allocation per lookup).
type batchRelease struct {
	h  *handle
	bp *[]byte
}

func (r batchRelease) release() {
	if r.bp != nil {
		lookupBufs.Put(r.bp)
	}
	if r.h != nil {
		r.h.release()
	}
}

// readBatchFast finds the batch holding off from the offset index's
// position for off, walking the batch headers. The segment's lookup
// mapping (lookupMapped) serves it without a syscall or a copy; without
// one, positioned reads of lookupHeadRead bytes walk the headers and the
// batch found is read whole, exactly its length, into a pooled buffer.
// The batch may alias the mapping or the buffer until rel.release is
// called (always, found or not). found is false whenever it cannot be sure (a
// framing it does not like, a segment gone, a read error): the caller
// then uses readBatchSlow.
func (l *Log) readBatchFast(off Offset) (b record.Batch, h *handle, batchPos int64, rel batchRelease, found bool) {
	segs := l.segments()
	i, ok := floorSegment(segs, off)
	if !ok {
		return nil, nil, 0, rel, false
	}
	s := segs[i]
	h, err := s.acquire()
	if err != nil {
		return nil, nil, 0, rel, false
	}
	_, p := h.oidx.Lookup(int64(off))
	pos, end := int64(p), s.size.Load()
	if data := h.lookupMapped(end, max(end, l.cfg.Load().SegmentBytes)); data != nil && lookupMmap {
		b, at, ok := walkToBatch(data[:end], pos, off, s.base)
		if !ok {
			h.release()
			return nil, nil, 0, rel, false
		}
		return b, h, at, batchRelease{h: h}, true
	}
	bp := lookupBufs.Get().(*[]byte)
	rel = batchRelease{h: h, bp: bp}
	buf := (*bp)[:0]
	at := pos // file position of buf[0]
	for pos < end {
		if pos+record.HeaderSize > at+int64(len(buf)) {
			n := min(int64(lookupHeadRead), end-pos)
			if n < record.HeaderSize {
				break
			}
			buf = (*bp)[:n]
			if _, err := h.file.ReadAt(buf, pos); err != nil {
				break
			}
			at = pos
		}
		hdr := record.Batch(buf[pos-at:])
		size := hdr.Size()
		if size < record.HeaderSize || pos+size > end || hdr.LastOffsetDelta() < 0 || Offset(hdr.BaseOffset()) < s.base {
			break
		}
		if Offset(hdr.LastOffset()) < off {
			pos += size
			continue
		}
		if Offset(hdr.BaseOffset()) > off {
			break // not there: let the checked read say why
		}
		if pos+size > at+int64(len(buf)) {
			// Read the batch whole: the part already read moves to the
			// front of a buffer of its size, the rest is read after it.
			have := at + int64(len(buf)) - pos
			if int64(cap(*bp)) < size {
				nb := make([]byte, size)
				copy(nb, buf[pos-at:])
				*bp = nb
			} else {
				copy((*bp)[:have], buf[pos-at:])
			}
			buf = (*bp)[:size]
			if _, err := h.file.ReadAt(buf[have:], pos+have); err != nil {
				break
			}
			at = pos
		}
		b := record.Batch(buf[pos-at : pos-at+size : pos-at+size])
		if _, rest, err := record.ReadBatch(b); err != nil || len(rest) != 0 {
			break
		}
		return b, h, pos, rel, true
	}
	rel.release()
	return nil, nil, 0, batchRelease{}, false
}

// walkToBatch finds the batch holding off in data (a segment's bytes, its
// first offset base) from position pos, walking the batch lengths.
func walkToBatch(data []byte, pos int64, off, base Offset) (record.Batch, int64, bool) {
	end := int64(len(data))
	for pos+record.HeaderSize <= end {
		hdr := record.Batch(data[pos:])
		size := hdr.Size()
		if size < record.HeaderSize || pos+size > end || hdr.LastOffsetDelta() < 0 || Offset(hdr.BaseOffset()) < base {
			return nil, 0, false
		}
		if Offset(hdr.LastOffset()) < off {
			pos += size
			continue
		}
		if Offset(hdr.BaseOffset()) > off {
			return nil, 0, false
		}
		b := record.Batch(data[pos : pos+size : pos+size])
		if _, rest, err := record.ReadBatch(b); err != nil || len(rest) != 0 {
			return nil, 0, false
		}
		return b, pos, true
	}
	return nil, 0, false
}

// Skips: a lookup finds its record in an uncompressed batch (a hundred
// records of a 16 KiB producer batch) by walking the records before it,
// one memory miss after another through the page cache. The first lookup
// in a batch notes where up to skipPoints of its records start, evenly
// spaced (their offset deltas and positions in the records section); the
// next ones start walking from the last noted record at or before
// theirs. The notes are keyed by the segment's handle and the batch's
// position in the file: a handle's bytes never change (a truncation
// retires the segment's handles before the file shrinks; a cleaner swap
// brings new segments), so a note is never stale. A log keeps them in a
// direct-mapped table (a note replaces the one in its slot) of about a
// slot per 8 KiB of log, at most skipSlots: one slot load and one note
// read per lookup; at most about 180 bytes per 16 KiB batch.
const (
	skipPoints   = 16
	skipMinGap   = 8 // records between two points at least
	skipSlots    = 1 << 16
	skipHashMult = 0x9E3779B97F4A7C15
)

// lookupSkips: lookups use the skips (a benchmark turns them off to
// compare).
var lookupSkips = true

type skipKey struct {
	h   *handle
	pos int64 // the batch's position in the segment file
}

type skipPoint struct {
	delta int32  // offset delta of the record
	pos   uint32 // its position in the records section
}

// skipNote is one batch's points: record k·gap is at pts[k].
type skipNote struct {
	key skipKey
	gap int32
	n   int32 // points
	pts [skipPoints]skipPoint
}

// recordSkips holds a log's notes.
type recordSkips struct {
	tab atomic.Pointer[skipTable]
}

// skipTable is a direct-mapped table of notes, sized for the log when
// made (skipTableFor); notes counts the notes stored in it.
type skipTable struct {
	slots []atomic.Pointer[skipNote]
	shift uint8
	notes atomic.Int64
}

// skipTableFor is the table size for a log of size bytes: about a slot
// per 8 KiB (two per 16 KiB producer batch), 256 to skipSlots.
func skipTableFor(size int64) int {
	n := 256
	for n < skipSlots && int64(n)*8<<10 < size {
		n *= 2
	}
	return n
}

func newSkipTable(n int) *skipTable {
	return &skipTable{slots: make([]atomic.Pointer[skipNote], n), shift: uint8(64 - bits.TrailingZeros(uint(n)))}
}

// skipFrom returns where in section (the records section of the n-record
// uncompressed batch at k, of base offset base) to start looking for the
// record of offset delta delta, and how many records that skips. Each
// time a table stored as many notes as it has slots, a larger one
// replaces it if the log grew (the notes start over).
func (l *Log) skipFrom(k skipKey, base Offset, section []byte, n, delta int32) (int, int32) {
	if n <= skipMinGap {
		return 0, 0
	}
	c := &l.kcache.skips
	t := c.tab.Load()
	if t == nil {
		c.tab.CompareAndSwap(nil, newSkipTable(skipTableFor(l.Size())))
		t = c.tab.Load()
	}
	slot := &t.slots[uint64(base)*skipHashMult>>t.shift]
	note := slot.Load()
	if note == nil || note.key != k {
		if note = noteSkips(section, n); note == nil {
			return 0, 0
		}
		note.key = k
		slot.Store(note)
		if t.notes.Add(1)%int64(len(t.slots)) == 0 {
			if want := skipTableFor(l.Size()); want > len(t.slots) {
				c.tab.CompareAndSwap(t, newSkipTable(want))
			}
		}
	}
	i := int32(0)
	for i+1 < note.n && note.pts[i+1].delta <= delta {
		i++
	}
	return int(note.pts[i].pos), i * note.gap
}

// noteSkips walks the records section p of n uncompressed records and
// returns the offset delta and position of records 0, gap, 2·gap, …; nil
// when a record does not parse or the deltas do not increase (RecordAt,
// walking from the start, then says what is wrong).
func noteSkips(p []byte, n int32) *skipNote {
	note := &skipNote{gap: max(skipMinGap, (n+skipPoints-1)/skipPoints)}
	i, last := 0, int64(-1)
	for k := int32(0); k < n; k++ {
		length, j := binary.Varint(p[i:])
		if j <= 0 || length <= 0 || length > int64(len(p)-i-j) || i > math.MaxUint32 {
			return nil
		}
		if k%note.gap == 0 {
			// attributes (1 byte), timestamp delta, offset delta
			body := p[i+j+1 : i+j+int(length)]
			_, a := binary.Varint(body)
			if a <= 0 {
				return nil
			}
			d, b := binary.Varint(body[a:])
			if b <= 0 || d <= last || d > math.MaxInt32 {
				return nil
			}
			last = d
			note.pts[note.n] = skipPoint{delta: int32(d), pos: uint32(i)}
			note.n++
		}
		i += j + int(length)
	}
	return note
}

// lookupCache keeps a log's most recently read compressed batches for
// lookups: the batch header and its records section, decompressed, so
// that lookups of records in one batch read and decompress it once. At most
// lookupCachePerLog batches and a quarter of lookupCacheBudget per log,
// lookupCacheBudget bytes over all logs. Batches never change once written, except by a truncation or a
// cleaner swap, which clear the cache (a generation guards against a
// reader inserting what it read before).
type lookupCache struct {
	skips recordSkips // of uncompressed batches

	mu      sync.Mutex
	gen     atomic.Uint64 // changed under mu
	count   atomic.Int32  // len(batches), changed under mu: get skips the lock when 0
	tick    uint64
	bytes   int64
	batches []cachedBatch
}

type cachedBatch struct {
	hdr        record.Batch
	section    []byte
	base, last Offset
	used       uint64
}

const (
	lookupCachePerLog = 64
	lookupCacheBudget = 64 << 20
)

var lookupCacheBytes atomic.Int64

func (c *lookupCache) get(off Offset) (record.Batch, []byte, uint64, bool) {
	if c.count.Load() == 0 {
		// Nothing cached (uncompressed data never is): no lock. The
		// generation is read before the caller reads the batch, as under
		// the lock.
		return nil, nil, c.gen.Load(), false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.batches {
		b := &c.batches[i]
		if b.base <= off && off <= b.last {
			c.tick++
			b.used = c.tick
			return b.hdr, b.section, c.gen.Load(), true
		}
	}
	return nil, nil, c.gen.Load(), false
}

func (c *lookupCache) put(gen uint64, hdr record.Batch, section []byte) {
	size := int64(len(section) + len(hdr))
	if size > lookupCacheBudget/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen.Load() {
		return
	}
	for len(c.batches) > 0 && (len(c.batches) >= lookupCachePerLog || c.bytes+size > lookupCacheBudget/4 || lookupCacheBytes.Load()+size > lookupCacheBudget) {
		lru := 0
		for i := range c.batches {
			if c.batches[i].used < c.batches[lru].used {
				lru = i
			}
		}
		c.drop(lru)
	}
	if lookupCacheBytes.Load()+size > lookupCacheBudget {
		return // other logs hold the budget
	}
	c.tick++
	c.batches = append(c.batches, cachedBatch{hdr: bytes.Clone(hdr), section: section, base: Offset(hdr.BaseOffset()), last: Offset(hdr.LastOffset()), used: c.tick})
	c.count.Store(int32(len(c.batches)))
	c.bytes += size
	lookupCacheBytes.Add(size)
}

func (c *lookupCache) drop(i int) {
	size := int64(len(c.batches[i].section) + len(c.batches[i].hdr))
	c.bytes -= size
	lookupCacheBytes.Add(-size)
	c.batches = append(c.batches[:i], c.batches[i+1:]...)
	c.count.Store(int32(len(c.batches)))
}

// clear empties the cache (the log's batches changed).
func (c *lookupCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	lookupCacheBytes.Add(-c.bytes)
	c.bytes, c.batches = 0, nil
	c.count.Store(0)
}
