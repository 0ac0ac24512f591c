package engine

import "math/bits"

// digestTable maps 64-bit key digests to the offset of the newest record
// whose key has that digest: open addressing with linear probing over one
// slice of 16-byte slots (digest, value). value 0 marks an empty slot;
// otherwise it is offset+1, with tombBit set when that record is a
// tombstone. The home slot of a digest is digest·capacity/2⁶⁴ (no power of
// two needed), so the table grows by half when it is 80% full and shrinks to
// 65% when deletions leave it under 50%: its load stays between 50% and
// 80%, 20 to 32 bytes of RAM per entry (30 at most right after a growth).
type digestTable struct {
	slots []digestSlot
	n     int
}

type digestSlot struct {
	digest uint64
	value  uint64
}

const (
	tombBit         = uint64(1) << 62
	minTableSlots   = 64
	tableLoadFactor = 0.8
)

func (t *digestTable) home(d uint64) int {
	hi, _ := bits.Mul64(d, uint64(len(t.slots)))
	return int(hi)
}

func (t *digestTable) len() int { return t.n }

// bytes is the table's RAM.
func (t *digestTable) bytes() int64 { return int64(len(t.slots)) * 16 }

func encodeEntry(off Offset, tomb bool) uint64 {
	v := uint64(off) + 1
	if tomb {
		v |= tombBit
	}
	return v
}

func decodeEntry(v uint64) (Offset, bool) {
	return Offset(v&^tombBit) - 1, v&tombBit != 0
}

// get returns the entry for d.
func (t *digestTable) get(d uint64) (uint64, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	for i := t.home(d); ; {
		s := &t.slots[i]
		if s.value == 0 {
			return 0, false
		}
		if s.digest == d {
			return s.value, true
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// put sets d's entry to v (v != 0).
func (t *digestTable) put(d, v uint64) {
	if float64(t.n+1) > float64(len(t.slots))*tableLoadFactor {
		t.grow()
	}
	t.insert(d, v)
}

// insert is put without growing: the table must have an empty slot.
func (t *digestTable) insert(d, v uint64) {
	for i := t.home(d); ; {
		s := &t.slots[i]
		if s.value == 0 {
			s.digest, s.value = d, v
			t.n++
			return
		}
		if s.digest == d {
			s.value = v
			return
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

func (t *digestTable) grow() {
	size := len(t.slots) + len(t.slots)/2
	if size < minTableSlots {
		size = minTableSlots
	}
	t.resize(size)
}

func (t *digestTable) resize(size int) {
	old := t.slots
	t.slots, t.n = make([]digestSlot, size), 0
	for _, s := range old {
		if s.value != 0 {
			t.put(s.digest, s.value)
		}
	}
}

// reserve sizes an empty table for n entries at most 80% full.
func (t *digestTable) reserve(n int) {
	if size := int(float64(n)/tableLoadFactor) + 1; size > len(t.slots) {
		t.resize(max(size, minTableSlots))
	}
}

// del removes d's entry with backward-shift deletion (no tombstone
// slots): the entries after it in its probe run move back when their home
// allows.
func (t *digestTable) del(d uint64) bool {
	if len(t.slots) == 0 {
		return false
	}
	i := t.home(d)
	for {
		s := &t.slots[i]
		if s.value == 0 {
			return false
		}
		if s.digest == d {
			break
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
	t.deleteAt(i)
	t.maybeShrink()
	return true
}

// maybeShrink resizes a table that deletions left under 50% full to 65%,
// keeping RAM per entry within the bound.
func (t *digestTable) maybeShrink() {
	if len(t.slots) > minTableSlots && float64(t.n) < float64(len(t.slots))*0.5 {
		t.resize(max(int(float64(t.n)/0.65)+1, minTableSlots))
	}
}

func (t *digestTable) deleteAt(i int) {
	n := len(t.slots)
	j := i
	for {
		if j++; j == n {
			j = 0
		}
		s := t.slots[j]
		if s.value == 0 {
			break
		}
		h := t.home(s.digest)
		// s may move back to i when its home is not in the cyclic
		// range (i, j].
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			t.slots[i] = s
			i = j
		}
	}
	t.slots[i] = digestSlot{}
	t.n--
}

// deleteIf removes every entry for which drop returns true and returns
// how many it removed.
func (t *digestTable) deleteIf(drop func(d, v uint64) bool) int {
	removed := 0
	for i := 0; i < len(t.slots); {
		s := t.slots[i]
		if s.value != 0 && drop(s.digest, s.value) {
			t.deleteAt(i)
			removed++
			continue // slot i now holds a shifted entry (or is empty)
		}
		i++
	}
	t.maybeShrink()
	return removed
}

// each calls fn for every entry, in slot order.
func (t *digestTable) each(fn func(d, v uint64)) {
	for _, s := range t.slots {
		if s.value != 0 {
			fn(s.digest, s.value)
		}
	}
}

// Catch-ups write many entries at once (a restart reads the log after the
// checkpoint, or the whole log without one). Written one by one in log
// order, each lands on a random slot of a table far larger than the CPU
// caches: a cache and TLB miss per record. putAll sorts a batch of
// writes by the top bits of their digests first (a stable counting sort,
// so a later write of a digest still wins) and so writes the table front
// to back (sized for the batch first: see flush).
const (
	putSortMin  = 4096    // fewer writes go straight in
	putSortMax  = 1 << 20 // writes buffered per sorted batch (16 MiB)
	putSortBits = 16
)

// putBatch buffers a catch-up's table writes for putAll.
type putBatch struct {
	ws, tmp []digestSlot
	counts  []int32
}

func (p *putBatch) add(t *digestTable, d, v uint64) {
	p.ws = append(p.ws, digestSlot{digest: d, value: v})
	if len(p.ws) >= putSortMax {
		p.flush(t)
	}
}

// flush writes the buffered writes into t, in their order for equal
// digests.
func (p *putBatch) flush(t *digestTable) {
	ws := p.ws
	p.ws = p.ws[:0]
	if len(ws) < putSortMin {
		for _, w := range ws {
			t.put(w.digest, w.value)
		}
		return
	}
	if p.counts == nil {
		p.counts = make([]int32, 1<<putSortBits+1)
	} else {
		clear(p.counts)
	}
	if cap(p.tmp) < len(ws) {
		p.tmp = make([]digestSlot, len(ws))
	}
	tmp := p.tmp[:len(ws)]
	const shift = 64 - putSortBits
	for _, w := range ws {
		p.counts[w.digest>>shift+1]++
	}
	for i := 1; i < len(p.counts); i++ {
		p.counts[i] += p.counts[i-1]
	}
	for _, w := range ws {
		b := w.digest >> shift
		tmp[p.counts[b]] = w
		p.counts[b]++
	}
	// Room for every write first: sorted writes into a table that must
	// grow would pile up in the front slots (their homes in the small
	// table), one long probe run. Writes of digests already present leave
	// it emptier than needed: shrunk again after.
	// Grown by half at least, as put grows it, so that a rebuild's
	// batches do not each copy the whole table.
	if need := int(float64(t.n+len(ws))/tableLoadFactor) + 1; need > len(t.slots) {
		t.resize(max(need, len(t.slots)+len(t.slots)/2, minTableSlots))
	}
	for _, w := range tmp {
		t.put(w.digest, w.value)
	}
	t.maybeShrink()
}
