package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Scenario 6: recovery after kill -9. Per data size, one partition (or NATS
// stream) of 1 KiB values is written, the process is killed with SIGKILL,
// restarted on the same data dir and port, and timed from exec to serving:
// kvlog serves when ListOffsets returns the log end offset written and a
// Fetch of the last record returns it; NATS when the stream's info reports
// every message. Variants:
//
//   - kvlog unflushed: kvlog.fsync.acks.all=false, acks=1, and
//     log.flush.offset.checkpoint.interval.ms=3600000, so the
//     recovery-point checkpoint on disk lags the data (segments that rolled
//     were fsync'ed but the checkpoint naming them was not written). The
//     checkpoint files as left by the first kill are restored before every
//     later restart, so every round recovers the same crash state. "cold":
//     the data files are dropped from the page cache before the restart.
//   - kvlog flushed: defaults (fsync before acks=all acknowledgements),
//     checkpoint interval 1 s, killed 3 s after the last write.
//   - kvlog empty: the same restart with an empty data dir (process start
//     and listener cost, subtracted to get the scan rate).
//   - nats-js: killed right after the last publish acknowledgement; later
//     rounds kill the recovered server.
//   - kafka unflushed (and cold): Apache Kafka with its defaults (no fsync
//     but at segment roll) and log.flush.offset.checkpoint.interval.ms=
//     3600000, loaded and killed like kvlog unflushed, its
//     recovery-point-offset-checkpoint restored the same way: Kafka's own
//     recovery of an unflushed log. kafka empty: Kafka's restart on an
//     empty log (JVM start, KRaft quorum, listeners).
//   - clean restarts: kvlog (on kvlog flushed's data) and Kafka (on kafka
//     unflushed's data) stopped with SIGTERM and started again.
//
// Every Kafka-protocol variant also times exec → the first acknowledged
// acks=all produce to a one-partition topic "first" made at load time (the
// goal's "start to first produce" with data, from the clean restarts).
//
// The topics use segment.bytes = min(1 GiB, smallest size/4) at every size.
// Rescanned bytes = the .log bytes from the segment holding the checkpointed
// recovery point to the end (read from the data dir before the restart).

type recVariant struct {
	name  string
	in    *instance
	cold  bool
	clean bool // SIGTERM, not kill -9
	topic string
	leo   int64
	msgs  uint64
	saved map[string][]byte // checkpoint files after the first kill
}

func scenRecovery(ctx context.Context, r *runner) error {
	for _, size := range r.cfg.recoverySizes {
		if err := recoverySize(ctx, r, size); err != nil {
			return err
		}
	}
	return nil
}

func sizeLabel(b int64) string {
	if b >= gb && b%gb == 0 {
		return fmt.Sprintf("%d GiB", b/gb)
	}
	return fmt.Sprintf("%d MiB", b/mb)
}

func recoverySize(ctx context.Context, r *runner, size int64) error {
	cell := sizeLabel(size)
	s := shape{partitions: 1, valueLen: 1024, keys: 1000, acks: "1", comp: "none"}
	n := int(size / int64(s.recordBytes()))
	var ins []*instance
	defer func() { r.stopAll("recovery", ins) }()
	start := func(name string, spec sysSpec, props ...string) (*instance, error) {
		spec.name = name
		in, err := r.start(spec, props...)
		if err == nil {
			ins = append(ins, in)
		}
		return in, err
	}
	var vs []*recVariant
	logf("recovery %s: loading", cell)

	// kvlog unflushed.
	in, err := start("kvlog-unflushed", specOf("kvlog-nofsync"), "log.flush.offset.checkpoint.interval.ms=3600000")
	if err != nil {
		return err
	}
	leo, err := loadKafka(ctx, in, "rec", s, n, recoverySegment(r.cfg.recoverySizes))
	if err != nil {
		return err
	}
	saved := saveCheckpoints(in)
	vs = append(vs, &recVariant{name: "kvlog unflushed", in: in, topic: "rec", leo: leo, saved: saved},
		&recVariant{name: "kvlog unflushed (cold)", in: in, topic: "rec", leo: leo, cold: true, saved: saved})

	// kvlog flushed.
	sa := s
	sa.acks = "all"
	if in, err = start("kvlog-flushed", specOf("kvlog"), "log.flush.offset.checkpoint.interval.ms=1000"); err != nil {
		return err
	}
	if leo, err = loadKafka(ctx, in, "rec", sa, n, recoverySegment(r.cfg.recoverySizes)); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	vs = append(vs, &recVariant{name: "kvlog flushed", in: in, topic: "rec", leo: leo},
		&recVariant{name: "kvlog clean restart", in: in, topic: "rec", leo: leo, clean: true})

	// kvlog empty.
	if in, err = start("kvlog-empty", specOf("kvlog")); err != nil {
		return err
	}
	if err := createTopic(ctx, []string{in.addr}, "first", 1, 1, nil); err != nil {
		return err
	}
	vs = append(vs, &recVariant{name: "kvlog empty", in: in})

	// Apache Kafka.
	if len(r.available("recovery", "kafka")) > 0 {
		if in, err = start("kafka-unflushed", specOf("kafka"), "log.flush.offset.checkpoint.interval.ms=3600000"); err != nil {
			return err
		}
		if leo, err = loadKafka(ctx, in, "rec", s, n, recoverySegment(r.cfg.recoverySizes)); err != nil {
			return err
		}
		saved := saveCheckpoints(in)
		vs = append(vs, &recVariant{name: "kafka unflushed", in: in, topic: "rec", leo: leo, saved: saved},
			&recVariant{name: "kafka unflushed (cold)", in: in, topic: "rec", leo: leo, cold: true, saved: saved},
			&recVariant{name: "kafka clean restart", in: in, topic: "rec", leo: leo, clean: true})
		if in, err = start("kafka-empty", specOf("kafka")); err != nil {
			return err
		}
		if err := createTopic(ctx, []string{in.addr}, "first", 1, 1, nil); err != nil {
			return err
		}
		vs = append(vs, &recVariant{name: "kafka empty", in: in})
	}

	// NATS.
	switch {
	case r.bins.nats == "":
		r.skip("recovery", "nats-js "+cell, "nats-server not installed")
	case r.cfg.natsRecoveryMax > 0 && size > r.cfg.natsRecoveryMax:
		r.skip("recovery", "nats-js "+cell, "NATS runs the recovery sizes up to %s only (disk space: kvlog's two logs and Kafka's already hold %s at once; time: NATS writes at a tenth of their rate)", sizeLabel(r.cfg.natsRecoveryMax), sizeLabel(3*size))
	default:
		if in, err = start("nats-js", specOf("nats-js")); err != nil {
			return err
		}
		c, err := natsDial(in.addr)
		if err != nil {
			return err
		}
		t, err := c.create(ctx, "REC", false)
		if err != nil {
			c.close()
			return err
		}
		st, err := natsProduce(ctx, c, t, s, 0, n, []int{in.p.pid})
		c.close()
		if err != nil {
			return err
		}
		logf("  nats-js: wrote %s at %.0f MB/s", cell, st.mbPerSec())
		vs = append(vs, &recVariant{name: "nats-js", in: in, topic: "REC", msgs: uint64(n) + 1},
			&recVariant{name: "nats-js (cold)", in: in, topic: "REC", msgs: uint64(n) + 1, cold: true})
	}

	return rotate(r.cfg.recoveryReps, vs, func(rep int, v *recVariant) error {
		if v.clean {
			v.in.p.stop(5 * time.Minute)
		} else {
			v.in.p.kill()
		}
		var rescan int64 = -1
		if v.in.spec.kind == kafkaKind {
			if v.saved != nil {
				// Every round recovers the crash state the load left.
				for f, b := range v.saved {
					if b == nil {
						os.Remove(f)
					} else {
						os.WriteFile(f, b, 0o644)
					}
				}
			}
			if v.topic != "" && !v.clean {
				rescan = rescanBytes(v.in.dir, v.topic+"-0")
			}
		}
		if v.cold {
			dropCache(v.in.dir)
		}
		serve, first, cpu, err := restartTimed(ctx, v)
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		r.st.add("recovery", cell, v.name, "serve s", "s", serve.Seconds())
		if first > 0 {
			r.st.add("recovery", cell, v.name, "first produce s", "s", first.Seconds())
		}
		r.st.add("recovery", cell, v.name, "cpu s", "CPU s", cpu)
		if rescan >= 0 {
			r.st.add("recovery", cell, v.name, "rescan MB", "MB", float64(rescan)/1e6)
		}
		logf("  %-24s rep %d: first produce after %.3f s, serving after %.3f s (cpu %.2f s, rescanned %.0f MB)", v.name, rep, first.Seconds(), serve.Seconds(), cpu, float64(max(rescan, 0))/1e6)
		return nil
	})
}

// recoverySegment is the segment.bytes of the recovery topics, the same at
// every data size so that only the size varies: Kafka's 1 GiB, or a quarter
// of the smallest size when that is smaller (so that even the smallest
// flushed log has segments behind its active one). After kill -9 a log
// rescans from the segment holding its checkpointed recovery point, so a
// segment size that grew with the data would make the flushed restart grow
// with it.
func recoverySegment(sizes []int64) int64 { return min(gb, slices.Min(sizes)/4) }

// saveCheckpoints keeps the log dir's recovery-point checkpoint as it is
// on disk now (nil: absent), what a kill -9 would leave.
func saveCheckpoints(in *instance) map[string][]byte {
	cps := filepath.Join(in.dir, "recovery-point-offset-checkpoint")
	b, err := os.ReadFile(cps)
	if err != nil {
		b = nil
	}
	return map[string][]byte{cps: b}
}

// loadKafka writes n records to a fresh one-partition topic (retention
// off) and returns the log end offset; it also creates the one-partition
// topic "first" that restarts produce to.
func loadKafka(ctx context.Context, in *instance, topic string, s shape, n int, segment int64) (int64, error) {
	addr := []string{in.addr}
	if err := createTopic(ctx, addr, "first", 1, 1, nil); err != nil {
		return 0, err
	}
	if err := createTopic(ctx, addr, topic, 1, 1, map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1", "segment.bytes": strconv.FormatInt(segment, 10)}); err != nil {
		return 0, err
	}
	st, err := kafkaProduce(ctx, addr, topic, s, 0, n, []int{in.p.pid})
	if err != nil {
		return 0, fmt.Errorf("%s: loading: %w", in.spec.name, err)
	}
	logf("  %s: wrote %.0f MB at %.0f MB/s", in.spec.name, float64(st.bytes)/1e6, st.mbPerSec())
	ends, err := endOffsets(ctx, addr, topic)
	return ends[0], err
}

// rescanBytes is the size of the .log files a recovery rescans: from the
// segment holding the checkpointed recovery point of the partition to the
// last one (everything when there is no checkpoint entry).
func rescanBytes(logDir, partDir string) int64 {
	rp := int64(0)
	if b, err := os.ReadFile(filepath.Join(logDir, "recovery-point-offset-checkpoint")); err == nil {
		lines := strings.Split(string(b), "\n")
		tp := strings.LastIndexByte(partDir, '-')
		for _, l := range lines[min(2, len(lines)):] {
			f := strings.Fields(l)
			if len(f) == 3 && f[0] == partDir[:tp] && f[1] == partDir[tp+1:] {
				rp, _ = strconv.ParseInt(f[2], 10, 64)
			}
		}
	}
	type seg struct{ base, size int64 }
	var segs []seg
	ents, _ := os.ReadDir(filepath.Join(logDir, partDir))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		b, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), ".log"), 10, 64)
		fi, err2 := e.Info()
		if err == nil && err2 == nil {
			segs = append(segs, seg{b, fi.Size()})
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].base < segs[j].base })
	var total int64
	for i, sg := range segs {
		next := int64(1<<63 - 1)
		if i+1 < len(segs) {
			next = segs[i+1].base
		}
		if next > rp { // holds rp or later
			total += sg.size
		}
	}
	return total
}

