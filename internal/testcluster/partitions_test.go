package testcluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Network partitions (Jepsen style): ZooKeeper and every broker in their
// own network namespace (netns.go), the test's clients on the bridge. A
// nemesis cuts, one-way drops, flaps, degrades links and pauses or kills
// brokers on a random schedule under an idempotent acks=all keyed load
// (min.insync.replicas 2, RF 3), an acks=1 load and a consumer group
// committing offsets; then it heals everything, reads every partition to
// its high watermark and checks the promises of docs/partitions.md.
//
// TestPartitions is `make partitions` (KVLOG_PARTITIONS_DURATION, default
// there 10m; KVLOG_PARTITIONS_SEED, KVLOG_PARTITIONS_BROKERS 3 or 5).
// TestPartitionsShort is a 45-second run inside `make test`.

func TestPartitions(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("KVLOG_PARTITIONS_DURATION"))
	if err != nil || d <= 0 {
		t.Skip("set KVLOG_PARTITIONS_DURATION (make partitions)")
	}
	brokers := 3
	if s := os.Getenv("KVLOG_PARTITIONS_BROKERS"); s != "" {
		brokers, _ = strconv.Atoi(s)
	}
	runPartitions(t, d, brokers, envSeed())
}

func TestPartitionsShort(t *testing.T) {
	if testing.Short() {
		t.Skip("process cluster tests are not short")
	}
	runPartitions(t, 45*time.Second, 3, envSeed())
}

func envSeed() uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KVLOG_PARTITIONS_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	return seed
}

const (
	npTopicAll = "np-all" // acks=all, idempotent
	npTopicOne = "np-one" // acks=1
	npGroup    = "np-group"
)

func runPartitions(t *testing.T, d time.Duration, brokers int, seed uint64) {
	if why := ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	if why := NetAvailable(); why != "" {
		t.Skip("private network namespaces unavailable: " + why)
	}
	if brokers < 3 {
		brokers = 3
	}
	names := []string{"zk"}
	for id := 1; id <= brokers; id++ {
		names = append(names, NodeName(int32(id)))
	}
	nw := NewNet(t, names...)
	t.Logf("partitions for %v, seed %d, %d brokers, latency by %s", d, seed, brokers, map[bool]string{true: "netem", false: "a 2 Mbit/s bandwidth cap (no netem in this kernel)"}[nw.Netem()])
	props := append(slices.Clone(fastProps), "offsets.topic.num.partitions=6", "unclean.leader.election.enable=false")
	c := Start(t, Options{Brokers: brokers, Bin: kvlogdBin, Props: props, Net: nw})
	npCreate(t, c, npTopicAll, 6)
	npCreate(t, c, npTopicOne, 3)

	wAll := StartWorkloadAcks(c, npTopicAll, 60, 32, true, 600)
	wOne := StartWorkloadAcks(c, npTopicOne, 30, 16, false, 150)
	grp := StartGroupReader(c, wAll, npGroup, 2, 6)

	nem := &nemesis{t: t, c: c, n: nw, wAll: wAll, wOne: wOne, rng: rand.New(rand.NewPCG(seed, 2)), start: time.Now(), counts: map[string]int{},
		paused: map[int32]bool{}, killed: map[int32]bool{}}
	nem.run(time.Now().Add(d))

	npWaitISR(t, c, 180*time.Second, npTopicAll, npTopicOne, "__consumer_offsets")
	acked, ackedOne := wAll.Acked(), wOne.Acked()
	c.WaitFor(90*time.Second, "writes after healing", func() bool { return wAll.Acked() > acked+100 && wOne.Acked() > ackedOne+20 })
	wAll.Stop()
	wOne.Stop()
	finalAll := ReadAll(t, c, npTopicAll)
	finalOne := ReadAll(t, c, npTopicOne)
	ends := map[int32]int64{}
	for _, r := range finalAll {
		ends[r.partition] = max(ends[r.partition], r.offset+1)
	}
	deadline := time.Now().Add(90 * time.Second)
	for !grp.CaughtUp(ends) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	grp.Stop()

	repAll := wAll.Check(finalAll)
	repOne := wOne.Check(finalOne)
	repGrp := grp.Check(finalAll)
	out := nem.table(d, seed, brokers, repAll, repOne, repGrp)
	fmt.Println(out)
	t.Log(out)
	if !repAll.OK() || !repGrp.OK() {
		t.Errorf("anomalies under acks=all / the consumer group (see the table and histories above)")
	}
}

