package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type kind int

const (
	kafkaKind kind = iota // speaks the Kafka protocol (franz-go load)
	natsKind              // NATS JetStream (nats.go load)
)

// sysSpec is one system under test.
type sysSpec struct {
	name  string
	kind  kind
	impl  string   // "kvlogd", "kfake", "nats", "kafka"
	disk  bool     // kfake with DataDir
	kv    bool     // NATS: the KV bucket (history 1) rather than a plain stream
	props []string // kvlogd, kafka: extra server.properties lines
	desc  string
}

var systemSpecs = []sysSpec{
	{name: "kvlog", kind: kafkaKind, impl: "kvlogd", desc: "kvlogd single node, defaults (group commit before acknowledging acks=all; a commit of many partitions appends their new batches to one journal per log dir and fsyncs it once)"},
	{name: "kvlog-before", kind: kafkaKind, impl: "kvlogd", desc: "kvlogd built from the -baseline git revision, defaults: the same broker before the changes being measured"},
	{name: "kvlog-nojournal", kind: kafkaKind, impl: "kvlogd", props: []string{"kvlog.journal.enable=false"}, desc: "kvlogd with kvlog.journal.enable=false: a group commit syncs the waiting partitions' own files (their fdatasyncs in parallel or one syncfs of the log dir, whichever the broker measured faster for that many partitions; partitions scenario)"},
	{name: "kvlog-nofsync", kind: kafkaKind, impl: "kvlogd", props: []string{"kvlog.fsync.acks.all=false"}, desc: "kvlogd with kvlog.fsync.acks.all=false (page-cache durability, like kfake and NATS defaults)"},
	{name: "kfake-mem", kind: kafkaKind, impl: "kfake", desc: "franz-go kfake, in memory, as its own process (bench/kvbench/kfaked)"},
	{name: "kfake-disk", kind: kafkaKind, impl: "kfake", disk: true, desc: "franz-go kfake with DataDir (segment files, no per-batch fsync), own process"},
	{name: "nats-js", kind: natsKind, impl: "nats", desc: "nats-server -js, file store, a plain stream (subject per key, all messages kept)"},
	{name: "nats-kv", kind: natsKind, impl: "nats", kv: true, desc: "nats-server -js, file store, a KV bucket with history 1 (latest value per key)"},
	{name: "kafka", kind: kafkaKind, impl: "kafka", desc: "Apache Kafka (Maven jars), one KRaft node (broker and controller), kafka-server-start.sh's JVM flags and 1 GiB heap, Kafka's defaults: page cache, no fsync — acknowledged data can be lost on power failure"},
	{name: "kafka-fsync", kind: kafkaKind, impl: "kafka", props: []string{"log.flush.interval.messages=1"}, desc: "the same Apache Kafka node with flush.messages=1 (broker default log.flush.interval.messages=1): fsync after every append, kvlog's default promise"},
}

// durabilityPair names the like-for-like Kafka peer of a kvlog system: kvlog
// (fsync before acks=all) against Kafka with flush.messages=1, kvlog-nofsync
// against Kafka's default.
var durabilityPair = map[string]string{"kvlog": "kafka-fsync", "kvlog-nofsync": "kafka"}

func specOf(name string) sysSpec {
	for _, s := range systemSpecs {
		if s.name == name {
			return s
		}
	}
	panic("unknown system " + name)
}

// instance is a running system under test.
type instance struct {
	spec sysSpec
	r    *runner
	p    *proc
	addr string // Kafka bootstrap or NATS host:port
	http string // kvlogd HTTP (metrics, pprof) or kfaked control
	root string // temp root of this instance
	dir  string // data directory
	bin  string
	args []string
	// jfrPID is the Kafka process whose JFR recording runs (jfr.go).
	jfrPID int
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start starts a fresh instance of spec with an empty temp data dir.
func (r *runner) start(spec sysSpec, extraProps ...string) (*instance, error) {
	root, err := os.MkdirTemp(r.tmp, spec.name+"-")
	if err != nil {
		return nil, err
	}
	in := &instance{spec: spec, r: r, root: root, addr: freeAddr(), dir: filepath.Join(root, "data")}
	switch spec.impl {
	case "kvlogd":
		in.http = freeAddr()
		cfg := filepath.Join(root, "server.properties")
		props := append(append([]string{}, spec.props...), extraProps...)
		if err := os.WriteFile(cfg, []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		in.bin = r.bins.kvlogd
		if spec.name == "kvlog-before" {
			in.bin = r.baselineBin
		}
		in.args = []string{"--config", cfg, "--listeners", "PLAINTEXT://" + in.addr, "--log-dirs", in.dir, "--http", in.http, "--log-level", "warn"}
	case "kfake":
		in.http = freeAddr()
		in.bin = r.bins.kfaked
		in.args = []string{"-listen", in.addr, "-control", in.http}
		if spec.disk {
			in.args = append(in.args, "-data-dir", in.dir)
		}
	case "kafka":
		if err := r.prepareKafka(in, extraProps); err != nil {
			return nil, err
		}
	case "nats":
		host, port, _ := net.SplitHostPort(in.addr)
		in.dir = filepath.Join(root, "store")
		in.bin = r.bins.nats
		in.args = []string{"-js", "-a", host, "-p", port, "-sd", in.dir}
	}
	if err := in.launch(); err != nil {
		return nil, err
	}
	r.sampleStartup(in)
	r.warmKafka(in)
	return in, nil
}

// launch starts the process (again) and waits until it serves.
func (in *instance) launch() error {
	p, err := startProc(in.spec.name, in.bin, in.args, filepath.Join(in.r.raw, "logs", in.spec.name+".log"))
	if err != nil {
		return err
	}
	in.p = p
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := in.waitServing(ctx); err != nil {
		p.kill()
		return fmt.Errorf("%s did not start: %w\n%s", in.spec.name, err, p.tail.String())
	}
	return nil
}

// waitServing polls until the system answers a protocol request.
func (in *instance) waitServing(ctx context.Context) error {
	for {
		var err error
		if in.spec.kind == kafkaKind {
			err = kafkaPing(ctx, in.addr)
		} else {
			err = natsPing(in.addr)
		}
		if err == nil {
			return nil
		}
		if !in.p.running() {
			return errors.New("process exited")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func kafkaPing(ctx context.Context, addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RetryTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).BrokerMetadata(pctx)
	return err
}

func natsPing(addr string) error {
	nc, err := nats.Connect("nats://"+addr, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = nc.Request("$JS.API.INFO", nil, 2*time.Second)
	return err
}

// peakMB is the process's peak RSS so far (VmHWM).
func (in *instance) peakMB() float64 { return in.p.usage().peakMB }

// stop stops the process gracefully and removes its data.
func (in *instance) stop() {
	in.p.stop(60 * time.Second)
	os.RemoveAll(in.root)
}

// startAll starts one instance per system; on error the started ones stop.
func (r *runner) startAll(specs []sysSpec, extraProps ...string) ([]*instance, error) {
	var out []*instance
	for _, s := range specs {
		var props []string
		if s.impl == "kvlogd" || s.impl == "kafka" {
			props = extraProps
		}
		in, err := r.start(s, props...)
		if err != nil {
			for _, o := range out {
				o.stop()
			}
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// stopAll records each instance's peak RSS under the scenario and stops it.
func (r *runner) stopAll(scen string, ins []*instance) {
	for _, in := range ins {
		r.st.add(scen, "peak RSS", in.spec.name, "peak_rss", "MB", in.peakMB())
		in.stop()
	}
}
