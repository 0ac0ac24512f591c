package testcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/internal/kconn"
)

// BuildKvlogd builds cmd/kvlogd into dir and returns the binary's path.
func BuildKvlogd(dir string, race bool) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "kvlogd")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/kvlogd")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building kvlogd: %w", err)
	}
	return bin, nil
}

// Options configure a Cluster.
type Options struct {
	Brokers int    // default 3
	Bin     string // kvlogd binary
	// Props are extra server.properties lines for every broker.
	Props []string
	// BrokerProps are extra lines for one broker, after Props (later lines
	// win).
	BrokerProps map[int32][]string
	// SecureListener, when set, gives every broker a second listener of
	// that name on its own port (Broker.SecureAddr); Props say its
	// protocol and make it the inter-broker listener. The PLAINTEXT
	// listener stays the harness's.
	SecureListener string
	// Setup runs once ZooKeeper serves and before any broker starts (e.g.
	// to write the inter-broker SCRAM credentials, as kafka-configs
	// --zookeeper does).
	Setup func(c *Cluster)
	// SecureClients makes Client connect to the SecureListener addresses,
	// with ClientOpts (its TLS and SASL settings) after the harness's own
	// options; Metadata and RequestTo stay on the PLAINTEXT listener.
	SecureClients bool
	ClientOpts    []kgo.Opt
	// Net, when set, runs ZooKeeper in its node "zk" and broker i in node
	// "b<i>" (netns.go), and the test's clients in its bridge namespace.
	Net *Net
}

// Cluster is a real ZooKeeper plus kvlogd processes.
type Cluster struct {
	t       testing.TB
	ZK      *ZooKeeper
	Connect string
	opts    Options
	root    string

	mu      sync.Mutex
	brokers map[int32]*Broker
}

// Broker is one kvlogd process (its address and data survive restarts).
type Broker struct {
	ID         int32
	Addr       string
	SecureAddr string // Options.SecureListener's address, "" without
	HTTP       string
	Dir        string
	cfgPath    string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    bytes.Buffer
	paused bool
}

// Start starts ZooKeeper and the brokers and waits until every broker is
// registered and serving. Everything is torn down when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Brokers == 0 {
		opts.Brokers = 3
	}
	var zkSrv *ZooKeeper
	if opts.Net != nil {
		zkSrv = StartZooKeeperIn(t, opts.Net, "zk")
	} else {
		zkSrv = StartZooKeeper(t)
	}
	c := &Cluster{t: t, ZK: zkSrv, Connect: zkSrv.Addr + "/kvlog", opts: opts, root: t.TempDir(), brokers: map[int32]*Broker{}}
	t.Cleanup(c.stopAll)
	if opts.Setup != nil {
		opts.Setup(c)
	}
	for id := int32(1); id <= int32(opts.Brokers); id++ {
		c.AddBroker(id)
	}
	c.WaitBrokers(opts.Brokers, 60*time.Second)
	return c
}

// AddBroker creates and starts broker id. The ports it picks were free a
// moment ago; another process (a client's ephemeral port) may take one
// before kvlogd binds it, so such a start is retried on new ports.
func (c *Cluster) AddBroker(id int32) *Broker {
	c.t.Helper()
	for attempt := 1; ; attempt++ {
		b := c.configureBroker(id)
		err := c.startBroker(id)
		if err == nil {
			return b
		}
		if c.opts.Net != nil || attempt == 3 || !strings.Contains(b.Logs(), "address already in use") {
			c.t.Fatal(err)
		}
		c.t.Logf("broker %d could not bind a port picked for it (taken since); starting again on new ports", id)
	}
}

