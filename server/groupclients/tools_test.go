package groupclients

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// kafka-python (Debian python3-kafka, for /usr/bin/python3) and kcat
// (librdkafka) consumer groups. `make tools` installs both; a test skips,
// saying so, only when its tool is missing.

// pythonWithKafka is the interpreter Debian's python3-kafka is installed
// for (a pyenv python3 earlier on PATH does not have it).
const pythonWithKafka = "/usr/bin/python3"

// runTool runs a command with a deadline and returns its stdout; a
// failure or timeout fails the test with stderr.
func runTool(t *testing.T, timeout time.Duration, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
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

// kafkaPythonGroup consumes with a kafka-python group member until it has
// n records, commits synchronously, leaves, and prints one JSON line per
// record. kafka-python uses the fixed versions of the broker release it
// infers from ApiVersions (for a modern broker, per the protocol
// reference: JoinGroup v2, SyncGroup v1, Heartbeat v1, LeaveGroup v1,
// OffsetCommit v2, OffsetFetch v1, FindCoordinator v0).
const kafkaPythonGroup = `
import json, sys, time
from kafka import KafkaConsumer

addr, topic, group, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = KafkaConsumer(topic, bootstrap_servers=[addr], group_id=group, enable_auto_commit=False,
    auto_offset_reset="earliest", session_timeout_ms=10000, heartbeat_interval_ms=1000, request_timeout_ms=30000)
got = []
deadline = time.time() + 60
while len(got) < n and time.time() < deadline:
    for tp, records in consumer.poll(timeout_ms=500).items():
        for r in records:
            got.append({"partition": r.partition, "offset": r.offset, "value": r.value.decode()})
if len(got) < n:
    sys.exit("only %d of %d records" % (len(got), n))
# Nothing more must be pending: a short extra poll would show duplicates.
for tp, records in consumer.poll(timeout_ms=1000).items():
    for r in records:
        got.append({"partition": r.partition, "offset": r.offset, "value": r.value.decode()})
consumer.commit()
consumer.close()
for g in got:
    print(json.dumps(g))
`

func requireKafkaPython(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(pythonWithKafka); err != nil {
		t.Skipf("%s not found: skipping the kafka-python group test", pythonWithKafka)
	}
	if err := exec.Command(pythonWithKafka, "-c", "import kafka").Run(); err != nil {
		t.Skip("kafka-python is not installed for /usr/bin/python3 (`make tools` installs Debian's python3-kafka): skipping the kafka-python group test")
	}
	script := filepath.Join(t.TempDir(), "kafka_python_group.py")
	if err := os.WriteFile(script, []byte(kafkaPythonGroup), 0o644); err != nil {
		t.Fatal(err)
	}
	return script
}

// values extracts the "value" (kafka-python) or "payload" (kcat) field of
// JSON lines, sorted.
func values(t *testing.T, out []byte, field string) []string {
	t.Helper()
	var vs []string
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		v, ok := m[field].(string)
		if !ok {
			t.Fatalf("output line %q has no %s", line, field)
		}
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return vs
}

// wantValues checks got is exactly v<from>..v<from+n-1>, once each.
func wantValues(t *testing.T, who string, got []string, from, n int) {
	t.Helper()
	seen := map[int]bool{}
	for _, v := range got {
		i := valueIndex(t, v)
		if i < from || i >= from+n || seen[i] {
			t.Fatalf("%s read %s (want v%d..v%d once each); all: %v", who, v, from, from+n-1, got)
		}
		seen[i] = true
	}
	if len(seen) != n {
		t.Fatalf("%s read %d records, want %d", who, len(seen), n)
	}
}

func TestKafkaPythonGroupCommitResume(t *testing.T) {
	script := requireKafkaPython(t)
	dir := t.TempDir()
	p := startKvlogd(t, dir, "")
	const topic, group = "py-group", "py-consumers"
	createTopic(t, p, topic, 3)
	produce(t, p, topic, 0, 60)

	out := runTool(t, 120*time.Second, pythonWithKafka, script, p.addr, topic, group, "60")
	wantValues(t, "kafka-python", values(t, out, "value"), 0, 60)
	requireCaughtUp(t, p, group, topic)

	// Resume after new records: only those are read.
	produce(t, p, topic, 60, 20)
	out = runTool(t, 120*time.Second, pythonWithKafka, script, p.addr, topic, group, "20")
	wantValues(t, "kafka-python (resumed)", values(t, out, "value"), 60, 20)
	requireCaughtUp(t, p, group, topic)

	// And after a broker restart, from __consumer_offsets.
	p.term()
	p = startKvlogd(t, dir, p.addr)
	produce(t, p, topic, 80, 10)
	out = runTool(t, 120*time.Second, pythonWithKafka, script, p.addr, topic, group, "10")
	wantValues(t, "kafka-python (after restart)", values(t, out, "value"), 80, 10)
	requireCaughtUp(t, p, group, topic)
	p.term()
}

func requireKcat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (`make tools` installs Debian's kcat): skipping the kcat group test")
	}
	return path
}

// kcatGroup runs a kcat balanced consumer (-G) that exits once every
// assigned partition is at its end; librdkafka commits on close.
func kcatGroup(t *testing.T, kcat string, p *proc, group, topic string) []string {
	t.Helper()
	out := runTool(t, 120*time.Second, kcat, "-b", p.addr, "-G", group, "-e", "-J", "-q",
		"-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=10000",
		"-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=200", topic)
	return values(t, out, "payload")
}

func TestKcatGroupConsume(t *testing.T) {
	kcat := requireKcat(t)
	dir := t.TempDir()
	p := startKvlogd(t, dir, "")
	const topic, group = "kcat-group", "kcat-consumers"
	createTopic(t, p, topic, 3)
	produce(t, p, topic, 0, 60)

	wantValues(t, "kcat -G", kcatGroup(t, kcat, p, group, topic), 0, 60)
	requireCaughtUp(t, p, group, topic)

	produce(t, p, topic, 60, 20)
	wantValues(t, "kcat -G (resumed)", kcatGroup(t, kcat, p, group, topic), 60, 20)
	requireCaughtUp(t, p, group, topic)

	p.kill() // SIGKILL: the commits come back from the log
	p = startKvlogd(t, dir, p.addr)
	produce(t, p, topic, 80, 10)
	wantValues(t, "kcat -G (after SIGKILL restart)", kcatGroup(t, kcat, p, group, topic), 80, 10)
	requireCaughtUp(t, p, group, topic)
	p.term()
}
