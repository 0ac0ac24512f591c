// Package bench measures kvlogd side by side with franz-go's kfake (in
// memory and with its DataDir) in one run, as the performance anchors ask:
// absolute numbers on shared machines drift, so every figure is a median
// over alternating rounds and every comparison a same-run ratio.
//
// The workload is issue 3 §5: a franz-go producer (acks=all, idempotent,
// no compression) writes keyed records (13-byte keys over 1,000 keys,
// 100-byte values) to a fresh compacted topic of 1 or 4 partitions, then a
// franz-go consumer reads the topic from offset 0 to the end. Each round
// runs every broker once, in a rotating order. kvlogd runs as its own
// process (built without -race), so its CPU time is read from
// /proc/<pid>/stat (utime+stime) and reported per GB of record payload
// (key + value) produced and fetched, summed over the rounds; the same
// from the threads' schedstat run times (nanoseconds, where stat counts
// 10 ms ticks) is reported beside it. kfake runs inside the benchmark
// process. kvlogd runs twice: with its defaults (fsync before
// acknowledging acks=all) and with kvlog.fsync.acks.all=false, kfake's
// durability.
//
// Run:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench
//
// KVLOG_BENCH_RECORDS (default 300000) and KVLOG_BENCH_ROUNDS (default 7)
// size the run. The plain tests of the package exercise the harness
// against kfake only, with a few records.
package bench
