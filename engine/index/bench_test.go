package index

import (
	"math/rand/v2"
	"testing"
)

const benchIndexBytes = 10 << 20 // segment.index.bytes default

// fullOffsetIndex returns a full 10 MiB offset index: 1,310,720 entries,
// entry i = (2i, 64i).
func fullOffsetIndex(b *testing.B) *OffsetIndex {
	x := mustOpenOffset(b, tmpFile(b, "b.index"), 0, benchIndexBytes, true)
	for i := range x.MaxEntries() {
		if err := x.Append(int64(2*i), uint32(64*i)); err != nil {
			b.Fatal(err)
		}
	}
	return x
}

func fullTimeIndex(b *testing.B) *TimeIndex {
	x := mustOpenTime(b, tmpFile(b, "b.timeindex"), 0, benchIndexBytes, true)
	for i := range x.MaxEntries() {
		if err := x.MaybeAppend(int64(3*i+1), int64(i), true); err != nil {
			b.Fatal(err)
		}
	}
	return x
}

func BenchmarkOffsetLookup(b *testing.B) {
	x := fullOffsetIndex(b)
	n := x.Entries()
	rng := rand.New(rand.NewPCG(1, 1))
	targets := make([]int64, 1<<16)
	b.Run("warm", func(b *testing.B) {
		// Targets inside the last 1024 entries: the in-sync consumer case.
		for i := range targets {
			targets[i] = int64(2*(n-1-rng.IntN(offsetWarmEntries)) + 1)
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			x.Lookup(targets[i&(len(targets)-1)])
		}
	})
	b.Run("cold", func(b *testing.B) {
		// Targets anywhere: the full binary search.
		for i := range targets {
			targets[i] = rng.Int64N(int64(2 * n))
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			x.Lookup(targets[i&(len(targets)-1)])
		}
	})
}

func BenchmarkTimeLookup(b *testing.B) {
	x := fullTimeIndex(b)
	n := x.Entries()
	rng := rand.New(rand.NewPCG(2, 2))
	targets := make([]int64, 1<<16)
	b.Run("warm", func(b *testing.B) {
		for i := range targets {
			targets[i] = int64(3*(n-1-rng.IntN(timeWarmEntries)) + 2)
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			x.Lookup(targets[i&(len(targets)-1)])
		}
	})
	b.Run("cold", func(b *testing.B) {
		for i := range targets {
			targets[i] = rng.Int64N(int64(3 * n))
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			x.Lookup(targets[i&(len(targets)-1)])
		}
	})
}

func BenchmarkOffsetAppend(b *testing.B) {
	x := mustOpenOffset(b, tmpFile(b, "a.index"), 0, benchIndexBytes, true)
	var off int64
	for b.Loop() {
		if x.IsFull() {
			b.StopTimer()
			x.Reset()
			off = 0
			b.StartTimer()
		}
		if err := x.Append(off, uint32(off)); err != nil {
			b.Fatal(err)
		}
		off += 3
	}
}

func BenchmarkTimeAppend(b *testing.B) {
	x := mustOpenTime(b, tmpFile(b, "a.timeindex"), 0, benchIndexBytes, true)
	var ts int64
	for b.Loop() {
		if x.IsFull() {
			b.StopTimer()
			x.Reset()
			ts = 0
			b.StartTimer()
		}
		if err := x.MaybeAppend(ts+1, ts, false); err != nil {
			b.Fatal(err)
		}
		ts++
	}
}

// BenchmarkOpenUncleanTail measures reopening a 10 MiB preallocated offset
// index left untrimmed with 1000 entries: the zero tail is a file hole that
// open skips without reading.
func BenchmarkOpenUncleanTail(b *testing.B) {
	path := tmpFile(b, "u.index")
	x := mustOpenOffset(b, path, 0, benchIndexBytes, true)
	for i := range 1000 {
		if err := x.Append(int64(i), uint32(i)); err != nil {
			b.Fatal(err)
		}
	}
	x.crash(b)
	for b.Loop() {
		y := mustOpenOffset(b, path, 0, benchIndexBytes, false)
		if y.Entries() != 1000 {
			b.Fatal(y.Entries())
		}
		y.crash(b)
	}
}
