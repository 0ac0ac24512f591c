package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procCPUSeconds returns a process's user+system CPU time from
// /proc/<pid>/stat.
func procCPUSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may contain spaces) start at
	// the state; utime and stime are fields 14 and 15 (1-based).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}

// TestHugeTagCountProcess sends kvlogd a 23-byte DescribeCluster request
// whose tag section claims 2^32-1 fields: the connection is closed, the
// broker spends no noticeable CPU on it (unpatched kmsg: ~45 s) and keeps
// serving.
func TestHugeTagCountProcess(t *testing.T) {
	p := startKvlogd(t)
	pid := p.Pid()
	before := procCPUSeconds(t, pid)

	body := []byte{0, 60, 0, 0, 0, 0, 0, 7, 0, 1, 'x', 0} // DescribeCluster v0, corr 7, client "x", no header tags
	body = append(body, 0)                                // IncludeClusterAuthorizedOperations
	body = binary.AppendUvarint(body, 1<<32-1)            // tag count, then nothing
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	frame = append(frame, body...)
	for i := 0; i < 4; i++ {
		if err := sendExpectingClose(t, p.Addr, frame, 20*time.Second); err != nil {
			t.Fatalf("malformed request: %v", err)
		}
	}
	if used := procCPUSeconds(t, pid) - before; used > 3 {
		t.Fatalf("kvlogd used %.1f s of CPU on 4 tiny malformed requests", used)
	}
	produceKeyed(t, p, "after-tags", 0, 10)
	if n := len(consumeAll(t, p, "after-tags", 10)); n != 10 {
		t.Fatalf("%d records", n)
	}
	if !strings.Contains(p.Log(), "undecodable request body") {
		t.Fatalf("the refusal is not logged:\n%s", p.Log())
	}
	p.Term()
}
