package testbroker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestLifecycle: start, SIGKILL, restart on the same address and data,
// SIGTERM with a clean exit; the log is the current run's.
func TestLifecycle(t *testing.T) {
	b := Start(t, Options{Props: []string{"num.partitions=2"}})
	if b.Pid() == 0 || b.HTTP == "" || b.Config == "" {
		t.Fatalf("broker %+v", b)
	}
	serves := func(topic string) {
		t.Helper()
		if _, err := b.Admin(t).CreateTopic(Context(t, 30*time.Second), -1, -1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	serves("before")
	b.Kill()
	if b.Pid() != 0 {
		t.Fatal("pid after Kill")
	}
	if _, err := os.Stat(filepath.Join(b.DataDir, ".kafka_cleanshutdown")); err == nil {
		t.Fatal("clean-shutdown marker after SIGKILL")
	}
	addr := b.Addr
	b.Restart()
	if b.Addr != addr {
		t.Fatalf("restarted on %s, was %s", b.Addr, addr)
	}
	if !strings.Contains(b.Log(), startedLine) || strings.Count(b.Log(), startedLine) != 1 {
		t.Fatalf("log of the second run:\n%s", b.Log())
	}
	serves("after")
	b.Term()
	if !strings.Contains(b.Log(), "shutdown complete") {
		t.Fatalf("no clean shutdown in the log:\n%s", b.Log())
	}
	b.Stop() // stopped already: nothing to do
}

// TestQuiet: at warn level the start-up line is not printed and readiness
// comes from a Kafka request; no HTTP listener.
func TestQuiet(t *testing.T) {
	b := Start(t, Options{LogLevel: "warn", NoHTTP: true})
	if b.HTTP != "" {
		t.Fatalf("HTTP %q", b.HTTP)
	}
	if err := ping(b.Addr); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.Log(), startedLine) {
		t.Fatalf("start-up line at warn level:\n%s", b.Log())
	}
}
