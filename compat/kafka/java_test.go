package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/testbroker"
)

func TestMain(m *testing.M) {
	code := testbroker.Main(m)
	if cds.dir != "" {
		os.RemoveAll(cds.dir)
	}
	os.Exit(code)
}

// tool is one of Apache Kafka's command-line tools: the name of its
// bin/ script and the main class the script runs (as found in the 4.x jars).
type tool struct{ name, class string }

var (
	kafkaTopics       = tool{"kafka-topics", "org.apache.kafka.tools.TopicCommand"}
	kafkaConfigs      = tool{"kafka-configs", "org.apache.kafka.tools.ConfigCommand"}
	consoleProducer   = tool{"kafka-console-producer", "org.apache.kafka.tools.ConsoleProducer"}
	consoleConsumer   = tool{"kafka-console-consumer", "org.apache.kafka.tools.consumer.ConsoleConsumer"}
	consumerGroups    = tool{"kafka-consumer-groups", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"}
	getOffsets        = tool{"kafka-get-offsets", "org.apache.kafka.tools.GetOffsetShell"}
	deleteRecords     = tool{"kafka-delete-records", "org.apache.kafka.tools.DeleteRecordsCommand"}
	logDirs           = tool{"kafka-log-dirs", "org.apache.kafka.tools.LogDirsCommand"}
	brokerAPIVersions = tool{"kafka-broker-api-versions", "org.apache.kafka.tools.BrokerApiVersionsCommand"}
	leaderElection    = tool{"kafka-leader-election", "org.apache.kafka.tools.LeaderElectionCommand"}
	dumpLog           = tool{"kafka-dump-log", "org.apache.kafka.tools.DumpLogSegments"}
	storageTool       = tool{"kafka-storage", "kafka.tools.StorageTool"}
)

// toolTimeout bounds one tool run; the admin tools give up on their own
// after default.api.timeout.ms (60 s), so this is only a backstop.
const toolTimeout = 90 * time.Second

var jars struct {
	once sync.Once
	cp   string // the classpath, "" when unavailable
	why  string // why it is unavailable
}

// moduleDir is compat/kafka in the source tree.
func moduleDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// classpath returns the Kafka jars' classpath, or skips the test when Java
// or the resolved classpath is missing. $KVLOG_KAFKA_CLASSPATH overrides
// target/classpath.txt.
func classpath(t testing.TB) string {
	t.Helper()
	jars.once.Do(func() {
		if _, err := exec.LookPath("java"); err != nil {
			jars.why = "java is not installed"
			return
		}
		if cp := os.Getenv("KVLOG_KAFKA_CLASSPATH"); cp != "" {
			jars.cp = cp
			return
		}
		b, err := os.ReadFile(filepath.Join(moduleDir(), "target", "classpath.txt"))
		if err != nil {
			jars.why = "the Apache Kafka jars are not resolved (compat/kafka/target/classpath.txt: " + err.Error() + ")"
			return
		}
		jars.cp = strings.TrimSpace(string(b))
	})
	if jars.cp == "" {
		t.Skip(jars.why + "; `make tools-kafka` installs a JDK and Maven and resolves them")
	}
	return jars.cp
}

// toolJVM are the JVM flags of a short-lived tool: a small heap, the serial
// collector and C1 only (start-up, not throughput, is what counts), the
// logging configuration of this directory.
func toolJVM() []string {
	return []string{
		"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
		"-Djava.awt.headless=true",
		// The JVM's own warnings (a class-data-sharing one while the archive
		// is dumped) would land in the tools' stdout; errors go to stderr.
		"-Xlog:disable", "-Xlog:all=error:stderr",
		"-Dlog4j2.configurationFile=" + filepath.Join(moduleDir(), "log4j2.properties"),
	}
}

// cds is a class-data-sharing archive of the classes the tools load,
// dumped by the first tool run of the test binary and mapped by the later
// ones: it halves a tool's start-up CPU (about 1 s to 0.5 s).
var cds struct {
	mu    sync.Mutex
	dir   string
	state int // 0 none yet, 1 being dumped, 2 ready, 3 failed
}

// cdsFlags returns the archive flags for the next run, and a function to
// call when that run has exited.
func cdsFlags() ([]string, func()) {
	cds.mu.Lock()
	defer cds.mu.Unlock()
	switch cds.state {
	case 0:
		dir, err := os.MkdirTemp("", "kvlog-kafka-cds-")
		if err != nil {
			cds.state = 3
			return nil, func() {}
		}
		cds.dir, cds.state = dir, 1
		tmp := filepath.Join(dir, "dumping.jsa")
		return []string{"-XX:ArchiveClassesAtExit=" + tmp}, func() {
			cds.mu.Lock()
			defer cds.mu.Unlock()
			cds.state = 3
			if os.Rename(tmp, filepath.Join(dir, "tools.jsa")) == nil {
				cds.state = 2
			}
		}
	case 2:
		return []string{"-XX:SharedArchiveFile=" + filepath.Join(cds.dir, "tools.jsa")}, func() {}
	}
	return nil, func() {}
}

// result is what one tool run printed and its exit code.
type result struct {
	stdout, stderr string
	code           int
}

// runTool runs a Kafka tool to completion with stdin ("" for none). api
// names the Kafka API (or file) the case exercises, for failure messages.
func runTool(t testing.TB, tl tool, api, stdin string, args ...string) result {
	t.Helper()
	cp := classpath(t)
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	share, ran := cdsFlags()
	defer ran()
	argv := append(append(toolJVM(), share...), "-cp", cp, tl.class)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, "java", argv...)
	cmd.WaitDelay = 5 * time.Second
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s (%s): no exit within %v\nstdout:\n%s\nstderr:\n%s", tl.name, strings.Join(args, " "), api, toolTimeout, r.stdout, r.stderr)
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s (%s): %v", tl.name, api, err)
	}
	return r
}

// ok runs a tool that must exit 0 and returns its stdout.
func ok(t testing.TB, tl tool, api, stdin string, args ...string) string {
	t.Helper()
	r := runTool(t, tl, api, stdin, args...)
	if r.code != 0 {
		t.Fatalf("%s %s (%s): exit code %d, want 0\nstdout:\n%s\nstderr:\n%s", tl.name, strings.Join(args, " "), api, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// expect checks that every pattern (a regular expression) matches a line of
// out, and reports the ones that do not, naming the tool and the API.
func expect(t testing.TB, tl tool, api, out string, patterns ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	var missing []string
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		found := false
		for _, l := range lines {
			if re.MatchString(l) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s (%s): no line matches %q in:\n%s", tl.name, api, missing, out)
	}
}

// refuse checks that no line of out matches any of the patterns.
func refuse(t testing.TB, tl tool, api, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		for _, l := range strings.Split(out, "\n") {
			if re.MatchString(l) {
				t.Errorf("%s (%s): unexpected line %q (matches %q) in:\n%s", tl.name, api, l, p, out)
				break
			}
		}
	}
}

// lines returns out's non-empty lines.
func lines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// quote formats args for messages.
func quote(args []string) string { return fmt.Sprintf("%q", args) }
