package client

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestStateApply(t *testing.T) {
	s := newState(0)
	s.apply([]byte("a"), []byte("1"))
	s.apply([]byte("b"), []byte("2"))
	s.apply([]byte("a"), []byte("3"))
	s.apply([]byte("b"), nil)     // tombstone
	s.apply([]byte("c"), nil)     // tombstone for a missing key
	s.apply([]byte(""), []byte{}) // empty key and empty value are live
	if v, ok := s.get([]byte("a")); !ok || string(v) != "3" {
		t.Errorf("a = %q %v, want 3", v, ok)
	}
	if _, ok := s.get([]byte("b")); ok {
		t.Error("b survived its tombstone")
	}
	if v, ok := s.get([]byte("")); !ok || v == nil || len(v) != 0 {
		t.Errorf("empty key = %v %v, want live empty value", v, ok)
	}
	if s.len() != 2 || s.tombstones != 2 {
		t.Errorf("len %d tombstones %d, want 2 2", s.len(), s.tombstones)
	}
}

// TestSnapshotCopyOnWrite checks against a model that a snapshot never
// changes after later writes, and that the state after the writes is right.
func TestSnapshotCopyOnWrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s := newState(0)
	model := map[string]string{}
	type snap struct {
		view  *Snapshot
		model map[string]string
	}
	var snaps []snap
	for i := 0; i < 20000; i++ {
		k := fmt.Sprintf("k%03d", rng.IntN(300))
		if rng.IntN(4) == 0 {
			s.apply([]byte(k), nil)
			delete(model, k)
		} else {
			v := fmt.Sprintf("v%d", i)
			s.apply([]byte(k), []byte(v))
			model[k] = v
		}
		if rng.IntN(500) == 0 {
			m := make(map[string]string, len(model))
			for k, v := range model {
				m[k] = v
			}
			snaps = append(snaps, snap{&Snapshot{st: s.snapshot()}, m})
		}
	}
	snaps = append(snaps, snap{&Snapshot{st: s.snapshot()}, model})
	for i, sn := range snaps {
		if sn.view.Len() != len(sn.model) {
			t.Fatalf("snapshot %d: %d keys, model %d", i, sn.view.Len(), len(sn.model))
		}
		n := 0
		for k, v := range sn.view.All() {
			n++
			if want, ok := sn.model[string(k)]; !ok || want != string(v) {
				t.Fatalf("snapshot %d: %s=%s, model %q %v", i, k, v, want, ok)
			}
		}
		if n != len(sn.model) {
			t.Fatalf("snapshot %d: iterated %d keys, want %d", i, n, len(sn.model))
		}
	}
}

func TestSnapshotSortedAndGet(t *testing.T) {
	s := newState(0)
	for _, k := range []string{"b", "a", "c", "aa"} {
		s.apply([]byte(k), []byte("v"+k))
	}
	sn := &Snapshot{st: s.snapshot(), offsets: map[int32]int64{0: 4}}
	var keys []string
	for k, v := range sn.Sorted() {
		if !bytes.Equal(v, []byte("v"+string(k))) {
			t.Errorf("%s=%s", k, v)
		}
		keys = append(keys, string(k))
	}
	if !slices.Equal(keys, []string{"a", "aa", "b", "c"}) {
		t.Errorf("sorted keys %v", keys)
	}
	// Early stop.
	for range sn.Sorted() {
		break
	}
	if v, ok := sn.Get([]byte("aa")); !ok || string(v) != "vaa" {
		t.Errorf("Get(aa) = %q %v", v, ok)
	}
	off := sn.Offsets()
	off[0] = 99
	if sn.Offsets()[0] != 4 {
		t.Error("Offsets returned the snapshot's own map")
	}
	// A write after the snapshot must not show in it.
	s.apply([]byte("z"), []byte("vz"))
	s.apply([]byte("a"), nil)
	if _, ok := sn.Get([]byte("z")); ok || sn.Len() != 4 {
		t.Error("snapshot changed after a later write")
	}
}

func BenchmarkStateApply(b *testing.B) {
	keys := make([][]byte, 1<<16)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("user-%08d", i))
	}
	val := bytes.Repeat([]byte("x"), 100)
	s := newState(0)
	i := 0
	for b.Loop() {
		s.apply(keys[i&(len(keys)-1)], val)
		i++
	}
}

