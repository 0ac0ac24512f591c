package cleaner

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// EntrySize is the size of one offset-map slot: a 16-byte key digest and an
// 8-byte offset.
const EntrySize = 24

// digestSeed seeds the second xxhash64 of a key; the first uses seed 0. Two
// independent 64-bit hashes make a 128-bit digest: the chance that two of n
// live keys collide (and one is lost) is about n²/2¹²⁹ — nil at any key count
// a partition can hold.
const digestSeed = 0x6b766c6f67636c6e // "kvlogcln"

// OffsetMap maps key digests to the latest offset seen for the key. It is
// Kafka's SkimpyOffsetMap with a different digest: one preallocated buffer
// of 24-byte slots (16-byte digest of two differently seeded xxhash64, 8-byte
// offset), open addressing with linear probing in Robin Hood order (a key is
// never further from its home slot than the key it passed, so a lookup of an
// absent key stops early even at a 0.9 load factor). An all-zero digest marks
// an empty slot. Keys are never stored; digest collisions are not resolved.
//
// The table starts small inside the buffer (growthStart bytes) and grows by
// growthFactor, rehashing in place, while it is at most an eighth of the
// buffer; a pass over few distinct keys then touches a few cache-resident
// megabytes instead of the whole buffer. The last growth, to the whole
// buffer, is Expand: the caller clears the map and maps its range again
// (cheaper than keeping room to rehash, and bounded: it repeats at most the
// records that filled an eighth of the map).
//
// A pass mapping a dirty section with more keys than the map holds maps it
// one key range at a time: retain evicts the keys outside a range in one
// sweep (see scan.go).
//
// The buffer is faulted in as the table grows into it and, from 4 MiB, asked
// to be backed by transparent huge pages (probes land anywhere in it). Put and Get do not
// allocate. An OffsetMap is not safe for concurrent use: each cleaner thread
// owns one.
type OffsetMap struct {
	buf        []byte
	capSlots   uint64 // slots the buffer holds
	slots      uint64 // slots of the current table: buf[:slots*EntrySize]
	loadFactor float64
	maxEntries int // slots × load factor: Put refuses new keys beyond it
	entries    int
	latest     int64 // largest offset put or passed to UpdateLatest; -1 when empty
	// touchAlways makes prefetch report true whatever the table's size
	// (tests: the batch-at-a-time paths with a small map).
	touchAlways bool
}

const (
	growthStart  = 64 << 10 // bytes of the first table
	growthFactor = 8
)

// NewOffsetMap allocates a map of size bytes (rounded down to whole slots)
// that accepts new keys up to loadFactor × slots.
func NewOffsetMap(size int64, loadFactor float64) (*OffsetMap, error) {
	slots := size / EntrySize
	if loadFactor <= 0 || loadFactor > 1 {
		return nil, fmt.Errorf("cleaner: offset map load factor %v not in (0, 1]", loadFactor)
	}
	if float64(slots)*loadFactor < 1 {
		return nil, fmt.Errorf("cleaner: offset map of %d bytes holds no key at load factor %v (raise log.cleaner.dedupe.buffer.size or lower log.cleaner.threads)", size, loadFactor)
	}
	m := &OffsetMap{buf: make([]byte, slots*EntrySize), capSlots: uint64(slots), loadFactor: loadFactor, latest: -1}
	hugePages(m.buf)
	// Pages are faulted in as the table grows into them: a pass over few
	// keys touches a few megabytes of the buffer, not all of it.
	m.resize(m.startSlots())
	return m, nil
}

func (m *OffsetMap) startSlots() uint64 {
	s := min(m.capSlots, growthStart/EntrySize)
	if float64(s)*m.loadFactor < 1 {
		s = m.capSlots
	}
	return s
}

func (m *OffsetMap) resize(slots uint64) {
	m.slots = slots
	m.maxEntries = int(float64(slots) * m.loadFactor)
}

// Bytes is the size of the map's buffer, its whole memory footprint.
func (m *OffsetMap) Bytes() int { return len(m.buf) }

// Slots is the number of slots of the buffer.
func (m *OffsetMap) Slots() int { return int(m.capSlots) }

// Size is the number of keys in the map.
func (m *OffsetMap) Size() int { return m.entries }

// MaxEntries is how many keys the map accepts at full size.
func (m *OffsetMap) MaxEntries() int { return int(float64(m.capSlots) * m.loadFactor) }

