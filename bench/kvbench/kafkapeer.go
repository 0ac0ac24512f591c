package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvlog/kvlog/internal/kafkaproc"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Apache Kafka as a peer: Kafka 4.x (compat/kafka's Maven jars) as a single
// KRaft node that is broker and controller, started as
// kafka-server-start.sh starts it (internal/kafkaproc: its JVM flags, the
// 1 GiB heap), and Kafka 3.9 (bench/kafka39's jars) in ZooKeeper mode for
// the replicated scenario. Both run with Kafka's defaults except what a
// scenario sets, and with the log4j configuration of this directory:
// warnings to the process log, the log cleaner's INFO lines (its per-pass
// statistics) to log-cleaner.log in the node's directory, as Kafka's own
// log4j configuration does.

// kafkaClusterID formats every KRaft node's storage.
const kafkaClusterID = "a3Zsb2ctYmVuY2gta2Fma2E"

// kafkaJars finds the two classpaths and Java (r.kafka*; why when not).
func (r *runner) findKafka() {
	if _, err := exec.LookPath("java"); err != nil {
		r.kafkaWhy = "java is not installed (make tools-kafka)"
		return
	}
	cp, err := kafkaproc.ReadClasspath(filepath.Join(r.root, "compat", "kafka", "target", "classpath.txt"))
	if err != nil {
		r.kafkaWhy = err.Error() + " (make tools-kafka)"
		return
	}
	r.kafkaCP = cp
	r.kafkaVersion = jarVersion(cp, "kafka_2.13-")
	if cp39, err := kafkaproc.ReadClasspath(filepath.Join(r.root, "bench", "kafka39", "target", "classpath.txt")); err == nil {
		r.kafka39CP = cp39
		r.kafka39Version = jarVersion(cp39, "kafka_2.13-")
	} else {
		r.kafka39Why = err.Error() + " (make tools-bench)"
	}
	if v, err := exec.Command("java", "-version").CombinedOutput(); err == nil {
		r.javaVersion = strings.SplitN(strings.TrimSpace(string(v)), "\n", 2)[0]
	}
}

// jarVersion is the version in the file name of the classpath's jar named
// prefix<version>.jar.
func jarVersion(cp, prefix string) string {
	for _, j := range strings.Split(cp, ":") {
		b := filepath.Base(j)
		if strings.HasPrefix(b, prefix) && strings.HasSuffix(b, ".jar") {
			return strings.TrimSuffix(strings.TrimPrefix(b, prefix), ".jar")
		}
	}
	return "?"
}

// kafkaProps turns a scenario's broker properties into Kafka's: kvlog-only
// settings (kvlog.*) have no Kafka equivalent and are dropped.
func kafkaProps(props []string) []string {
	var out []string
	for _, p := range props {
		if !strings.HasPrefix(p, "kvlog.") {
			out = append(out, p)
		}
	}
	return out
}

// kafkaJVM is the full java argument list of a Kafka node: the broker's
// JVM flags, the logging configuration, then the main class.
func (r *runner) kafkaJVM(n kafkaproc.Node, cp string, v3 bool) []string {
	args := n.ServerJVMFlags(kafkaproc.Heap)
	args = append(args, "-Dkafka.logs.dir="+n.Dir)
	if v3 {
		args = append(args, kafkaproc.Log4jFlag(filepath.Join(r.root, "bench", "kvbench", "kafka-log4j.properties")))
	} else {
		args = append(args, kafkaproc.Log4j2Flag(filepath.Join(r.root, "bench", "kvbench", "kafka-log4j2.properties")))
	}
	return append(args, n.ServerArgs(cp)...)
}

