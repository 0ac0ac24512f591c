package main

import (
	"context"
	"flag"
	"fmt"
	"golang.org/x/sys/unix"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// Scenario 7: scale.
//
// Log size (kvlog, then Apache Kafka with its defaults; kfake holds
// everything in memory): one partition
// (cleanup.policy=delete, no retention) of 1 KiB values grows to each size
// in turn; at each size: the produce rate of the last probe bytes written
// (acks=all, the default fsync), the fetch rate of probe bytes at the tail
// and at the head (offset 0, as the page cache left it, resident share
// reported), the latency of sequential single-record produces (acks=all,
// linger 0) and of single-partition Fetch requests at uniformly random
// offsets (64 KiB max). Probes repeat (at least 3 rounds per size), and each
// produce and tail-fetch probe is paired with the same probe on a fresh
// one-partition topic of the same broker, run back to back in alternating
// order: "vs fresh" is grown ÷ fresh, which cancels the drift of a shared
// machine between sizes. Flat means that ratio stays within ±10%.
//
// Partitions (kvlog, kvlog-nofsync, kfake-mem, kfake-disk, kafka,
// kafka-fsync, alternating: one
// fdatasync per partition per acks=all request is what kvlog adds, so the
// fsync-off variant shows the rest of the cost): a fresh compacted
// topic of P partitions receives scaleRecords 100-byte records over 100k
// keys (scaleManyRecords from 1,000 partitions up; acks=all), then is read
// from offset 0.

func scenScale(ctx context.Context, r *runner) error {
	if err := r.applyScaleFlags(); err != nil {
		return err
	}
	if *scaleOnlyFlag != "partitions" {
		systems := []string{"kvlog"}
		for _, s := range r.available("scale", "kafka") {
			systems = append(systems, s.name)
		}
		if *scaleSystemFlag != "" {
			systems = strings.Split(*scaleSystemFlag, ",")
		}
		for _, sys := range systems {
			if err := scaleLogSize(ctx, r, sys); err != nil {
				return err
			}
		}
	}
	if *scaleOnlyFlag == "size" {
		return nil
	}
	return scalePartitions(ctx, r)
}

// scaleLogSize grows one partition of system sys (kvlog, or Apache Kafka
// with its defaults) through the sizes, one system at a time (each log is
// removed before the next grows).
func scaleLogSize(ctx context.Context, r *runner, sys string) error {
	in, err := r.start(specOf(sys))
	if err != nil {
		return err
	}
	defer r.stopAll("scale", []*instance{in})
	addr := []string{in.addr}
	const topic = "grow"
	s := shape{partitions: 1, valueLen: 1024, keys: 1000, acks: "all", comp: "none"}
	topicCfg := map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
	if err := createTopic(ctx, addr, topic, 1, 1, topicCfg); err != nil {
		return err
	}
	probeN := int(r.cfg.scaleProbeBytes / int64(s.recordBytes()))
	reps := max(r.cfg.reps, 3)
	var written int64
	next := 0
	pids := []int{in.p.pid}
	for _, target := range r.cfg.scaleSizes {
		cell := sizeLabel(target)
		// Every paired round adds one probe per settle mode to the grown log.
		if fill := target - int64(reps*len(settleModes()))*r.cfg.scaleProbeBytes - written; fill > 0 {
			n := int(fill / int64(s.recordBytes()))
			st, err := kafkaProduce(ctx, addr, topic, s, next, n, pids)
			if err != nil {
				return err
			}
			next += n
			written += st.bytes
			logf("  grow: filled to %.2f GB at %.0f MB/s", float64(written)/1e9, st.mbPerSec())
		}
		segDir := filepath.Join(in.dir, topic+"-0")
		for rep := 0; rep < reps; rep++ {
			// With -scale-settle both, every round probes unsettled, then
			// settled: the unsettled probe finds the cache as the fill or
			// the previous round left it, as without settling (each pair
			// is a ratio measured back to back, so the order between the
			// pairs does not bias either).
			for _, settle := range settleModes() {
				if err := r.scaleProbe(ctx, in, sys, cell, topic, segDir, s, rep, settle, probeN, &next, &written); err != nil {
					return err
				}
			}
		}
		if target == r.cfg.scaleSizes[len(r.cfg.scaleSizes)-1] {
			// The largest size's produce probe, profiled (kvlogd's pprof,
			// Kafka's JFR) on the grown log, the page cache settled first.
			settleCache(in.dir, true)
			r.profile(ctx, in, "scale", sys+" produce probe, grown log "+cell, r.cfg.profileSeconds, func() error {
				st, err := kafkaProduce(ctx, addr, topic, s, next, probeN, pids)
				next += probeN
				written += st.bytes
				return err
			})
		}
		ends, err := endOffsets(ctx, addr, topic)
		if err != nil {
			return err
		}
		leo := ends[0]
		pl, err := produceLatencies(ctx, addr, topic, s, r.cfg.scaleLatencyN)
		if err != nil {
			return err
		}
		fl, err := fetchLatencies(ctx, addr, topic, leo, r.cfg.scaleLatencyN)
		if err != nil {
			return err
		}
		pp, fp := percentiles(pl, 0.5, 0.99), percentiles(fl, 0.5, 0.99)
		r.st.add("scale-size", cell, sys, "produce p50", "ms", pp[0])
		r.st.add("scale-size", cell, sys, "produce p99", "ms", pp[1])
		r.st.add("scale-size", cell, sys, "fetch p50", "ms", fp[0])
		r.st.add("scale-size", cell, sys, "fetch p99", "ms", fp[1])
		g := func(m string) float64 { return median(r.st.get("scale-size", cell, sys, m)) }
		logf("  %s log %s: produce %.0f MB/s (%.2f× a fresh log), fetch tail %.0f MB/s (%.2f× fresh), head %.0f MB/s, produce p99 %.2f ms, random fetch p99 %.2f ms",
			sys, cell, g("produce MB/s"), g("produce vs fresh"), g("fetch tail MB/s"), g("fetch tail vs fresh"), g("fetch head MB/s"), pp[1], fp[1])
	}
	return nil
}

// paired runs a then b on even rounds and b then a on odd ones, stopping
// at the first error.
func paired(rep int, a, b func() error) error {
	if rep%2 == 1 {
		a, b = b, a
	}
	if err := a(); err != nil {
		return err
	}
	return b()
}

// produceLatencies times n sequential one-record acks=all produces (ms).
func produceLatencies(ctx context.Context, addr []string, topic string, s shape, n int) ([]float64, error) {
	cl, err := kafkaClient(addr, append(producerOpts(s, 0), kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	keys, vals := keySet(s.keys), valuePool(s.valueLen)
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: keys[0], Value: vals[0]}).FirstErr(); err != nil {
		return nil, err
	}
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: keys[i%len(keys)], Value: vals[i%len(vals)]}).FirstErr(); err != nil {
			return nil, err
		}
		out = append(out, float64(time.Since(start).Microseconds())/1000)
	}
	return out, nil
}

