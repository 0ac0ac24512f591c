package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A private network for a cluster, so that faults can cut links between
// processes that keep running (network partitions), not only kill them.
//
// Layout: one network namespace per node (ZooKeeper, each broker), each
// with a veth pair whose other end is a port of a Linux bridge living in a
// further "bridge" namespace. The test's own clients open their sockets in
// the bridge namespace (Net.DialContext), so they reach every node and are
// never cut themselves: faults are between nodes only. Addresses are in
// 10.213.0.0/24 inside these namespaces alone; the machine's own network
// namespace is never touched, so concurrent runs do not collide.
//
// Faults are nftables rules on a node's input hook (a packet from a cut
// peer is silently dropped on arrival, as a lost packet would be; the
// sender sees nothing) and, for latency, a qdisc on the node's veth: netem
// where the kernel has it, else a token-bucket bandwidth cap that builds a
// queue (a "slow link"). Everything is created and removed by the test:
// namespaces are named kvnp-<pid>-<node>, and namespaces left by a test
// process that no longer exists are swept at the start of the next.

const (
	netNSPrefix = "kvnp-"
	netSubnet   = "10.213.0."
	netClientIP = netSubnet + "254"
	netNSDir    = "/var/run/netns"
)

// Net is a set of network namespaces joined by a bridge.
type Net struct {
	t      testing.TB
	id     string // kvnp-<pid>-<seq>
	bridge string // the bridge namespace's name
	brFD   *os.File
	netem  bool

	mu     sync.Mutex
	nodes  map[string]*NetNode
	order  []string
	drops  map[[2]string]bool // {from, to}: packets from → to are dropped
	loss   map[string]int     // node → percent of packets from other nodes dropped on arrival
	slow   map[string]bool    // node → latency on its link
	closed bool

	appliedRules map[string]string // node → the nftables rules in force
	appliedSlow  map[string]bool
}

// NetNode is one namespace with one address.
type NetNode struct {
	Name string
	NS   string
	IP   string
}

var netSeq struct {
	sync.Mutex
	n int
}

// NetAvailable reports why private network namespaces cannot be used here
// ("" if they can): the tests need root, iproute2 and nftables, and a
// kernel that permits creating namespaces.
func NetAvailable() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, bin := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " not installed (Debian packages iproute2 and nftables)"
		}
	}
	name := fmt.Sprintf("%sprobe-%d", netNSPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns add: %v: %s", err, bytes.TrimSpace(out))
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	out, err := exec.Command("ip", "netns", "exec", name, "nft", "add", "table", "inet", "kvprobe").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("nft in a namespace: %v: %s", err, bytes.TrimSpace(out))
	}
	return ""
}

// SweepStaleNets removes namespaces (and kills what runs in them) left by
// earlier test processes that no longer exist.
func SweepStaleNets() {
	ents, _ := os.ReadDir(netNSDir)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), netNSPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		if pidStr == "probe" {
			pidStr, _, _ = strings.Cut(strings.TrimPrefix(rest, "probe-"), "-")
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its creator still runs
		}
		removeNS(e.Name())
	}
}

