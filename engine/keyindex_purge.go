package engine

import (
	"errors"
	"sort"

	"github.com/kvlog/kvlog/engine/record"
)

// Entries of tombstones the cleaner removed (FORMAT.md §8). A cleaner swap
// keeps offsets, so every entry pointing at a surviving record stays
// valid; but the cleaner drops tombstones once their delete horizon has
// passed, and the entries pointing at them would stay in the table (RAM,
// the checkpoint) and send every lookup of such a key to the slow path
// (the record is gone: scan the log for the digest). So a swap notes the
// offset range it replaced (keyIndexCleaned, under Log.mu, no I/O), and
// the next key-index checkpoint (CheckpointKeyIndex: the periodic one,
// every log.flush.offset.checkpoint.interval.ms) first drops those
// entries, outside the log's lock:
//
//  1. collect the tombstone entries in the noted ranges (index lock);
//  2. read the batches holding them: the entries whose record is still
//     there stay;
//  3. for the others, scan the log once for their digests: another key
//     with the same digest (a collision) may have a live value below the
//     removed tombstone, which the entry covered; the entry becomes that
//     value's offset (as a lookup's repair does), or goes when there is
//     none;
//  4. apply under the index lock, each only if its entry did not change
//     meanwhile (a newer record of the digest, a lookup's repair).
//
// When the purge changed the table, the goroutine writes the checkpoint
// again: it then holds the purged table. A swap while
// the index is not loaded keeps its range until the index is loaded and
// checkpointed (its checkpoint may predate the swap); a range noted and not
// purged when the broker stops is forgotten: lookups then repair such
// entries one by one, as before.

// offsetRange is the offsets [from, to).
type offsetRange struct{ from, to Offset }

// maxPurgeRanges bounds the ranges a log keeps noted; more are merged
// into one covering them all.
const maxPurgeRanges = 32

// keyIndexCleaned notes that a cleaner swap replaced the segments holding
// [from, to). Caller holds l.mu.
func (l *Log) keyIndexCleaned(from, to Offset) {
	if from >= to || !l.Config().keyIndexed() {
		return
	}
	l.kidxPurgeMu.Lock()
	defer l.kidxPurgeMu.Unlock()
	l.kidxPurge = addOffsetRange(l.kidxPurge, offsetRange{from, to})
}

// addOffsetRange adds r to rs (sorted, disjoint) and merges what overlaps
// or touches.
func addOffsetRange(rs []offsetRange, r offsetRange) []offsetRange {
	rs = append(rs, r)
	sort.Slice(rs, func(i, j int) bool { return rs[i].from < rs[j].from })
	out := rs[:1]
	for _, x := range rs[1:] {
		last := &out[len(out)-1]
		if x.from <= last.to {
			last.to = max(last.to, x.to)
			continue
		}
		out = append(out, x)
	}
	if len(out) > maxPurgeRanges {
		out = []offsetRange{{out[0].from, out[len(out)-1].to}}
	}
	return out
}

// keyIndexPurgeHook, when set (tests), runs first on every purge
// goroutine.
var keyIndexPurgeHook func(l *Log)

// keyIndexCatchUpStep is how many offsets the background catch-up reads
// per hold of the index's lock (lookups wait for it meanwhile).
const keyIndexCatchUpStep = 1 << 16

// startKeyIndexPurge starts the goroutine of ki's background work, unless
// there is none or it is running: the purge of the ranges noted by cleaner
// swaps, and, with minNew > 0, catching the index up to the last stable
// offset when it is minNew offsets or more behind. Appends do no index
// work and only lookups move it, so a partition written much and read
// rarely would otherwise leave its whole tail since the last lookup to
// the first lookup after a restart (kill -9 included); caught up here,
// the checkpoint written after covers it. Either way the goroutine writes
// the checkpoint again when it changed the table.
func (l *Log) startKeyIndexPurge(ki *keyIndex, minNew int64) {
	l.kidxPurgeMu.Lock()
	noted := len(l.kidxPurge) > 0
	l.kidxPurgeMu.Unlock()
	behind := false
	if minNew > 0 {
		ki.mu.Lock()
		behind = int64(l.LastStableOffset()-ki.applied) >= minNew
		ki.mu.Unlock()
	}
	if !noted && !behind {
		return
	}
	ki.purgeMu.Lock()
	defer ki.purgeMu.Unlock()
	if ki.purgeDone != nil {
		select {
		case <-ki.purgeDone:
		default:
			return // running; the next checkpoint starts another
		}
	}
	done := make(chan struct{})
	ki.purgeDone = done
	hook := keyIndexPurgeHook
	go func() {
		defer close(done)
		if hook != nil {
			hook(l)
		}
		moved := behind && l.catchUpInSteps(ki)
		n, err := l.purgeCleaned(ki)
		if err != nil && !l.closed.Load() {
			l.logger.Warn("key index: entries of removed tombstones not purged; lookups repair them", "partition", l.tp.String(), "err", err)
		}
		if moved || n > 0 {
			if err := l.checkpointKeyIndexIf(ki, 0, true); err != nil {
				l.logger.Error("key index checkpoint after its background work failed", "partition", l.tp.String(), "err", err)
			}
		}
	}()
}