// npCreate creates an RF-3 topic with the delete policy (no compaction, so
// every record stays for the final read) and waits for full ISRs.
func npCreate(t *testing.T, c *Cluster, name string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.Admin().CreateTopic(ctx, partitions, 3, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, name)
	if err != nil || res.Err != nil {
		t.Fatalf("create %s: %v %v", name, err, res.Err)
	}
	npWaitISR(t, c, 60*time.Second, name)
}

func npWaitISR(t *testing.T, c *Cluster, timeout time.Duration, topics ...string) {
	t.Helper()
	c.WaitFor(timeout, fmt.Sprintf("leaders and full ISRs of %v", topics), func() bool {
		for _, topic := range topics {
			ps, err := partitions(c, topic)
			if err != nil || len(ps) == 0 {
				return false
			}
			for _, p := range ps {
				if p.Leader < 0 || len(p.ISR) != len(p.Replicas) {
					return false
				}
			}
		}
		return true
	})
}

// nemesis applies one fault at a time (sometimes with a process fault
// mixed in), holds it for a few seconds, heals it, and rests.
type nemesis struct {
	t          *testing.T
	c          *Cluster
	n          *Net
	wAll, wOne *Workload
	rng        *rand.Rand
	start      time.Time

	mu     sync.Mutex
	events []nemEvent
	counts map[string]int
	paused map[int32]bool
	killed map[int32]bool
}

type nemEvent struct {
	at   time.Time
	what string
}

func (m *nemesis) log(format string, args ...any) {
	e := nemEvent{time.Now(), fmt.Sprintf(format, args...)}
	m.mu.Lock()
	m.events = append(m.events, e)
	m.mu.Unlock()
	m.t.Logf("%s nemesis: %s", e.at.Format("15:04:05.000"), e.what)
}

func (m *nemesis) brokers() []string {
	var out []string
	for _, id := range m.c.IDs() {
		out = append(out, NodeName(id))
	}
	return out
}

func (m *nemesis) pick(xs []string) string { return xs[m.rng.IntN(len(xs))] }

func without(xs []string, x string) []string {
	var out []string
	for _, y := range xs {
		if y != x {
			out = append(out, y)
		}
	}
	return out
}

// leader is the node leading a random partition of the acks=all topic
// (as a running broker reports it), or a random broker.
func (m *nemesis) leader() string {
	ps, err := partitions(m.c, npTopicAll)
	if err == nil {
		if p, ok := ps[int32(m.rng.IntN(len(ps)))]; ok && p.Leader >= 0 {
			return NodeName(p.Leader)
		}
	}
	return m.pick(m.brokers())
}

func (m *nemesis) controller() string {
	if id := controllerIDNow(m.c); id >= 0 {
		return NodeName(id)
	}
	return m.pick(m.brokers())
}

func idOf(node string) int32 {
	id, _ := strconv.Atoi(strings.TrimPrefix(node, "b"))
	return int32(id)
}

// partitionFault describes a network fault: apply sets it in the Net
// state (the caller applies and heals).
type partitionFault struct {
	name  string
	apply func()
	desc  string
}