// removeNS kills every process in namespace ns and deletes it.
func removeNS(ns string) {
	for i := 0; i < 20; i++ {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		pids := strings.Fields(string(out))
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
				syscall.Kill(pid, syscall.SIGCONT)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	exec.Command("ip", "netns", "del", ns).Run()
}

// NewNet creates a bridge namespace and one namespace per node name
// (addresses netSubnet+1, +2, … in order), removed when the test ends.
// It skips the test where namespaces cannot be created.
func NewNet(t testing.TB, names ...string) *Net {
	t.Helper()
	if why := NetAvailable(); why != "" {
		t.Skip("private network namespaces unavailable: " + why)
	}
	SweepStaleNets()
	netSeq.Lock()
	netSeq.n++
	seq := netSeq.n
	netSeq.Unlock()
	n := &Net{t: t, id: fmt.Sprintf("%s%d-%d", netNSPrefix, os.Getpid(), seq), nodes: map[string]*NetNode{},
		drops: map[[2]string]bool{}, loss: map[string]int{}, slow: map[string]bool{},
		appliedRules: map[string]string{}, appliedSlow: map[string]bool{}}
	n.bridge = n.id + "-br"
	t.Cleanup(n.Close)
	batch := []string{
		"netns add " + n.bridge,
		"-n " + n.bridge + " link set lo up",
		"-n " + n.bridge + " link add br0 type bridge",
		"-n " + n.bridge + " addr add " + netClientIP + "/24 dev br0",
		"-n " + n.bridge + " link set br0 up",
	}
	for i, name := range names {
		node := &NetNode{Name: name, NS: n.id + "-" + name, IP: netSubnet + strconv.Itoa(i+1)}
		n.nodes[name] = node
		n.order = append(n.order, name)
		port := fmt.Sprintf("p%d", i+1)
		batch = append(batch,
			"netns add "+node.NS,
			"-n "+node.NS+" link set lo up",
			"link add eth0 netns "+node.NS+" type veth peer name "+port+" netns "+n.bridge,
			"-n "+node.NS+" addr add "+node.IP+"/24 dev eth0",
			"-n "+node.NS+" link set eth0 up",
			"-n "+n.bridge+" link set "+port+" master br0",
			"-n "+n.bridge+" link set "+port+" up",
		)
	}
	for _, line := range batch {
		if out, err := exec.Command("ip", strings.Fields(line)...).CombinedOutput(); err != nil {
			t.Fatalf("creating network namespaces: ip %s: %v: %s", line, err, out)
		}
	}
	fd, err := os.Open(filepath.Join(netNSDir, n.bridge))
	if err != nil {
		t.Fatal(err)
	}
	n.brFD = fd
	// netem is optional in kernels; probe it on a node's link.
	probe := n.nodes[names[0]].NS
	if exec.Command("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms").Run() == nil {
		n.netem = true
		exec.Command("ip", "netns", "exec", probe, "tc", "qdisc", "del", "dev", "eth0", "root").Run()
	}
	// Every node answers: the bridge forwards before anything starts.
	for _, name := range names {
		if err := n.waitReachable(n.nodes[name].IP, 10*time.Second); err != nil {
			t.Fatalf("node %s: %v", name, err)
		}
	}
	return n
}

// waitReachable waits until ip answers ARP through the bridge (a TCP
// connect to a closed port is refused once the path works).
func (n *Net) waitReachable(ip string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		c, err := n.DialContext(ctx, "tcp", ip+":1")
		cancel()
		if c != nil {
			c.Close()
		}
		if err == nil || errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s unreachable from the bridge: %w", ip, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close kills what still runs in the namespaces and removes them.
func (n *Net) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()
	for _, name := range n.order {
		removeNS(n.nodes[name].NS)
	}
	removeNS(n.bridge)
	if n.brFD != nil {
		n.brFD.Close()
	}
}

// Node returns node name.
func (n *Net) Node(name string) *NetNode { return n.nodes[name] }

// Names lists the nodes in creation order.
func (n *Net) Names() []string { return append([]string(nil), n.order...) }

// Netem reports whether latency faults use netem (else a bandwidth cap).
func (n *Net) Netem() bool { return n.netem }

// Command returns a command running bin in node's namespace.
func (n *Net) Command(node, bin string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.nodes[node].NS, bin}, args...)...)
}

// DialContext opens a connection from the bridge namespace (where the
// test's clients live).
func (n *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.inNS(n.brFD, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Do runs f on an OS thread switched into node's namespace: sockets f
// creates (net.Listen, net.Dial) belong to that namespace for good.
func (n *Net) Do(node string, f func() error) error {
	fd, err := os.Open(filepath.Join(netNSDir, n.nodes[node].NS))
	if err != nil {
		return err
	}
	defer fd.Close()
	return n.inNS(fd, f)
}

// inNS runs f with the calling goroutine locked to a thread in namespace
// ns, then switches the thread back. f must not start goroutines that
// create sockets (they would run on other threads).
func (n *Net) inNS(ns *os.File, f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", ns.Name(), err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and is discarded when this goroutine
		// ends, so no other goroutine runs in the wrong namespace.
		return ferr
	}
	runtime.UnlockOSThread()
	return ferr
}

// Dial is DialContext with a timeout (ZooKeeper's client dialer).
func (n *Net) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.DialContext(ctx, network, addr)
}