// Utilization is Size / Slots (Kafka's buffer utilization).
func (m *OffsetMap) Utilization() float64 { return float64(m.entries) / float64(m.capSlots) }

// Latest is the largest offset put or passed to UpdateLatest, -1 if none.
func (m *OffsetMap) Latest() int64 { return m.latest }

// UpdateLatest raises Latest to o (a batch whose records were all mapped).
func (m *OffsetMap) UpdateLatest(o int64) {
	if o > m.latest {
		m.latest = o
	}
}

// SetLatest sets Latest (the start of a pass: the offset before the dirty
// section).
func (m *OffsetMap) SetLatest(o int64) { m.latest = o }

// Clear empties the map for the next pass, keeping its buffer, and shrinks
// the table back to its starting size.
func (m *OffsetMap) Clear() {
	if m.entries > 0 {
		clear(m.buf[:m.slots*EntrySize])
	}
	m.entries = 0
	m.latest = -1
	m.resize(m.startSlots())
}

// Expand empties the map and makes the table the whole buffer. It reports
// false (changing nothing) when the table already is. A pass whose Put
// failed calls it and maps its dirty section again.
func (m *OffsetMap) Expand() bool {
	if m.slots == m.capSlots {
		return false
	}
	clear(m.buf[:m.slots*EntrySize])
	m.entries = 0
	m.latest = -1
	m.resize(m.capSlots)
	return true
}

// grow rehashes the table into one growthFactor times larger when that one
// is at most an eighth of the buffer, using the space above the new table
// to hold the entries meanwhile. It reports whether it grew.
func (m *OffsetMap) grow() bool {
	next := m.slots * growthFactor
	if next > m.capSlots/8 || next+uint64(m.entries) > m.capSlots {
		return false
	}
	// Copy the entries out above the new table, then reinsert them.
	tmp := m.buf[next*EntrySize : (next+uint64(m.entries))*EntrySize]
	n := 0
	for i := uint64(0); i < m.slots; i++ {
		s := m.slot(i)
		if binary.LittleEndian.Uint64(s[0:8]) != 0 || binary.LittleEndian.Uint64(s[8:16]) != 0 {
			copy(tmp[n*EntrySize:], s)
			n++
		}
	}
	clear(m.buf[:m.slots*EntrySize])
	m.resize(next)
	m.entries = 0
	le := binary.LittleEndian
	for k := 0; k < n; k++ {
		e := tmp[k*EntrySize : k*EntrySize+EntrySize]
		_, _ = m.put(le.Uint64(e[0:8]), le.Uint64(e[8:16]), int64(le.Uint64(e[16:24])))
	}
	clear(tmp)
	return true
}

// Digest returns the 128-bit digest of key: xxhash64 with seed 0 and with
// seed digestSeed. It never returns (0, 0), the empty-slot marker.
func (m *OffsetMap) Digest(key []byte) (uint64, uint64) { return keyDigest(key) }

// keyDigest is Digest (see digest2).
func keyDigest(key []byte) (uint64, uint64) {
	h1, h2 := digest2(key)
	if h1|h2 == 0 {
		h2 = 1
	}
	return h1, h2
}

// home is the slot a digest starts probing at (Lemire's multiply-shift
// range reduction of the first hash).
func (m *OffsetMap) home(h1 uint64) uint64 {
	hi, _ := bits.Mul64(h1, m.slots)
	return hi
}

// dist is how far slot i is from home, wrapping around the table.
func (m *OffsetMap) dist(i, home uint64) uint64 {
	if i >= home {
		return i - home
	}
	return i + m.slots - home
}

func (m *OffsetMap) slot(i uint64) []byte {
	p := i * EntrySize
	return m.buf[p : p+EntrySize : p+EntrySize]
}

// Put records offset as key's latest offset (offsets are put in increasing
// order, so the new one always wins) and raises Latest. It returns false,
// changing nothing, when key is new and the table is full: then Expand (and
// map again) or, when the table is the whole buffer, the map is full.
func (m *OffsetMap) Put(key []byte, offset int64) bool {
	h1, h2 := m.Digest(key)
	return m.putDigest(h1, h2, offset)
}