// configureBroker picks broker id's addresses and writes its
// server.properties; it does not start it.
func (c *Cluster) configureBroker(id int32) *Broker {
	c.t.Helper()
	b := &Broker{ID: id, Dir: filepath.Join(c.root, fmt.Sprintf("broker-%d", id))}
	if c.opts.Net != nil {
		ip := c.opts.Net.Node(NodeName(id)).IP
		b.Addr, b.HTTP = ip+":9092", ip+":9644"
	} else {
		port, err := FreePort()
		if err != nil {
			c.t.Fatal(err)
		}
		hport, err := FreePort()
		if err != nil {
			c.t.Fatal(err)
		}
		b.Addr, b.HTTP = fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", hport)
	}
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	listeners := "PLAINTEXT://" + b.Addr
	if c.opts.SecureListener != "" {
		sport, err := FreePort()
		if err != nil {
			c.t.Fatal(err)
		}
		b.SecureAddr = fmt.Sprintf("127.0.0.1:%d", sport)
		listeners += "," + c.opts.SecureListener + "://" + b.SecureAddr
	}
	props := append([]string{
		fmt.Sprintf("broker.id=%d", id),
		"listeners=" + listeners,
		"log.dirs=" + filepath.Join(b.Dir, "data"),
		"zookeeper.connect=" + c.Connect,
		"zookeeper.connection.timeout.ms=60000",
		"kvlog.http.listener=" + b.HTTP,
	}, c.opts.Props...)
	props = append(props, c.opts.BrokerProps[id]...)
	b.cfgPath = filepath.Join(b.Dir, "server.properties")
	if err := os.WriteFile(b.cfgPath, []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.brokers[id] = b
	c.mu.Unlock()
	return b
}

// NodeName is broker id's node in a Net.
func NodeName(id int32) string { return fmt.Sprintf("b%d", id) }

// Broker returns broker id.
func (c *Cluster) Broker(id int32) *Broker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.brokers[id]
}

