package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is every parameter of a run; the report prints them.
type config struct {
	mode string
	reps int
	// systems: only these systems run (-systems); empty: all.
	systems []string
	// kafkaEverywhere: Apache Kafka runs in every scenario (full run);
	// otherwise in produce, consume and latency only (quick run).
	kafkaEverywhere bool
	// startupSamples: how many fresh starts of each Kafka-protocol system
	// are timed to the first produce (and their idle RSS read).
	startupSamples int

	// produce: payload bytes (key+value) per run; NATS runs are capped at
	// natsMaxRecords (its rate is 10-20x lower: the same byte count would
	// take minutes per run).
	produceBytes   int64
	natsMaxRecords int
	produceCells   []shape
	// producer: the produce scenario's load generator of Kafka-protocol
	// systems, genRaw (pre-encoded, default), genKgo or genBoth.
	producer string

	// consume: bytes produced once per system and cell, read repeatedly;
	// consumer: the Kafka-protocol consumer, genRaw (rawfetch.go), genKgo or
	// genBoth.
	consumer     string
	consumeBytes int64
	consumeCells []shape

	latencyShape     shape
	latencyFractions []float64
	latencyWarm      time.Duration
	latencyDur       time.Duration
	latencyReps      int
	// latencyGoalReps: rounds of the goal's cell (50% of Apache Kafka's
	// peak): one 4-second round's p99 is its worst ~40 ms, which a single
	// stall of any process on the shared cores sets.
	latencyGoalReps int
	latencySystems  []string

	rebuildKeys int
	// lookup: live keys loaded, records produced per index on/off run
	lookupKeys     int
	lookupProduce  int
	rebuildUpdates int // the uncompacted history holds keys × updates records

	compactRecords, compactKeys int
	compactSegment              int
	compactFillKeys             int // keys of the map-fill cell
	compactFillMapKeys          int // keys its dedupe buffer holds

	recoverySizes []int64
	recoveryReps  int
	// natsRecoveryMax: NATS runs the recovery sizes up to this one only
	// (0: all). At 10 GiB kvlog's two variants and Kafka already hold 30 GiB
	// on the data disk at once, and NATS would write its 10 GiB at a tenth
	// of their rate.
	natsRecoveryMax int64

	scaleSizes      []int64
	scaleProbeBytes int64
	scaleLatencyN   int
	scalePartitions []int
	manyPartitions  []int // partitions scenario: partitions per broker
	// spreadPartitions: partitions scenario, acks=all produce spread over
	// this many partitions with fsync on and off (kvlog, kvlog-nofsync);
	// spreadRecords records per run (scaleManyRecords from 10,000
	// partitions up: a run of seconds, not of a fraction of one, at 1,000).
	spreadPartitions []int
	spreadRecords    int
	scaleRecords     int
	// scaleManyRecords: records per run of the scale scenario's partition
	// cells from 1,000 partitions up (at 10,000 partitions with fsync a
	// produce runs at tens of thousands of records/s).
	scaleManyRecords int
	// scaleManyReps: rounds of those cells (0: reps); scaleNoKfakeDisk:
	// kfake-disk (a reference in no goal) sits the partition cells out.
	scaleManyReps    int
	scaleNoKfakeDisk bool

	replicatedBytes int64
	replicatedReps  int

	// txn: produce cells, records per run (txnSmallRecords for one
	// record per transaction), records of the consume topic.
	txnCells          []txnCell
	txnRecords        int
	txnSmallRecords   int
	txnConsumeRecords int

	// restore: keys of each changelog (written restoreUpdates times each)
	// over restoreWrite, then idle restoreIdle; restoreSegmentMs is
	// segment.ms and delete.retention.ms of the short-times cells;
	// restoreReps restores per system and cell. Sized for the scenario's
	// budget (full: about 6 minutes on a quiet machine), far below the
	// issue's 1M keys written over 10 minutes.
	restoreKeys      int
	restoreWrite     time.Duration
	restoreIdle      time.Duration
	restoreSegmentMs time.Duration
	restoreReps      int

	machineBytes    int64
	profileSeconds  int
	scenarioTimeout time.Duration
	// budget: the expected wall time of each scenario on a quiet 2-core
	// machine (full run only; "" is the machine-limit measurements and
	// builds). A scenario is cut at budgetCap× its share, so that one that
	// runs away cannot overrun the quiet window; what it measured so far
	// stays in the report.
	budget map[string]time.Duration
	// reductions: what the run measures less than the issue asks, to fit
	// its budget (printed in the report header).
	reductions []string
}

// budgetCap is how far past its expected duration a scenario may run.
const budgetCap = 1.5

