// Package clienttest starts a real kvlogd process for the tests of the client
// library and the kvlog command-line tool. It builds ./cmd/kvlogd of the
// enclosing module once per test binary (or uses $KVLOGD_BIN), runs it on
// free 127.0.0.1 ports with a temporary data directory, and stops it when the
// test ends. It never imports broker packages: the broker is a process.
package clienttest

import (
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

	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

// Main runs the tests and removes the kvlogd binary built for them. Call it
// from TestMain: os.Exit(clienttest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}

// Binary returns the path of a kvlogd binary, building it on first use.
func Binary() (string, error) {
	buildOnce.Do(func() {
		if p := os.Getenv("KVLOGD_BIN"); p != "" {
			binPath = p
			return
		}
		// The kvlog module's directory, also from a module that requires
		// it through a replace directive (examples/replaybench).
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kvlog/kvlog").Output()
		if err != nil {
			buildErr = fmt.Errorf("locating the kvlog module: %w", err)
			return
		}
		root := strings.TrimSpace(string(out))
		buildDir, err = os.MkdirTemp("", "kvlog-clienttest-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(buildDir, "kvlogd")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/kvlogd")
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("building kvlogd: %v\n%s", err, stderr.String())
		}
	})
	return binPath, buildErr
}

// Broker is a running kvlogd.
type Broker struct {
	t       testing.TB
	Addr    string // Kafka listener host:port
	HTTP    string // HTTP listener host:port
	DataDir string
	Config  string // server.properties path, "" if none

	mu     sync.Mutex
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreeAddr returns a 127.0.0.1 address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Start builds (once) and starts a kvlogd with a fresh data directory. props
// are extra server.properties lines ("key=value"), written to a config file.
// The broker is stopped when the test ends. Start skips the test when
// KVLOG_SKIP_BROKER is set, and fails it when the broker cannot start within
// 60s.
func Start(t testing.TB, props ...string) *Broker {
	t.Helper()
	if os.Getenv("KVLOG_SKIP_BROKER") != "" {
		t.Skip("KVLOG_SKIP_BROKER set: skipping broker test")
	}
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, Addr: FreeAddr(t), HTTP: FreeAddr(t), DataDir: t.TempDir()}
	if len(props) > 0 {
		b.Config = filepath.Join(t.TempDir(), "server.properties")
		if err := os.WriteFile(b.Config, []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.start(bin)
	t.Cleanup(b.Stop)
	return b
}

func (b *Broker) start(bin string) {
	b.t.Helper()
	args := []string{
		"--listeners", "PLAINTEXT://" + b.Addr,
		"--log-dirs", b.DataDir,
		"--http", b.HTTP,
		"--log-level", "warn",
	}
	if b.Config != "" {
		args = append(args, "--config", b.Config)
	}
	cmd := exec.Command(bin, args...)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.mu.Lock()
	b.cmd, b.log, b.exited = cmd, log, exited
	b.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			b.t.Fatalf("kvlogd exited during start-up:\n%s", log.String())
		default:
		}
		if err := ping(b.Addr); err == nil {
			return
		} else if time.Now().After(deadline) {
			b.t.Fatalf("kvlogd did not serve within 60s: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
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

// Log returns what the broker printed so far.
func (b *Broker) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.log == nil {
		return ""
	}
	return b.log.String()
}

// Stop sends SIGTERM and waits up to 15s, then kills. Idempotent.
func (b *Broker) Stop() { b.stop(syscall.SIGTERM) }

// Kill stops the broker with SIGKILL (no clean shutdown).
func (b *Broker) Kill() { b.stop(syscall.SIGKILL) }

func (b *Broker) stop(sig syscall.Signal) {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
	if b.t.Failed() {
		b.t.Logf("kvlogd log:\n%s", b.Log())
	}
}

// Restart stops the broker (SIGTERM, or SIGKILL when kill is set) and starts
// it again on the same addresses and data directory.
func (b *Broker) Restart(kill bool) {
	b.t.Helper()
	if kill {
		b.Kill()
	} else {
		b.Stop()
	}
	bin, err := Binary()
	if err != nil {
		b.t.Fatal(err)
	}
	b.start(bin)
}
