// Package testbroker runs the real kvlogd as a process for tests: it builds
// ./cmd/kvlogd once per test binary (with or without -race), starts it on
// free 127.0.0.1 ports with a temporary data directory, waits until it
// serves, stops it with SIGTERM or SIGKILL, restarts it on the same
// addresses and data, and shows what it printed when a test fails.
//
// It imports no broker package: the broker is a process, so the client
// library's tests (through client/clienttest) can use it too. Call Main
// from TestMain so the binary built for the tests is removed.
//
// The tests of cmd/kvlogd, server/groupclients, client, cmd/kvlog and the
// examples start their brokers here. bench/ fits too (Props, NoHTTP,
// LogLevel "warn", Output for its prefixed echo, Pid for its CPU
// readings), and so does a cluster harness (Bin, Addr, HTTP, DataDir and
// Args per broker; Pid for SIGSTOP/SIGCONT).
package testbroker

import (
	"bytes"
	"context"
	"fmt"
	"io"
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

// Options say how to run a kvlogd. The zero value runs the binary built
// without -race at kvlogd's default log level, on free ports, with a fresh
// data directory and the HTTP listener on.
type Options struct {
	// Race builds the binary with -race (the broker's own tests). Without
	// it, $KVLOGD_BIN, when set, is used instead of building.
	Race bool
	// Bin is a kvlogd binary to run instead of the one Binary builds.
	Bin string
	// Addr is the Kafka listener host:port; "" picks a free port.
	Addr string
	// Listeners, when set, is the --listeners value instead of
	// PLAINTEXT://Addr (several listeners with their security protocols
	// in Props); Addr must still be one of them, a PLAINTEXT one, which
	// the harness uses. Not with MakeRun.
	Listeners string
	// HTTP is the /metrics and /healthz listener; "" picks a free port.
	HTTP string
	// NoHTTP runs without the HTTP listener.
	NoHTTP bool
	// DataDir is the log directory; "" makes a temporary one. With
	// MakeRun it is WorkDir/data and cannot be set.
	DataDir string
	// MakeRun starts kvlogd as `make run` does: no --config and no
	// --log-dirs, in WorkDir, so log.dirs keeps its default, the relative
	// ./data. Only --listeners and --http are passed (free ports unless
	// Addr and HTTP say otherwise: the default ports may be taken on a
	// shared machine); Props is not allowed.
	MakeRun bool
	// WorkDir is the broker's working directory; "" makes a temporary one
	// with MakeRun and keeps the test's otherwise.
	WorkDir string
	// Props are server.properties lines ("key=value"), written to a file
	// passed with --config. The harness's flags override the file's
	// listeners, log.dirs and kvlog.http.listener.
	Props []string
	// Args are more kvlogd flags, after the harness's own.
	Args []string
	// LogLevel is --log-level; "" keeps kvlogd's default, info. At warn
	// or error the start-up line is not printed, and readiness is seen by
	// a Kafka request instead.
	LogLevel string
	// Output, when set, also receives everything the broker prints.
	Output io.Writer
	// StartTimeout bounds the wait until the broker serves (default 60s).
	StartTimeout time.Duration
	// StopTimeout bounds the wait for an exit after SIGTERM (default 30s).
	StopTimeout time.Duration
}

const (
	startedLine  = "kvlogd started"
	maxOutput    = 32 << 20 // bytes of output kept per incarnation
	failureTail  = 64 << 10 // bytes of each incarnation's output logged on failure
	buildTimeout = 10 * time.Minute
)

// Broker is a kvlogd process. Its addresses and data directory stay the
// same across Restart.
type Broker struct {
	Addr    string // Kafka listener host:port
	HTTP    string // HTTP listener host:port, "" if off
	DataDir string
	Config  string // server.properties path, "" if none
	WorkDir string // working directory, "" for the test's own

	t    testing.TB
	opts Options
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	out    *output
	past   []string // output of earlier incarnations
}

// Start builds kvlogd (once) if needed, starts it and waits until it
// serves; it fails the test if the broker exits or does not serve within
// StartTimeout. The broker is stopped (SIGTERM, then SIGKILL) when the test
// ends, and what it printed is logged if the test failed.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 30 * time.Second
	}
	// The addresses prepare picks were free a moment ago; another process
	// (a client's ephemeral port) may take one before kvlogd binds it. Such
	// a start is retried on new addresses, when they were not given.
	pick := opts.Addr == "" && opts.HTTP == "" && opts.Listeners == ""
	for attempt := 1; ; attempt++ {
		b := prepare(t, opts)
		t.Cleanup(b.cleanup)
		err := b.tryStart()
		if err == nil {
			return b
		}
		if !pick || attempt == 3 || !strings.Contains(b.Log(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("kvlogd could not bind %s or %s (taken since it was picked); starting again on new addresses", b.Addr, b.HTTP)
	}
}

// prepare resolves opts into a Broker (addresses, directories, arguments)
// without starting it.
func prepare(t testing.TB, opts Options) *Broker {
	t.Helper()
	if opts.Bin == "" {
		bin, err := Binary(opts.Race)
		if err != nil {
			t.Fatal(err)
		}
		opts.Bin = bin
	}
	b := &Broker{t: t, opts: opts, Addr: opts.Addr, HTTP: opts.HTTP, DataDir: opts.DataDir, WorkDir: opts.WorkDir}
	if b.Addr == "" {
		b.Addr = FreeAddr(t)
	}
	if opts.NoHTTP {
		b.HTTP = ""
	} else if b.HTTP == "" {
		b.HTTP = FreeAddr(t)
	}
	if opts.MakeRun {
		if opts.DataDir != "" || len(opts.Props) > 0 {
			t.Fatal("testbroker: MakeRun takes neither DataDir nor Props")
		}
		if b.WorkDir == "" {
			b.WorkDir = t.TempDir()
		}
		b.DataDir = filepath.Join(b.WorkDir, "data") // kvlogd's default log.dirs, ./data
		b.args = []string{"--listeners", "PLAINTEXT://" + b.Addr, "--http", b.HTTP}
	} else {
		if b.DataDir == "" {
			b.DataDir = t.TempDir()
		}
		listeners := "PLAINTEXT://" + b.Addr
		if opts.Listeners != "" {
			listeners = opts.Listeners
		}
		b.args = []string{"--listeners", listeners, "--log-dirs", b.DataDir, "--http", b.HTTP}
	}
	if opts.LogLevel != "" {
		b.args = append(b.args, "--log-level", opts.LogLevel)
	}
	if len(opts.Props) > 0 {
		b.Config = filepath.Join(t.TempDir(), "server.properties")
		if err := os.WriteFile(b.Config, []byte(strings.Join(opts.Props, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		b.args = append(b.args, "--config", b.Config)
	}
	b.args = append(b.args, opts.Args...)
	return b
}

func (b *Broker) command() *exec.Cmd {
	cmd := exec.Command(b.opts.Bin, b.args...)
	cmd.Dir = b.WorkDir
	cmd.SysProcAttr = sysProcAttr()
	return cmd
}

// RunToExit runs a kvlogd with opts that is expected to exit by itself
// (a refused start, --version, a bad flag) and returns its exit code and
// everything it printed (stdout and stderr). If it is still running after
// timeout, it is killed and the test fails.
func RunToExit(t testing.TB, opts Options, timeout time.Duration) (int, string) {
	t.Helper()
	b := prepare(t, opts)
	return b.runToExit(timeout)
}

// RunArgs runs the kvlogd binary opts names (Bin, Race) with exactly args,
// in opts.WorkDir, and returns its exit code and output like RunToExit.
func RunArgs(t testing.TB, opts Options, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	b := prepare(t, Options{Bin: opts.Bin, Race: opts.Race, WorkDir: opts.WorkDir, NoHTTP: true})
	b.args = args
	return b.runToExit(timeout)
}

func (b *Broker) runToExit(timeout time.Duration) (int, string) {
	b.t.Helper()
	cmd := b.command()
	out := &output{tee: b.opts.Output}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-exited
		b.t.Fatalf("kvlogd %v still running after %v; it printed:\n%s", b.args, timeout, out.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// start runs a new incarnation and waits until it serves.
func (b *Broker) start() {
	b.t.Helper()
	if err := b.tryStart(); err != nil {
		b.t.Fatal(err)
	}
}

// tryStart is start returning its failure instead of failing the test.
func (b *Broker) tryStart() error {
	b.t.Helper()
	cmd := b.command()
	out := &output{tee: b.opts.Output}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.mu.Lock()
	if b.out != nil {
		b.past = append(b.past, b.out.String())
	}
	b.cmd, b.exited, b.out = cmd, exited, out
	b.mu.Unlock()

	quiet := b.opts.LogLevel != "" && !strings.EqualFold(b.opts.LogLevel, "info") && !strings.EqualFold(b.opts.LogLevel, "debug")
	deadline := time.Now().Add(b.opts.StartTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("kvlogd exited at start-up (%v); its output is logged at the end of the test", cmd.ProcessState)
		default:
		}
		if out.started() || (quiet && ping(b.Addr) == nil) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kvlogd did not serve on %s within %v; its output is logged at the end of the test", b.Addr, b.opts.StartTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ping(addr string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

// Brokers returns the bootstrap list.
func (b *Broker) Brokers() []string { return []string{b.Addr} }

// Pid is the running process's id, 0 when it is stopped.
func (b *Broker) Pid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Log returns what the current (or last) incarnation printed so far.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.out == nil {
		return ""
	}
	return b.out.String()
}

// Client returns a franz-go client seeded with the broker, closed when t
// ends.
func (b *Broker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns a kadm client on a Client.
func (b *Broker) Admin(t testing.TB) *kadm.Client { return kadm.NewClient(b.Client(t)) }

// take detaches the running process; nil when there is none.
func (b *Broker) take() (*exec.Cmd, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cmd, exited := b.cmd, b.exited
	b.cmd = nil
	return cmd, exited
}

// Kill stops the broker with SIGKILL (no clean shutdown) and waits for the
// exit. It does nothing when the broker is stopped.
func (b *Broker) Kill() {
	if cmd, exited := b.take(); cmd != nil {
		cmd.Process.Kill()
		<-exited
	}
}

// Stop sends SIGTERM and waits up to StopTimeout, then SIGKILLs. It does
// nothing when the broker is stopped.
func (b *Broker) Stop() {
	if cmd, exited := b.take(); cmd != nil {
		b.terminate(cmd, exited)
	}
}

// Term sends SIGTERM and fails the test unless the broker exits with
// status 0 within StopTimeout (a clean shutdown).
func (b *Broker) Term() {
	b.t.Helper()
	cmd, exited := b.take()
	if cmd == nil {
		b.t.Fatal("kvlogd is not running")
	}
	if !b.terminate(cmd, exited) {
		b.t.Fatalf("kvlogd did not exit within %v of SIGTERM", b.opts.StopTimeout)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		b.t.Fatalf("kvlogd exit code %d after SIGTERM", code)
	}
}

// terminate sends SIGTERM and reports whether the process exited within
// StopTimeout; if not, it is killed.
func (b *Broker) terminate(cmd *exec.Cmd, exited chan struct{}) bool {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return true
	case <-time.After(b.opts.StopTimeout):
		cmd.Process.Kill()
		<-exited
		return false
	}
}

// Restart starts the broker again on the same addresses and data
// directory, stopping it first (Stop) if it runs; use Kill or Term before
// it for a particular kind of stop.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

func (b *Broker) cleanup() {
	b.Stop()
	if !b.t.Failed() {
		return
	}
	b.mu.Lock()
	outs := append([]string(nil), b.past...)
	if b.out != nil {
		outs = append(outs, b.out.String())
	}
	b.mu.Unlock()
	for i, s := range outs {
		if len(s) > failureTail {
			s = "…" + s[len(s)-failureTail:]
		}
		b.t.Logf("kvlogd on %s, run %d of %d, printed:\n%s", b.Addr, i+1, len(outs), s)
	}
}

// output collects what one incarnation prints (up to maxOutput bytes) and
// notes when the start-up line has gone by.
type output struct {
	tee io.Writer

	mu      sync.Mutex
	buf     bytes.Buffer
	seen    bool
	checked int // bytes of buf already searched for startedLine
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if room := maxOutput - o.buf.Len(); room > 0 {
		o.buf.Write(p[:min(len(p), room)])
	}
	if !o.seen {
		from := max(0, o.checked-len(startedLine))
		o.seen = bytes.Contains(o.buf.Bytes()[from:], []byte(startedLine))
		o.checked = o.buf.Len()
	}
	if o.tee != nil {
		o.tee.Write(p)
	}
	return len(p), nil
}

func (o *output) started() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seen
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Context returns a context that ends after d or when the test ends.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
