package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/kvlog/kvlog/client/clienttest"
)

// TestCLIOperator drives the operator commands against a real kvlogd:
// topic offsets, add-partitions and delete-records; consume from a
// partition, an offset, a relative offset and a time, until an offset;
// headers and tombstones in both output formats; produce to a partition
// with headers; cluster info, dynamic broker configs and log dirs; a
// profile; a mistyped subcommand; the HTTP port given as the bootstrap.
func TestCLIOperator(t *testing.T) {
	t.Setenv("KVLOG_CONFIG", filepath.Join(t.TempDir(), "profiles.json"))
	b := clienttest.Start(t)
	kv := func(stdin string, args ...string) result {
		t.Helper()
		return runCLI(t, stdin, append([]string{"--bootstrap", b.Addr}, args...)...)
	}

	kv("", "topics", "create", "ops", "-p", "2", "-c", "cleanup.policy=delete").expect(t, exitOK)
	r := kv("", "topics", "create", "ops", "--if-not-exists")
	r.expect(t, exitOK)
	if r.stdout != "topic ops already exists\n" {
		t.Errorf("create --if-not-exists: %q", r.stdout)
	}
	r = kv("", "topics", "create", "ops")
	r.expect(t, exitFailure)
	if !strings.HasPrefix(r.stderr, `kvlog: create topic "ops": TOPIC_ALREADY_EXISTS: `) || strings.Count(strings.ToLower(r.stderr), "already exists") != 1 {
		t.Errorf("duplicate create says: %q (want the code and one message)", r.stderr)
	}
	r = kv("", "topics", "describe", "nope")
	r.expect(t, exitFailure)
	if r.stderr != "kvlog: topic \"nope\" not found\n" {
		t.Errorf("describe of a missing topic: %q", r.stderr)
	}

	// produce -p with headers; a tombstone and an empty value.
	kv("a:1\nb:2\nc:3\n", "produce", "ops", "-K", ":", "-p", "0", "-H", "src:test", "-H", "n:1").expect(t, exitOK)
	kv("d:4\ne:\nf:NULL\n", "produce", "ops", "-K", ":", "-p", "1", "--null-value", "NULL").expect(t, exitOK)
	kv("x\n", "produce", "ops", "-p", "5").expect(t, exitFailure)
	r = kv("", "topics", "offsets", "ops")
	r.expect(t, exitOK)
	checkGolden(t, "topics-offsets.txt", r.stdout)

	r = kv("", "consume", "ops", "-p", "0", "-o", "1", "-e", "--format", `%p %o %k=%v [%h]\n`)
	r.expect(t, exitOK)
	checkGolden(t, "consume-p0-from1.txt", r.stdout)
	r = kv("", "consume", "ops", "-p", "1", "-o", "start", "-e", "--format", `%o %k=%v %S\n`, "--null-value", "<tombstone>")
	r.expect(t, exitOK)
	checkGolden(t, "consume-p1-tombstone.txt", r.stdout)
	r = kv("", "consume", "ops", "-p", "1", "-o", "start", "-e", "--output", "json")
	r.expect(t, exitOK)
	checkGolden(t, "consume-p1.jsonl", stripTimestamps(r.stdout))
	r = kv("", "consume", "ops", "-o", "-1", "-e", "--format", `%p %o\n`)
	r.expect(t, exitOK)
	if got := sortedLines(r.stdout); got != "0 2\n1 2\n" {
		t.Errorf("consume -o -1: %q", got)
	}
	r = kv("", "consume", "ops", "-p", "0", "-o", "start", "--until", "2", "--format", `%o\n`)
	r.expect(t, exitOK)
	if r.stdout != "0\n1\n" {
		t.Errorf("consume --until 2: %q", r.stdout)
	}
	r = kv("", "consume", "ops", "-o", "@-1h", "-e", "--format", `%o\n`)
	r.expect(t, exitOK)
	if n := strings.Count(r.stdout, "\n"); n != 6 {
		t.Errorf("consume -o @-1h printed %d records, want 6:\n%s", n, r.stdout)
	}
	r = kv("", "consume", "ops", "-o", "@now", "-e", "--format", `%o\n`)
	r.expect(t, exitOK)
	if r.stdout != "" {
		t.Errorf("consume -o @now: %q", r.stdout)
	}
	r = kv("", "consume", "ops", "-o", "start", "-e", "-u", "@now", "--format", `%o\n`)
	r.expect(t, exitOK)
	if n := strings.Count(r.stdout, "\n"); n != 6 {
		t.Errorf("consume --until @now printed %d records, want 6", n)
	}

	// delete-records, add-partitions.
	r = kv("", "topics", "delete-records", "ops", "--before-offset", "1", "-p", "0")
	r.expect(t, exitOK)
	checkGolden(t, "delete-records.txt", r.stdout)
	kv("", "topics", "delete-records", "ops", "--before-time", "now", "-p", "1").expect(t, exitOK)
	r = kv("", "topics", "add-partitions", "ops", "--num", "1")
	r.expect(t, exitOK)
	if r.stdout != "ops: 3 partitions\n" {
		t.Errorf("add-partitions: %q", r.stdout)
	}
	r = kv("", "topics", "add-partitions", "ops", "--total", "2")
	r.expect(t, exitFailure)
	if !strings.Contains(r.stderr, "INVALID_PARTITIONS") {
		t.Errorf("shrinking: %q", r.stderr)
	}
	r = kv("", "topics", "offsets", "ops")
	r.expect(t, exitOK)
	checkGolden(t, "topics-offsets-after.txt", r.stdout)

	// cluster info.
	r = kv("", "cluster", "info", "-o", "json", "--api-versions")
	r.expect(t, exitOK)
	var ci clusterInfo
	if err := json.Unmarshal([]byte(r.stdout), &ci); err != nil {
		t.Fatal(err)
	}
	if ci.ClusterID == "" || len(ci.Brokers) != 1 || ci.Controller != ci.Brokers[0].NodeID {
		t.Errorf("cluster info: %+v", ci)
	}
	id := fmt.Sprint(ci.Brokers[0].NodeID)
	produce := false
	for _, v := range ci.APIVersions[id] {
		produce = produce || (v.Name == "Produce" && v.Max >= 3)
	}
	if !produce {
		t.Errorf("api versions lack Produce: %+v", ci.APIVersions)
	}
	r = kv("", "cluster", "info")
	r.expect(t, exitOK)
	checkGolden(t, "cluster-info.txt", strings.NewReplacer(ci.ClusterID, "CLUSTER-ID", b.Addr, "ADDR").Replace(r.stdout))

	// dynamic broker configs: cluster-wide, then per broker.
	kv("", "cluster", "config", "set", "log.cleaner.threads=2").expect(t, exitOK)
	kv("", "cluster", "config", "set", "log.cleaner.backoff.ms=5000", "--broker", id).expect(t, exitOK)
	r = kv("", "cluster", "config", "get", "log.cleaner.threads", "log.cleaner.backoff.ms", "--broker", id)
	r.expect(t, exitOK)
	checkGolden(t, "cluster-config-get.txt", r.stdout)
	r = kv("", "cluster", "config", "get", "log.cleaner.threads")
	r.expect(t, exitOK)
	if !strings.Contains(r.stdout, "DYNAMIC_DEFAULT_BROKER_CONFIG") {
		t.Errorf("cluster default: %s", r.stdout)
	}
	kv("", "cluster", "config", "delete", "log.cleaner.threads").expect(t, exitOK)
	kv("", "cluster", "config", "delete", "log.cleaner.backoff.ms", "--broker", id).expect(t, exitOK)
	r = kv("", "cluster", "config", "get", "log.cleaner.threads", "--broker", id, "-o", "json")
	r.expect(t, exitOK)
	if strings.Contains(r.stdout, "DYNAMIC") {
		t.Errorf("after delete: %s", r.stdout)
	}
	r = kv("", "cluster", "config", "set", "no.such.config=1")
	r.expect(t, exitFailure)
	if !strings.Contains(r.stderr, "INVALID_CONFIG") || !strings.Contains(r.stderr, "no.such.config") {
		t.Errorf("unknown config: %q", r.stderr)
	}
	kv("", "cluster", "config", "get", "no.such.config").expect(t, exitFailure)

	// log dirs.
	r = kv("", "cluster", "log-dirs", "-o", "json")
	r.expect(t, exitOK)
	var dirs []logDirDesc
	if err := json.Unmarshal([]byte(r.stdout), &dirs); err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 1 || dirs[0].TotalBytes <= 0 || dirs[0].UsableBytes <= 0 || dirs[0].UsableBytes > dirs[0].TotalBytes || len(dirs[0].Partitions) != 3 || dirs[0].SizeBytes <= 0 {
		t.Errorf("log dirs: %+v", dirs)
	}
	if d, _ := filepath.EvalSymlinks(b.DataDir); len(dirs) == 1 && dirs[0].Dir != b.DataDir && dirs[0].Dir != d {
		t.Errorf("log dir %s, want %s", dirs[0].Dir, b.DataDir)
	}

	// A profile replaces --bootstrap.
	runCLI(t, "", "profile", "create", "test", "--brokers", b.Addr, "--http", b.HTTP).expect(t, exitOK)
	t.Setenv("KVLOG_BOOTSTRAP", "")
	r = runCLI(t, "", "topics", "list")
	r.expect(t, exitOK)
	if !strings.Contains(r.stdout, "ops") {
		t.Errorf("topics list with the profile: %s", r.stdout)
	}
	r = runCLI(t, "", "profile", "list")
	r.expect(t, exitOK)
	checkGolden(t, "profile-list.txt", strings.NewReplacer(b.Addr, "ADDR", b.HTTP, "HTTP").Replace(r.stdout))
	r = runCLI(t, "", "--profile", "other", "topics", "list")
	r.expect(t, exitUsage)

	// A mistyped subcommand, and the HTTP port as the bootstrap.
	r = kv("", "topics", "lst")
	r.expect(t, exitUsage)
	if !strings.Contains(r.stderr, "Did you mean this?\n\tlist") {
		t.Errorf("no suggestion: %q", r.stderr)
	}
	r = runCLI(t, "", "--bootstrap", b.HTTP, "topics", "list")
	r.expect(t, exitFailure)
	if !strings.Contains(r.stderr, "is an HTTP server") {
		t.Errorf("pointed at the HTTP port: %q", r.stderr)
	}
}

var timestampRE = regexp.MustCompile(`"timestamp":\d+`)

func stripTimestamps(s string) string { return timestampRE.ReplaceAllString(s, `"timestamp":T`) }

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