// prepareKafka writes a KRaft node's server.properties in root and formats
// its storage; the instance runs `java` with the returned arguments.
func (r *runner) prepareKafka(in *instance, props []string) error {
	n := kafkaproc.Node{Dir: in.root, Addr: in.addr, Controller: freeAddr(), Props: append(append([]string{}, in.spec.props...), kafkaProps(props)...)}
	in.dir = n.DataDir()
	if err := n.WriteConfig(); err != nil {
		return err
	}
	fmtArgs := append([]string{"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		kafkaproc.Log4j2Flag(filepath.Join(r.root, "bench", "kvbench", "kafka-log4j2.properties")), "-Dkafka.logs.dir=" + in.root},
		n.FormatArgs(r.kafkaCP, kafkaClusterID)...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "java", fmtArgs...).CombinedOutput(); err != nil {
		return fmt.Errorf("kafka-storage format: %v\n%s", err, out)
	}
	in.bin = "java"
	in.args = r.kafkaJVM(n, r.kafkaCP, false)
	return nil
}

// firstProduce produces one record with acks=all to topic (one partition,
// created when create is set and it does not exist) until it is
// acknowledged or ctx ends, retrying every few milliseconds: the time from
// a process's start to the first acknowledged write.
func firstProduce(ctx context.Context, addr, topic string, create bool) error {
	var last error
	for {
		// Nothing listens yet: poll the port (a client's first failed
		// dial would make it wait its metadata backoff).
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err != nil {
			last = err
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			case <-time.After(5 * time.Millisecond):
			}
			continue
		} else {
			c.Close()
		}
		err := func() error {
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic),
				kgo.RetryTimeout(2*time.Second), kgo.RecordDeliveryTimeout(2*time.Second), kgo.MetadataMinAge(10*time.Millisecond),
				kgo.RetryBackoffFn(func(int) time.Duration { return 5 * time.Millisecond }))
			if err != nil {
				return err
			}
			defer cl.Close()
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if create {
				resp, err := kadm.NewClient(cl).CreateTopic(pctx, 1, 1, nil, topic)
				if err == nil {
					err = resp.Err
				}
				if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
					return err
				}
			}
			return cl.ProduceSync(pctx, &kgo.Record{Key: []byte("first"), Value: []byte("first")}).FirstErr()
		}()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// startupSample records, for the first few starts of each Kafka-protocol
// system with an empty data dir, the time from exec to the first
// acknowledged produce (topic creation included), and the process's RSS
// once it has been idle for idleWait after that.
const idleWait = 3 * time.Second

func (r *runner) sampleStartup(in *instance) {
	if in.spec.kind != kafkaKind || r.startups[in.spec.name] >= r.cfg.startupSamples {
		return
	}
	r.startups[in.spec.name]++
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := firstProduce(ctx, in.addr, "first-produce", true); err != nil {
		r.note("startup", "%s: first produce failed: %v", in.spec.name, err)
		return
	}
	el := time.Since(in.p.start)
	r.st.add("startup", "empty", in.spec.name, "first produce s", "s", el.Seconds())
	time.Sleep(idleWait)
	u := in.p.usage()
	r.st.add("startup", "empty", in.spec.name, "idle RSS", "MB", u.rssMB)
	logf("  %s: first produce %.2f s after exec, idle RSS %.0f MB", in.spec.name, el.Seconds(), u.rssMB)
	deleteTopic(ctx, []string{in.addr}, "first-produce")
}

// kafkaCleanerCheckpoint is the offset Kafka's cleaner-offset-checkpoint
// of logDir holds for topic-partition (-1 when none).
func kafkaCleanerCheckpoint(logDir, topic string, partition int) int64 {
	b, err := os.ReadFile(filepath.Join(logDir, "cleaner-offset-checkpoint"))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == topic && f[1] == strconv.Itoa(partition) {
			v, _ := strconv.ParseInt(f[2], 10, 64)
			return v
		}
	}
	return -1
}

// kafkaCleanerStats sums what Kafka's LogCleaner reported in
// log-cleaner.log for topic's partition 0 after byte offset from of the
// file: the passes ("Log cleaner thread N cleaned log <tp> …") and their
// own timing ("… MB of log processed in S seconds …"). It returns the new
// end of the file too.
func kafkaCleanerStats(file, topic string, from int64) (passes int, seconds float64, end int64) {
	b, err := os.ReadFile(file)
	if err != nil || int64(len(b)) < from {
		return 0, 0, from
	}
	end = int64(len(b))
	lines := strings.Split(string(b[from:]), "\n")
	mine := false
	for _, l := range lines {
		if strings.Contains(l, "cleaned log "+topic+"-0 ") {
			passes++
			mine = true
			continue
		}
		if mine && strings.Contains(l, "of log processed in") {
			f := strings.Fields(l)
			for i, w := range f {
				if w == "in" && i+2 < len(f) && strings.HasPrefix(f[i+2], "seconds") {
					s, err := strconv.ParseFloat(strings.ReplaceAll(f[i+1], ",", ""), 64) // %,.1f: grouping commas
					if err == nil {
						seconds += s
					}
				}
			}
			mine = false
		}
	}
	return passes, seconds, end
}

