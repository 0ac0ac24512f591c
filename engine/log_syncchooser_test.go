package engine

import (
	"testing"
	"time"
)

// simulate runs commits of n dirty logs through c, each strategy costing
// what cost says, and returns the time spent with each.
func simulate(c *syncChooser, n, commits int, cost func(SyncStrategy) time.Duration) (each, fs time.Duration) {
	for range commits {
		how := c.pick(n)
		d := cost(how)
		c.record(n, how, d)
		if how == SyncFileSystem {
			fs += d
		} else {
			each += d
		}
	}
	return each, fs
}

func costs(each, fs time.Duration) func(SyncStrategy) time.Duration {
	return func(s SyncStrategy) time.Duration {
		if s == SyncFileSystem {
			return fs
		}
		return each
	}
}

// TestSyncChooserBelowGroupSyncMin: fewer than GroupSyncMin dirty logs are
// always synced one by one, whatever was measured.
func TestSyncChooserBelowGroupSyncMin(t *testing.T) {
	var c syncChooser
	for n := 1; n < GroupSyncMin; n++ {
		if _, fs := simulate(&c, n, 1000, costs(time.Second, time.Microsecond)); fs != 0 {
			t.Fatalf("%d dirty logs: a file-system sync was chosen", n)
		}
	}
}

// TestSyncChooserPrior: before any measurement, syncfs for 8 to 255 dirty
// logs and the logs' own syncs otherwise (BenchmarkSyncLogs).
func TestSyncChooserPrior(t *testing.T) {
	for n, want := range map[int]SyncStrategy{4: SyncEachLog, 7: SyncEachLog, 8: SyncFileSystem, 100: SyncFileSystem, 255: SyncFileSystem, 256: SyncEachLog, 1000: SyncEachLog} {
		var c syncChooser
		if got := c.pick(n); got != want {
			t.Errorf("%d dirty logs: first pick %v, want %v", n, got, want)
		}
	}
}

// TestSyncChooserPicksTheCheaper: whatever the prior, the chooser settles
// on the cheaper strategy, the exploration of the other costs a small
// share of the commit time, and a change of costs (a neighbour starts or
// stops filling the file system with dirty pages) is followed.
func TestSyncChooserPicksTheCheaper(t *testing.T) {
	for _, n := range []int{4, 16, 1000} {
		var c syncChooser
		// syncfs ten times dearer: mostly fdatasyncs.
		each, fs := simulate(&c, n, 2000, costs(time.Millisecond, 10*time.Millisecond))
		if share := float64(fs) / float64(each+fs); share > 0.1 {
			t.Fatalf("%d logs, syncfs 10× dearer: %.0f%% of the commit time in syncfs", n, 100*share)
		}
		// Now syncfs is four times cheaper: within a bounded number of
		// commits, and then for most of the time, syncfs.
		simulate(&c, n, 500, costs(4*time.Millisecond, time.Millisecond))
		each, fs = simulate(&c, n, 2000, costs(4*time.Millisecond, time.Millisecond))
		if share := float64(each) / float64(each+fs); share > 0.1 {
			t.Fatalf("%d logs, syncfs 4× cheaper: %.0f%% of the commit time in fdatasyncs", n, 100*share)
		}
		// And back.
		simulate(&c, n, 2000, costs(time.Millisecond, 10*time.Millisecond))
		each, fs = simulate(&c, n, 2000, costs(time.Millisecond, 10*time.Millisecond))
		if share := float64(fs) / float64(each+fs); share > 0.1 {
			t.Fatalf("%d logs, syncfs dearer again: %.0f%% of the commit time in syncfs", n, 100*share)
		}
	}
}
