package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Scenario 1: produce throughput over the matrix. Every system gets a fresh
// topic (compacted, RF 1) or stream per run, deleted afterwards. kvlog-nofsync
// and kafka-fsync run the acks=all cells only (acks=1 never waits for an
// fsync in kvlog; Kafka's flush.messages=1 is paired with kvlog's
// acks=all fsync); NATS runs the
// one-partition, uncompressed, acks=all cells (JetStream acknowledges after
// storing; nats-server 2.9 has no stream compression and no partitions).

func participates(in *instance, s shape) bool {
	switch {
	case in.spec.name == "kvlog-nofsync", in.spec.name == "kafka-fsync":
		return s.acks == "all"
	case in.spec.name == "kfake-disk":
		// A reference beside kfake-mem, in no goal: the acks=all cells
		// only, to fit the full run's budget.
		return s.acks == "all"
	case in.spec.kind == natsKind:
		return s.partitions == 1 && s.comp == "none" && s.acks == "all"
	}
	return true
}

func (r *runner) recordsFor(in *instance, s shape, bytes int64) int {
	n := int(bytes / int64(s.recordBytes()))
	if in.spec.kind == natsKind {
		n = min(n, r.cfg.natsMaxRecords)
	}
	return n
}

var topicSeq int

func nextName(prefix string) string {
	topicSeq++
	return fmt.Sprintf("%s%d", prefix, topicSeq)
}

// Produce load generators of Kafka-protocol systems (-producer).
const (
	genRaw  = "raw"  // pre-encoded requests (rawgen.go)
	genKgo  = "kgo"  // franz-go's producer (kafkaProduce)
	genBoth = "both" // each run with both, alternating which goes first
)

// produceOnce creates a fresh topic/stream on in, produces n records of s
// with generator gen (genRaw or genKgo; NATS has its own), and removes it
// again.
func produceOnce(ctx context.Context, in *instance, s shape, n int, gen string) (runStats, error) {
	pids := []int{in.p.pid}
	if in.spec.kind == natsKind {
		c, err := natsDial(in.addr)
		if err != nil {
			return runStats{}, err
		}
		defer c.close()
		t, err := c.create(ctx, nextName("bench"), in.spec.kv)
		if err != nil {
			return runStats{}, err
		}
		defer c.remove(ctx, t)
		return natsProduce(ctx, c, t, s, 0, n, pids)
	}
	addr := []string{in.addr}
	if gen == genRaw {
		version, err := produceVersion(ctx, in.addr)
		if err != nil {
			return runStats{}, fmt.Errorf("ApiVersions: %w", err)
		}
		c, err := rawCellFor(s, 0, n, version)
		if err != nil {
			return runStats{}, fmt.Errorf("encoding %s: %w", s, err)
		}
		topic := rawTopicName()
		if err := createTopic(ctx, addr, topic, s.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
			return runStats{}, err
		}
		defer deleteTopic(ctx, addr, topic)
		return rawProduce(ctx, in.addr, c, version, topic, pids)
	}
	topic := nextName("produce-")
	if err := createTopic(ctx, addr, topic, s.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		return runStats{}, err
	}
	defer deleteTopic(ctx, addr, topic)
	return kafkaProduce(ctx, addr, topic, s, 0, n, pids)
}

func scenProduce(ctx context.Context, r *runner) error {
	specs := r.available("produce", "kvlog", "kvlog-before", "kvlog-nofsync", "kfake-mem", "kfake-disk", "nats-js", "nats-kv", "kafka", "kafka-fsync")
	ins, err := r.startAll(specs)
	if err != nil {
		return err
	}
	defer r.stopAll("produce", ins)
	for ci, cell := range r.cfg.produceCells {
		var parts []*instance
		for _, in := range ins {
			if participates(in, cell) {
				parts = append(parts, in)
			}
		}
		logf("produce cell %d/%d: %s", ci+1, len(r.cfg.produceCells), cell)
		err := rotate(r.cfg.reps, parts, func(rep int, in *instance) error {
			n := r.recordsFor(in, cell, r.cfg.produceBytes)
			gens := []string{r.cfg.producer}
			if r.cfg.producer == genBoth {
				gens = []string{genRaw, genKgo}
				if rep%2 == 1 {
					gens = []string{genKgo, genRaw}
				}
			}
			if in.spec.kind == natsKind {
				gens = []string{"nats.go"} // its own generator
			}
			for _, gen := range gens {
				st, err := produceOnce(ctx, in, cell, n, gen)
				if err != nil {
					return fmt.Errorf("%s %s (%s generator): %w", in.spec.name, cell, gen, err)
				}
				// The franz-go runs of -producer both are kept apart
				// ("kgo rec/s", …); the main figures are the raw ones.
				prefix := ""
				if r.cfg.producer == genBoth && gen == genKgo {
					prefix = "kgo "
				}
				r.addRun("produce", cell.String(), in.spec.name, prefix, st)
				logf("  %-13s rep %d %s: %9.0f rec/s %7.1f MB/s  cpu %.2f s/GB", in.spec.name, rep, gen, st.recPerSec(), st.mbPerSec(), st.cpuPerGB())
			}
			return nil
		})
		if err != nil {
			return err
		}
		if ci == 0 {
			r.profileProduce(ctx, ins, cell)
		}
	}
	// The cell where kvlog does worst against kfake in memory, profiled too.
	worst, wr := shape{}, math.Inf(1)
	for _, cell := range r.cfg.produceCells[1:] {
		v := pairedRatio(r.st.get("produce", cell.String(), "kvlog", "rec/s"), r.st.get("produce", cell.String(), "kfake-mem", "rec/s"))
		if v < wr {
			worst, wr = cell, v
		}
	}
	if wr < 1 {
		r.profileProduce(ctx, ins, worst)
	}
	// And the acks=all cell where kvlog does worst against Apache Kafka at
	// equal durability (the goal is 2×), when it is another one.
	kworst, kr := shape{}, math.Inf(1)
	for _, cell := range r.cfg.produceCells[1:] {
		v := pairedRatio(r.st.get("produce", cell.String(), "kvlog", "rec/s"), r.st.get("produce", cell.String(), "kafka-fsync", "rec/s"))
		if v < kr {
			kworst, kr = cell, v
		}
	}
	if kr < 2 && kworst != worst {
		r.profileProduce(ctx, ins, kworst)
	}
	return nil
}

