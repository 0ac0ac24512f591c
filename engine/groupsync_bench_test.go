package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
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

// BenchmarkJournalCeiling measures the ceiling of a broker-wide journal
// against today's group-commit strategies: per commit, n logs each get one
// batch appended (page cache only: the fsync-off cost), then the commit is
// made durable by the logs' own fdatasyncs, by one syncfs, or by appending
// the same bytes to one journal file and one fdatasync of it. Rounds
// alternate; medians are reported, with each strategy's append+commit time
// against the append alone (the best end-to-end ratio it allows), and the
// engine's own journal commit (SyncJournal: batches read back from the
// segments, encoded, written, synced) beside the raw journal write.
func BenchmarkJournalCeiling(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		for _, size := range []int{1 << 10, 16 << 10, 64 << 10} {
			if n*size > 64<<20 {
				continue
			}
			b.Run(fmt.Sprintf("logs=%d/bytes=%dKiB", n, size>>10), func(b *testing.B) {
				root := b.TempDir()
				cfg := DefaultConfig()
				m, err := OpenManager(ManagerOptions{Dirs: []string{root}, Logger: quietLogger, ConfigFor: func(TopicPartition) Config { return cfg }, Journal: true})
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
				jf, err := os.OpenFile(filepath.Join(root, "journal-bench"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
				if err != nil {
					b.Fatal(err)
				}
				defer jf.Close()
				batch := benchBatch(b, size)
				dirty := func() {
					for _, l := range logs {
						if _, err := l.Append(batch, 0); err != nil {
							b.Fatal(err)
						}
					}
				}
				dirty()
				SyncLogsWith(logs, SyncEachLog)
				buf := make([]byte, 0, n*(len(batch)+64))
				commit := func(how int) float64 {
					start := time.Now()
					dirty()
					switch how {
					case 0: // fsync off
					case 1:
						SyncLogsWith(logs, SyncEachLog)
					case 2:
						SyncLogsWith(logs, SyncFileSystem)
					case 3:
						buf = buf[:0]
						for range logs {
							buf = append(buf, make([]byte, 40)...)
							buf = append(buf, batch...)
						}
						if _, err := jf.Write(buf); err != nil {
							b.Fatal(err)
						}
						if err := syscall.Fdatasync(int(jf.Fd())); err != nil {
							b.Fatal(err)
						}
					case 4:
						for i, err := range SyncLogsWith(logs, SyncJournal) {
							if err != nil {
								b.Fatalf("log %d: %v", i, err)
							}
						}
					}
					return float64(time.Since(start).Microseconds())
				}
				var res [5][]float64
				deadline := time.Now().Add(15 * time.Second)
				for r := 0; r < 40 && (r < 4 || time.Now().Before(deadline)); r++ {
					for k := range 5 {
						h := (k + r) % 5
						res[h] = append(res[h], commit(h))
					}
					// Keep the background write-back of earlier rounds out of
					// the next one's way as the journal would (lazily).
					if r%8 == 7 {
						SyncLogsWith(logs, SyncFileSystem)
					}
				}
				off := median(res[0])
				b.ReportMetric(off, "off-µs")
				b.ReportMetric(off/median(res[1]), "each-ratio")
				b.ReportMetric(off/median(res[2]), "syncfs-ratio")
				b.ReportMetric(off/median(res[3]), "journal-ratio")
				b.ReportMetric(off/median(res[4]), "engine-journal-ratio")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
