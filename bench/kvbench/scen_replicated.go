package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/kvlog/kvlog/internal/testcluster"
)

// Scenario 8: replicated. A 3-broker kvlogd cluster with a real ZooKeeper,
// started by internal/testcluster (used read-only), against the single
// broker, alternating: a fresh 8-partition compacted topic (RF 3 on the
// cluster, min.insync.replicas=2, leaders spread by the controller; RF 1 on
// the single broker) receives the produce-scenario records (100-byte values,
// 1,000 keys, no compression) with acks=1 and acks=all, then is read from
// offset 0. The cluster's CPU is the sum over its three kvlogd processes
// (ZooKeeper excluded). Apache Kafka 3.9 in ZooKeeper mode runs as a third
// target: three brokers on the same ZooKeeper (their own chroot), the same
// topics and load (full run only).

type replTarget struct {
	name string
	addr []string
	rf   int16
	pids func() []int
}

func scenReplicated(ctx context.Context, r *runner) error {
	if why := testcluster.ZooKeeperAvailable(); why != "" {
		r.skip("replicated", "whole scenario", "ZooKeeper unavailable: %s (make tools)", why)
		return nil
	}
	single, err := r.start(specOf("kvlog"))
	if err != nil {
		return err
	}
	defer r.stopAll("replicated", []*instance{single})
	var runErr error
	skipped, err := runTB("replicated", r.tmp, func(f string, a ...any) { logf("testcluster: "+f, a...) }, func(tb *benchTB) {
		c := testcluster.Start(tb, testcluster.Options{Bin: r.bins.kvlogd, Props: []string{
			"default.replication.factor=3",
			"min.insync.replicas=2",
			"auto.leader.rebalance.enable=false",
		}})
		cpids := func() []int {
			var out []int
			for _, id := range c.IDs() {
				out = append(out, findPIDs(filepath.Join(c.Broker(id).Dir, "server.properties"))...)
			}
			return out
		}
		if n := len(cpids()); n != 3 {
			runErr = fmt.Errorf("found %d cluster broker processes, want 3", n)
			return
		}
		targets := []replTarget{
			{"3 brokers RF 3", c.Seeds(), 3, cpids},
			{"single broker", []string{single.addr}, 1, func() []int { return []int{single.p.pid} }},
		}
		var kafka []*instance
		switch {
		case !r.cfg.kafkaEverywhere:
			r.skip("replicated", "kafka 3 brokers RF 3", "the quick run has Apache Kafka in its produce, consume and latency cells only")
		case r.kafka39CP == "":
			r.skip("replicated", "kafka 3 brokers RF 3", "Apache Kafka 3.9 unavailable: %s", r.kafka39Why)
		default:
			var err error
			if kafka, err = r.startKafkaZK(ctx, c.ZK.Addr, 3); err != nil {
				runErr = err
				return
			}
			defer func() {
				for _, in := range kafka {
					r.st.add("replicated", "peak RSS", in.spec.name, "peak_rss", "MB", in.peakMB())
					in.stop()
				}
			}()
			var seeds []string
			for _, in := range kafka {
				seeds = append(seeds, in.addr)
			}
			targets = append(targets, replTarget{"kafka 3 brokers RF 3", seeds, 3, func() []int {
				var out []int
				for _, in := range kafka {
					out = append(out, in.p.pid)
				}
				return out
			}})
			r.note("replicated", "kafka 3 brokers RF 3: Apache Kafka %s in ZooKeeper mode (like for like with kvlog's ZooKeeper cluster), three kafka.Kafka processes on the same ZooKeeper (chroot /kafka39), min.insync.replicas=2, Kafka's defaults otherwise (no fsync); its CPU is the sum over the three JVMs", r.kafka39Version)
		}
		for _, acks := range []string{"1", "all"} {
			s := shape{partitions: 8, valueLen: 100, keys: 1000, acks: acks, comp: "none"}
			cell := "acks=" + acks
			n := int(r.cfg.replicatedBytes / int64(s.recordBytes()))
			runErr = rotate(r.cfg.replicatedReps, targets, func(rep int, t replTarget) error {
				topic := nextName("repl-")
				if err := createTopic(ctx, t.addr, topic, s.partitions, t.rf, map[string]string{"cleanup.policy": "compact"}); err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				defer deleteTopic(ctx, t.addr, topic)
				st, err := kafkaProduce(ctx, t.addr, topic, s, 0, n, t.pids())
				if err != nil {
					return fmt.Errorf("%s %s: %w", t.name, cell, err)
				}
				r.addRun("replicated", cell, t.name, "produce ", st)
				ct, err := kafkaConsume(ctx, t.addr, topic, nil, nil, t.pids())
				if err != nil {
					return fmt.Errorf("%s %s consume: %w", t.name, cell, err)
				}
				r.addRun("replicated", cell, t.name, "consume ", ct)
				logf("  %-15s %s rep %d: produce %8.0f rec/s (cpu %.2f s/GB) consume %8.0f rec/s", t.name, cell, rep, st.recPerSec(), st.cpuPerGB(), ct.recPerSec())
				return nil
			})
			if runErr != nil {
				return
			}
		}
		var peak float64
		for _, pid := range cpids() {
			peak = max(peak, pidUsage(pid).peakMB)
		}
		r.st.add("replicated", "peak RSS", "3 brokers RF 3 (largest broker)", "peak_rss", "MB", peak)
	})
	if skipped {
		r.skip("replicated", "whole scenario", "internal/testcluster skipped: %v", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("internal/testcluster: %w", err)
	}
	return runErr
}