// netFault picks one of the network faults.
func (m *nemesis) netFault() partitionFault {
	bs := m.brokers()
	all := append([]string{"zk"}, bs...)
	switch k := m.rng.IntN(11); k {
	case 0:
		b := m.pick(bs)
		return partitionFault{"isolate a broker from all", func() { m.n.Isolate(b, all...) }, b}
	case 1:
		l := m.leader()
		return partitionFault{"isolate a leader from its followers (not from ZooKeeper)", func() { m.n.Isolate(l, bs...) }, l}
	case 2:
		b := m.pick(bs)
		return partitionFault{"isolate a broker from ZooKeeper only", func() { m.n.Cut(b, "zk") }, b}
	case 3:
		ctl := m.controller()
		if m.rng.IntN(2) == 0 {
			return partitionFault{"isolate the controller from the brokers", func() { m.n.Isolate(ctl, bs...) }, ctl}
		}
		return partitionFault{"isolate the controller from all", func() { m.n.Isolate(ctl, all...) }, ctl}
	case 4:
		sh := slices.Clone(all)
		m.rng.Shuffle(len(sh), func(i, j int) { sh[i], sh[j] = sh[j], sh[i] })
		k := 1 + m.rng.IntN(len(sh)/2)
		minority, majority := sh[:k], sh[k:]
		return partitionFault{"majority/minority split", func() { m.n.Split(minority, majority) }, fmt.Sprintf("%v | %v", minority, majority)}
	case 5:
		return partitionFault{"isolate ZooKeeper", func() { m.n.Isolate("zk", bs...) }, "zk"}
	case 6:
		l := m.leader()
		fs := without(bs, l)
		if m.rng.IntN(2) == 0 {
			return partitionFault{"one-way: leader → followers dropped", func() {
				for _, f := range fs {
					m.n.Drop(l, f)
				}
			}, l}
		}
		return partitionFault{"one-way: followers → leader dropped", func() {
			for _, f := range fs {
				m.n.Drop(f, l)
			}
		}, l}
	case 7:
		b := m.pick(bs)
		if m.rng.IntN(2) == 0 {
			return partitionFault{"one-way: broker → ZooKeeper dropped", func() { m.n.Drop(b, "zk") }, b}
		}
		return partitionFault{"one-way: ZooKeeper → broker dropped", func() { m.n.Drop("zk", b) }, b}
	case 8:
		pct := 5 + m.rng.IntN(26)
		nodes := []string{m.pick(all)}
		if m.rng.IntN(2) == 0 {
			nodes = all
		}
		return partitionFault{"packet loss", func() {
			for _, x := range nodes {
				m.n.Loss(x, pct)
			}
		}, fmt.Sprintf("%d%% into %v", pct, nodes)}
	case 9:
		b := m.pick(bs)
		return partitionFault{"slow link", func() { m.n.Slow(b) }, b}
	default:
		b := m.pick(bs)
		peer := m.pick(without(all, b))
		return partitionFault{"one-way: broker → one peer dropped", func() { m.n.Drop(b, peer) }, b + " → " + peer}
	}
}

func (m *nemesis) applyNet() {
	if err := m.n.Apply(); err != nil {
		m.t.Errorf("nemesis: %v", err)
	}
}

func (m *nemesis) hold(min, spread int) time.Duration {
	return time.Duration(min+m.rng.IntN(spread)) * time.Millisecond
}

func (m *nemesis) run(end time.Time) {
	for time.Now().Before(end) {
		time.Sleep(m.hold(1000, 3000))
		var kind string
		switch k := m.rng.IntN(20); {
		case k < 12: // a network fault, held
			f := m.netFault()
			kind = f.name
			f.apply()
			m.applyNet()
			m.log("%s: %s [%s]", f.name, f.desc, m.n.Describe())
			if m.rng.IntN(4) == 0 {
				m.processFault()
			}
			time.Sleep(m.hold(2000, 12000))
		case k < 15: // a network fault, flapping
			f := m.netFault()
			kind = "flapping: " + f.name
			m.log("flapping %s: %s", f.name, f.desc)
			stop := time.Now().Add(m.hold(5000, 10000))
			for on := true; time.Now().Before(stop); on = !on {
				if on {
					f.apply()
				} else {
					m.n.HealAll()
				}
				m.applyNet()
				time.Sleep(m.hold(200, 1800))
			}
		default:
			kind = m.processFault()
			time.Sleep(m.hold(1000, 8000))
		}
		m.mu.Lock()
		m.counts[kind]++
		m.mu.Unlock()
		m.healAll()
	}
}