// IDs lists the broker ids.
func (c *Cluster) IDs() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int32
	for id := range c.brokers {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// StartBroker (re)starts broker id's process and waits until it serves.
func (c *Cluster) StartBroker(id int32) {
	c.t.Helper()
	if err := c.startBroker(id); err != nil {
		c.t.Fatal(err)
	}
}

// startBroker starts broker id's process and waits until it serves; the
// error carries the tail of what it printed.
func (c *Cluster) startBroker(id int32) error {
	b := c.Broker(id)
	b.mu.Lock()
	if c.opts.Net != nil {
		b.cmd = c.opts.Net.Command(NodeName(id), c.opts.Bin, "--config", b.cfgPath, "--log-level", "info")
	} else {
		b.cmd = exec.Command(c.opts.Bin, "--config", b.cfgPath, "--log-level", "info")
	}
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		b.mu.Unlock()
		return err
	}
	if err := b.cmd.Start(); err != nil {
		b.mu.Unlock()
		return err
	}
	b.exited = make(chan struct{})
	b.paused = false
	fmt.Fprintf(&b.log, "==== start pid %d at %s\n", b.cmd.Process.Pid, time.Now().Format(time.RFC3339Nano))
	started := make(chan struct{})
	exited := b.exited
	cmd := b.cmd
	b.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			if b.log.Len() < 32<<20 {
				b.log.WriteString(line + "\n")
			}
			b.mu.Unlock()
			if strings.Contains(line, "kvlogd started") {
				once.Do(func() { close(started) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-started:
		return nil
	case <-exited:
		return fmt.Errorf("broker %d exited at start-up:\n%s", id, tail(b.Logs(), 4000))
	case <-time.After(90 * time.Second):
		return fmt.Errorf("broker %d did not start:\n%s", id, tail(b.Logs(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Logs is everything the broker printed (all incarnations).
func (b *Broker) Logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// Running reports whether the process is alive.
func (b *Broker) Running() bool {
	b.mu.Lock()
	ch := b.exited
	b.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

func (b *Broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil && b.cmd.Process != nil {
		b.cmd.Process.Signal(sig)
	}
}

// Kill SIGKILLs broker id and waits for it to exit.
func (c *Cluster) Kill(id int32) {
	b := c.Broker(id)
	if b.paused {
		b.signal(syscall.SIGCONT)
	}
	b.signal(syscall.SIGKILL)
	<-b.exited
}

// Stop SIGTERMs broker id (controlled shutdown) and waits up to timeout.
func (c *Cluster) Stop(id int32, timeout time.Duration) error {
	b := c.Broker(id)
	b.signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		return nil
	case <-time.After(timeout):
		c.Kill(id)
		return fmt.Errorf("broker %d did not stop within %v", id, timeout)
	}
}

// Pause SIGSTOPs broker id; Resume SIGCONTs it.
func (c *Cluster) Pause(id int32) {
	b := c.Broker(id)
	b.signal(syscall.SIGSTOP)
	b.mu.Lock()
	b.paused = true
	b.mu.Unlock()
}

// Resume continues a paused broker.
func (c *Cluster) Resume(id int32) {
	b := c.Broker(id)
	b.signal(syscall.SIGCONT)
	b.mu.Lock()
	b.paused = false
	b.mu.Unlock()
}

func (c *Cluster) stopAll() {
	for _, id := range c.IDs() {
		b := c.Broker(id)
		if b.Running() {
			c.Kill(id)
		}
		if c.t.Failed() {
			c.t.Logf("---- broker %d log (tail) ----\n%s", id, tail(b.Logs(), 6000))
		}
	}
}

// Seeds are the addresses of the running brokers.
func (c *Cluster) Seeds() []string {
	var out []string
	for _, id := range c.IDs() {
		if b := c.Broker(id); b.Running() {
			out = append(out, b.Addr)
		}
	}
	return out
}

// SecureSeeds are the SecureListener addresses of every broker.
func (c *Cluster) SecureSeeds() []string {
	var out []string
	for _, id := range c.IDs() {
		out = append(out, c.Broker(id).SecureAddr)
	}
	return out
}

// AllSeeds are the addresses of every broker, running or not.
func (c *Cluster) AllSeeds() []string {
	var out []string
	for _, id := range c.IDs() {
		out = append(out, c.Broker(id).Addr)
	}
	return out
}

// Client returns a franz-go client on every broker, closed at test end.
func (c *Cluster) Client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	seeds := c.AllSeeds()
	if c.opts.SecureClients {
		seeds = c.SecureSeeds()
	}
	base := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond })}
	if c.opts.Net != nil {
		base = append(base, kgo.Dialer(c.opts.Net.DialContext))
	}
	base = append(base, c.opts.ClientOpts...)
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// Admin returns a kadm client.
func (c *Cluster) Admin() *kadm.Client { return kadm.NewClient(c.Client()) }

// WaitBrokers waits until metadata lists n brokers and a controller.
func (c *Cluster) WaitBrokers(n int, timeout time.Duration) {
	c.t.Helper()
	var last string
	defer func() {
		if c.t.Failed() {
			c.t.Logf("last metadata: %s", last)
		}
	}()
	c.WaitFor(timeout, fmt.Sprintf("%d brokers in metadata", n), func() bool {
		m, err := c.Metadata()
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("brokers %v controller %d", m.Brokers, m.ControllerID)
		return len(m.Brokers) == n && m.ControllerID >= 0
	})
}

// WaitFor polls cond every 100 ms until it holds or timeout passes.
func (c *Cluster) WaitFor(timeout time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ZKConn opens a ZooKeeper client on the cluster's chroot root (absolute
// paths: prefix /kvlog).
func (c *Cluster) ZKConn() *zk.Conn {
	c.t.Helper()
	conn, events, err := zk.Connect([]string{c.ZK.Addr}, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(nopLogger{}), zk.WithDialer(c.ZK.Dial))
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for ok := false; !ok; {
		select {
		case ev := <-events:
			ok = ev.State == zk.StateHasSession
		case <-deadline:
			c.t.Fatal("no ZooKeeper session")
		}
	}
	c.t.Cleanup(conn.Close)
	return conn
}

// Metadata asks the running, unpaused brokers in turn (directly, without a
// client's caching or routing) for metadata of topics (none: all topics).
func (c *Cluster) Metadata(topics ...string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 7
	if len(topics) > 0 {
		for _, t := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(t)
			req.Topics = append(req.Topics, rt)
		}
	} else {
		req.Topics = nil
	}
	var lastErr error = errors.New("no running broker")
	for _, id := range c.IDs() {
		b := c.Broker(id)
		b.mu.Lock()
		paused := b.paused
		b.mu.Unlock()
		if paused || !b.Running() {
			continue
		}
		resp, err := c.RequestTo(id, req, 2*time.Second)
		if err != nil {
			lastErr = err
			continue
		}
		return resp.(*kmsg.MetadataResponse), nil
	}
	return nil, lastErr
}

// RequestTo sends one request directly to broker id.
func (c *Cluster) RequestTo(id int32, req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var conn *kconn.Conn
	if c.opts.Net != nil {
		nc, err := c.opts.Net.DialContext(ctx, "tcp", c.Broker(id).Addr)
		if err != nil {
			return nil, err
		}
		conn = kconn.NewConn(nc, "kvlog-testcluster")
	} else {
		var err error
		if conn, err = kconn.Dial(ctx, c.Broker(id).Addr, "kvlog-testcluster"); err != nil {
			return nil, err
		}
	}
	defer conn.Close()
	return conn.Request(ctx, req)
}
