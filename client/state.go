package client

import (
	"bytes"
	"hash/maphash"
	"iter"
	"maps"
	"math/bits"
	"slices"
)

// state is the built-in latest-value-per-key table. It is not synchronised:
// the Table guards it with its mutex.
//
// Layout. The table is an open-addressing hash table (linear probing,
// backward-shift deletion, at most 3/4 full, sized from the replay's
// offset count so it need not grow) of pointer-free slots: a slot
// holds the key's 64-bit hash and where its key and value bytes are, as
// offsets into one of the state's buffers. Replayed records are not copied:
// a buffer is a fetch response's record bytes (or a decompressed batch), and
// the slots point into it. Records applied one by one (tailing, a
// ReplayOnly table's own writes) are copied into an arena buffer. So a
// replay costs no allocation per key, and the garbage collector never scans
// the table: neither the slots nor the buffers hold pointers.
//
// Retention. Each buffer counts the live slots that point into it; when
// the count drops to zero (every key in it overwritten or deleted) the
// buffer is dropped and its index reused. A buffer with one live value
// keeps the whole buffer, as a value aliasing a fetch response does.
//
// Equal hashes. Two keys may share a hash: the probe compares the key
// bytes of every slot whose hash matches, so both live in the table.
//
// Snapshots are copy-on-write: taking one marks the current table shared
// and hands it to the snapshot; the next write clones the slots and the
// buffer list first (the buffers themselves are immutable, save for the
// arena's unused tail, which no snapshot refers to). So a snapshot costs
// O(1) and the clone is paid once per snapshot that is followed by a write.
type state struct {
	slots []slot
	n     int // live keys
	bufs  [][]byte
	live  []int32  // per buffer: live slots pointing into it, +1 while pinned
	free  []uint32 // indexes of dropped buffers

	arena    []byte // copy buffer for keys and values applied one by one
	arenaBuf uint32 // its index in bufs (pinned while it is the arena)
	hasArena bool

	shared     bool
	tombstones int64 // tombstones applied (whether or not the key existed)
}

// slot is one key. h == 0 marks an empty slot (hashes of 0 are stored as 1).
type slot struct {
	h    uint64
	buf  uint32
	koff uint32
	klen uint32
	voff uint32 // the value is bufs[buf][voff : voff+vlen]
	vlen uint32
}

const (
	minSlots = 16
	// arenaSize is the size of a copy buffer; larger records get a buffer
	// of their own.
	arenaSize = 64 << 10
)

var hashSeed = maphash.MakeSeed()

// keyHash is the table's hash of key, never 0.
func keyHash(key []byte) uint64 {
	h := maphash.Bytes(hashSeed, key)
	if h == 0 {
		h = 1
	}
	return h
}

func newState(hint int) *state {
	// At most 3/4 full once hint keys are in. Any size works: a key's home
	// slot is its hash scaled to the table (home).
	return &state{slots: make([]slot, max(minSlots, hint+hint/3+1))}
}

// home is the first slot probed for hash h: h scaled to [0, len(slots)),
// from its high bits (the multiply-shift reduction).
func (s *state) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(s.slots)))
	return int(hi)
}

// own clones the slots and the buffer list before a write when a snapshot
// shares them.
func (s *state) own() {
	if !s.shared {
		return
	}
	s.slots = slices.Clone(s.slots)
	s.bufs = slices.Clone(s.bufs)
	s.live = slices.Clone(s.live)
	s.free = slices.Clone(s.free)
	s.shared = false
}

// addBuf registers b and returns its index, pinned: the caller unpins it
// (unpin) once its slots are in.
func (s *state) addBuf(b []byte) uint32 {
	s.own()
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		s.bufs[i], s.live[i] = b, 1
		return i
	}
	s.bufs = append(s.bufs, b)
	s.live = append(s.live, 1)
	return uint32(len(s.bufs) - 1)
}

// unpin drops a reference to buffer i; the buffer is released when none is
// left.
func (s *state) unpin(i uint32) {
	s.own()
	s.live[i]--
	if s.live[i] == 0 {
		s.bufs[i] = nil
		s.free = append(s.free, i)
	}
}

func (s *state) keyOf(sl *slot) []byte {
	return s.bufs[sl.buf][sl.koff : sl.koff+sl.klen : sl.koff+sl.klen]
}

func (s *state) valueOf(sl *slot) []byte {
	return s.bufs[sl.buf][sl.voff : sl.voff+sl.vlen : sl.voff+sl.vlen]
}

// find returns the index of key's slot, or of the empty slot where it
// would go, and whether it is there.
func (s *state) find(h uint64, key []byte) (int, bool) {
	slots := s.slots
	i := s.home(h)
	for {
		sl := &slots[i]
		if sl.h == 0 {
			return i, false
		}
		if sl.h == h && bytes.Equal(s.keyOf(sl), key) {
			return i, true
		}
		if i++; i == len(slots) {
			i = 0
		}
	}
}