// TestStateModel drives the table against a map model: replay-style chunks
// (records laid out in a registered buffer, the slots pointing into it, as
// the replay engine inserts them), records copied one at a time, tombstones,
// snapshots. The hash is forced into a few values, so that equal hashes of
// different keys, long probe runs, runs that wrap around the end of the
// slots and deletions inside them are common; one variant uses the real
// hash. After every step the buffer reference counts are checked exactly.
func TestStateModel(t *testing.T) {
	crc := func(k []byte) uint64 { return uint64(crc32.ChecksumIEEE(k)) }
	for _, tc := range []struct {
		name string
		hash func([]byte) uint64
	}{
		{"maphash", keyHash},
		{"five-hashes", func(k []byte) uint64 { return crc(k)%5 + 1 }},
		// One home slot (the first), 13 distinct hashes.
		{"same-home", func(k []byte) uint64 { return crc(k)%13 + 100 }},
		// Home in the last slot: every run wraps around.
		{"wrap", func(k []byte) uint64 { return ^uint64(0) - crc(k)%9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, uint64(len(tc.name))))
			s := newState(0)
			model := map[string]string{}
			type snap struct {
				st    *state
				model map[string]string
			}
			var snaps []snap
			key := func() []byte { return fmt.Appendf(nil, "k%03d", rng.IntN(200)) }
			for step := 0; step < 3000; step++ {
				switch op := rng.IntN(10); {
				case op < 6: // a replayed chunk of up to 20 records
					type rec struct {
						k, v []byte
						tomb bool
					}
					var recs []rec
					var buf []byte
					for range 1 + rng.IntN(20) {
						r := rec{k: key(), tomb: rng.IntN(4) == 0}
						if !r.tomb {
							r.v = fmt.Appendf(nil, "v%03d", rng.IntN(1000))[:rng.IntN(5)] // empty values too
						}
						recs = append(recs, r)
						buf = append(buf, r.k...)
						buf = append(buf, r.v...)
					}
					bi := s.addBuf(buf)
					off := uint32(0)
					for _, r := range recs {
						kl, vl := uint32(len(r.k)), uint32(len(r.v))
						k := buf[off : off+kl]
						if r.tomb {
							s.del(tc.hash(k), k)
							delete(model, string(r.k))
						} else {
							s.put(tc.hash(k), bi, off, kl, off+kl, vl)
							model[string(r.k)] = string(r.v)
						}
						off += kl + vl
					}
					s.unpin(bi)
				case op < 8: // one record copied
					k := key()
					v := fmt.Appendf(nil, "c%d", step)
					if rng.IntN(20) == 0 {
						v = bytes.Repeat([]byte("L"), arenaSize/4+1) // a buffer of its own
					}
					s.applyHashed(tc.hash(k), k, v)
					model[string(k)] = string(v)
				case op < 9:
					k := key()
					s.applyHashed(tc.hash(k), k, nil)
					delete(model, string(k))
				default:
					if rng.IntN(10) == 0 {
						snaps = append(snaps, snap{s.snapshot(), maps.Clone(model)})
					}
				}
				checkRefs(t, s)
				if t.Failed() {
					t.Fatalf("after step %d", step)
				}
			}
			snaps = append(snaps, snap{s, model})
			for i, sn := range snaps {
				if sn.st.len() != len(sn.model) {
					t.Fatalf("snapshot %d: %d keys, model %d", i, sn.st.len(), len(sn.model))
				}
				for k, want := range sn.model {
					v, ok := sn.st.lookup(tc.hash([]byte(k)), []byte(k))
					if !ok || string(v) != want || v == nil {
						t.Fatalf("snapshot %d: %s = %q %v, model %q", i, k, v, ok, want)
					}
				}
				n := 0
				sn.st.each(func(k, v []byte) bool {
					n++
					if want, ok := sn.model[string(k)]; !ok || want != string(v) {
						t.Fatalf("snapshot %d: iterated %s=%s, model %q %v", i, k, v, want, ok)
					}
					return true
				})
				if n != len(sn.model) {
					t.Fatalf("snapshot %d: iterated %d keys, want %d", i, n, len(sn.model))
				}
				for k := range 200 {
					k := fmt.Appendf(nil, "k%03d", k)
					if _, live := sn.model[string(k)]; !live {
						if v, ok := sn.st.lookup(tc.hash(k), k); ok {
							t.Fatalf("snapshot %d: deleted key %s found (%q)", i, k, v)
						}
					}
				}
			}
		})
	}
}

// checkRefs checks the buffer reference counts: each buffer's count is the
// number of slots pointing into it (plus the arena's pin), a buffer no slot
// uses is released, and the released ones are on the free list.
func checkRefs(t *testing.T, s *state) {
	t.Helper()
	want := make([]int32, len(s.bufs))
	n := 0
	for i := range s.slots {
		if sl := &s.slots[i]; sl.h != 0 {
			want[sl.buf]++
			n++
		}
	}
	if s.hasArena {
		want[s.arenaBuf]++
	}
	if n != s.n {
		t.Errorf("%d occupied slots, n = %d", n, s.n)
	}
	free := map[uint32]bool{}
	for _, i := range s.free {
		free[i] = true
	}
	for i := range s.bufs {
		if s.live[i] != want[i] {
			t.Errorf("buffer %d: count %d, %d references", i, s.live[i], want[i])
		}
		if (s.bufs[i] == nil) != (want[i] == 0) || free[uint32(i)] != (want[i] == 0) {
			t.Errorf("buffer %d: nil %v, free %v, %d references", i, s.bufs[i] == nil, free[uint32(i)], want[i])
		}
	}
}

// TestStateReleasesBuffers: once every key of a replayed buffer is
// overwritten or deleted, the state no longer references the buffer.
func TestStateReleasesBuffers(t *testing.T) {
	s := newState(0)
	buf := []byte("aAbB")
	bi := s.addBuf(buf)
	s.put(keyHash([]byte("a")), bi, 0, 1, 1, 1)
	s.put(keyHash([]byte("b")), bi, 2, 1, 3, 1)
	s.unpin(bi)
	if s.bufs[bi] == nil {
		t.Fatal("buffer released while keys point into it")
	}
	s.apply([]byte("a"), []byte("x"))
	s.apply([]byte("b"), nil)
	if s.bufs[bi] != nil {
		t.Error("buffer kept after every key in it was overwritten or deleted")
	}
	if v, ok := s.get([]byte("a")); !ok || string(v) != "x" {
		t.Errorf("a = %q %v", v, ok)
	}
}