// kafkaWarmRecords is the JIT warm-up of every Kafka node after its start:
// records of the anchor shape produced and read back once, unmeasured, so
// that its rounds measure a warmed JVM (a broker in service has run long
// enough for the JIT to compile its hot paths).
const kafkaWarmRecords = 300_000

func (r *runner) warmKafka(in *instance) {
	if in.spec.impl != "kafka" {
		return
	}
	// JFR is initialised (a recording started, and stopped again unless
	// -kafka-jfr-always) before the warm-up: its start-up cost stays out of
	// the start-up figures and the measured rounds.
	r.startJFR(in)
	if !*kafkaJFRAlways {
		r.stopJFR(in)
	}
	r.warmKafkaAt(in.spec.name, []string{in.addr}, 1)
}

// warmKafkaAt warms the Kafka node or cluster at addr with a topic of
// replication factor rf.
func (r *runner) warmKafkaAt(name string, addr []string, rf int16) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	topic := nextName("warm-")
	start := time.Now()
	err := createTopic(ctx, addr, topic, 1, rf, nil)
	if err == nil {
		_, err = kafkaProduce(ctx, addr, topic, anchorShape, 0, kafkaWarmRecords, nil)
	}
	if err == nil {
		_, err = kafkaConsume(ctx, addr, topic, nil, nil, nil)
	}
	deleteTopic(ctx, addr, topic)
	if err != nil {
		r.note("startup", "%s: JIT warm-up failed: %v", name, err)
		return
	}
	logf("  %s: JIT warm-up (%d records produced and read) in %.1f s", name, kafkaWarmRecords, time.Since(start).Seconds())
}

// startKafkaZK starts n Apache Kafka 3.9 brokers in ZooKeeper mode under
// the chroot /kafka39 of zk, as the kvlog cluster uses ZooKeeper: RF 3
// topics with min.insync.replicas=2, like kvlog's cluster. It waits until
// every broker is registered.
func (r *runner) startKafkaZK(ctx context.Context, zk string, n int) ([]*instance, error) {
	var ins []*instance
	fail := func(err error) ([]*instance, error) {
		for _, in := range ins {
			in.stop()
		}
		return nil, err
	}
	for id := 1; id <= n; id++ {
		root, err := os.MkdirTemp(r.tmp, "kafka39-")
		if err != nil {
			return fail(err)
		}
		spec := sysSpec{name: fmt.Sprintf("kafka39-%d", id), kind: kafkaKind, impl: "kafka39"}
		in := &instance{spec: spec, r: r, root: root, addr: freeAddr()}
		node := kafkaproc.Node{Dir: root, Addr: in.addr, ZooKeeper: zk + "/kafka39", ID: id, Props: []string{
			"default.replication.factor=3",
			"min.insync.replicas=2",
			"offsets.topic.replication.factor=3",
			"auto.leader.rebalance.enable=false",
		}}
		if err := node.WriteConfig(); err != nil {
			return fail(err)
		}
		in.dir, in.bin, in.args = node.DataDir(), "java", r.kafkaJVM(node, r.kafka39CP, true)
		if err := in.launch(); err != nil {
			return fail(err)
		}
		ins = append(ins, in)
	}
	seeds := []string{}
	for _, in := range ins {
		seeds = append(seeds, in.addr)
	}
	cl, err := kafkaClient(seeds)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		m, err := kadm.NewClient(cl).BrokerMetadata(wctx)
		if err == nil && len(m.Brokers) == n {
			r.warmKafkaAt("kafka 3.9 cluster", seeds, 3)
			return ins, nil
		}
		select {
		case <-wctx.Done():
			return fail(fmt.Errorf("Kafka 3.9 cluster: %d of %d brokers registered: %w", len(m.Brokers), n, wctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