// catchUpInSteps catches ki up to the last stable offset,
// keyIndexCatchUpStep offsets per hold of its lock, and reports whether
// it moved.
func (l *Log) catchUpInSteps(ki *keyIndex) bool {
	moved := false
	for !l.closed.Load() && l.kidx.Load() == ki {
		lso := l.LastStableOffset()
		ki.mu.Lock()
		if ki.applied >= lso {
			ki.mu.Unlock()
			break
		}
		before := ki.applied
		err := l.catchUp(ki, min(lso, ki.applied+keyIndexCatchUpStep))
		after := ki.applied
		ki.mu.Unlock()
		if err != nil {
			if !l.closed.Load() {
				l.logger.Warn("key index: background catch-up failed; lookups catch it up", "partition", l.tp.String(), "err", err)
			}
			break
		}
		if after <= before {
			break // stopped (transaction state loading): lookups go on
		}
		moved = true
	}
	return moved
}

// waitKeyIndexPurge waits until the purge goroutine of the log's key
// index, if one was started, has ended.
func (l *Log) waitKeyIndexPurge() {
	ki := l.kidx.Load()
	if ki == nil {
		return
	}
	ki.purgeMu.Lock()
	done := ki.purgeDone
	ki.purgeMu.Unlock()
	if done != nil {
		<-done
	}
}

// purgeCleaned drops the entries of removed tombstones in the ranges noted
// by cleaner swaps (see above) and reports how many entries it changed.
// It takes no log lock; on an error the ranges stay noted.
func (l *Log) purgeCleaned(ki *keyIndex) (int, error) {
	l.kidxPurgeMu.Lock()
	ranges := l.kidxPurge
	l.kidxPurge = nil
	l.kidxPurgeMu.Unlock()
	if len(ranges) == 0 {
		return 0, nil
	}
	n, err := l.purgeRemovedTombstones(ki, ranges)
	if err != nil {
		l.kidxPurgeMu.Lock()
		for _, r := range ranges {
			l.kidxPurge = addOffsetRange(l.kidxPurge, r)
		}
		l.kidxPurgeMu.Unlock()
	}
	return n, err
}

type purgeCandidate struct {
	off Offset
	d   uint64
	v   uint64
}

var errScanDone = errors.New("scan done")

func (l *Log) purgeRemovedTombstones(ki *keyIndex, ranges []offsetRange) (int, error) {
	// 1. The tombstone entries in the ranges.
	ki.mu.Lock()
	limit := ki.applied
	var cands []purgeCandidate
	ki.tab.each(func(d, v uint64) {
		o, tomb := decodeEntry(v)
		if !tomb || o >= limit {
			return
		}
		i := sort.Search(len(ranges), func(i int) bool { return ranges[i].to > o })
		if i < len(ranges) && ranges[i].from <= o {
			cands = append(cands, purgeCandidate{off: o, d: d, v: v})
		}
	})
	ki.mu.Unlock()
	if len(cands) == 0 {
		return 0, nil
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].off < cands[j].off })

	// 2. Which of their records are still there: only the batches
	// holding one are read.
	present := make([]bool, len(cands))
	dec := decoders.Get().(*record.Decoder)
	defer decoders.Put(dec)
	for _, r := range ranges {
		i := sort.Search(len(cands), func(i int) bool { return cands[i].off >= r.from })
		if i == len(cands) || cands[i].off >= r.to {
			continue
		}
		err := l.scanHeaders(cands[i].off, min(r.to, limit), func(h record.Batch, body func() (record.Batch, error)) error {
			for i < len(cands) && cands[i].off < Offset(h.BaseOffset()) {
				i++
			}
			if i == len(cands) || cands[i].off >= r.to {
				return errScanDone
			}
			if h.IsControl() || cands[i].off > Offset(h.LastOffset()) {
				return nil
			}
			b, err := body()
			if err != nil {
				return err
			}
			base := Offset(b.BaseOffset())
			j := i
			return dec.Keys(b, func(delta int32, _ []byte, _ bool) {
				o := base + Offset(delta)
				for j < len(cands) && cands[j].off < o {
					j++
				}
				if j < len(cands) && cands[j].off == o {
					present[j] = true
				}
			})
		})
		if err != nil && !errors.Is(err, errScanDone) {
			return 0, l.errorf("key index purge", -1, r.from, err)
		}
	}
	removed := map[uint64]uint64{} // digest → its entry when collected
	for i, c := range cands {
		if !present[i] {
			removed[c.d] = c.v
		}
	}
	if len(removed) == 0 {
		return 0, nil
	}

	// 3. The live keys sharing those digests, if any.
	latest, err := l.scanDigests(ki, func(d uint64) bool { _, ok := removed[d]; return ok }, limit)
	if err != nil {
		return 0, err
	}

	// 4. Apply where nothing changed meanwhile.
	ki.mu.Lock()
	defer ki.mu.Unlock()
	if l.kidx.Load() != ki {
		return 0, nil // dropped (truncation, config): nothing to keep
	}
	changed := 0
	for d, v := range removed {
		if cur, ok := ki.tab.get(d); !ok || cur != v {
			continue
		}
		best := Offset(-1)
		for _, s := range latest[d] {
			if !s.tomb && s.off > best {
				best = s.off
			}
		}
		if best < 0 {
			ki.tab.del(d)
		} else {
			ki.tab.put(d, encodeEntry(best, false))
		}
		changed++
	}
	ki.changed += int64(changed)
	return changed, nil
}