// Drop drops every packet from node from to node to (one direction).
func (n *Net) Drop(from, to string) {
	n.mu.Lock()
	n.drops[[2]string{from, to}] = true
	n.mu.Unlock()
}

// Cut drops packets between a and b both ways.
func (n *Net) Cut(a, b string) {
	n.Drop(a, b)
	n.Drop(b, a)
}

// Isolate cuts node from every node in others.
func (n *Net) Isolate(node string, others ...string) {
	for _, o := range others {
		if o != node {
			n.Cut(node, o)
		}
	}
}

// Split cuts every node of side a from every node of side b.
func (n *Net) Split(a, b []string) {
	for _, x := range a {
		for _, y := range b {
			n.Cut(x, y)
		}
	}
}

// Loss drops pct percent of the packets arriving at node from other nodes.
func (n *Net) Loss(node string, pct int) {
	n.mu.Lock()
	n.loss[node] = pct
	n.mu.Unlock()
}

// Slow adds latency to node's link (netem delay, else a bandwidth cap).
func (n *Net) Slow(node string) {
	n.mu.Lock()
	n.slow[node] = true
	n.mu.Unlock()
}

// HealAll removes every fault (Apply still has to be called).
func (n *Net) HealAll() {
	n.mu.Lock()
	clear(n.drops)
	clear(n.loss)
	clear(n.slow)
	n.mu.Unlock()
}

// Describe lists the faults in force as in the state, e.g. "b1->zk b2<->b3 loss(b1)=5%".
func (n *Net) Describe() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for d := range n.drops {
		if n.drops[[2]string{d[1], d[0]}] {
			if d[0] < d[1] {
				out = append(out, d[0]+"<->"+d[1])
			}
			continue
		}
		out = append(out, d[0]+"->"+d[1])
	}
	for node, pct := range n.loss {
		out = append(out, fmt.Sprintf("loss(%s)=%d%%", node, pct))
	}
	for node := range n.slow {
		out = append(out, "slow("+node+")")
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// Apply makes every node's rules match the state: one nftables transaction
// per node (its input filter) and the qdisc of its link.
func (n *Net) Apply() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("network closed")
	}
	var errs []error
	for _, name := range n.order {
		node := n.nodes[name]
		var from []string
		for _, o := range n.order {
			if n.drops[[2]string{o, name}] {
				from = append(from, n.nodes[o].IP)
			}
		}
		var peers []string
		for _, o := range n.order {
			if o != name {
				peers = append(peers, n.nodes[o].IP)
			}
		}
		var rules strings.Builder
		rules.WriteString("table inet kvnemesis\ndelete table inet kvnemesis\ntable inet kvnemesis {\n")
		rules.WriteString("  chain input {\n    type filter hook input priority 0; policy accept;\n")
		if len(from) > 0 {
			fmt.Fprintf(&rules, "    ip saddr { %s } drop\n", strings.Join(from, ", "))
		}
		if pct := n.loss[name]; pct > 0 && len(peers) > 0 {
			fmt.Fprintf(&rules, "    ip saddr { %s } numgen random mod 100 < %d drop\n", strings.Join(peers, ", "), pct)
		}
		rules.WriteString("  }\n}\n")
		if n.appliedRules[name] != rules.String() {
			cmd := exec.Command("ip", "netns", "exec", node.NS, "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(rules.String())
			if out, err := cmd.CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("nft in %s: %w: %s", node.NS, err, bytes.TrimSpace(out)))
			} else {
				n.appliedRules[name] = rules.String()
			}
		}
		if n.appliedSlow[name] == n.slow[name] {
			continue
		}
		n.appliedSlow[name] = n.slow[name]
		// The link's qdisc: delete (no error check: there may be none), then add.
		exec.Command("ip", "netns", "exec", node.NS, "tc", "qdisc", "del", "dev", "eth0", "root").Run()
		if n.slow[name] {
			args := []string{"qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "2mbit", "burst", "16kb", "latency", "400ms"}
			if n.netem {
				args = []string{"qdisc", "add", "dev", "eth0", "root", "netem", "delay", "80ms", "40ms"}
			}
			if out, err := exec.Command("ip", append([]string{"netns", "exec", node.NS, "tc"}, args...)...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("tc in %s: %w: %s", node.NS, err, bytes.TrimSpace(out)))
			}
		}
	}
	return errors.Join(errs...)
}