// fetchLatencies times n single-partition Fetch requests at uniformly random
// offsets below leo (ms). Fetch is capped at v12 (topic by name).
func fetchLatencies(ctx context.Context, addr []string, topic string, leo int64, n int) ([]float64, error) {
	v := kversion.Stable()
	v.SetMaxKeyVersion(1, 12)
	cl, err := kafkaClient(addr, kgo.MaxVersions(v))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(uint64(leo), 3))
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 0
		req.MinBytes = 1
		req.MaxBytes = 64 << 10
		req.SessionEpoch = -1
		t := kmsg.NewFetchRequestTopic()
		t.Topic = topic
		p := kmsg.NewFetchRequestTopicPartition()
		p.Partition = 0
		p.FetchOffset = rng.Int64N(leo)
		p.PartitionMaxBytes = 64 << 10
		t.Partitions = append(t.Partitions, p)
		req.Topics = append(req.Topics, t)
		start := time.Now()
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return nil, err
		}
		el := time.Since(start)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 || len(resp.Topics[0].Partitions[0].RecordBatches) == 0 {
			return nil, fmt.Errorf("fetch at %d: empty or error response", p.FetchOffset)
		}
		out = append(out, float64(el.Microseconds())/1000)
	}
	return out, nil
}

// scaleRunTimeout bounds one produce-and-read run of a partition cell.
const scaleRunTimeout = 90 * time.Second

