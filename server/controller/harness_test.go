package controller

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/zkstore"
)

// The scenario tests: each file under testdata/ is a sequence of steps,
// each a command, "----", and what it must produce (see harness.run for the
// commands). A step's output lists, in this order: the results of the step
// (controlled shutdown answers, controllers becoming active or not), the
// partition states that changed in the store, and the requests each broker
// received (by broker id, in the order received, every attempt). Every
// scenario runs in a synctest bubble: time is fake and moves only when every
// goroutine waits, and each step ends when every goroutine waits, so no test
// sleeps and the output is exact.
//
// go test ./server/controller -run Scenarios -rewrite rewrites the
// expectations with what the steps produce (review the diff).

var rewrite = flag.Bool("rewrite", false, "rewrite the scenario files' expectations")

func testLogger() *slog.Logger {
	if os.Getenv("CONTROLLER_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runScenarioFile(t, f) })
		})
	}
}

// step is one command of a scenario file and its expected output.
type step struct {
	pre  []string // comment and blank lines before it
	line int
	cmd  string
	want []string
}

func parseScenario(t *testing.T, data string) (steps []step, trailer []string) {
	lines := strings.Split(strings.TrimRight(data, "\n"), "\n")
	var pre []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pre = append(pre, l)
			continue
		}
		st := step{pre: pre, line: i + 1, cmd: l}
		pre = nil
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("line %d: %q not followed by ----", i+1, l)
		}
		i += 2
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			st.want = append(st.want, lines[i])
		}
		i-- // the blank line (if any) is the next step's
		steps = append(steps, st)
	}
	return steps, pre
}

func runScenarioFile(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	steps, trailer := parseScenario(t, string(data))
	h := newHarness(t)
	defer h.close()
	var out strings.Builder
	failed := false
	for _, st := range steps {
		got := h.do(st.cmd)
		if !slices.Equal(got, st.want) && !*rewrite {
			t.Errorf("%s:%d: %s\n got:\n\t%s\nwant:\n\t%s", path, st.line, st.cmd,
				strings.Join(got, "\n\t"), strings.Join(st.want, "\n\t"))
			failed = true
		}
		for _, l := range st.pre {
			out.WriteString(l + "\n")
		}
		out.WriteString(st.cmd + "\n----\n")
		for _, l := range got {
			out.WriteString(l + "\n")
		}
	}
	for _, l := range trailer {
		out.WriteString(l + "\n")
	}
	if *rewrite && !failed {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// harness is a cluster of fake brokers around memZK: each broker has a
// session (its registration is ephemeral in it) and may run a controller
// candidate on that session, as a kvlog broker does.
type harness struct {
	t       *testing.T
	zk      *memZK
	net     *fakeNet
	brokers map[int32]*hbroker
	ctrls   map[int32]*Controller
	status  map[int32]Status
	states  map[zkstore.TopicPartition]string

	mu        sync.Mutex
	unclean   map[string]bool
	rebalance bool
	shutdowns []*shutdownCall
	timeout   time.Duration
}

type hbroker struct {
	id   int32
	sess *memSession
	gen  int64 // registrations so far
	up   bool
	// reregister: the session expired with its notifications held; the
	// broker registers again once they are released.
	reregister bool
}

type shutdownCall struct {
	broker int32
	via    int32
	done   chan struct{}
	rem    []zkstore.TopicPartition
	err    error
}

func newHarness(t *testing.T) *harness {
	net := newFakeNet()
	net.gated = true
	return &harness{t: t, zk: newMemZK(), net: net, brokers: map[int32]*hbroker{},
		ctrls: map[int32]*Controller{}, status: map[int32]Status{}, states: map[zkstore.TopicPartition]string{},
		unclean: map[string]bool{}, timeout: 30 * time.Second}
}

func (h *harness) close() {
	h.net.ungate()
	for _, id := range keys(h.ctrls) {
		h.ctrls[id].Stop()
	}
	synctest.Wait()
}

// settle runs the cluster until nothing moves: the brokers' answers go one
// at a time (fakeNet.gated), each followed by everything it sets off.
func (h *harness) settle() {
	synctest.Wait()
	for h.net.releaseOne() {
		synctest.Wait()
	}
}

// epoch is broker id's registration epoch: 100*id + its registration count
// (readable, and larger for each later registration as a czxid is).
func (b *hbroker) epoch() int64 { return 100*int64(b.id) + b.gen }

func (h *harness) register(b *hbroker) {
	b.gen++
	if err := b.sess.registerBroker(zkstore.Broker{ID: b.id, Epoch: b.epoch(),
		Endpoints: []zkstore.Endpoint{{Name: "PLAINTEXT", Host: "127.0.0.1", Port: 9000 + b.id}}}); err != nil {
		h.t.Fatalf("register broker %d: %v", b.id, err)
	}
	b.up = true
}

func (h *harness) broker(s string) *hbroker {
	id := h.id(s)
	b := h.brokers[id]
	if b == nil {
		h.t.Fatalf("no broker %d", id)
	}
	return b
}

func (h *harness) id(s string) int32 {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "b"))
	if err != nil {
		h.t.Fatalf("bad broker id %q", s)
	}
	return int32(n)
}

