package testbroker

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
	"testing"
)

// builds are the binaries built by this test binary, in dir, by name
// ("kvlogd", "kvlogd-race", "kvlog").
var builds struct {
	mu  sync.Mutex
	dir string
	by  map[string]*buildResult
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests, then the cleanups of Long handles, and removes the
// binaries built for the tests. Call it from TestMain:
// os.Exit(testbroker.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	long.mu.Lock()
	cleanups := long.cleanups
	long.cleanups = nil
	long.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	return code
}

// Binary returns the path of a kvlogd binary built from the kvlog module,
// with -race when race is set, building it on first use. Without race,
// $KVLOGD_BIN, when set, is returned instead. It works from a module that
// requires kvlog too (examples/replaybench, through a replace directive).
func Binary(race bool) (string, error) {
	if p := os.Getenv("KVLOGD_BIN"); p != "" && !race {
		return p, nil
	}
	return build("kvlogd", race)
}

// Command returns the path of the kvlog module's cmd/<name> (e.g. the kvlog
// CLI, for tests that run it as a process), built without -race on first
// use.
func Command(name string) (string, error) { return build(name, false) }

// build builds ./cmd/<name> of the kvlog module once per test binary.
func build(name string, race bool) (string, error) {
	file := name
	if race {
		file += "-race"
	}
	builds.mu.Lock()
	if builds.by == nil {
		builds.by = map[string]*buildResult{}
	}
	r := builds.by[file]
	if r == nil {
		r = &buildResult{}
		builds.by[file] = r
	}
	builds.mu.Unlock()
	r.once.Do(func() { r.path, r.err = goBuild(name, file, race) })
	return r.path, r.err
}

func goBuild(name, file string, race bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/kvlog/kvlog").Output()
	if err != nil {
		return "", fmt.Errorf("locating the kvlog module: %w", err)
	}
	root := strings.TrimSpace(string(out))

	builds.mu.Lock()
	if builds.dir == "" {
		builds.dir, err = os.MkdirTemp("", "kvlog-testbroker-")
	}
	dir := builds.dir
	builds.mu.Unlock()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, file)
	args := []string{"build"}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "-o", bin, "./cmd/"+name)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building %s (race %v): %v\n%s", name, race, err, stderr.String())
	}
	return bin, nil
}

// long holds the cleanups of Long handles, run by Main.
var long struct {
	mu       sync.Mutex
	cleanups []func()
}

// Long returns tb with its Cleanup and TempDir deferred to the end of Main
// and its Logf to standard error, so that what is started with it outlives
// tb: a broker loaded once and shared by all of a test binary's benchmarks.
func Long(tb testing.TB) testing.TB { return longTB{tb} }

type longTB struct{ testing.TB }

func (longTB) Cleanup(f func()) {
	long.mu.Lock()
	defer long.mu.Unlock()
	long.cleanups = append(long.cleanups, f)
}

func (t longTB) TempDir() string {
	d, err := os.MkdirTemp("", "kvlog-long-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Logf writes to standard error: tb may have ended when a cleanup logs.
func (longTB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// handedOut holds the addresses FreeAddr has returned in this process: the
// kernel may give a port that was just closed to the next bind to port 0,
// so two calls in a row (two listeners of one broker) could otherwise
// return the same address.
var handedOut struct {
	sync.Mutex
	addrs map[string]bool
}

// FreeAddr returns a 127.0.0.1 address that was free a moment ago and that
// no earlier call in this process returned.
func FreeAddr(t testing.TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.addrs == nil {
		handedOut.addrs = map[string]bool{}
	}
	for range 1000 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
	t.Fatal("no port left that FreeAddr has not returned before")
	return ""
}
