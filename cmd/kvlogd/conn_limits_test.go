package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// openFDs counts a process's open file descriptors.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	return len(ents)
}

// TestAcceptOutOfFileDescriptors: with its file descriptor table full
// (RLIMIT_NOFILE lowered on the running broker, then more connections
// than it allows), kvlogd's accept loop backs off instead of spinning,
// logs at ERROR and counts the failures; once the connections close, it
// serves Kafka clients and /metrics again.
func TestAcceptOutOfFileDescriptors(t *testing.T) {
	p := startKvlogd(t)
	produceKeyed(t, p, "before", 0, 3)
	pid := p.Pid()
	limit := uint64(openFDs(t, pid) + 20)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Skipf("cannot lower the broker's RLIMIT_NOFILE: %v", err)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 60; i++ { // accepted from the listen backlog up to the limit
		c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	waitFor(t, 30*time.Second, "the broker to run out of file descriptors", func() bool {
		return strings.Contains(p.Log(), "accept failed")
	})
	if !strings.Contains(p.Log(), "level=ERROR msg=\"accept failed") {
		t.Fatalf("the accept failure is not logged at ERROR:\n%s", p.Log())
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil

	// Serving again: /metrics answers (net/http's accept loop backs off up
	// to 1 s) with the failures counted, and Kafka clients work.
	var n float64
	waitFor(t, 30*time.Second, "/metrics to answer", func() bool {
		resp, err := httpGet("http://" + p.HTTP + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		n, _ = cleanerMetric(t, p, "kvlog_accept_errors_total")
		return true
	})
	if n < 1 {
		t.Fatalf("kvlog_accept_errors_total = %v", n)
	}
	produceKeyed(t, p, "after", 0, 3)
	if got := len(consumeAll(t, p, "after", 3)); got != 3 {
		t.Fatalf("%d records", got)
	}
}

// TestSizePrefixOnlyConnections: connections that send only a size prefix
// (1 MiB announced, nothing more) hold a few KiB each, not the announced
// megabyte, and connections beyond max.connections.per.ip are closed at
// accept.
func TestSizePrefixOnlyConnections(t *testing.T) {
	const allowed, extra = 250, 30
	p := testbroker.Start(t, testbroker.Options{Race: true, Props: []string{
		"max.connections=1000", fmt.Sprintf("max.connections.per.ip=%d", allowed)}})
	heap := func() float64 {
		v, ok := cleanerMetric(t, p, "go_memstats_heap_inuse_bytes")
		if !ok {
			t.Fatal("no go_memstats_heap_inuse_bytes")
		}
		return v
	}
	base := heap()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	prefix := binary.BigEndian.AppendUint32(nil, 1<<20)
	prefix = append(prefix, 0, 3, 0, 9) // and the first bytes of a header
	for i := 0; i < allowed+extra; i++ {
		c, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		c.Write(prefix) // refused ones may already be closed
	}
	waitFor(t, 30*time.Second, "the connections to be accepted or refused", func() bool {
		open, _ := cleanerMetric(t, p, "kvlog_connections")
		refused, _ := cleanerMetric(t, p, "kvlog_connections_refused_total", `reason="max.connections.per.ip"`)
		return open == allowed && refused == extra
	})
	var peak float64
	for i := 0; i < 5; i++ {
		peak = max(peak, heap())
	}
	if grew := peak - base; grew > 64<<20 {
		t.Fatalf("%d prefix-only connections grew the heap by %.0f MiB", allowed, grew/(1<<20))
	}
	// The broker still serves once they are gone.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitFor(t, 30*time.Second, "the connections to close", func() bool {
		open, _ := cleanerMetric(t, p, "kvlog_connections")
		return open == 0
	})
	produceKeyed(t, p, "still", 0, 3)
}

// httpGet is http.Get with a timeout.
func httpGet(url string) (*http.Response, error) {
	return (&http.Client{Timeout: 5 * time.Second}).Get(url)
}