func (h *harness) startController(b *hbroker) {
	c := New(Config{
		BrokerID: b.id,
		Store:    b.sess,
		Dialer:   h.net,
		Unclean: func(topic string) bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.unclean[topic]
		},
		AutoRebalance:     h.rebalance,
		RebalanceInterval: 5 * time.Minute,
		RequestTimeout:    h.timeout,
		Logger:            testLogger().With("node", b.id),
		Metadata:          func() map[zkstore.TopicPartition]zkstore.PartitionState { return h.net.metadata(b.id) },
	})
	h.ctrls[b.id] = c
	c.Start()
}

// parseTP parses "t-0".
func (h *harness) parseTP(s string) zkstore.TopicPartition {
	i := strings.LastIndexByte(s, '-')
	p, err := strconv.Atoi(s[i+1:])
	if i < 0 || err != nil {
		h.t.Fatalf("bad partition %q", s)
	}
	return zkstore.TopicPartition{Topic: s[:i], Partition: int32(p)}
}

func parseReplicas(s string) []int32 {
	var out []int32
	for _, f := range strings.Split(s, ",") {
		n, _ := strconv.Atoi(f)
		out = append(out, int32(n))
	}
	return out
}

// do runs one command and returns its output once every goroutine waits.
//
//	brokers 1 2 3               brokers register (each with a new session)
//	controller 1                broker 1 starts a controller candidate
//	topic t 1,2,3 2,3,1         a topic is created with these replicas per partition
//	topic-rr t 400 2            a topic of 400 partitions, 2 replicas each, placed
//	                            round-robin over the registered brokers
//	partitions t 3,1,2          partitions are added to t
//	delete t                    t is marked for deletion
//	crash 2                     broker 2 dies: its controller stops, its session ends
//	restart 2                   broker 2 comes back (new session, new broker epoch)
//	expire 2 [hold]             broker 2's session expires: it re-registers in
//	                            the new one (hold: its notifications, the
//	                            re-registration included, wait for release)
//	release 2                   broker 2's held notifications are delivered
//	isr t-0 1,2                 t-0's leader writes this ISR (as replicas do)
//	shutdown 2 [epoch=N] [via=C]  broker 2 sends ControlledShutdown to the controller
//	                            (via: to broker C's, e.g. a deposed one)
//	respond 2 API|* ok|timeout|conn-error|storage-error t-0,..|error CODE|slow 8s
//	                            broker 2's next answer to API (slow: given
//	                            that long after the request)
//	unreachable 2 on|off        connections to broker 2 are refused
//	unclean t on|off            unclean.leader.election.enable of t
//	rebalance on                auto.leader.rebalance.enable for controllers started later
//	advance 5m                  fake time moves
//	zk-fail 1 2                 broker 1's next 2 reads of /controller fail
//	watches 1                   broker 1's outstanding watches by path
//	states                      every partition state
//	store                       the partition-state batches the controllers read
//	                            and wrote since the last "store" (and how many
//	                            partitions they held)
func (h *harness) do(cmd string) []string {
	f := strings.Fields(cmd)
	var res []string
	switch f[0] {
	case "brokers", "topic", "topic-rr", "partitions", "delete", "crash", "restart", "expire", "release", "isr":
		// The store changes of one step reach the controllers together.
		h.zk.batch(func() { res = h.mutate(f) })
	default:
		res = h.command(cmd, f)
	}
	h.settle()
	return append(res, h.observe()...)
}