// diskNeed is the free space the run's data dirs need at their peak: the
// recovery scenario's largest size held by kvlog unflushed, kvlog flushed
// and Kafka at once (and NATS when it runs that size), or the scale
// scenario's largest log, plus 5 GiB for everything else.
func (c *config) diskNeed() int64 {
	rec := slices.Max(c.recoverySizes)
	logs := int64(3)
	if c.natsRecoveryMax == 0 || c.natsRecoveryMax >= rec {
		logs = 4
	}
	return max(logs*rec, slices.Max(c.scaleSizes)) + 5*gb
}

// totalBudget is the sum of a run's expected durations.
func (c *config) totalBudget() time.Duration {
	var t time.Duration
	for _, d := range c.budget {
		t += d
	}
	return t
}

const (
	kb = 1 << 10
	mb = 1 << 20
	gb = 1 << 30
)

// produceMatrix is the produce matrix: 1 and 8 partitions, 100 B and
// 1 KiB values, 1,000 and 1,000,000 keys, acks=1 and acks=all, no
// compression, lz4, zstd.
func produceMatrix() []shape {
	var out []shape
	for _, p := range []int32{1, 8} {
		for _, v := range []int{100, 1024} {
			for _, k := range []int{1000, 1_000_000} {
				for _, a := range []string{"all", "1"} {
					for _, c := range []string{"none", "lz4", "zstd"} {
						out = append(out, shape{p, v, k, a, c})
					}
				}
			}
		}
	}
	return out
}

// fullProduceCells is the full run's produce matrix: every acks=all cell
// (the goals: 1 and 8 partitions, 100 B and 1 KiB, none/lz4/zstd,
// with 1,000 and 1,000,000 keys) and the acks=1 cells over 1,000 keys (the
// 1M-key acks=1 cells are left out to fit the budget).
func fullProduceCells() []shape {
	return slices.DeleteFunc(produceMatrix(), func(s shape) bool { return s.acks == "1" && s.keys != 1000 })
}

// anchorShape is the anchors' workload: one partition, 13-byte keys over
// 1,000 keys, 100-byte values, acks=all (idempotent), no compression.
var anchorShape = shape{partitions: 1, valueLen: 100, keys: 1000, acks: "all", comp: "none"}

// txnMatrix is the transactions scenario's produce cells: 1 and 8
// partitions, 1, 100 and 10,000 records per transaction.
func txnMatrix() []txnCell {
	var out []txnCell
	for _, p := range []int32{1, 8} {
		for _, n := range []int{1, 100, 10_000} {
			out = append(out, txnCell{p, n})
		}
	}
	return out
}

