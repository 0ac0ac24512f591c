package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
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
	if err := scaleLogSize(ctx, r, "kvlog"); err != nil {
		return err
	}
	for _, s := range r.available("scale", "kafka") {
		if err := scaleLogSize(ctx, r, s.name); err != nil {
			return err
		}
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
		// Every paired round adds one probe to the grown log.
		if fill := target - int64(reps)*r.cfg.scaleProbeBytes - written; fill > 0 {
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
			// Paired probe: the grown log and a fresh one-partition topic
			// on the same broker, back to back in alternating order, so
			// the ratio cancels the machine's drift.
			ref := nextName("ref-")
			if err := createTopic(ctx, addr, ref, 1, 1, topicCfg); err != nil {
				return err
			}
			var grown, fresh runStats
			err = paired(rep, func() (err error) {
				grown, err = kafkaProduce(ctx, addr, topic, s, next, probeN, pids)
				return err
			}, func() (err error) {
				fresh, err = kafkaProduce(ctx, addr, ref, s, 0, probeN, pids)
				return err
			})
			if err != nil {
				deleteTopic(ctx, addr, ref)
				return err
			}
			next += probeN
			written += grown.bytes
			r.addRun("scale-size", cell, sys, "produce ", grown)
			r.addRun("scale-size", cell, sys, "fresh produce ", fresh)
			r.st.add("scale-size", cell, sys, "produce vs fresh", "×", grown.mbPerSec()/fresh.mbPerSec())

			ends, err := endOffsets(ctx, addr, topic)
			if err != nil {
				deleteTopic(ctx, addr, ref)
				return err
			}
			leo := ends[0]
			var tail, freshRead runStats
			err = paired(rep, func() (err error) {
				tail, err = kafkaConsume(ctx, addr, topic, map[int32]int64{0: leo - int64(probeN)}, map[int32]int64{0: leo}, pids)
				return err
			}, func() (err error) {
				freshRead, err = kafkaConsume(ctx, addr, ref, nil, nil, pids)
				return err
			})
			deleteTopic(ctx, addr, ref)
			if err != nil {
				return err
			}
			r.addRun("scale-size", cell, sys, "fetch tail ", tail)
			r.addRun("scale-size", cell, sys, "fresh fetch ", freshRead)
			r.st.add("scale-size", cell, sys, "fetch tail vs fresh", "×", tail.mbPerSec()/freshRead.mbPerSec())
			res := residentFraction(segDir)
			head, err := kafkaConsume(ctx, addr, topic, map[int32]int64{0: 0}, map[int32]int64{0: int64(probeN)}, pids)
			if err != nil {
				return err
			}
			r.addRun("scale-size", cell, sys, "fetch head ", head)
			r.st.add("scale-size", cell, sys, "resident", "fraction", res)
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