// mutate runs a command that changes the store.
func (h *harness) mutate(f []string) []string {
	var res []string
	switch f[0] {
	case "brokers":
		for _, s := range f[1:] {
			id := h.id(s)
			b := &hbroker{id: id, sess: h.zk.newSession()}
			h.brokers[id] = b
			h.register(b)
		}
	case "topic":
		var reps [][]int32
		for _, r := range f[2:] {
			reps = append(reps, parseReplicas(r))
		}
		h.zk.createTopic(f[1], reps)
	case "topic-rr":
		n, _ := strconv.Atoi(f[2])
		rf, _ := strconv.Atoi(f[3])
		ids := keys(h.brokers)
		var reps [][]int32
		for p := range n {
			var rs []int32
			for i := range rf {
				rs = append(rs, ids[(p+i)%len(ids)])
			}
			reps = append(reps, rs)
		}
		h.zk.createTopic(f[1], reps)
	case "partitions":
		var reps [][]int32
		for _, r := range f[2:] {
			reps = append(reps, parseReplicas(r))
		}
		h.zk.addPartitions(f[1], reps)
	case "delete":
		h.zk.markDeletion(f[1])
	case "crash":
		b := h.broker(f[1])
		if c := h.ctrls[b.id]; c != nil {
			c.Stop()
			delete(h.ctrls, b.id)
			delete(h.status, b.id)
		}
		b.sess.close()
		b.up = false
		h.net.forget(b.id)
	case "restart":
		b := h.broker(f[1])
		if b.up {
			h.t.Fatalf("broker %d is up", b.id)
		}
		b.sess = h.zk.newSession()
		h.register(b)
	case "expire":
		b := h.broker(f[1])
		hold := len(f) > 2 && f[2] == "hold"
		b.sess.expire(hold)
		if hold {
			b.reregister = true
		} else {
			h.register(b) // the broker's own session listener, in the server
		}
	case "release":
		b := h.broker(f[1])
		b.sess.release()
		if b.reregister {
			b.reregister = false
			h.register(b)
		}
	case "isr":
		tp := h.parseTP(f[1])
		st, ok := h.zk.state(tp.Topic, tp.Partition)
		if !ok {
			h.t.Fatalf("%s has no state", f[1])
		}
		st.ISR = parseReplicas(f[2])
		if err := h.zk.updateISR(tp.Topic, tp.Partition, st); err != nil {
			res = append(res, fmt.Sprintf("isr %s: %v", f[1], err))
		}
	}
	return res
}

// command runs a command that does not change the store itself.
func (h *harness) command(cmd string, f []string) []string {
	var res []string
	switch f[0] {
	case "isr-race":
		// The leader's ISR change lands between the controller's next
		// read of the state and its write.
		tp := h.parseTP(f[1])
		isr := parseReplicas(f[2])
		h.zk.beforeSet(statePath(tp.Topic, tp.Partition), func() {
			st, _ := h.zk.stateLocked(tp.Topic, tp.Partition)
			st.ISR = isr
			if err := h.zk.updateISRLocked(tp.Topic, tp.Partition, st); err != nil {
				h.t.Errorf("isr-race %s: %v", f[1], err)
			}
		})
	case "controller":
		for _, s := range f[1:] {
			h.startController(h.broker(s))
		}
	case "zk-fail":
		b := h.broker(f[1])
		n, err := strconv.Atoi(f[2])
		if err != nil {
			h.t.Fatal(err)
		}
		h.zk.mu.Lock()
		b.sess.failReads = n
		h.zk.mu.Unlock()
	case "shutdown":
		id := h.id(f[1])
		call := &shutdownCall{broker: id, via: h.zk.controllerID(), done: make(chan struct{})}
		var epoch int64
		if b := h.brokers[id]; b != nil {
			epoch = b.epoch()
		}
		for _, a := range f[2:] {
			k, v, _ := strings.Cut(a, "=")
			n, _ := strconv.Atoi(v)
			switch k {
			case "epoch":
				epoch = int64(n)
			case "via":
				call.via = int32(n)
			}
		}
		c := h.ctrls[call.via]
		if c == nil {
			h.t.Fatalf("no controller on broker %d", call.via)
		}
		h.mu.Lock()
		h.shutdowns = append(h.shutdowns, call)
		h.mu.Unlock()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			call.rem, call.err = c.ControlledShutdown(ctx, id, epoch)
			close(call.done)
		}()
	case "respond":
		id := h.id(f[1])
		r := reply{api: -1, what: f[3]}
		if f[2] != "*" {
			r.api = apiKey(h.t, f[2])
		}
		switch r.what {
		case "storage-error":
			for _, s := range strings.Split(f[4], ",") {
				r.tps = append(r.tps, h.parseTP(s))
			}
		case "slow":
			d, err := time.ParseDuration(f[4])
			if err != nil {
				h.t.Fatal(err)
			}
			r.delay = d
		case "error":
			for _, e := range []*kerr.Error{kerr.StaleControllerEpoch, kerr.StaleBrokerEpoch, kerr.UnknownServerError} {
				if e.Message == f[4] {
					r.code = e.Code
				}
			}
			if r.code == 0 {
				h.t.Fatalf("unknown error %q", f[4])
			}
		}
		h.net.script(id, r)
	case "unreachable":
		h.net.setUnreachable(h.id(f[1]), f[2] == "on")
	case "unclean":
		h.mu.Lock()
		h.unclean[f[1]] = f[2] == "on"
		h.mu.Unlock()
	case "rebalance":
		h.rebalance = f[1] == "on"
	case "advance":
		d, err := time.ParseDuration(f[1])
		if err != nil {
			h.t.Fatal(err)
		}
		time.Sleep(d)
	case "watches":
		b := h.broker(f[1])
		w := b.sess.watchCounts()
		for _, p := range slices.Sorted(func(yield func(string) bool) {
			for p := range w {
				if !yield(p) {
					return
				}
			}
		}) {
			res = append(res, fmt.Sprintf("watch %s x%d", p, w[p]))
		}
	case "store":
		h.zk.mu.Lock()
		st := h.zk.stats
		h.zk.stats = storeStats{}
		h.zk.mu.Unlock()
		res = append(res, fmt.Sprintf("store: %d read batches (%d partitions), %d write batches (%d partitions)", st.readBatches, st.reads, st.writeBatches, st.writes))
	case "states":
		for _, tp := range h.zk.partitions() {
			st, _ := h.zk.state(tp.Topic, tp.Partition)
			res = append(res, "state "+formatState(tp, st))
		}
	default:
		h.t.Fatalf("unknown command %q", cmd)
	}
	return res
}

