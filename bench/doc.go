// Package bench holds kvlog's side-by-side benchmarks: kvlog against its
// peers and against the machine's own limits, measured in one run, because
// absolute numbers on shared machines drift ±30% and only same-run ratios
// mean anything.
//
// # make bench, make bench-quick
//
// The full suite is the program in bench/kvbench, its own Go module
// (github.com/kvlog/kvlog/bench/kvbench, replacing github.com/kvlog/kvlog
// with this tree):
//
//	make bench-quick   # reduced sizes, 3 rounds: about 6-10 minutes
//	make bench-smoke   # every scenario with Kafka at the smallest sizes: checks the full run's paths
//	make bench         # the full matrix, 3 rounds: about 55 minutes on a quiet machine
//	make bench-quick BENCH_FLAGS='-scenarios produce,consume -reps 2'
//	make bench-quick BENCH_FLAGS='-scenarios produce -baseline <rev> -systems kvlog,kvlog-before,kvlog-nofsync -cells 8/1024/1000/all/none,1000/1024/1000/all/none'
//	bin/kvbench -from bench/results/<date>   # rewrite report and charts from raw/
//
// It builds kvlogd (this tree, without -race) and kfaked (bench/kvbench/kfaked:
// franz-go's kfake from the module proxy, in memory or with DataDir, wrapped
// as its own process with a POST /compact control endpoint), finds Debian's
// nats-server (make tools-bench installs it) and Apache Kafka's Maven jars
// (make tools-bench resolves them: Kafka 4.x from compat/kafka/pom.xml,
// Kafka 3.9 from bench/kafka39/pom.xml), and starts every system under
// test as a separate process on 127.0.0.1 with a fresh temp data dir.
//
// Apache Kafka is the system a user would pick instead, so it runs in every
// scenario (the quick run: produce, consume and latency only) with two
// durability settings, labelled in every table: "kafka" is its default
// (page cache, no fsync — acknowledged data can be lost on power failure)
// and "kafka-fsync" sets flush.messages=1 (log.flush.interval.messages=1:
// fsync after every append, kvlog's default promise). kvlog runs with its
// default (fsync before acknowledging acks=all) and, as "kvlog-nofsync",
// with kvlog.fsync.acks.all=false; the like-for-like pairs are
// kvlog/kafka-fsync and kvlog-nofsync/kafka. Kafka 4.x runs as one KRaft
// node (broker and controller; storage formatted by kafka.tools.StorageTool)
// with kafka-server-start.sh's JVM flags and 1 GiB heap
// (internal/kafkaproc, shared with compat/kafka's tests); every node first
// pushes a few hundred thousand records through, unmeasured, so that the
// rounds see a JIT-warmed JVM. Its log cleaner's per-pass statistics go to
// log-cleaner.log in its directory (bench/kvbench/kafka-log4j2.properties).
// The replicated scenario runs Kafka 3.9 in ZooKeeper mode — three brokers
// on the ZooKeeper of kvlog's cluster — like for like with kvlog's
// ZooKeeper cluster. The first fresh starts of each Kafka-protocol system
// are timed from exec to the first acknowledged acks=all produce, and their
// RSS is read after a few idle seconds; the recovery scenario times the
// same first produce after clean restarts and kill -9 on its data sizes.
// The report's "Goals against Apache Kafka" table gives each goal's
// measured ratio and verdict. Each
// scenario starts its systems, runs its measurements in rounds whose order
// rotates (A B C, B C A, C A B, …), and stops them. The machine's limits
// (sequential write with and without fdatasync, fdatasync per write, page
// cache and cold reads, loopback TCP and sendfile, CRC32C, memmove) are
// measured by the same program at the start, in the middle and at the end.
// Broker cost is read from /proc for every system alike: CPU seconds
// (utime+stime) over each timed window per GB of key+value payload in or
// out, and peak RSS (VmHWM). kvlogd's pprof endpoint is sampled during extra
// runs of the produce, consume and rebuild workloads, and `go tool pprof -top`
// of it goes into the report when a goal it bears on is missed.
//
// The scenarios: produce throughput over the matrix
// (partitions, value size, key count, acks, compression); consume from
// offset 0, warm and cold (fadvise DONTNEED, residency checked with
// mincore); end-to-end latency at 10/50/80% of kvlog's measured peak;
// rebuild of the latest state of N keys (kvlog's client library and a raw
// franz-go loop on a compacted topic, the library on the uncompacted
// history, kfake, NATS KV watch-all); compaction (kvlog's cleaner vs kfake
// Compact(), per core — run only when kvlogd links cleaner/); recovery after
// kill -9 (time from exec to serving, rescanned bytes, scan rate; kvlog
// unflushed/flushed, warm/cold, and NATS; one segment.bytes at every data
// size); scale with log size (each probe on the grown log paired with the
// same probe on a fresh topic of the same broker, so grown/fresh cancels the
// machine's drift) and with partitions per broker (kvlog with and without
// its acks=all fsync); and a 3-broker RF 3 cluster (internal/testcluster
// with a real ZooKeeper) against the single broker at acks=1 and acks=all;
// and many partitions per broker (5,000, 10,000 and 30,000 under the
// process's own RLIMIT_NOFILE: create time, descriptors, mappings, RSS,
// shutdown, clean and unclean restart to every partition served), beside
// the kvlogd of the git revision given with -baseline when there is one
// (BENCH_FLAGS='-scenarios partitions -baseline <rev>').
// The restore scenario times a Kafka Streams application (compat/java's
// StreamsApp in its restore mode; `make tools-java` builds it) restoring its
// RocksDB store from a changelog written over a period and then left idle,
// on kvlog and on Kafka, at default topic configs and with short
// segment.ms and delete.retention.ms, plain and transactional with a tenth
// of the transactions aborted (restored under exactly_once_v2), and counts
// the records each restores.
// A scenario that cannot run says so in the report with its reason; nothing
// is estimated or carried over from another run.
//
// Output: bench/results/<date>/report.md (summary of the issue's goals with
// verdicts, every parameter, tables of medians with min–max and ratios
// kvlog/peer and kvlog/machine limit, the misses with their profiles, what
// did not run) and PNG charts made with gonum.org/v1/plot beside it; raw data
// (results.json with every round's value, state.json, process logs, pprof
// files) under bench/results/<date>/raw/, which git ignores. A later run on
// the same day overwrites that day's report (-out picks another directory).
//
// # Profiles and the explanations of misses
//
// After a profiled cell's measured rounds, the same work runs again in a
// loop over a fixed window on each broker: kvlogd's CPU profile (pprof)
// with the load generator's, and Apache Kafka's Java Flight Recorder
// recording (-kafka-jfr, on by default, with the JDK's "default" settings:
// recording only during the profile windows, so that measured rounds carry
// none of its cost, its initialisation done after the node's start-up
// sample; -kafka-jfr-always keeps it on through the rounds instead; the
// report states its measured cost on Kafka's produce rate and CPU). For
// each window the report keeps both processes' user and system
// CPU from /proc (system time is the kernel's: sendfile, socket copies,
// page-cache writes, fsync), a JVM's CPU per thread group, and the top
// frames. A missed goal's explanation is generated from those figures
// (bench/kvbench/report_profile.go): which process was busy, how much of
// it was kernel time, which frames led, the limit they point to (the load
// generator, the machine's cores, waiting on fsync or round trips, kernel
// time, kvlogd's own CPU) and the next step that follows.
//
// # Log-size flatness
//
// The scale scenario's log-size probes compare a grown log with a fresh
// topic on the same broker, back to back. A log near the machine's memory
// leaves gigabytes of dirty pages and a full page cache behind it, so by
// default (-scale-settle on) every probe pair starts with the broker's data
// dir written back and evicted from the page cache (posix_fadvise, for
// kvlog and Kafka alike; the machine-wide drop_caches would evict every
// other process's files too), and runs as -scale-slices slices, grown and
// fresh alternating, so a burst of other load falls on both sides; the
// report gives each size's per-round spread and the broker's CPU per GB
// grown/fresh. -scale-settle both also runs the probe as it was before
// (unsettled, one pair) in the same rounds, to compare the spreads.
//
// Besides throughput, CPU and RSS, the produce runs record the round trip
// of each Produce request as the client sees it and its size, which tells a
// broker that is slow to answer from one that is busy, and the load
// generator's own CPU (this process's, over the same window): a client busy
// near a core, or more than the broker, is what set the rate.
//
// # The produce load generator
//
// The produce scenario drives every Kafka-protocol system (kvlog, Kafka,
// kfake) with the same pre-encoded requests (-producer raw, the default;
// bench/kvbench/rawgen.go): each cell's records — the key sequence, values
// and murmur2 partitioning of the franz-go producer — are cut once into
// batches of at most 1,000,000 bytes of records per partition, compressed
// and checksummed, one batch per Produce request, before anything is timed.
// A run writes those bytes pipelined on 2 connections with at most 5
// requests outstanding on each, and counts the records of every partition
// response without error. The batches carry no producer id (acks=all or
// acks=1 without idempotence, as a Kafka client with
// enable.idempotence=false sends them): idempotent batches need a sequence
// that grows with every batch, so they could not be encoded once and sent to
// every system, and every broker here skips its producer-state check for
// such batches alike; kvlog's fsync before acknowledging acks=all does not
// depend on idempotence. With franz-go building and compressing batches on
// the same two cores, the one-partition cells measured the client (kvlogd
// at a fifth of a core). -producer kgo uses franz-go's producer instead
// (idempotent at acks=all), -producer both runs each round with both in
// alternating order and reports the franz-go figures beside. The other
// scenarios keep franz-go; the latency scenario's rates are fractions of
// franz-go's own peak (its client cannot be driven faster than that).
// Every latency record is traced (send, acknowledgement, buffered by the
// consumer, polled), and so is the consumer's fetch cycle: Fetch round
// trips per second, records and bytes per answer, the round trip beside
// the broker's own Fetch histogram (kvlogd), then the client's decoding
// and its wait before the next Fetch (franz-go keeps one in flight), the
// producer's batches per request and records per batch (a broker that
// answers sooner gets smaller batches: more requests and fetches for the
// same records), and the CPU of the generator process and of the broker.
// The goal's cell (50% of Apache Kafka's peak) runs 4 rounds in the full
// run; -latency-reps sets every cell's rounds, -latency-peaks gives the
// peaks instead of measuring them (the same rates on another day, or on a
// loaded machine whose measured peak would be a fraction of the quiet one),
// and -latency-fractions none runs only the goal's cell.
// kfake stores compressed batches without decompressing them, so its
// compressed cells show what a broker that skips validation reaches.
//
// The consume scenario reads likewise with a batch-counting consumer
// (-consumer raw; rawfetch.go): Fetch requests of the franz-go consumer's
// sizes, one at a time on one connection, counting each batch's records from
// its header without decoding them. By default (-consumer both) every read
// is repeated with franz-go's consumer in the same round, and the report
// gives both: franz-go's decoding (a kgo.Record per record, a CRC per batch)
// on the same two cores set the rate of every broker it read from.
//
// # Budget
//
// The full run is sized for about 55 minutes on a quiet 2-core machine:
// each scenario has an expected duration (fullConfig's budget, estimated
// from the per-run times of the quick run and earlier full runs) and is cut
// at 1.5 times it, keeping what it measured; the report header lists what
// the full run measures less than the issue asks (3 rounds instead of 5,
// 32 MiB produce runs, three log-growth sizes, fewer records in the
// 1,000- and 10,000-partition cells) and each scenario's expected and
// actual time. make bench-smoke runs the same code paths at the smallest
// sizes first.
//
// Why a program in its own module rather than `go test` in this package: the
// suite runs for minutes to hours, manages processes, takes flags and writes
// a report — none of which fits a test binary's timeouts, output buffering
// and -run/-bench plumbing — and it needs dependencies the broker's module
// should not carry (nats.go, gonum/plot, a kfake pinned for the benchmark),
// as examples/replaybench already does for NATS. Its one `go test`-shaped
// dependency, internal/testcluster's testing.TB, is met by a small adapter
// (bench/kvbench/tb.go) that turns Fatal and Skip into errors. Keeping
// `make test` free of all this: the nested module is outside `./...`.
//
// # This package
//
// What stays here runs with the main module's tests and must stay short:
// TestHarnessKfake drives the in-process kfake harness with a few records,
// and TestProcCPUSeconds checks the /proc reader. BenchmarkVsKfake is the
// original in-module comparison of a kvlogd process against
// kfake in memory and with DataDir in this process, kept for quick checks
// while working on the broker:
//
//	go test -run '^$' -bench VsKfake -benchtime 1x ./bench
//
// KVLOG_BENCH_RECORDS (default 300000) and KVLOG_BENCH_ROUNDS (default 7)
// size it (and BenchmarkSecurity: the same workload on one kvlogd's
// PLAINTEXT and SASL_SSL listeners, alternating, with the broker's CPU per
// GB; figures in docs/security.md). kvlogd runs twice there: with its defaults (fsync before
// acknowledging acks=all) and with kvlog.fsync.acks.all=false, kfake's
// durability; kfake's CPU is not measurable in-process, which is why the
// suite runs it as kfaked.
package bench
