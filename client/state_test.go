package client

import (
	"bytes"
	"fmt"
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
	if len(s.m) != 2 || s.tombstones != 2 {
		t.Errorf("len %d tombstones %d, want 2 2", len(s.m), s.tombstones)
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
			snaps = append(snaps, snap{&Snapshot{m: s.snapshot()}, m})
		}
	}
	snaps = append(snaps, snap{&Snapshot{m: s.snapshot()}, model})
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
	sn := &Snapshot{m: s.snapshot(), offsets: map[int32]int64{0: 4}}
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
