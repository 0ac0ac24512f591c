package main

import (
	"context"
	"fmt"
	"runtime"
)

// Scenario 4: state rebuild — the time for an application to hold the latest
// value of every key. Data, written once: a compacted topic with every key
// once (what a cleaned changelog holds), the same keys with `updates`
// values each in a cleanup.policy=delete topic (the uncompacted history), a
// NATS KV bucket (history 1) with every key once, and kfake in memory with
// the compacted data. 3 partitions for the topics; 13-byte keys, 100-byte
// values. Variants, alternating:
//
//   - kvlog library: client.Open(…, ReplayOnly()), kvlog's Go table;
//   - kvlog raw+map: a hand-written franz-go loop filling a map;
//   - kvlog history: the library over the uncompacted history;
//   - kfake-mem raw+map: the same loop against kfake in memory;
//   - kafka raw+map: the same loop against Apache Kafka (default settings)
//     holding the same compacted data;
//   - nats-kv watch-all: KeyValue.WatchAll into a map, to the nil marker.

type rebuildVariant struct {
	name string
	in   *instance
	run  func() (int, runStats, error)
}

func scenRebuild(ctx context.Context, r *runner) error {
	keys := r.cfg.rebuildKeys
	s := shape{partitions: 3, valueLen: 100, keys: keys, acks: "all", comp: "none"}
	specs := r.available("rebuild", "kvlog", "kfake-mem", "nats-kv", "kafka")
	ins, err := r.startAll(specs)
	if err != nil {
		return err
	}
	defer r.stopAll("rebuild", ins)
	cell := fmt.Sprintf("%s keys", countName(keys))
	var vs []rebuildVariant
	for _, in := range ins {
		in := in
		pids := []int{in.p.pid}
		switch in.spec.impl {
		case "kvlogd", "kfake", "kafka":
			addr := []string{in.addr}
			if err := createTopic(ctx, addr, "live", 3, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
				return err
			}
			st, err := kafkaProduce(ctx, addr, "live", s, 0, keys, pids)
			if err != nil {
				return fmt.Errorf("%s: loading: %w", in.spec.name, err)
			}
			logf("  %s: loaded %d keys at %.0f rec/s", in.spec.name, keys, st.recPerSec())
			if in.spec.impl != "kvlogd" {
				vs = append(vs, rebuildVariant{in.spec.name + " raw+map", in, func() (int, runStats, error) { return rawReplayMap(ctx, addr, "live", pids) }})
				continue
			}
			vs = append(vs,
				rebuildVariant{"kvlog library", in, func() (int, runStats, error) { return libraryReplay(ctx, addr, "live", false, pids) }},
				rebuildVariant{"kvlog raw+map", in, func() (int, runStats, error) { return rawReplayMap(ctx, addr, "live", pids) }})
			if err := createTopic(ctx, addr, "history", 3, 1, map[string]string{"cleanup.policy": "delete", "retention.ms": "-1"}); err != nil {
				return err
			}
			n := keys * r.cfg.rebuildUpdates
			// The key sequence walks every key once per cycle, so the last
			// cycle leaves every key with a value.
			if st, err = kafkaProduce(ctx, addr, "history", s, 0, n, pids); err != nil {
				return fmt.Errorf("kvlog: loading history: %w", err)
			}
			logf("  kvlog: loaded history of %d records at %.0f rec/s", n, st.recPerSec())
			vs = append(vs, rebuildVariant{fmt.Sprintf("kvlog history (%dx)", r.cfg.rebuildUpdates), in, func() (int, runStats, error) {
				return libraryReplay(ctx, addr, "history", true, pids)
			}})
		case "nats":
			c, err := natsDial(in.addr)
			if err != nil {
				return err
			}
			defer c.close()
			t, err := c.create(ctx, "live", true)
			if err != nil {
				return err
			}
			st, err := natsProduce(ctx, c, t, s, 0, keys, pids)
			if err != nil {
				return fmt.Errorf("nats: loading: %w", err)
			}
			logf("  nats-kv: loaded %d keys at %.0f rec/s", keys, st.recPerSec())
			vs = append(vs, rebuildVariant{"nats-kv watch-all", in, func() (int, runStats, error) { return natsWatchAll(ctx, t.kv, pids) }})
		}
	}
	err = rotate(r.cfg.reps, vs, func(rep int, v rebuildVariant) error {
		runtime.GC()
		got, st, err := v.run()
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		if got != keys {
			return fmt.Errorf("%s rebuilt %d keys, want %d", v.name, got, keys)
		}
		r.st.add("rebuild", cell, v.name, "seconds", "s", st.elapsed.Seconds())
		r.st.add("rebuild", cell, v.name, "keys/s", "keys/s", float64(keys)/st.elapsed.Seconds())
		r.st.add("rebuild", cell, v.name, "records", "records", float64(st.records))
		r.st.add("rebuild", cell, v.name, "broker cpu", "CPU s", st.cpu)
		logf("  %-22s rep %d: %.3f s (%d records, broker cpu %.2f s)", v.name, rep, st.elapsed.Seconds(), st.records, st.cpu)
		return nil
	})
	if err != nil {
		return err
	}
	for _, v := range vs {
		// kvlog's library replay, and the franz-go replay from Apache
		// Kafka (JFR) it is compared with.
		if v.name == "kvlog library" || v.name == "kafka raw+map" {
			r.profile(ctx, v.in, "rebuild", v.name+" replay", r.cfg.profileSeconds, func() error {
				_, _, err := v.run()
				return err
			})
		}
	}
	return nil
}