// restartTimed restarts v's process and times exec → serving and, for a
// Kafka-protocol system, exec → the first acknowledged produce to topic
// "first" (tried first); cpu is the new process's CPU time when it serves.
func restartTimed(ctx context.Context, v *recVariant) (serve, first time.Duration, cpu float64, err error) {
	in := v.in
	p, err := startProc(in.spec.name, in.bin, in.args, filepath.Join(in.r.raw, "logs", in.spec.name+".log"))
	if err != nil {
		return 0, 0, 0, err
	}
	in.p = p
	deadline := time.Now().Add(30 * time.Minute)
	if in.spec.kind == kafkaKind {
		fctx, cancel := context.WithDeadline(ctx, deadline)
		done := make(chan error, 1)
		go func() { done <- firstProduce(fctx, in.addr, "first", false) }()
		select {
		case err = <-done:
		case <-p.exited:
			err = errors.New("process exited")
		}
		cancel()
		if err != nil {
			return 0, 0, 0, fmt.Errorf("first produce after the restart: %w\n%s", err, p.tail.String())
		}
		first = time.Since(p.start)
	}
	for {
		if servesNow(ctx, v) {
			return time.Since(p.start), first, p.usage().cpu, nil
		}
		if !p.running() {
			return 0, 0, 0, fmt.Errorf("process exited during recovery:\n%s", p.tail.String())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, 0, 0, fmt.Errorf("not serving after 30 minutes")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func servesNow(ctx context.Context, v *recVariant) bool {
	c, err := net.DialTimeout("tcp", v.in.addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if v.in.spec.kind == natsKind {
		nc, err := nats.Connect("nats://"+v.in.addr, nats.Timeout(time.Second), nats.NoReconnect())
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		st, err := js.Stream(qctx, v.topic)
		if err != nil {
			return false
		}
		info, err := st.Info(qctx)
		return err == nil && info.State.Msgs == v.msgs
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(v.in.addr), kgo.RetryTimeout(500*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 5 * time.Millisecond }))
	if err != nil {
		return false
	}
	defer cl.Close()
	if v.topic == "" {
		_, err := kadm.NewClient(cl).BrokerMetadata(qctx)
		return err == nil
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(qctx, v.topic)
	if err != nil {
		return false
	}
	o, ok := ends.Lookup(v.topic, 0)
	if !ok || o.Err != nil || o.Offset != v.leo {
		return false
	}
	st, err := kafkaConsume(qctx, []string{v.in.addr}, v.topic, map[int32]int64{0: v.leo - 1}, map[int32]int64{0: v.leo}, nil)
	return err == nil && st.records == 1
}