// profileProduce profiles kvlog producing cell's records again and again
// to one topic (created before the profile, so that topic creation and
// deletion stay out of it).
func (r *runner) profileProduce(ctx context.Context, ins []*instance, cell shape) {
	for _, in := range ins {
		// kvlogd, and Apache Kafka at both durability settings (JFR).
		if !slices.Contains([]string{"kvlog", "kafka", "kafka-fsync"}, in.spec.name) {
			continue
		}
		addr := []string{in.addr}
		n := r.recordsFor(in, cell, r.cfg.produceBytes)
		work := func(topic string) func() error {
			return func() error {
				_, err := kafkaProduce(ctx, addr, topic, cell, 0, n, nil)
				return err
			}
		}
		topic := nextName("profile-")
		if r.cfg.producer != genKgo {
			// The scenario's own generator: the pre-encoded requests.
			version, err := produceVersion(ctx, in.addr)
			if err != nil {
				r.note("produce", "profile: %v", err)
				return
			}
			c, err := rawCellFor(cell, 0, n, version)
			if err != nil {
				r.note("produce", "profile: %v", err)
				return
			}
			topic = rawTopicName()
			work = func(topic string) func() error {
				return func() error {
					_, err := rawProduce(ctx, in.addr, c, version, topic, nil)
					return err
				}
			}
		}
		if err := createTopic(ctx, addr, topic, cell.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
			r.note("produce", "profile: %v", err)
			return
		}
		if in.spec.impl == "kafka" {
			r.jfrOverhead(ctx, in, cell, work(topic))
		}
		r.profile(ctx, in, "produce", in.spec.name+" produce "+cell.String(), r.cfg.profileSeconds, work(topic))
		deleteTopic(ctx, addr, topic)
	}
}

// addRun records a run's rate, bandwidth and CPU per GB; prefix namespaces
// the metrics (e.g. "cold ").
func (r *runner) addRun(scen, cell, sys, prefix string, st runStats) {
	r.st.add(scen, cell, sys, prefix+"rec/s", "records/s", st.recPerSec())
	r.st.add(scen, cell, sys, prefix+"MB/s", "MB/s", st.mbPerSec())
	r.st.add(scen, cell, sys, prefix+"cpu/GB", "CPU s/GB", st.cpuPerGB())
	r.st.add(scen, cell, sys, prefix+"seconds", "s", st.elapsed.Seconds())
	if st.clientCPU > 0 {
		// The generator's CPU per GB and both processes' share of a core:
		// a client near one core (or above the broker) sets the rate.
		r.st.add(scen, cell, sys, prefix+"client cpu/GB", "CPU s/GB", st.clientCPU/(float64(st.bytes)/1e9))
		r.st.add(scen, cell, sys, prefix+"client busy", "cores", st.clientCPU/st.elapsed.Seconds())
		r.st.add(scen, cell, sys, prefix+"broker busy", "cores", st.cpu/st.elapsed.Seconds())
	}
	if st.reqMs > 0 {
		r.st.add(scen, cell, sys, prefix+"req ms", "ms", st.reqMs)
		r.st.add(scen, cell, sys, prefix+"req KiB", "KiB", st.reqKB)
	}
}

// kgoPeakRate is the median franz-go produce rate of a system in a cell of
// the produce scenario (0 when not measured with franz-go): its runs with
// -producer kgo, or the kgo runs of -producer both; NATS's own.
func (r *runner) kgoPeakRate(sys string, s shape) float64 {
	m := "kgo rec/s"
	if r.cfg.producer == genKgo || strings.HasPrefix(sys, "nats") {
		m = "rec/s"
	}
	v := median(r.st.get("produce", s.String(), sys, m))
	if v != v {
		return 0
	}
	return v
}
