package console_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
	"github.com/kvlog/kvlog/internal/testbroker"
)

func TestMain(m *testing.M) { os.Exit(testbroker.Main(m)) }

var updateScreenshot = flag.Bool("update-screenshot", false, "copy the compaction screenshot to docs/console.png")

// Chromium is Debian's chromium package (`make tools-console`).
const chromiumPath = "/usr/bin/chromium"

// requireBrowser returns node's path, or skips the test saying what is
// missing: Debian's chromium, node, or playwright-core in console/e2e
// (`make tools-console` installs all three).
func requireBrowser(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skip(chromiumPath + " is not installed (`make tools-console` installs Debian's chromium): skipping the console's browser test")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (`make tools-console` installs Debian's nodejs): skipping the console's browser test")
	}
	if _, err := os.Stat("e2e/node_modules/playwright-core/package.json"); err != nil {
		t.Skip("playwright-core is not installed in console/e2e (`make tools-console` runs npm ci there): skipping the console's browser test")
	}
	return node
}

// artifactsDir is where the screenshots go: $KVLOG_ARTIFACTS/console when
// set, else a fresh directory under the system's temporary directory
// (kept after the test, its path logged).
func artifactsDir(t *testing.T) string {
	t.Helper()
	var dir string
	var err error
	if a := os.Getenv("KVLOG_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "console")
		err = os.MkdirAll(dir, 0o755)
	} else {
		dir, err = os.MkdirTemp("", "kvlog-console-screenshots-")
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConsoleInBrowser drives headless Chromium through the console of a
// real kvlogd: the cluster and topic pages, the dirty ratio of a compacted
// topic rising after updates and falling after a cleaner pass that a
// config change made through the console's form allowed (an invalid value
// first, refused inline; DescribeConfigs confirms the valid one),
// tombstones marked among the records, a consumer group's lag dropping as
// it consumes (and its chart following), records/s in and bytes/s out
// drawn on the topics list, accessibility basics on every page and keyboard
// navigation. Screenshots of each page are kept (see artifactsDir).
func TestConsoleInBrowser(t *testing.T) {
	node := requireBrowser(t)
	b := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{
		"log.cleaner.backoff.ms=100",
		"kvlog.console.sample.interval.ms=200",
	}})
	ctx := testbroker.Context(t, 3*time.Minute)
	const topic, group = "users", "users-reader"
	adm := b.Admin(t)
	if r, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"segment.bytes":             kadm.StringPtr("1024"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.99"),
	}, topic); err != nil || r.Err != nil {
		t.Fatalf("create %s: %v %v", topic, err, r.Err)
	}
	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// write produces each record on its own (one batch each), so the
	// small segments roll and the records become cleanable.
	write := func(n int, tombstoneEvery int) {
		t.Helper()
		for i := range n {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("user-%d", i%10)), Value: []byte(fmt.Sprintf(`{"name":"user %d","version":%d,"pad":"%s"}`, i%10, i, strings.Repeat("x", 60)))}
			if tombstoneEvery > 0 && i%tombstoneEvery == tombstoneEvery-1 {
				r.Value = nil
			}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
		}
	}
	// The first writes: the whole log is dirty (ratio 1 >= 0.99), so the
	// cleaner makes a first pass.
	write(40, 0)
	waitCleaner(t, b.HTTP, topic, func(p cleanerstatus.PartitionStatus) bool { return p.Passes >= 1 }, "a first clean pass")

	artifacts := artifactsDir(t)
	t.Logf("console screenshots: %s", artifacts)
	arg, _ := json.Marshal(map[string]string{"base": "http://" + b.HTTP, "artifacts": artifacts, "topic": topic, "group": group, "chromium": chromiumPath})
	cmd := exec.CommandContext(ctx, node, "e2e/console.mjs", string(arg))
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	steps := map[string]func(){
		// Updates of the same keys and tombstones: dirty, but below 0.99.
		"write-updates": func() { write(30, 7) },
		"config-changed": func() {
			rc, err := adm.DescribeTopicConfigs(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			c, err := rc.On(topic, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, cf := range c.Configs {
				if cf.Key == "min.cleanable.dirty.ratio" {
					if cf.Value == nil || *cf.Value != "0.1" {
						t.Errorf("DescribeConfigs: min.cleanable.dirty.ratio=%v after the console's change, want 0.1", cf.Value)
					}
					return
				}
			}
			t.Error("DescribeConfigs: no min.cleanable.dirty.ratio")
		},
		// The group has committed offset 5: it lags.
		"group-lagging": func() {
			offs := kadm.Offsets{}
			offs.AddOffset(topic, 0, 5, -1)
			if r, err := adm.CommitOffsets(ctx, group, offs); err != nil || r.Error() != nil {
				t.Fatalf("commit: %v %v", err, r.Error())
			}
		},
		// More records for the topics list's rates.
		"write-more": func() { write(10, 0) },
		// A member of the group consumes to the end and commits.
		"group-consume": func() {
			consumer := b.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit())
			ends, err := adm.ListEndOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			end, _ := ends.Lookup(topic, 0)
			for last := int64(-1); last+1 < end.Offset; {
				fs := consumer.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("consuming to %d: at %d: %v", end.Offset, last, ctx.Err())
				}
				fs.EachRecord(func(r *kgo.Record) { last = r.Offset })
			}
			if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
				t.Fatalf("commit: %v", err)
			}
		},
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	done := false
	var fail string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "STEP "):
			name := strings.TrimPrefix(line, "STEP ")
			fn := steps[name]
			if fn == nil {
				t.Fatalf("browser script asked for unknown step %q", name)
			}
			t.Logf("step %s", name)
			fn()
			io.WriteString(stdin, "go\n")
		case strings.HasPrefix(line, "LOG "):
			t.Log(strings.TrimPrefix(line, "LOG "))
		case line == "DONE":
			done = true
		case strings.HasPrefix(line, "FAIL "):
			fail = strings.ReplaceAll(strings.TrimPrefix(line, "FAIL "), " | ", "\n")
		}
	}
	stdin.Close()
	err = cmd.Wait()
	if fail != "" || !done || err != nil {
		t.Fatalf("browser run failed (%v): %s\nstderr:\n%s\nscreenshots so far: %s", err, fail, stderr.String(), artifacts)
	}
	if *updateScreenshot {
		m, _ := filepath.Glob(filepath.Join(artifacts, "*-compaction-clean.png"))
		if len(m) != 1 {
			t.Fatalf("compaction screenshot: %v", m)
		}
		data, err := os.ReadFile(m[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../docs/console.png", data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCleaner polls /cleaner until topic's partition 0 satisfies ok.
func waitCleaner(t *testing.T, httpAddr, topic string, ok func(cleanerstatus.PartitionStatus) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last cleanerstatus.PartitionStatus
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + httpAddr + cleanerstatus.Path)
		if err == nil {
			var st cleanerstatus.Status
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			for _, p := range st.Partitions {
				if p.Topic == topic && p.Partition == 0 {
					last = p
					if ok(p) {
						return
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s-0: no %s within 60s; last status %+v", topic, what, last)
}
