package main

import (
	"context"
	"fmt"
)

// Scenario 2: consume from offset 0. Per system and cell a topic (or NATS
// stream) is written once (that produce is measured too: the CPU per GB in
// vs out ratio compares the same bytes), then read from the start in
// alternating rounds, warm (just written, in the page cache) and cold (the
// data dir's files fdatasync'ed and dropped with fadvise DONTNEED before
// each read; the report gives the share still resident). kfake serves
// from memory whatever its DataDir, so it has no cold runs.
//
// Every read must read what was written. kvlogd compacts the active
// segment of a compacted topic left without appends for
// kvlog.cleaner.idle.roll.ms (30 s by default; Kafka never cleans the
// active segment), which here happens while the other systems load and
// read: a cell of 1,000 keys then shrinks to 1,000 records (a run with
// kvlog and Kafka only already had a franz-go read count 396,805 of the
// 2,375,535 records written, the cleaned segment swapped in mid-read),
// and later reads time a log of a few hundred kilobytes as if it were
// the one written. So kvlogd runs this scenario with that roll off
// (consumeProps), and a read that counts fewer records than were written
// fails the scenario instead of being reported.

// consumeProps are the consume scenario's broker settings (kvlog-only
// keys are not passed to Kafka).
var consumeProps = []string{"kvlog.cleaner.idle.roll.ms=0"}

func scenConsume(ctx context.Context, r *runner) error {
	specs := r.available("consume", "kvlog", "kvlog-before", "kfake-mem", "kfake-disk", "nats-js", "kafka")
	ins, err := r.startAll(specs, consumeProps...)
	if err != nil {
		return err
	}
	defer r.stopAll("consume", ins)
	type loaded struct {
		in    *instance
		topic string
		nt    natsTarget
		nc    *natsConn
		n     int
	}
	for ci, cell := range r.cfg.consumeCells {
		logf("consume cell %d/%d: %s", ci+1, len(r.cfg.consumeCells), cell)
		var ls []*loaded
		for _, in := range ins {
			if in.spec.kind == natsKind && !participates(in, cell) {
				continue
			}
			l := &loaded{in: in, n: r.recordsFor(in, cell, r.cfg.consumeBytes)}
			pids := []int{in.p.pid}
			var st runStats
			if in.spec.kind == natsKind {
				if l.nc, err = natsDial(in.addr); err != nil {
					return err
				}
				defer l.nc.close()
				if l.nt, err = l.nc.create(ctx, nextName("consume"), false); err != nil {
					return err
				}
				st, err = natsProduce(ctx, l.nc, l.nt, cell, 0, l.n, pids)
			} else {
				l.topic = nextName("consume-")
				if err := createTopic(ctx, []string{in.addr}, l.topic, cell.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
					return err
				}
				st, err = kafkaProduce(ctx, []string{in.addr}, l.topic, cell, 0, l.n, pids)
			}
			if err != nil {
				return fmt.Errorf("%s: loading: %w", in.spec.name, err)
			}
			r.addRun("consume", cell.String(), in.spec.name, "produce ", st)
			ls = append(ls, l)
		}
		// read reads l's topic from offset 0 with consumer gen (genRaw:
		// the batch-counting consumer, genKgo: franz-go's; NATS its own).
		read := func(l *loaded, gen string) (runStats, error) {
			if l.in.spec.kind == natsKind {
				return natsConsume(ctx, l.nc, l.nt, int64(l.n)+1, []int{l.in.p.pid})
			}
			if gen == genRaw {
				ends, err := endOffsets(ctx, []string{l.in.addr}, l.topic)
				if err != nil {
					return runStats{}, err
				}
				return rawConsume(ctx, l.in.addr, l.topic, ends, cell.recordBytes(), []int{l.in.p.pid})
			}
			return kafkaConsume(ctx, []string{l.in.addr}, l.topic, nil, nil, []int{l.in.p.pid})
		}
		// readAll reads with the configured consumer(s); with genBoth the
		// franz-go figures go under "kgo "+prefix, alternating which goes
		// first.
		readAll := func(rep int, l *loaded, prefix string, before func()) error {
			gens := []string{r.cfg.consumer}
			if r.cfg.consumer == genBoth {
				gens = []string{genRaw, genKgo}
				if rep%2 == 1 {
					gens = []string{genKgo, genRaw}
				}
			}
			if l.in.spec.kind == natsKind {
				gens = []string{"nats.go"}
			}
			for _, gen := range gens {
				if before != nil {
					before()
				}
				st, err := read(l, gen)
				if err != nil {
					return fmt.Errorf("%s %s(%s consumer): %w", l.in.spec.name, prefix, gen, err)
				}
				if err := checkReadAll(l.in.spec.kind, st.records, l.n); err != nil {
					return fmt.Errorf("%s %s(%s consumer): %w", l.in.spec.name, prefix, gen, err)
				}
				p := prefix
				if r.cfg.consumer == genBoth && gen == genKgo {
					p = "kgo " + prefix
				}
				r.addRun("consume", cell.String(), l.in.spec.name, p, st)
				logf("  %s%-12s rep %d %s: %9.0f rec/s %7.1f MB/s cpu %.2f s/GB", prefix, l.in.spec.name, rep, gen, st.recPerSec(), st.mbPerSec(), st.cpuPerGB())
			}
			return nil
		}
		err := rotate(r.cfg.reps, ls, func(rep int, l *loaded) error {
			return readAll(rep, l, "warm ", nil)
		})
		if err != nil {
			return err
		}
		var cold []*loaded
		for _, l := range ls {
			if l.in.spec.impl == "kfake" {
				continue
			}
			cold = append(cold, l)
		}
		err = rotate(r.cfg.reps, cold, func(rep int, l *loaded) error {
			return readAll(rep, l, "cold ", func() {
				dropCache(l.in.dir)
				res := residentFraction(l.in.dir)
				r.st.add("consume", cell.String(), l.in.spec.name, "cold resident", "fraction", res)
				logf("  cold %-12s resident before: %.0f%%", l.in.spec.name, 100*res)
			})
		})
		if err != nil {
			return err
		}
		if ci == 0 {
			for _, l := range ls {
				if l.in.spec.name == "kvlog" || l.in.spec.name == "kafka" { // kvlogd's pprof, Kafka's JFR
					gen := r.cfg.consumer
					if gen == genBoth {
						gen = genRaw
					}
					r.profile(ctx, l.in, "consume", l.in.spec.name+" warm "+cell.String()+" ("+gen+" consumer)", r.cfg.profileSeconds, func() error {
						_, err := read(l, gen)
						return err
					})
				}
			}
		}
		for _, l := range ls {
			if l.in.spec.kind == natsKind {
				l.nc.remove(ctx, l.nt)
			} else {
				deleteTopic(ctx, []string{l.in.addr}, l.topic)
			}
		}
	}
	return nil
}

// checkReadAll fails a read of a Kafka-protocol system that counted fewer
// records than the written ones (the log was compacted or truncated under
// the benchmark: its rate would be that of another log).
func checkReadAll(k kind, read int64, written int) error {
	if k == kafkaKind && read < int64(written) {
		return fmt.Errorf("read %d records of the %d written: the log changed under the benchmark (compacted?)", read, written)
	}
	return nil
}
