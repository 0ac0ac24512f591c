package groupclients

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var kvlogdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kvlogd-groups-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kvlogdBin = filepath.Join(dir, "kvlogd")
	build := exec.Command("go", "build", "-race", "-o", kvlogdBin, "github.com/kvlog/kvlog/cmd/kvlogd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kvlogd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// groupProps are the broker settings of these tests: quick first
// rebalances and short sessions allowed; everything else is the default
// (offsets.topic.num.partitions 50, fsync of acks=all writes).
const groupProps = `
group.initial.rebalance.delay.ms=300
group.min.session.timeout.ms=1000
`

// proc is a running kvlogd.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	dataDir string
	logMu   sync.Mutex
	log     bytes.Buffer
	exited  chan struct{}
}

// startKvlogd starts kvlogd on addr ("" picks a free port) with dataDir and
// waits until it serves.
func startKvlogd(t *testing.T, dataDir, addr string) *proc {
	t.Helper()
	if addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
	}
	props := filepath.Join(dataDir, "..", filepath.Base(dataDir)+".properties")
	if err := os.WriteFile(props, []byte(groupProps), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, addr: addr, dataDir: dataDir, exited: make(chan struct{})}
	p.cmd = exec.Command(kvlogdBin, "--config", props, "--listeners", "PLAINTEXT://"+addr, "--log-dirs", dataDir, "--http", "")
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.logMu.Lock()
			p.log.WriteString(line + "\n")
			p.logMu.Unlock()
			if strings.Contains(line, "kvlogd started") {
				once.Do(func() { close(started) })
			}
		}
	}()
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	select {
	case <-started:
	case <-p.exited:
		t.Fatalf("kvlogd exited at start-up:\n%s", p.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("kvlogd did not start:\n%s", p.logs())
	}
	return p
}

func (p *proc) logs() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// kill sends SIGKILL (no clean shutdown) and waits.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.exited
}

// term sends SIGTERM and waits for a clean exit.
func (p *proc) term() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		p.t.Fatalf("kvlogd did not exit after SIGTERM:\n%s", p.logs())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("kvlogd exit code %d:\n%s", code, p.logs())
	}
}

func (p *proc) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(p.addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (p *proc) admin(t *testing.T) *kadm.Client { return kadm.NewClient(p.client(t)) }

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t *testing.T, p *proc, name string, partitions int32) {
	t.Helper()
	resp, err := p.admin(t).CreateTopic(testCtx(t, 30*time.Second), partitions, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, name)
	if err != nil || resp.Err != nil {
		t.Fatalf("create %s: %v %v", name, err, resp.Err)
	}
}

// produce writes values v<from>..v<from+n-1> keyed k<i>.
func produce(t *testing.T, p *proc, topic string, from, n int) {
	t.Helper()
	cl := p.client(t, kgo.DefaultProduceTopic(topic))
	var rs []*kgo.Record
	for i := from; i < from+n; i++ {
		rs = append(rs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	if err := cl.ProduceSync(testCtx(t, 60*time.Second), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
}

// committed returns the group's committed offsets and the topic's end
// offsets, by partition.
func committed(t *testing.T, p *proc, group, topic string) (map[int32]int64, map[int32]int64) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	adm := p.admin(t)
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	c, e := map[int32]int64{}, map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			c[o.Partition] = o.At
		}
	})
	ends.Each(func(o kadm.ListedOffset) { e[o.Partition] = o.Offset })
	return c, e
}

// requireCaughtUp fails unless every partition's committed offset is its
// end offset.
func requireCaughtUp(t *testing.T, p *proc, group, topic string) map[int32]int64 {
	t.Helper()
	c, e := committed(t, p, group, topic)
	if fmt.Sprint(c) != fmt.Sprint(e) {
		t.Fatalf("group %s committed %v, topic %s ends at %v", group, c, topic, e)
	}
	return c
}

// valueIndex parses "v<i>".
func valueIndex(t *testing.T, v string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(v, "v%d", &i); err != nil {
		t.Fatalf("unexpected value %q", v)
	}
	return i
}