func apiKey(t *testing.T, name string) int16 {
	for _, k := range []int16{kmsg.LeaderAndISR.Int16(), kmsg.UpdateMetadata.Int16(), kmsg.StopReplica.Int16()} {
		if strings.EqualFold(strings.ReplaceAll(kmsg.NameForKey(k), "ISR", "Isr"), name) {
			return k
		}
	}
	t.Fatalf("unknown api %q", name)
	return 0
}

func formatState(tp zkstore.TopicPartition, st zkstore.PartitionState) string {
	return fmt.Sprintf("%s-%d L%d le%d isr%s ce%d zkv%d", tp.Topic, tp.Partition, st.Leader, st.LeaderEpoch,
		formatInts(st.ISR), st.ControllerEpoch, st.ZkVersion)
}

// observe reports what happened since the last step: answers to
// controlled shutdowns, controllers' status changes, changed partition
// states and the requests received.
func (h *harness) observe() []string {
	var out []string
	h.mu.Lock()
	pending := h.shutdowns[:0]
	for _, c := range h.shutdowns {
		select {
		case <-c.done:
			if c.err != nil {
				out = append(out, fmt.Sprintf("shutdown %d via %d: error %v", c.broker, c.via, c.err))
			} else {
				out = append(out, fmt.Sprintf("shutdown %d via %d: remaining [%s]", c.broker, c.via, formatTPs(c.rem)))
			}
		default:
			pending = append(pending, c)
		}
	}
	h.shutdowns = pending
	h.mu.Unlock()
	for _, id := range keys(h.ctrls) {
		st := h.ctrls[id].Status()
		if prev, ok := h.status[id]; !ok || prev != st {
			h.status[id] = st
			if st.Active {
				out = append(out, fmt.Sprintf("controller %d: active, epoch %d, elections %d", id, st.Epoch, st.Elections))
			} else {
				out = append(out, fmt.Sprintf("controller %d: inactive, elections %d", id, st.Elections))
			}
		}
	}
	now := map[zkstore.TopicPartition]string{}
	for _, tp := range h.zk.partitions() {
		st, _ := h.zk.state(tp.Topic, tp.Partition)
		now[tp] = formatState(tp, st)
		if h.states[tp] != now[tp] {
			out = append(out, "state "+now[tp])
		}
	}
	var gone []string
	for tp := range h.states {
		if _, ok := now[tp]; !ok {
			gone = append(gone, fmt.Sprintf("state %s-%d gone", tp.Topic, tp.Partition))
		}
	}
	slices.Sort(gone)
	out = append(out, gone...)
	h.states = now
	return append(out, h.net.take()...)
}
