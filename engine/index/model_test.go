package index

import (
	"math"
	"math/rand/v2"
	"testing"
)

// floorModel is the dumb model of a lookup: the last slot whose key is <=
// target, or -1.
func floorModel(keys []int64, target int64) int {
	slot := -1
	for i, k := range keys {
		if k <= target {
			slot = i
		}
	}
	return slot
}

// lookupTargets returns targets around every key, around the warm section's
// first entry, and at random.
func lookupTargets(rng *rand.Rand, keys []int64, warmEntries int) []int64 {
	targets := []int64{math.MinInt64, math.MaxInt64, -1, 0}
	for _, k := range keys {
		targets = append(targets, k-1, k, k+1)
	}
	if n := len(keys); n > 0 {
		firstHot := max(0, n-1-warmEntries)
		for d := -2; d <= 2; d++ {
			if i := firstHot + d; i >= 0 && i < n {
				targets = append(targets, keys[i]-1, keys[i], keys[i]+1)
			}
		}
		for range 200 {
			targets = append(targets, keys[0]-5+rng.Int64N(keys[n-1]-keys[0]+10))
		}
	}
	return targets
}

// TestOffsetLookupModel compares Lookup with a linear scan over random
// indexes whose sizes straddle the warm section (1024 entries), and checks
// that exactly the targets past the first warm entry take the warm branch.
func TestOffsetLookupModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 2, 3, 1023, 1024, 1025, 1026, 1027, 1100, 5000}
	for range 5 {
		sizes = append(sizes, rng.IntN(6000))
	}
	for _, size := range sizes {
		base := rng.Int64N(1 << 40)
		x := mustOpenOffset(t, tmpFile(t, "m.index"), base, 8*size+8*rng.IntN(3)+8, true)
		keys := make([]int64, 0, size)
		positions := make([]uint32, 0, size)
		off, pos := base+rng.Int64N(3), uint32(0)
		for range size {
			keys, positions = append(keys, off), append(positions, pos)
			must(t, x.Append(off, pos))
			off += 1 + rng.Int64N(100)
			pos += uint32(rng.IntN(20000))
		}
		if x.Entries() != size {
			t.Fatalf("entries %d, want %d", x.Entries(), size)
		}
		must(t, x.Verify())
		firstHot := max(0, size-1-offsetWarmEntries)
		for _, target := range lookupTargets(rng, keys, offsetWarmEntries) {
			want := floorModel(keys, target)
			gotOff, gotPos := x.Lookup(target)
			wantOff, wantPos := base, uint32(0)
			if want >= 0 {
				wantOff, wantPos = keys[want], positions[want]
			}
			if gotOff != wantOff || gotPos != wantPos {
				t.Fatalf("size %d: Lookup(%d) = (%d, %d), want (%d, %d)", size, target, gotOff, gotPos, wantOff, wantPos)
			}
			slot, warm := x.lookupSlot(x.mapping(), target)
			if slot != want {
				t.Fatalf("size %d: slot %d, want %d", size, slot, want)
			}
			if wantWarm := size > 0 && keys[firstHot] < target; warm != wantWarm {
				t.Fatalf("size %d target %d: warm %v, want %v", size, target, warm, wantWarm)
			}
		}
		// Truncation matches the model too: entries with offset >= t go.
		if size > 0 {
			target := keys[0] + rng.Int64N(keys[size-1]-keys[0]+2)
			keep := 0
			for keep < size && keys[keep] < target {
				keep++
			}
			x.TruncateTo(target)
			if x.Entries() != keep {
				t.Fatalf("TruncateTo(%d): entries %d, want %d", target, x.Entries(), keep)
			}
		}
	}
}

// TestTimeLookupModel does the same for the time index (warm section of 682
// entries), with offsets that sometimes repeat.
func TestTimeLookupModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sizes := []int{0, 1, 2, 3, 681, 682, 683, 684, 685, 700, 4000}
	for range 5 {
		sizes = append(sizes, rng.IntN(4000))
	}
	for _, size := range sizes {
		base := rng.Int64N(1 << 40)
		x := mustOpenTime(t, tmpFile(t, "m.timeindex"), base, 12*size+12+rng.IntN(12), true)
		keys := make([]int64, 0, size)
		offsets := make([]int64, 0, size)
		ts, off := rng.Int64N(1<<41), base
		for range size {
			keys, offsets = append(keys, ts), append(offsets, off)
			must(t, x.MaybeAppend(ts, off, false))
			ts += 1 + rng.Int64N(1000)
			off += rng.Int64N(3)
		}
		if x.Entries() != size {
			t.Fatalf("entries %d, want %d", x.Entries(), size)
		}
		must(t, x.Verify())
		firstHot := max(0, size-1-timeWarmEntries)
		for _, target := range lookupTargets(rng, keys, timeWarmEntries) {
			want := floorModel(keys, target)
			gotTs, gotOff := x.Lookup(target)
			wantTs, wantOff := NoTimestamp, base
			if want >= 0 {
				wantTs, wantOff = keys[want], offsets[want]
			}
			if gotTs != wantTs || gotOff != wantOff {
				t.Fatalf("size %d: Lookup(%d) = (%d, %d), want (%d, %d)", size, target, gotTs, gotOff, wantTs, wantOff)
			}
			slot, warm := x.lookupSlot(x.mapping(), target)
			if slot != want {
				t.Fatalf("size %d: slot %d, want %d", size, slot, want)
			}
			if wantWarm := size > 0 && keys[firstHot] < target; warm != wantWarm {
				t.Fatalf("size %d target %d: warm %v, want %v", size, target, warm, wantWarm)
			}
		}
		if size > 0 {
			target := offsets[rng.IntN(size)] + rng.Int64N(2)
			keep := 0
			for keep < size && offsets[keep] < target {
				keep++
			}
			x.TruncateTo(target)
			if x.Entries() != keep {
				t.Fatalf("TruncateTo(%d): entries %d, want %d", target, x.Entries(), keep)
			}
		}
	}
}

// TestWarmSectionSize pins Kafka's warm-section sizes: 8192 bytes of entries.
func TestWarmSectionSize(t *testing.T) {
	if offsetWarmEntries != 1024 || timeWarmEntries != 682 {
		t.Fatalf("warm entries %d, %d", offsetWarmEntries, timeWarmEntries)
	}
}
