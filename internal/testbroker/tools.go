package testbroker

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Other Kafka clients, driven as processes against a broker: kcat
// (librdkafka) and kafka-python (Debian python3-kafka). `make tools`
// installs both; a test that needs one skips, saying so, only when it is
// missing.

// PythonWithKafka is the interpreter Debian's python3-kafka is installed
// for (a pyenv python3 earlier on PATH does not have it).
const PythonWithKafka = "/usr/bin/python3"

// RequireKcat returns kcat's path, or skips the test ("skipping what")
// when kcat is not installed.
func RequireKcat(t testing.TB, what string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (`make tools` installs Debian's kcat): skipping " + what)
	}
	return path
}

// RequireKafkaPython skips the test ("skipping what") unless kafka-python
// is installed for PythonWithKafka, and returns the path of a temporary
// file holding script.
func RequireKafkaPython(t testing.TB, what, script string) string {
	t.Helper()
	if _, err := os.Stat(PythonWithKafka); err != nil {
		t.Skipf("%s not found: skipping %s", PythonWithKafka, what)
	}
	if err := exec.Command(PythonWithKafka, "-c", "import kafka").Run(); err != nil {
		t.Skipf("kafka-python is not installed for %s (`make tools` installs Debian's python3-kafka): skipping %s", PythonWithKafka, what)
	}
	path := filepath.Join(t.TempDir(), "kafka_python.py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// RunTool runs a command with a deadline, stdin (nil: none), and returns
// its stdout; a failure or timeout fails the test with its output.
func RunTool(t testing.TB, timeout time.Duration, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out after %v\nstderr:\n%s\nstdout:\n%s", name, strings.Join(args, " "), timeout, stderr.String(), stdout.String())
	}
	if err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s\nstdout:\n%s", name, strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.Bytes()
}
