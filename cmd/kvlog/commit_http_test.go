package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/client/clienttest"
)

// TestConsumeGroupCommitsPeriodically: `kvlog consume --group` commits the
// offsets of printed records every --commit-interval while it runs, so a
// SIGKILLed consume keeps its progress.
func TestConsumeGroupCommitsPeriodically(t *testing.T) {
	b := clienttest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr), kgo.DefaultProduceTopic("events"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 20
	for i := 0; i < n; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(fmt.Sprintf("e%d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx, kvlogBinary(t), "consume", "events", "--group", "audit", "--from-beginning", "--commit-interval", "100ms")
	cmd.Env = append(os.Environ(), "KVLOG_BOOTSTRAP="+b.Addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	for printed := 0; printed < n; printed++ {
		if !sc.Scan() {
			t.Fatalf("consume printed %d of %d records: %v", printed, n, sc.Err())
		}
	}
	adm := kadm.NewClient(cl)
	committed := func() int64 {
		os, err := adm.FetchOffsets(ctx, "audit")
		if err != nil {
			return -1
		}
		var sum int64
		os.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum
	}
	deadline := time.Now().Add(30 * time.Second)
	for committed() != n {
		if time.Now().After(deadline) {
			t.Fatalf("consume (still running) committed %d of %d offsets", committed(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if got := committed(); got != n {
		t.Fatalf("after SIGKILL the group's committed offset is %d, want %d", got, n)
	}
}

// TestCleanerStatusUsesBootstrap: `kvlog cleaner status -b ADDR` reads the
// status of the broker at ADDR (its HTTP listener found through
// DescribeConfigs), not whatever listens on a default port.
func TestCleanerStatusUsesBootstrap(t *testing.T) {
	b := clienttest.Start(t)
	t.Setenv("KVLOG_HTTP", "")
	r := runCLI(t, "", "--bootstrap", b.Addr, "cleaner", "status", "-o", "json")
	r.expect(t, exitOK)
	if !strings.HasPrefix(strings.TrimSpace(r.stdout), "[") {
		t.Fatalf("cleaner status: %q %q", r.stdout, r.stderr)
	}
}

func TestVersionFlag(t *testing.T) {
	r := runCLI(t, "", "--version")
	r.expect(t, exitOK)
	if !strings.HasPrefix(r.stdout, "kvlog ") || !strings.Contains(r.stdout, "go1.") {
		t.Fatalf("--version: %q", r.stdout)
	}
}