// touch loads the cache lines a probe for h1 most likely reads (its home
// slot and the next two lines: at a 0.9 load factor a probe runs a few slots
// past home): issued for a batch of keys ahead of their lookups, the cache
// misses overlap instead of queueing.
func (m *OffsetMap) touch(h1 uint64) uint64 {
	p := m.home(h1) * EntrySize
	b := m.buf[:m.slots*EntrySize]
	x := uint64(b[p])
	if p+64 < uint64(len(b)) {
		x += uint64(b[p+64])
	}
	if p+128 < uint64(len(b)) {
		x += uint64(b[p+128])
	}
	return x
}

// prefetch reports whether the table is large enough for touch to pay: a
// table that fits in a core's L2 cache is probed faster without it.
func (m *OffsetMap) prefetch() bool { return m.slots*EntrySize > 1<<20 || m.touchAlways }

// putDigest is Put for a digest computed earlier.
func (m *OffsetMap) putDigest(h1, h2 uint64, offset int64) bool {
	_, ok := m.putPrev(h1, h2, offset)
	return ok
}

// putPrev is putDigest that also returns the offset the key had (-1 when it
// is new): a pass clears that offset's keep bit.
func (m *OffsetMap) putPrev(h1, h2 uint64, offset int64) (int64, bool) {
	prev, ok := m.put(h1, h2, offset)
	if !ok {
		if !m.grow() {
			return -1, false
		}
		if prev, ok = m.put(h1, h2, offset); !ok {
			return -1, false
		}
	}
	if offset > m.latest {
		m.latest = offset
	}
	return prev, true
}

// getDigest is Get for a digest computed earlier.
func (m *OffsetMap) getDigest(h1, h2 uint64) int64 { return m.get(h1, h2) }

// put records offset for the digest and returns the offset it replaced (-1
// for a new key); false when the key is new and the table is full.
func (m *OffsetMap) put(h1, h2 uint64, offset int64) (int64, bool) {
	le := binary.LittleEndian
	i := m.home(h1)
	var d uint64
	for {
		s := m.slot(i)
		e1, e2 := le.Uint64(s[0:8]), le.Uint64(s[8:16])
		if e1 == 0 && e2 == 0 {
			if m.entries >= m.maxEntries {
				return -1, false
			}
			le.PutUint64(s[0:8], h1)
			le.PutUint64(s[8:16], h2)
			le.PutUint64(s[16:24], uint64(offset))
			m.entries++
			return -1, true
		}
		if e1 == h1 && e2 == h2 {
			prev := int64(le.Uint64(s[16:24]))
			le.PutUint64(s[16:24], uint64(offset))
			return prev, true
		}
		if ed := m.dist(i, m.home(e1)); ed < d {
			// The key is absent (Robin Hood order): it takes this slot and
			// the richer entry moves on.
			if m.entries >= m.maxEntries {
				return -1, false
			}
			eo := le.Uint64(s[16:24])
			le.PutUint64(s[0:8], h1)
			le.PutUint64(s[8:16], h2)
			le.PutUint64(s[16:24], uint64(offset))
			m.entries++
			m.displace(m.next(i), ed+1, e1, e2, eo)
			return -1, true
		}
		i = m.next(i)
		d++
	}
}

// displace inserts an entry evicted from its slot, continuing the probe at
// slot i where it would be d slots from home.
func (m *OffsetMap) displace(i, d, h1, h2, off uint64) {
	le := binary.LittleEndian
	for {
		s := m.slot(i)
		e1, e2 := le.Uint64(s[0:8]), le.Uint64(s[8:16])
		if e1 == 0 && e2 == 0 {
			le.PutUint64(s[0:8], h1)
			le.PutUint64(s[8:16], h2)
			le.PutUint64(s[16:24], off)
			return
		}
		if ed := m.dist(i, m.home(e1)); ed < d {
			eo := le.Uint64(s[16:24])
			le.PutUint64(s[0:8], h1)
			le.PutUint64(s[8:16], h2)
			le.PutUint64(s[16:24], off)
			h1, h2, off, d = e1, e2, eo, ed
		}
		i = m.next(i)
		d++
	}
}

func (m *OffsetMap) next(i uint64) uint64 {
	if i++; i == m.slots {
		return 0
	}
	return i
}

// Get returns the latest offset put for key, or -1 when the key is not in
// the map.
func (m *OffsetMap) Get(key []byte) int64 {
	h1, h2 := m.Digest(key)
	return m.get(h1, h2)
}