// processFault pauses or kills a broker (the leader, the controller or any).
func (m *nemesis) processFault() string {
	var node, who string
	switch m.rng.IntN(3) {
	case 0:
		node, who = m.leader(), "a leader"
	case 1:
		node, who = m.controller(), "the controller"
	default:
		node, who = m.pick(m.brokers()), "a broker"
	}
	id := idOf(node)
	if m.paused[id] || m.killed[id] {
		return "none"
	}
	if m.rng.IntN(2) == 0 {
		m.c.Pause(id)
		m.paused[id] = true
		m.log("SIGSTOP %s: %s", who, node)
		return "SIGSTOP " + who
	}
	m.c.Kill(id)
	m.killed[id] = true
	m.log("SIGKILL %s: %s", who, node)
	return "SIGKILL " + who
}

// healAll removes every network fault, continues paused brokers and
// restarts killed ones (after the network heals, so they reach ZooKeeper).
func (m *nemesis) healAll() {
	m.n.HealAll()
	m.applyNet()
	for id := range m.paused {
		m.c.Resume(id)
	}
	for id := range m.killed {
		m.c.StartBroker(id)
	}
	clear(m.paused)
	clear(m.killed)
	m.log("healed; acks=all acked %d failed %d, acks=1 acked %d failed %d", m.wAll.Acked(), m.wAll.Failed(), m.wOne.Acked(), m.wOne.Failed())
}

// table is the run's summary: the faults, the anomaly counts per class and
// the history of the first anomaly of each class.
func (m *nemesis) table(d time.Duration, seed uint64, brokers int, all, one Report, grp GroupReport) string {
	var b strings.Builder
	var faults []string
	for k, n := range m.counts {
		faults = append(faults, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(faults)
	fmt.Fprintf(&b, "partitions %v seed %d brokers %d\nfaults: %s\n", d, seed, brokers, strings.Join(faults, ", "))
	fmt.Fprintf(&b, "%-34s %12s %12s\n", "", "acks=all", "acks=1")
	row := func(name string, a, o any) { fmt.Fprintf(&b, "%-34s %12v %12v\n", name, a, o) }
	row("acknowledged", all.Acked, one.Acked)
	row("failed (allowed)", all.Failed, one.Failed)
	row("read", all.Read, one.Read)
	row("unacked but read (allowed)", all.UnackedButRead, one.UnackedButRead)
	row("lost", all.Lost, fmt.Sprintf("%d (allowed)", one.Lost))
	row("duplicated", all.Duplicated, fmt.Sprintf("%d (allowed)", one.Duplicated))
	row("reordered within key", all.ReorderedWithinKey, fmt.Sprintf("%d (allowed)", one.ReorderedWithinKey))
	row("inconsistent offset", all.InconsistentOffsets, fmt.Sprintf("%d (allowed)", one.InconsistentOffsets))
	row("consumer: dirty read", grp.DirtyReads, "-")
	row("consumer: offset changed", grp.ChangedOffsets, "-")
	row("consumer: skipped", grp.Skipped, "-")
	row("group: committed offset went back", grp.OffsetRegressions, "-")
	fmt.Fprintf(&b, "group: %s\n", grp)
	firsts := []Anomaly{}
	for _, a := range all.First {
		firsts = append(firsts, a)
	}
	for _, a := range grp.First {
		firsts = append(firsts, a)
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i].Class < firsts[j].Class })
	for _, a := range firsts {
		fmt.Fprintf(&b, "first %s: %q at %d/%d: %s\n", a.Class, a.Value, a.Partition, a.Offset, a.What)
		if !a.At.IsZero() {
			m.mu.Lock()
			for _, e := range m.events {
				if e.at.After(a.At.Add(-20*time.Second)) && e.at.Before(a.At.Add(10*time.Second)) {
					fmt.Fprintf(&b, "    %s %s\n", e.at.Format("15:04:05.000"), e.what)
				}
			}
			m.mu.Unlock()
		}
	}
	return b.String()
}
