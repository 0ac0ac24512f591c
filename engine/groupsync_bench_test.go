package engine

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSyncLogs measures a group commit on this machine's file system
// as a function of the number of dirty logs in one log dir and of the
// bytes each has unflushed: the logs' own fdatasyncs in parallel against
// one syncfs of the log dir, in alternating rounds of the same run. It
// reports the median commit time of each and their ratio (each/fs > 1:
// syncfs is faster). The syncChooser's prior and the figures in
// docs/storage.md come from it.
func BenchmarkSyncLogs(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8, 16, 32, 100, 256, 1000} {
		for _, size := range []int{1 << 10, 16 << 10, 256 << 10} {
			if n*size > 64<<20 {
				continue
			}
			b.Run(fmt.Sprintf("logs=%d/bytes=%dKiB", n, size>>10), func(b *testing.B) {
				root := b.TempDir()
				cfg := DefaultConfig()
				m, err := OpenManager(ManagerOptions{Dirs: []string{root}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }})
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				logs := make([]*Log, n)
				for i := range logs {
					if logs[i], err = m.CreateLog(TopicPartition{Topic: "sync", Partition: int32(i)}, cfg); err != nil {
						b.Fatal(err)
					}
				}
				batch := benchBatch(b, size)
				dirty := func() {
					for _, l := range logs {
						if _, err := l.Append(batch, 0); err != nil {
							b.Fatal(err)
						}
					}
				}
				dirty()
				SyncLogsWith(logs, SyncEachLog) // the first commit writes the epoch checkpoints
				commit := func(how SyncStrategy) float64 {
					dirty()
					start := time.Now()
					for i, err := range SyncLogsWith(logs, how) {
						if err != nil {
							b.Fatalf("log %d: %v", i, err)
						}
					}
					return float64(time.Since(start).Microseconds())
				}
				rounds := max(b.N, 9)
				deadline := time.Now().Add(20 * time.Second)
				var each, fs []float64
				for r := 0; r < rounds && (r < 3 || time.Now().Before(deadline)); r++ {
					if r%2 == 0 {
						each = append(each, commit(SyncEachLog))
						fs = append(fs, commit(SyncFileSystem))
					} else {
						fs = append(fs, commit(SyncFileSystem))
						each = append(each, commit(SyncEachLog))
					}
				}
				b.ReportMetric(median(each), "each-µs")
				b.ReportMetric(median(fs), "syncfs-µs")
				b.ReportMetric(median(each)/median(fs), "each/fs")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
