package main

import (
	"context"
	"fmt"
)

// Scenario 3: end-to-end latency, produce call to consumer receipt, at
// fixed fractions of the measured peak. The Kafka-protocol systems all run
// at the same absolute rates: the fractions of kvlog's median peak in the
// produce scenario (same shape), so their latencies compare at equal load;
// NATS runs at the same fractions of its own peak (it cannot approach
// kvlog's). One more cell runs the Kafka-protocol systems at 50% of Apache
// Kafka's peak (its default durability), the rate of the goal against
// Kafka. Producer linger 0; a consumer tails the topic from its end.

func latencyCell(frac float64) string { return fmt.Sprintf("%.0f%% of peak", 100*frac) }

// kafkaLatencyCell is the cell at half of Apache Kafka's peak.
const kafkaLatencyCell = "50% of Kafka's peak"

func scenLatency(ctx context.Context, r *runner) error {
	s := r.cfg.latencyShape
	specs := r.available("latency", r.cfg.latencySystems...)
	ins, err := r.startAll(specs)
	if err != nil {
		return err
	}
	defer r.stopAll("latency", ins)

	// Peaks: the latency generator's (franz-go's) from the produce
	// scenario, else measured here (2 runs). With the produce scenario's
	// pre-encoded generator the peak is the broker's, which franz-go's
	// linger-0 producer need not reach: the rates here stay fractions of
	// what this scenario's own client can drive.
	peak := map[string]float64{}
	for _, name := range []string{"kvlog", "nats-js", "kafka"} {
		if p := r.kgoPeakRate(name, s); p > 0 {
			peak[name] = p
			continue
		}
		for _, in := range ins {
			if in.spec.name != name {
				continue
			}
			var rates []float64
			for i := 0; i < 2; i++ {
				st, err := produceOnce(ctx, in, s, r.recordsFor(in, s, r.cfg.produceBytes), genKgo)
				if err != nil {
					return err
				}
				rates = append(rates, st.recPerSec())
			}
			peak[name] = median(rates)
			r.note("latency", "%s peak measured here with franz-go (the produce scenario did not run it with franz-go): %.0f records/s", name, peak[name])
		}
	}
	if peak["kvlog"] == 0 {
		return fmt.Errorf("no kvlog peak rate")
	}
	// Each run gets a fresh topic or stream, removed after it (kfake keeps
	// everything in memory: one topic for all runs would grow by gigabytes).
	type target struct {
		in *instance
		nc *natsConn
	}
	var ts []*target
	for _, in := range ins {
		t := &target{in: in}
		if in.spec.kind == natsKind {
			if t.nc, err = natsDial(in.addr); err != nil {
				return err
			}
			defer t.nc.close()
		}
		ts = append(ts, t)
	}
	type cellDef struct {
		name string
		frac float64
		base string // the peak the rate is a fraction of ("": kvlog's, NATS its own)
	}
	var cells []cellDef
	for _, frac := range r.cfg.latencyFractions {
		cells = append(cells, cellDef{latencyCell(frac), frac, ""})
	}
	if peak["kafka"] > 0 {
		cells = append(cells, cellDef{kafkaLatencyCell, 0.5, "kafka"})
	}
	for _, cd := range cells {
		cell, frac := cd.name, cd.frac
		cts := ts
		if cd.base != "" {
			cts = nil
			for _, t := range ts {
				if t.in.spec.kind == kafkaKind {
					cts = append(cts, t)
				}
			}
		}
		err := rotate(r.cfg.latencyReps, cts, func(rep int, t *target) error {
			pids := []int{t.in.p.pid}
			var res latencyRun
			var err error
			if t.in.spec.kind == natsKind {
				rate := frac * peak["nats-js"]
				var nt natsTarget
				if nt, err = t.nc.create(ctx, nextName("lat"), false); err != nil {
					return err
				}
				res, err = natsLatency(ctx, t.nc, nt, s, rate, r.cfg.latencyWarm, r.cfg.latencyDur, pids)
				t.nc.remove(ctx, nt)
				r.st.add("latency", cell, t.in.spec.name, "target", "records/s", rate)
			} else {
				rate := frac * peak["kvlog"]
				if cd.base != "" {
					rate = frac * peak[cd.base]
				}
				addr := []string{t.in.addr}
				topic := nextName("latency-")
				if err := createTopic(ctx, addr, topic, s.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
					return err
				}
				res, err = kafkaLatency(ctx, addr, topic, s, rate, r.cfg.latencyWarm, r.cfg.latencyDur, pids)
				deleteTopic(ctx, addr, topic)
				r.st.add("latency", cell, t.in.spec.name, "target", "records/s", rate)
			}
			if err != nil {
				return fmt.Errorf("%s at %s: %w", t.in.spec.name, cell, err)
			}
			p := percentiles(res.lat, 0.5, 0.99, 0.999, 1)
			r.st.add("latency", cell, t.in.spec.name, "p50", "ms", p[0])
			r.st.add("latency", cell, t.in.spec.name, "p99", "ms", p[1])
			r.st.add("latency", cell, t.in.spec.name, "p99.9", "ms", p[2])
			r.st.add("latency", cell, t.in.spec.name, "max", "ms", p[3])
			r.st.add("latency", cell, t.in.spec.name, "achieved", "records/s", res.achieved)
			r.st.add("latency", cell, t.in.spec.name, "lost", "records", float64(res.lost))
			r.st.add("latency", cell, t.in.spec.name, "samples", "records", float64(len(res.lat)))
			logf("  %-13s %s rep %d: %8.0f rec/s p50 %.2f p99 %.2f p99.9 %.2f max %.1f ms (lost %d)", t.in.spec.name, cell, rep, res.achieved, p[0], p[1], p[2], p[3], res.lost)
			return nil
		})
		if err != nil {
			return err
		}
	}
	if peak["kafka"] > 0 {
		r.note("latency", "%s: every Kafka-protocol system at 50%% of Apache Kafka's (default durability) peak %s records/s", kafkaLatencyCell, fnum(peak["kafka"]))
	}
	r.note("latency", "rates: Kafka-protocol systems at %s of kvlog's peak %s records/s; NATS at the same fractions of nats-js's peak %s records/s. The load generator (producer and consumer) runs on the same 2 cores: where \"achieved\" falls short of the target, the machine, not only the broker, was saturated, and the latencies say so",
		fracList(r.cfg.latencyFractions), fnum(peak["kvlog"]), fnum(peak["nats-js"]))
	return nil
}

func fracList(fs []float64) string {
	s := ""
	for i, f := range fs {
		if i > 0 {
			s += "/"
		}
		s += fmt.Sprintf("%.0f%%", 100*f)
	}
	return s
}
