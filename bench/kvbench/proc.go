package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one system-under-test process. Its output goes to a log file in
// the run's raw directory; the last 16 KiB are also kept for error messages.
type proc struct {
	name   string
	cmd    *exec.Cmd
	pid    int
	start  time.Time
	exited chan struct{}
	tail   *tailBuffer
	logf   *os.File
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// startProc starts bin with args; its stdout and stderr go to logPath. The
// process gets SIGKILL if the benchmark dies (Pdeathsig).
func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "==== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	p := &proc{name: name, exited: make(chan struct{}), tail: &tailBuffer{max: 16 << 10}, logf: f}
	p.cmd = exec.Command(bin, args...)
	w := io.MultiWriter(f, p.tail)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.pid = p.cmd.Process.Pid
	go func() {
		p.cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to timeout, then SIGKILL.
func (p *proc) stop(timeout time.Duration) {
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.kill()
	}
}

// kill sends SIGKILL (kill -9) and waits for the exit.
func (p *proc) kill() {
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// usage is a process's resource use at one instant.
type usage struct {
	cpu    float64 // user+system CPU seconds (/proc/<pid>/stat, 10 ms ticks)
	rssMB  float64 // VmRSS
	peakMB float64 // VmHWM: peak RSS of the process so far
}

func (p *proc) usage() usage { return pidUsage(p.pid) }

// pidUsage reads /proc for pid; zeros when the process is gone.
func pidUsage(pid int) usage {
	var u usage
	u.cpu, _ = procCPUSeconds(pid)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			u.rssMB = kb / 1024
		case "VmHWM:":
			u.peakMB = kb / 1024
		}
	}
	return u
}

// procCPUSeconds is a process's user+system CPU time (all its threads, live
// and exited) from /proc/<pid>/stat.
func procCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime+stime (fields 14 and 15, in USER_HZ = 100 ticks
// per second) from a /proc/<pid>/stat line.
func parseStatCPU(b []byte) (float64, error) {
	// The command name may hold spaces: fields restart after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil
}

// findPIDs lists the processes whose command line contains s (used for the
// brokers internal/testcluster starts, whose *exec.Cmd it keeps private; s
// is a broker's unique data directory).
func findPIDs(s string) []int {
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []int
	self := os.Getpid()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil && pid != self {
			out = append(out, pid)
		}
	}
	return out
}

// cpuMeter measures the CPU seconds a set of processes used over a window.
// /proc/<pid>/stat counts in 10 ms ticks, too coarse for sub-second
// windows, so the meter sums the threads' run times from
// /proc/<pid>/task/<tid>/schedstat (nanoseconds). A thread that exits
// during the window takes its time with it: then the window falls back to
// the tick count, which includes exited threads.
type cpuMeter struct {
	pids  []int
	start []cpuSnap
}

type cpuSnap struct {
	stat  float64         // utime+stime, ticks, all threads ever
	tasks map[int]float64 // live threads' run time, seconds
}

func snapCPU(pid int) cpuSnap {
	s := cpuSnap{tasks: map[int]float64{}}
	s.stat, _ = procCPUSeconds(pid)
	paths, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		tid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		f := strings.Fields(string(b))
		if err != nil || len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseFloat(f[0], 64)
		s.tasks[tid] = ns / 1e9
	}
	return s
}

// delta is the CPU time from s to e.
func (s cpuSnap) delta(e cpuSnap) float64 {
	if len(s.tasks) == 0 || len(e.tasks) == 0 {
		return e.stat - s.stat
	}
	var d float64
	for tid, v := range s.tasks {
		ev, ok := e.tasks[tid]
		if !ok {
			return e.stat - s.stat // a thread exited: its time is only in the ticks
		}
		d += ev - v
	}
	for tid, ev := range e.tasks {
		if _, ok := s.tasks[tid]; !ok {
			d += ev // started during the window
		}
	}
	return d
}

func meterCPU(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: pids}
	for _, pid := range pids {
		m.start = append(m.start, snapCPU(pid))
	}
	return m
}

// seconds is the CPU used since meterCPU.
func (m *cpuMeter) seconds() float64 {
	var s float64
	for i, pid := range m.pids {
		s += m.start[i].delta(snapCPU(pid))
	}
	return s
}

// parseStatSplit reads utime and stime (seconds) from a /proc stat line.
func parseStatSplit(b []byte) (user, sys float64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	s, err2 := strconv.ParseFloat(f[12], 64)
	return u / 100, s / 100, errors.Join(err1, err2)
}

// cpuSplit is a process's user and system CPU seconds (all its threads,
// live and exited; 10 ms ticks): system time is the kernel working for it
// (sendfile, copies to and from sockets, page-cache writes, fsync).
func cpuSplit(pid int) (user, sys float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	user, sys, _ = parseStatSplit(b)
	return user, sys
}

// threadCPU is the user+system CPU seconds of each live thread of pid by
// its name (/proc/<pid>/task/<tid>/stat and comm) keyed by tid.
func threadCPU(pid int) map[int]threadStat {
	out := map[int]threadStat{}
	paths, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	for _, p := range paths {
		tid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		u, s, err := parseStatSplit(b)
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "comm"))
		out[tid] = threadStat{name: strings.TrimSpace(string(comm)), cpu: u + s}
	}
	return out
}

type threadStat struct {
	name string
	cpu  float64
}
