package index

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestOffsetConcurrentLookup runs lookups while the writer appends (and
// flushes). Entry i is (base+3i+1, 100i), so every published entry is
// checkable: a lookup for a target between entry i and entry i+1 must return
// entry i once the reader has seen i published.
func TestOffsetConcurrentLookup(t *testing.T) {
	const total = 60_000
	const base = 1000
	x := mustOpenOffset(t, tmpFile(t, "c.index"), base, total*8, true)
	var done atomic.Bool
	var wg sync.WaitGroup
	var lookups atomic.Int64
	for r := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 9))
			for !done.Load() {
				n := x.Entries()
				if last := x.LastOffset(); n > 0 && last < base+3*int64(n-1)+1 {
					t.Errorf("LastOffset %d with %d entries", last, n)
					return
				}
				if n == 0 {
					continue
				}
				i := rng.IntN(n)
				if rng.IntN(4) == 0 {
					i = n - 1 // the newest entry, where appends land
				}
				target := base + 3*int64(i) + 1 + rng.Int64N(3)
				off, pos := x.Lookup(target)
				if off != base+3*int64(i)+1 || pos != uint32(100*i) {
					t.Errorf("Lookup(%d) with %d entries = (%d, %d), want entry %d", target, n, off, pos, i)
					return
				}
				if off, pos := x.Entry(i); off != base+3*int64(i)+1 || pos != uint32(100*i) {
					t.Errorf("Entry(%d) = (%d, %d)", i, off, pos)
					return
				}
				lookups.Add(1)
			}
		})
	}
	for i := range total {
		if err := x.Append(base+3*int64(i)+1, uint32(100*i)); err != nil {
			t.Error(err)
			break
		}
		if i%10_000 == 0 {
			wg.Go(func() {
				if err := x.Flush(); err != nil {
					t.Error(err)
				}
			})
		}
	}
	done.Store(true)
	wg.Wait()
	if !x.IsFull() {
		t.Fatal("not full")
	}
	t.Logf("%d concurrent lookups", lookups.Load())
}

// TestTimeConcurrentLookup is the same for the time index: entry i is
// (10i+5, base+2i).
func TestTimeConcurrentLookup(t *testing.T) {
	const total = 50_000
	const base = 77
	x := mustOpenTime(t, tmpFile(t, "c.timeindex"), base, (total+1)*12, true)
	var done atomic.Bool
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 10))
			for !done.Load() {
				n := x.Entries()
				if n == 0 {
					continue
				}
				if ts, off := x.LastEntry(); ts < 10*int64(n-1)+5 || off < base+2*int64(n-1) {
					t.Errorf("LastEntry (%d, %d) with %d entries", ts, off, n)
					return
				}
				i := rng.IntN(n)
				if rng.IntN(4) == 0 {
					i = n - 1
				}
				target := 10*int64(i) + 5 + rng.Int64N(10)
				if ts, off := x.Lookup(target); ts != 10*int64(i)+5 || off != base+2*int64(i) {
					t.Errorf("Lookup(%d) with %d entries = (%d, %d), want entry %d", target, n, ts, off, i)
					return
				}
			}
		})
	}
	for i := range total {
		if err := x.MaybeAppend(10*int64(i)+5, base+2*int64(i), false); err != nil {
			t.Error(err)
			break
		}
	}
	done.Store(true)
	wg.Wait()
}