// put makes the key at bufs[buf][koff:koff+klen] (hash h) live with the
// value at bufs[buf][voff:voff+vlen]. The buffer must be registered.
func (s *state) put(h uint64, buf, koff, klen, voff, vlen uint32) {
	s.own()
	if (s.n+1)*4 > len(s.slots)*3 {
		s.grow()
	}
	key := s.bufs[buf][koff : koff+klen]
	i, ok := s.find(h, key)
	sl := &s.slots[i]
	s.live[buf]++
	if ok {
		old := sl.buf
		*sl = slot{h: h, buf: buf, koff: koff, klen: klen, voff: voff, vlen: vlen}
		s.unpin(old)
		return
	}
	*sl = slot{h: h, buf: buf, koff: koff, klen: klen, voff: voff, vlen: vlen}
	s.n++
}

// del removes key (hash h), counting a tombstone.
func (s *state) del(h uint64, key []byte) {
	s.tombstones++
	i, ok := s.find(h, key)
	if !ok {
		return
	}
	s.own()
	buf := s.slots[i].buf
	// Backward-shift deletion: move later slots of the probe run into the
	// hole when their home is not between the hole and them.
	j := i
	for {
		if j++; j == len(s.slots) {
			j = 0
		}
		sj := &s.slots[j]
		if sj.h == 0 {
			break
		}
		home := s.home(sj.h)
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.slots[i] = *sj
			i = j
		}
	}
	s.slots[i] = slot{}
	s.n--
	s.unpin(buf)
}

func (s *state) grow() {
	old := s.slots
	s.slots = make([]slot, 2*len(old))
	for k := range old {
		sl := &old[k]
		if sl.h == 0 {
			continue
		}
		i := s.home(sl.h)
		for s.slots[i].h != 0 {
			if i++; i == len(s.slots) {
				i = 0
			}
		}
		s.slots[i] = *sl
	}
}

// apply records one record given as slices the caller keeps: the key and
// value are copied into the arena. A nil value removes the key.
func (s *state) apply(key, value []byte) { s.applyHashed(keyHash(key), key, value) }

func (s *state) applyHashed(h uint64, key, value []byte) {
	if value == nil {
		s.del(h, key)
		return
	}
	s.own()
	need := len(key) + len(value)
	if need > arenaSize/4 {
		// A buffer of its own: offsets from 0, so any record a Kafka
		// batch can hold (key and value each below 2 GiB) fits uint32.
		b := make([]byte, need)
		copy(b, key)
		copy(b[len(key):], value)
		buf := s.addBuf(b)
		s.put(h, buf, 0, uint32(len(key)), uint32(len(key)), uint32(len(value)))
		s.unpin(buf)
		return
	}
	if !s.hasArena || len(s.arena)+need > cap(s.arena) {
		if s.hasArena {
			s.unpin(s.arenaBuf)
		}
		s.arena = make([]byte, 0, arenaSize)
		s.arenaBuf = s.addBuf(s.arena[:arenaSize])
		s.hasArena = true
	}
	off := uint32(len(s.arena))
	s.arena = append(s.arena, key...)
	s.arena = append(s.arena, value...)
	s.put(h, s.arenaBuf, off, uint32(len(key)), off+uint32(len(key)), uint32(len(value)))
}

func (s *state) get(key []byte) ([]byte, bool) { return s.lookup(keyHash(key), key) }

func (s *state) lookup(h uint64, key []byte) ([]byte, bool) {
	i, ok := s.find(h, key)
	if !ok {
		return nil, false
	}
	return s.valueOf(&s.slots[i]), true
}

func (s *state) len() int { return s.n }

// snapshot returns a frozen view of the current table for a Snapshot: it
// shares the slots and buffer list until the next write clones them.
func (s *state) snapshot() *state {
	s.shared = true
	c := *s
	return &c
}

// each yields the live keys (aliasing the buffers) and values.
func (s *state) each(yield func(k, v []byte) bool) {
	for i := range s.slots {
		sl := &s.slots[i]
		if sl.h != 0 && !yield(s.keyOf(sl), s.valueOf(sl)) {
			return
		}
	}
}

// Snapshot is a consistent, immutable view of a table's state: every key's
// latest value as of the per-partition positions in Offsets. It stays valid
// and unchanged while the table goes on applying records.
type Snapshot struct {
	st      *state
	offsets map[int32]int64
}

// Len is the number of live keys.
func (s *Snapshot) Len() int { return s.st.len() }

// Get returns the value of key, and whether the key is live.
func (s *Snapshot) Get(key []byte) ([]byte, bool) { return s.st.get(key) }

// Offsets returns, per partition, the next offset the snapshot has not seen:
// every record below it is reflected. The map is a copy.
func (s *Snapshot) Offsets() map[int32]int64 { return maps.Clone(s.offsets) }

// All iterates over the live keys and their values in no particular order.
// The yielded key is a fresh slice; the value aliases the table's bytes and
// must not be modified.
func (s *Snapshot) All() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		s.st.each(func(k, v []byte) bool { return yield(bytes.Clone(k), v) })
	}
}

// Sorted iterates over the live keys in ascending byte order.
func (s *Snapshot) Sorted() iter.Seq2[[]byte, []byte] {
	type kv struct{ k, v []byte }
	kvs := make([]kv, 0, s.st.len())
	s.st.each(func(k, v []byte) bool {
		kvs = append(kvs, kv{k, v})
		return true
	})
	slices.SortFunc(kvs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	return func(yield func([]byte, []byte) bool) {
		for _, e := range kvs {
			if !yield(bytes.Clone(e.k), e.v) {
				return
			}
		}
	}
}
