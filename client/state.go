package client

import (
	"iter"
	"maps"
	"slices"
	"strings"
)

// state is the built-in latest-value-per-key map. It is not synchronised:
// the Table guards it with its mutex.
//
// Snapshots are copy-on-write: taking one marks the current map shared and
// hands it to the snapshot; the next write clones the map first. So a
// snapshot costs O(1) and the clone is paid once per snapshot that is
// followed by a write, never per write.
type state struct {
	m          map[string][]byte
	shared     bool
	tombstones int64 // tombstones applied (whether or not the key existed)
}

func newState(hint int) *state { return &state{m: make(map[string][]byte, hint)} }

func (s *state) own() {
	if s.shared {
		s.m = maps.Clone(s.m)
		s.shared = false
	}
}

// apply records one record: a nil value removes the key.
func (s *state) apply(key, value []byte) {
	if value == nil {
		s.tombstones++
		if _, ok := s.m[string(key)]; !ok {
			return
		}
		s.own()
		delete(s.m, string(key))
		return
	}
	s.own()
	s.m[string(key)] = value
}

func (s *state) get(key []byte) ([]byte, bool) {
	v, ok := s.m[string(key)]
	return v, ok
}

func (s *state) snapshot() map[string][]byte {
	s.shared = true
	return s.m
}

// Snapshot is a consistent, immutable view of a table's state: every key's
// latest value as of the per-partition positions in Offsets. It stays valid
// and unchanged while the table goes on applying records.
type Snapshot struct {
	m       map[string][]byte
	offsets map[int32]int64
}

// Len is the number of live keys.
func (s *Snapshot) Len() int { return len(s.m) }

// Get returns the value of key, and whether the key is live.
func (s *Snapshot) Get(key []byte) ([]byte, bool) {
	v, ok := s.m[string(key)]
	return v, ok
}

// Offsets returns, per partition, the next offset the snapshot has not seen:
// every record below it is reflected. The map is a copy.
func (s *Snapshot) Offsets() map[int32]int64 { return maps.Clone(s.offsets) }

// All iterates over the live keys and their values in no particular order.
// The yielded key is a fresh slice; the value aliases the table's bytes and
// must not be modified.
func (s *Snapshot) All() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for k, v := range s.m {
			if !yield([]byte(k), v) {
				return
			}
		}
	}
}

// Sorted iterates over the live keys in ascending byte order.
func (s *Snapshot) Sorted() iter.Seq2[[]byte, []byte] {
	keys := slices.SortedFunc(maps.Keys(s.m), strings.Compare)
	return func(yield func([]byte, []byte) bool) {
		for _, k := range keys {
			if !yield([]byte(k), s.m[k]) {
				return
			}
		}
	}
}
