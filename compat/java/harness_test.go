package javacompat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Main(m)) }

// build is the Maven build of the module, once per test binary.
var build struct {
	once     sync.Once
	cp4, cp3 string // classpaths: kafka-clients 4.x with Streams, 3.x
	skip     string
	err      error
}

// moduleDir is this package's directory, where pom.xml is.
func moduleDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// mvn runs Maven in the module: offline first (~/.m2 warm), then online.
func mvn(args ...string) error {
	var last []byte
	for _, offline := range []bool{true, false} {
		a := append([]string{"-q", "-B"}, args...)
		if offline {
			a = append([]string{"-o"}, a...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		cmd := exec.CommandContext(ctx, "mvn", a...)
		cmd.Dir = moduleDir()
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			return nil
		}
		last = out
	}
	return fmt.Errorf("mvn %s: %s", strings.Join(args, " "), last)
}

// requireJava builds the module (once) and returns the classpaths, or
// skips the test when java or mvn is not installed.
func requireJava(t testing.TB) (cp4, cp3 string) {
	t.Helper()
	build.once.Do(func() {
		for _, tool := range []string{"java", "mvn"} {
			if _, err := exec.LookPath(tool); err != nil {
				build.skip = tool + " is not installed (`make tools-java` installs a JDK and Maven)"
				return
			}
		}
		dir := moduleDir()
		if build.err = mvn("compile", "dependency:build-classpath"); build.err != nil {
			return
		}
		if build.err = mvn("-P", "clients3", "dependency:build-classpath"); build.err != nil {
			return
		}
		read := func(name string) string {
			b, err := os.ReadFile(filepath.Join(dir, "target", name))
			if err != nil {
				build.err = err
			}
			return filepath.Join(dir, "target", "classes") + string(os.PathListSeparator) + strings.TrimSpace(string(b))
		}
		build.cp4, build.cp3 = read("classpath-4.txt"), read("classpath-3.txt")
	})
	if build.skip != "" {
		t.Skip(build.skip + ": skipping the Java client suite")
	}
	if build.err != nil {
		t.Fatalf("building the Java module: %v", build.err)
	}
	return build.cp4, build.cp3
}

// result is one case's RESULT line.
type result struct {
	Case   string          `json:"case"`
	Client string          `json:"client"`
	OK     bool            `json:"ok"`
	API    string          `json:"api"`
	Error  string          `json:"error"`
	Ms     int64           `json:"ms"`
	Data   json.RawMessage `json:"data"`
}

// javaRun is a running JVM of kvlog.compat.Main (or another main class).
type javaRun struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // PROGRESS lines and other stdout lines
	done   chan struct{}
	stderr bytes.Buffer

	mu      sync.Mutex
	results []result
	other   []string
}

// startJava runs `java -cp cp main args...`; stdout lines starting with
// RESULT are parsed, the others are sent on lines (dropped when nobody
// reads them).
func startJava(t testing.TB, cp, main string, args ...string) *javaRun {
	t.Helper()
	return startJavaWith(t, nil, cp, main, args...)
}

// startJavaWith is startJava with more JVM flags (system properties such
// as -Dkvlog.client.config) before the main class.
func startJavaWith(t testing.TB, jvm []string, cp, main string, args ...string) *javaRun {
	t.Helper()
	jargs := append([]string{"-Xss1m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-Dorg.slf4j.simpleLogger.showDateTime=true"}, jvm...)
	jargs = append(jargs, "-cp", cp, main)
	cmd := exec.Command("java", append(jargs, args...)...)
	r := &javaRun{t: t, cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{})}
	var err error
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{w: &r.stderr, mu: &r.mu}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
				var res result
				if err := json.Unmarshal([]byte(rest), &res); err != nil {
					res = result{Case: "?", Error: fmt.Sprintf("unparsable RESULT line %q: %v", rest, err)}
				}
				r.mu.Lock()
				r.results = append(r.results, res)
				r.mu.Unlock()
				continue
			}
			r.mu.Lock()
			r.other = append(r.other, line)
			r.mu.Unlock()
			select {
			case r.lines <- line:
			default:
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			r.mu.Lock()
			t.Logf("java %s stderr:\n%s", main, tail(r.stderr.String(), 32<<10))
			r.mu.Unlock()
		}
	})
	return r
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// kill SIGKILLs the JVM and waits for it.
func (r *javaRun) kill() {
	if r.cmd.Process != nil {
		r.cmd.Process.Kill()
	}
	<-r.done
}

// wait waits for the JVM to exit within d (killing it after) and returns
// its results.
func (r *javaRun) wait(d time.Duration) []result {
	r.t.Helper()
	select {
	case <-r.done:
	case <-time.After(d):
		r.kill()
		r.t.Errorf("java did not exit within %v; stderr:\n%s", d, tail(r.stderrString(), 16<<10))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]result(nil), r.results...)
}

func (r *javaRun) stderrString() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// waitLine waits up to d for a stdout line with prefix and returns it.
func (r *javaRun) waitLine(d time.Duration, match func(string) bool) (string, bool) {
	deadline := time.After(d)
	for {
		select {
		case l := <-r.lines:
			if match(l) {
				return l, true
			}
		case <-r.done:
			return "", false
		case <-deadline:
			return "", false
		}
	}
}

// runCases runs cases in one JVM and returns their results by position
// ("case=arg" names are kept whole).
func runCases(t testing.TB, cp, bootstrap, prefix string, timeout time.Duration, cases ...string) map[string]result {
	t.Helper()
	return runCasesWith(t, nil, cp, bootstrap, prefix, timeout, cases...)
}

// runCasesWith is runCases with more JVM flags.
func runCasesWith(t testing.TB, jvm []string, cp, bootstrap, prefix string, timeout time.Duration, cases ...string) map[string]result {
	t.Helper()
	r := startJavaWith(t, jvm, cp, "kvlog.compat.Main", append([]string{bootstrap, prefix}, cases...)...)
	r.stdin.Close()
	res := r.wait(timeout)
	out := map[string]result{}
	for i, c := range cases {
		if i < len(res) {
			out[c] = res[i]
		}
	}
	return out
}

// check fails t unless the case passed, naming the client, the API and
// the error; it returns the case's data.
func check(t testing.TB, results map[string]result, name string) json.RawMessage {
	t.Helper()
	res, ok := results[name]
	if !ok {
		t.Fatalf("case %s: no result (the JVM stopped before it; see its stderr)", name)
	}
	if !res.OK {
		t.Fatalf("%s, case %s: %s failed: %s", res.Client, name, res.API, res.Error)
	}
	t.Logf("%s, case %s: ok in %d ms; %s", res.Client, name, res.Ms, tail(string(res.Data), 600))
	return res.Data
}