// fullConfig is `make bench`: every scenario with Apache Kafka, sized to
// finish in about 62 minutes on a quiet 2-core machine (the budget below;
// estimated from the quick and earlier full runs' per-run times, see
// bench/doc.go). The sizes are kept (64 MiB... 20 GiB logs, 10 GiB
// recovery, 1M-key rebuild, 1 to 10,000 partitions); what is reduced to fit
// is listed in reductions and printed in the report header.
func fullConfig() *config {
	return &config{
		mode:             "full",
		producer:         genRaw,
		consumer:         genBoth,
		reps:             3,
		kafkaEverywhere:  true,
		startupSamples:   3,
		produceBytes:     32 * mb,
		natsMaxRecords:   200_000,
		produceCells:     fullProduceCells(),
		consumeBytes:     256 * mb,
		consumeCells:     []shape{anchorShape, {8, 1024, 1_000_000, "all", "none"}},
		latencyShape:     anchorShape,
		latencyFractions: []float64{0.1, 0.5, 0.8},
		latencyWarm:      1 * time.Second,
		latencyDur:       4 * time.Second,
		latencyReps:      2,
		latencyGoalReps:  4,
		latencySystems:   []string{"kvlog", "kvlog-nofsync", "kafka", "kafka-fsync", "kfake-mem", "nats-js"},
		rebuildKeys:      1_000_000,
		lookupKeys:       1_000_000,
		lookupProduce:    1_000_000,
		rebuildUpdates:   10,
		compactRecords:   1_000_000, compactKeys: 1000, compactSegment: 16 * mb,
		compactFillKeys: 200_000, compactFillMapKeys: 50_000,
		recoverySizes:     []int64{1 * gb, 10 * gb},
		recoveryReps:      2,
		natsRecoveryMax:   1 * gb,
		scaleSizes:        []int64{1 * gb, 5 * gb, 20 * gb},
		scaleProbeBytes:   256 * mb,
		scaleLatencyN:     500,
		scalePartitions:   []int{1, 10, 100, 1000, 10_000},
		manyPartitions:    []int{5000, 10000, 30000},
		spreadPartitions:  []int{1, 1000, 10_000},
		spreadRecords:     1_000_000,
		scaleRecords:      500_000,
		scaleManyRecords:  200_000,
		scaleManyReps:     2,
		scaleNoKfakeDisk:  true,
		replicatedBytes:   64 * mb,
		replicatedReps:    3,
		txnCells:          txnMatrix(),
		txnRecords:        200_000,
		txnSmallRecords:   1000,
		txnConsumeRecords: 500_000,
		restoreKeys:       50_000,
		restoreWrite:      time.Minute,
		restoreIdle:       time.Minute,
		restoreSegmentMs:  10 * time.Second,
		restoreReps:       2,
		machineBytes:      1 * gb,
		profileSeconds:    10,
		scenarioTimeout:   3 * time.Hour,
		// Estimates for a quiet machine, from the quick run of 2026-12-07
		// (produce: 0.45 s per 32 MiB run including topic create/delete,
		// 1.5 s for Kafka's; Kafka start + JIT warm-up 5 s) and the full
		// run of 2026-11-22 (recovery, rebuild, scale growth): produce 834
		// runs, 216 of them Kafka's; latency 23 runs × 2 rounds × 5.5 s;
		// recovery: three 10 GiB
		// loads at 200-300 MB/s and 2 rounds of restarts (Kafka's recovery
		// of 10 GiB at ≥ 0.5 GB/s); scale: two 20 GiB logs grown at
		// 180-250 MB/s, 3 probe rounds at 3 sizes, then 5 partition cells
		// whose 10,000-partition Kafka runs are bounded at 90 s each.
		budget: map[string]time.Duration{
			"":           2*time.Minute + 30*time.Second, // builds, machine limits ×5, report
			"produce":    11 * time.Minute,
			"consume":    2*time.Minute + 30*time.Second, // both consumers
			"latency":    5*time.Minute + 30*time.Second, // + 2 more rounds of the goal's cell
			"rebuild":    2 * time.Minute,
			"compaction": 3 * time.Minute,
			"recovery":   6 * time.Minute,
			"scale":      10*time.Minute + 30*time.Second,
			"replicated": 2 * time.Minute,
			"partitions": 4 * time.Minute,
			"lookup":     3 * time.Minute,
			"txn":        4 * time.Minute,
			"restore":    6 * time.Minute, // 4 cells, both systems written at once: 1 min write + 1 min idle, 2 restores each
		},
		reductions: []string{
			"3 repetitions per measurement instead of 5 (latency 2, its goal cell 4, recovery 2)",
			"produce runs of 32 MiB instead of 64 MiB, and the acks=1 cells over 1,000 keys only (54 of the matrix's 72 cells; every acks=all cell runs)",
			"latency runs of 1 s warm-up + 4 s measured instead of 2 s + 6 s",
			"log-size growth probed at 1, 5 and 20 GiB instead of 1, 2, 5, 10 and 20 GiB",
			"partition cells of 500k records instead of 1M, from 1,000 partitions up 200k records in 2 rounds (a run past 90 s ends that system's cells), without kfake-disk",
			"kfake-disk not in the latency runs",
			"NATS recovers the 1 GiB log only (not 10 GiB: disk space and time)",
			"kfake-disk in the acks=all produce cells only",
			"transactions with the quick run's sizes (200k records per cell, 1,000 single-record transactions, 500k records read)",
		},
	}
}

func quickConfig() *config {
	return &config{
		mode:           "quick",
		producer:       genRaw,
		consumer:       genBoth,
		reps:           3,
		startupSamples: 1,
		produceBytes:   32 * mb,
		natsMaxRecords: 60_000,
		produceCells: []shape{
			anchorShape,
			{8, 100, 1_000_000, "1", "lz4"},
			{8, 1024, 1000, "all", "none"},
			{1, 1024, 1_000_000, "all", "zstd"},
		},
		consumeBytes:     96 * mb,
		consumeCells:     []shape{anchorShape},
		latencyShape:     anchorShape,
		latencyFractions: []float64{0.5},
		latencyWarm:      500 * time.Millisecond,
		latencyDur:       2 * time.Second,
		latencyReps:      2,
		latencyGoalReps:  2,
		latencySystems:   []string{"kvlog", "kvlog-nofsync", "kafka", "kafka-fsync", "kfake-mem", "nats-js"},
		rebuildKeys:      100_000,
		lookupKeys:       200_000,
		lookupProduce:    300_000,
		rebuildUpdates:   3,
		compactRecords:   1_000_000, compactKeys: 1000, compactSegment: 8 * mb,
		compactFillKeys: 200_000, compactFillMapKeys: 50_000,
		recoverySizes:     []int64{256 * mb},
		recoveryReps:      2,
		scaleSizes:        []int64{256 * mb, 512 * mb, 1 * gb},
		scaleProbeBytes:   64 * mb,
		scaleLatencyN:     200,
		scalePartitions:   []int{1, 10, 100},
		manyPartitions:    []int{5000, 10000, 30000},
		spreadPartitions:  []int{1, 1000, 10_000},
		spreadRecords:     200_000,
		scaleRecords:      200_000,
		scaleManyRecords:  200_000,
		replicatedBytes:   24 * mb,
		replicatedReps:    2,
		txnCells:          txnMatrix(),
		txnRecords:        200_000,
		txnSmallRecords:   1000,
		txnConsumeRecords: 500_000,
		restoreKeys:       10_000,
		restoreWrite:      15 * time.Second,
		restoreIdle:       40 * time.Second,
		restoreSegmentMs:  5 * time.Second,
		restoreReps:       2,
		machineBytes:      256 * mb,
		profileSeconds:    4,
		scenarioTimeout:   30 * time.Minute,
	}
}

