package engine

import (
	"math/bits"
	"sync"
	"time"
)

// What a group commit costs depends on the file system, the disk and on
// what else is dirty there, so SyncLogs measures it instead of assuming.
// Measured on ext4 over a virtual disk shared with other busy processes
// (BenchmarkSyncLogs, 1 KiB to 256 KiB unflushed per log, runs minutes
// apart): below GroupSyncMin dirty logs the logs' own fdatasyncs are
// faster; from 8 to ~100 logs one syncfs was 1.3-2.8× faster in one run
// (one journal commit instead of many) and up to 1.6× slower in another;
// at 256 and 1,000 logs either won depending on the run, by up to 3×
// (syncfs writes the inodes back one after the other, the mapped indexes
// with them, and waits for everything other writers left dirty on the
// file system: with busy neighbours its cost varies tenfold from one
// commit to the next, while the fdatasyncs, issued from 64 threads at
// once, depend on the disk's queue).
//
// syncChooser keeps, per log dir and per power-of-two class of the number
// of dirty logs, a moving average of the commit time of each strategy,
// and picks the lower one. The other is tried again once the time spent
// in that class since its last try reaches exploreFactor times its
// expected cost, so that a strategy which got cheaper is noticed while
// the exploration costs at most about 1/exploreFactor of the commit time.
// Before any measurement, the prior is the benchmark's: syncfs for 8 to
// 255 logs, fdatasyncs otherwise; the other strategy is first tried on
// the third commit of a class.
//
// A log dir with a group-commit journal (journal.go) commits 4 or more
// dirty logs through it without asking the chooser: a journal commit's
// time leaves out the segments' write-back it defers (paid by trims and
// background flushes), so comparing it with the other two would always
// pick it; below journalMin the chooser's rule applies as without one.

const (
	exploreFactor = 32
	costWeight    = 0.25 // weight of a new sample in the moving average
	syncClasses   = 21   // bits.Len of the dirty-log count, capped
)

type syncChooser struct {
	mu      sync.Mutex
	classes [syncClasses]syncClass
}

type syncClass struct {
	cost  [2]float64 // moving average, seconds: [each log, file system]
	known [2]bool
	spent float64 // seconds committed in this class since the last exploration
}

func strategyIndex(s SyncStrategy) int {
	if s == SyncFileSystem {
		return 1
	}
	return 0
}

func classOf(n int) int { return min(bits.Len(uint(n)), syncClasses-1) }

// prior is the strategy for n dirty logs before anything was measured.
func prior(n int) SyncStrategy {
	if n >= 8 && n < 256 {
		return SyncFileSystem
	}
	return SyncEachLog
}

// pick returns the strategy for a commit of n dirty logs.
func (c *syncChooser) pick(n int) SyncStrategy {
	if n < GroupSyncMin {
		return SyncEachLog
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := &c.classes[classOf(n)]
	best := prior(n)
	switch {
	case k.known[0] && k.known[1]:
		if k.cost[1] < k.cost[0] {
			best = SyncFileSystem
		} else {
			best = SyncEachLog
		}
	case k.known[0]:
		best = SyncEachLog
	case k.known[1]:
		best = SyncFileSystem
	}
	other := SyncFileSystem
	if best == SyncFileSystem {
		other = SyncEachLog
	}
	o := strategyIndex(other)
	// The other strategy is explored once the time spent here would pay
	// for exploreFactor of its commits; one never measured, after two
	// commits of best.
	limit := exploreFactor * k.cost[o]
	if !k.known[o] {
		limit = 2 * k.cost[strategyIndex(best)]
	}
	if k.known[strategyIndex(best)] && k.spent >= limit {
		k.spent = 0
		return other
	}
	return best
}

// record adds the duration of a commit of n dirty logs made with how.
func (c *syncChooser) record(n int, how SyncStrategy, d time.Duration) {
	if n < GroupSyncMin {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := &c.classes[classOf(n)]
	i := strategyIndex(how)
	sec := d.Seconds()
	if k.known[i] {
		k.cost[i] += costWeight * (sec - k.cost[i])
	} else {
		k.cost[i], k.known[i] = sec, true
	}
	k.spent += sec
}

// choosers holds one syncChooser per log dir, for the life of the process.
var choosers sync.Map // string → *syncChooser

func chooserFor(root string) *syncChooser {
	if c, ok := choosers.Load(root); ok {
		return c.(*syncChooser)
	}
	c, _ := choosers.LoadOrStore(root, new(syncChooser))
	return c.(*syncChooser)
}