func (m *OffsetMap) get(h1, h2 uint64) int64 {
	le := binary.LittleEndian
	i := m.home(h1)
	var d uint64
	for {
		s := m.slot(i)
		e1, e2 := le.Uint64(s[0:8]), le.Uint64(s[8:16])
		if e1 == 0 && e2 == 0 {
			return -1
		}
		if e1 == h1 && e2 == h2 {
			return int64(le.Uint64(s[16:24]))
		}
		if m.dist(i, m.home(e1)) < d {
			return -1
		}
		i = m.next(i)
		d++
	}
}

// ClearWhole empties the map like Clear but makes the table the whole buffer
// at once: a pass that maps one key range after another already knows each
// range fills most of the map.
func (m *OffsetMap) ClearWhole() {
	if m.entries > 0 {
		clear(m.buf[:m.slots*EntrySize])
	}
	m.entries = 0
	m.latest = -1
	m.resize(m.capSlots)
}

// Whole reports whether the table is the whole buffer (a failed Put then
// means the map is full; see Expand).
func (m *OffsetMap) Whole() bool { return m.slots == m.capSlots }

// retain removes every entry whose digest lies outside r and returns how
// many it removed; evicted, when not nil, is called with each. Robin Hood
// order with a monotone home function keeps the table sorted by home slot,
// so one sweep, starting after an empty slot (no probe run crosses one),
// moves each survivor back as close to its home as the survivors before it
// allow: the table the survivors alone make.
func (m *OffsetMap) retain(r keyRange, evicted func(h1, h2 uint64, off int64)) int {
	le := binary.LittleEndian
	n := m.slots
	empty := func(e []byte) bool { return le.Uint64(e[0:8]) == 0 && le.Uint64(e[8:16]) == 0 }
	s := uint64(0)
	for s < n && !empty(m.slot(s)) {
		s++
	}
	if s == n {
		return m.retainFull(r, evicted)
	}
	removed := 0
	w := uint64(0) // position, relative to s, of the first slot not yet refilled
	for k := uint64(1); k < n; k++ {
		i := s + k
		if i >= n {
			i -= n
		}
		e := m.slot(i)
		if empty(e) {
			continue
		}
		h1 := le.Uint64(e[0:8])
		if !r.has(h1) {
			if evicted != nil {
				evicted(h1, le.Uint64(e[8:16]), int64(le.Uint64(e[16:24])))
			}
			clear(e)
			removed++
			continue
		}
		rh := m.home(h1) + n - s
		if rh >= n {
			rh -= n
		}
		t := max(rh, w)
		if t != k {
			j := s + t
			if j >= n {
				j -= n
			}
			copy(m.slot(j), e)
			clear(e)
		}
		w = t + 1
	}
	m.entries -= removed
	return removed
}

// retainFull is retain for a table with no empty slot (load factor 1): the
// survivors are copied out and put again.
func (m *OffsetMap) retainFull(r keyRange, evicted func(h1, h2 uint64, off int64)) int {
	le := binary.LittleEndian
	keep := make([]byte, 0, m.entries*EntrySize)
	for i := uint64(0); i < m.slots; i++ {
		e := m.slot(i)
		if h1 := le.Uint64(e[0:8]); r.has(h1) {
			keep = append(keep, e...)
		} else if evicted != nil {
			evicted(h1, le.Uint64(e[8:16]), int64(le.Uint64(e[16:24])))
		}
	}
	removed := m.entries - len(keep)/EntrySize
	clear(m.buf[:m.slots*EntrySize])
	m.entries = 0
	for k := 0; k < len(keep); k += EntrySize {
		e := keep[k : k+EntrySize]
		_, _ = m.put(le.Uint64(e[0:8]), le.Uint64(e[8:16]), int64(le.Uint64(e[16:24])))
	}
	return removed
}

// each calls fn with every entry of the map, in slot order.
func (m *OffsetMap) each(fn func(h1, h2 uint64, off int64)) {
	le := binary.LittleEndian
	for i := uint64(0); i < m.slots; i++ {
		e := m.slot(i)
		if h1, h2 := le.Uint64(e[0:8]), le.Uint64(e[8:16]); h1 != 0 || h2 != 0 {
			fn(h1, h2, int64(le.Uint64(e[16:24])))
		}
	}
}