func scalePartitions(ctx context.Context, r *runner) error {
	names := []string{"kvlog", "kvlog-nofsync", "kfake-mem", "kfake-disk", "kafka", "kafka-fsync"}
	if r.cfg.scaleNoKfakeDisk {
		names = slices.DeleteFunc(names, func(n string) bool { return n == "kfake-disk" })
	}
	specs := r.available("scale", names...)
	ins, err := r.startAll(specs)
	if err != nil {
		return err
	}
	defer r.stopAll("scale", ins)
	failed := map[string]bool{} // a system that failed a cell sits out the larger ones
	for _, np := range r.cfg.scalePartitions {
		s := shape{partitions: int32(np), valueLen: 100, keys: 100_000, acks: "all", comp: "none"}
		cell := fmt.Sprintf("P=%d", np)
		var cins []*instance
		for _, in := range ins {
			if !failed[in.spec.name] {
				cins = append(cins, in)
			}
		}
		reps := r.cfg.reps
		if np >= 1000 && r.cfg.scaleManyReps > 0 {
			reps = r.cfg.scaleManyReps
		}
		err := rotate(reps, cins, func(rep int, in *instance) error {
			if failed[in.spec.name] {
				return nil
			}
			err := func() error {
				// A run is bounded (scaleRunTimeout): a system that takes
				// longer sits out the rest of the cell and the larger ones,
				// rather than holding the full run past its window.
				ctx, cancel := context.WithTimeout(ctx, scaleRunTimeout)
				defer cancel()
				addr := []string{in.addr}
				topic := nextName("parts-")
				if err := createTopic(ctx, addr, topic, int32(np), 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
					return fmt.Errorf("%s: %w", in.spec.name, err)
				}
				defer deleteTopic(ctx, addr, topic)
				pids := []int{in.p.pid}
				n := r.cfg.scaleRecords
				if np >= 1000 {
					n = r.cfg.scaleManyRecords
				}
				st, err := kafkaProduce(ctx, addr, topic, s, 0, n, pids)
				if err != nil {
					return fmt.Errorf("%s %s: %w", in.spec.name, cell, err)
				}
				r.addRun("scale-partitions", cell, in.spec.name, "produce ", st)
				ct, err := kafkaConsume(ctx, addr, topic, nil, nil, pids)
				if err != nil {
					return fmt.Errorf("%s %s consume: %w", in.spec.name, cell, err)
				}
				r.addRun("scale-partitions", cell, in.spec.name, "consume ", ct)
				logf("  %-11s %s rep %d: produce %8.0f rec/s consume %8.0f rec/s", in.spec.name, cell, rep, st.recPerSec(), ct.recPerSec())
				return nil
			}()
			if err != nil {
				failed[in.spec.name] = true
				r.skip("scale", in.spec.name+" "+cell+" and larger", "failed: %v", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// The flatness probes measure the broker, not the state of the page cache:
// a log of 20 GiB on a machine with 24 GiB of RAM leaves, after it grows,
// gigabytes of dirty pages being written back and a cache full of the log
// (the kernel's dirty_background_ratio starts writeback at 10% of memory,
// dirty_ratio throttles writers at 20%), so a probe that happens to run
// during a writeback burst or an eviction is slowed by the kernel, not by
// the broker; the grown/fresh ratios of the full run of 2026-12 ranged
// 0.50–2.18× per round at 20 GiB. Settled (the default), every probe pair
// starts with the broker's data dir written back (fdatasync of each file)
// and evicted from the page cache (posix_fadvise DONTNEED), for kvlog and
// Kafka alike, so grown and fresh start from the same cache state with no
// writeback of the broker's files pending; the tail fetch pair then starts
// after the probe's own pages are written back (fdatasync, kept in cache:
// a consumer at the tail reads what the producer just wrote). The machine
// -wide /proc/sys/vm/drop_caches is not used: it would evict every other
// process's cache (the JVM's jars, the other helpers of a shared machine)
// and its effect depends on what else runs. "dirty MB" is the machine's
// dirty page-cache bytes (/proc/meminfo Dirty) as each probe starts.
// Settled probes are also sliced: each pair runs as -scale-slices slices,
// grown and fresh alternating (ABBA) within the pair, so that a burst of
// another process's load on the shared cores falls on both sides alike
// rather than on one whole probe.

var (
	scaleSettle     = flag.String("scale-settle", "on", "scale scenario's log-size probes: on (the broker's data dir written back and evicted from the page cache before each probe pair, each pair run in -scale-slices alternating slices), off (the probe as before: one grown and one fresh run, the cache as it is), or both (each round both, the unsettled first; its figures are reported beside)")
	scaleSizesFlag  = flag.String("scale-sizes", "", "scale scenario: comma-separated log sizes instead of the mode's (e.g. 1G,6G or 512M,2G)")
	scaleProbeFlag  = flag.String("scale-probe", "", "scale scenario: probe size instead of the mode's (e.g. 256M)")
	scaleOnlyFlag   = flag.String("scale-only", "", "scale scenario: size (only the log-size probes) or partitions (only the partition counts)")
	scaleSystemFlag = flag.String("scale-systems", "", "scale scenario's log-size part: comma-separated systems (default kvlog, then kafka)")
)

func settleModes() []bool {
	switch *scaleSettle {
	case "off":
		return []bool{false}
	case "both":
		return []bool{false, true}
	}
	return []bool{true}
}

// parseSizes reads "512M,2G,20G" (K, M, G: powers of 1,024).
func parseSizes(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToUpper(f))
		mul := int64(1)
		switch {
		case strings.HasSuffix(f, "G"):
			mul, f = 1<<30, strings.TrimSuffix(f, "G")
		case strings.HasSuffix(f, "M"):
			mul, f = 1<<20, strings.TrimSuffix(f, "M")
		case strings.HasSuffix(f, "K"):
			mul, f = 1<<10, strings.TrimSuffix(f, "K")
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("size %q", f)
		}
		out = append(out, int64(v*float64(mul)))
	}
	return out, nil
}

// applyScaleFlags applies the -scale-* flags to the run's configuration.
func (r *runner) applyScaleFlags() error {
	switch *scaleSettle {
	case "on", "off", "both":
	default:
		return fmt.Errorf("-scale-settle %q: on, off or both", *scaleSettle)
	}
	if *scaleSizesFlag != "" {
		v, err := parseSizes(*scaleSizesFlag)
		if err != nil {
			return fmt.Errorf("-scale-sizes: %w", err)
		}
		r.cfg.scaleSizes = v
	}
	if *scaleProbeFlag != "" {
		v, err := parseSizes(*scaleProbeFlag)
		if err != nil || len(v) != 1 {
			return fmt.Errorf("-scale-probe %q", *scaleProbeFlag)
		}
		r.cfg.scaleProbeBytes = v[0]
	}
	return nil
}

// settleCache writes back dir's files and, with evict, drops them from the
// page cache.
func settleCache(dir string, evict bool) {
	if evict {
		dropCache(dir)
		return
	}
	walkFiles(dir, func(p string, _ int64) {
		if f, err := os.OpenFile(p, os.O_RDWR, 0); err == nil {
			unix.Fdatasync(int(f.Fd()))
			f.Close()
		}
	})
}

// dirtyMB is the machine's dirty page-cache memory (/proc/meminfo Dirty).
func dirtyMB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return math.NaN()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Dirty:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return math.NaN()
}

// scaleProbe is one paired round of a size: produce probeN records to the
// grown log and to a fresh topic, back to back in alternating order, then
// the paired tail fetch and the head fetch. Unsettled probes' metrics are
// prefixed "unsettled ".
func (r *runner) scaleProbe(ctx context.Context, in *instance, sys, cell, topic, segDir string, s shape, rep int, settle bool, probeN int, next *int, written *int64) error {
	addr := []string{in.addr}
	pids := []int{in.p.pid}
	topicCfg := map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
	pre := ""
	if !settle {
		pre = "unsettled "
	}
	ref := nextName("ref-")
	if err := createTopic(ctx, addr, ref, 1, 1, topicCfg); err != nil {
		return err
	}
	defer deleteTopic(ctx, addr, ref)
	if settle {
		settleCache(in.dir, true)
	}
	r.st.add("scale-size", cell, sys, pre+"dirty MB", "MB", dirtyMB())
	k := 1
	if settle {
		k = scaleSlices(probeN)
	}
	sl := probeN / k
	first := *next
	grown, fresh, err := sliced(rep, k, func(i int) (runStats, error) {
		return kafkaProduce(ctx, addr, topic, s, first+i*sl, sl, pids)
	}, func(i int) (runStats, error) {
		return kafkaProduce(ctx, addr, ref, s, i*sl, sl, pids)
	})
	if err != nil {
		return err
	}
	probeN = k * sl
	*next += probeN
	*written += grown.bytes
	r.addRun("scale-size", cell, sys, pre+"produce ", grown)
	r.addRun("scale-size", cell, sys, pre+"fresh produce ", fresh)
	r.st.add("scale-size", cell, sys, pre+"produce vs fresh", "×", grown.mbPerSec()/fresh.mbPerSec())
	// The broker's CPU per GB, grown ÷ fresh: a cost that grows with the
	// log shows here too, while another process's load on the shared
	// cores, which stretches the wall time, mostly does not.
	r.st.add("scale-size", cell, sys, pre+"produce cpu vs fresh", "×", grown.cpuPerGB()/fresh.cpuPerGB())

	ends, err := endOffsets(ctx, addr, topic)
	if err != nil {
		return err
	}
	leo := ends[0]
	if settle {
		settleCache(in.dir, false)
	}
	base := leo - int64(probeN)
	tail, freshRead, err := sliced(rep, k, func(i int) (runStats, error) {
		from := base + int64(i*sl)
		return kafkaConsume(ctx, addr, topic, map[int32]int64{0: from}, map[int32]int64{0: from + int64(sl)}, pids)
	}, func(i int) (runStats, error) {
		return kafkaConsume(ctx, addr, ref, map[int32]int64{0: int64(i * sl)}, map[int32]int64{0: int64((i + 1) * sl)}, pids)
	})
	if err != nil {
		return err
	}
	r.addRun("scale-size", cell, sys, pre+"fetch tail ", tail)
	r.addRun("scale-size", cell, sys, pre+"fresh fetch ", freshRead)
	r.st.add("scale-size", cell, sys, pre+"fetch tail vs fresh", "×", tail.mbPerSec()/freshRead.mbPerSec())
	r.st.add("scale-size", cell, sys, pre+"fetch tail cpu vs fresh", "×", tail.cpuPerGB()/freshRead.cpuPerGB())
	logf("  %s %s rep %d%s: produce grown/fresh %.2f×, fetch tail grown/fresh %.2f×", sys, cell, rep, map[bool]string{true: " (settled)", false: " (unsettled)"}[settle], grown.mbPerSec()/fresh.mbPerSec(), tail.mbPerSec()/freshRead.mbPerSec())
	if !settle && len(settleModes()) > 1 {
		return nil // the head probe once per round
	}
	res := residentFraction(segDir)
	head, err := kafkaConsume(ctx, addr, topic, map[int32]int64{0: 0}, map[int32]int64{0: int64(probeN)}, pids)
	if err != nil {
		return err
	}
	r.addRun("scale-size", cell, sys, "fetch head ", head)
	r.st.add("scale-size", cell, sys, "resident", "fraction", res)
	return nil
}

var scaleSlicesFlag = flag.Int("scale-slices", 8, "scale scenario: each log-size probe pair is run as this many slices, grown and fresh alternating within each (ABBA), so that a burst of the shared machine's load hits both sides alike")

// scaleSlices is the number of slices of a probe of n records (each at
// least 1,000 records).
func scaleSlices(n int) int {
	return max(1, min(*scaleSlicesFlag, n/1000))
}

// sliced runs k slices of two probes, a and b alternating in ABBA order
// (the first of each slice swaps every slice and every round), and sums
// each side's runs.
func sliced(rep, k int, a, b func(i int) (runStats, error)) (ra, rb runStats, err error) {
	for i := 0; i < k; i++ {
		var x, y runStats
		err = paired(rep+i, func() (err error) {
			x, err = a(i)
			return err
		}, func() (err error) {
			y, err = b(i)
			return err
		})
		if err != nil {
			return ra, rb, err
		}
		ra, rb = addStats(ra, x), addStats(rb, y)
	}
	return ra, rb, nil
}

// addStats sums two runs of the same probe (counts, time and CPU; the
// request figures kept from the last).
func addStats(a, b runStats) runStats {
	b.records += a.records
	b.bytes += a.bytes
	b.elapsed += a.elapsed
	b.cpu += a.cpu
	b.clientCPU += a.clientCPU
	return b
}