// parseCells reads -cells: comma-separated
// partitions/valueBytes/keys/acks/codec shapes.
func parseCells(spec string) ([]shape, error) {
	var out []shape
	for _, c := range strings.Split(spec, ",") {
		f := strings.Split(strings.TrimSpace(c), "/")
		if len(f) != 5 {
			return nil, fmt.Errorf("-cells %q: want partitions/valueBytes/keys/acks/codec", c)
		}
		p, err1 := strconv.Atoi(f[0])
		v, err2 := strconv.Atoi(f[1])
		k, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil || p < 1 || v < 1 || k < 1 {
			return nil, fmt.Errorf("-cells %q: partitions, value bytes and keys are positive integers", c)
		}
		if f[3] != "all" && f[3] != "1" {
			return nil, fmt.Errorf("-cells %q: acks is all or 1", c)
		}
		if f[4] != "none" && f[4] != "lz4" && f[4] != "zstd" {
			return nil, fmt.Errorf("-cells %q: codec is none, lz4 or zstd", c)
		}
		out = append(out, shape{int32(p), v, k, f[3], f[4]})
	}
	return out, nil
}

// tinyConfig is the smoke run (-tiny): every scenario with Apache Kafka, as
// in the full run, at sizes small enough to check the harness end to end in
// a few minutes. Its figures mean nothing; it exists so that the full run's
// code paths (the Kafka rows of every scenario, the report's goal rows) are
// exercised before a long quiet-machine run.
func tinyConfig() *config {
	c := quickConfig()
	c.mode = "tiny"
	c.reps = 2
	c.kafkaEverywhere = true
	c.produceBytes = 8 * mb
	c.natsMaxRecords = 20_000
	c.produceCells = []shape{anchorShape, {8, 1024, 1000, "all", "lz4"}}
	c.consumeBytes = 16 * mb
	c.latencyWarm = 300 * time.Millisecond
	c.latencyDur = time.Second
	c.latencyReps = 1
	c.latencyGoalReps = 1
	c.rebuildKeys, c.rebuildUpdates = 20_000, 3
	c.lookupKeys, c.lookupProduce = 20_000, 30_000
	c.compactRecords, c.compactKeys, c.compactSegment = 200_000, 1000, 1*mb
	c.compactFillKeys, c.compactFillMapKeys = 100_000, 50_000 // Kafka needs a dedupe buffer ≥ 1 MiB
	c.recoverySizes = []int64{32 * mb, 64 * mb}
	c.recoveryReps = 1
	c.natsRecoveryMax = 32 * mb // as in the full run, NATS skips the largest size
	c.scaleSizes = []int64{32 * mb, 64 * mb}
	c.scaleProbeBytes = 8 * mb
	c.scaleLatencyN = 50
	c.scalePartitions = []int{1, 10, 100}
	c.manyPartitions = []int{500, 1000}
	c.spreadPartitions = []int{1, 100}
	c.spreadRecords = 50_000
	c.scaleRecords, c.scaleManyRecords = 50_000, 20_000
	c.replicatedBytes = 8 * mb
	c.replicatedReps = 1
	c.txnRecords, c.txnSmallRecords, c.txnConsumeRecords = 20_000, 200, 50_000
	c.machineBytes = 64 * mb
	c.profileSeconds = 2
	c.scenarioTimeout = 10 * time.Minute
	return c
}

// configFor is the configuration of a mode: full, quick or tiny.
func configFor(mode string) *config {
	switch mode {
	case "quick":
		return quickConfig()
	case "tiny":
		return tinyConfig()
	}
	return fullConfig()
}
