package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// A profile window's CPU accounting from /proc, the same for every system:
// the process's user and system CPU over the window (the kernel's share
// matters for sendfile, socket copies and fsync, which a user-space
// profiler does not see as such) and, for processes that name their threads
// (the JVM), the CPU of each thread group.

type window struct {
	pid       int
	user, sys float64
	threads   map[int]threadStat
}

func startWindow(pid int) *window {
	w := &window{pid: pid, threads: threadCPU(pid)}
	w.user, w.sys = cpuSplit(pid)
	return w
}

// threadGroup names a thread group: the thread's name without its
// numbering ("data-plane-kafka-request-handler-3" → "…-request-handler-N",
// "GC Thread#1" → "GC Thread#N").
var threadNum = regexp.MustCompile(`[0-9]+`)

// end closes the window after wall and returns its figures as a profile
// record (Util, User, Sys, Threads).
func (w *window) end(wall time.Duration) profileTop { return w.endNamed(wall, nil) }

// endNamed is end with thread names by tid (a JVM's Java thread names,
// which /proc's 15-character comm cuts short), asked for after the
// window's figures are read so that asking costs the window nothing.
func (w *window) endNamed(wall time.Duration, namesOf func() map[int]string) profileTop {
	u, s := cpuSplit(w.pid)
	now := threadCPU(w.pid)
	var names map[int]string
	if namesOf != nil {
		names = namesOf()
	}
	pt := profileTop{Wall: wall.Seconds(), User: u - w.user, Sys: s - w.sys}
	pt.Util = fmt.Sprintf("%.0f%%", 100*(pt.User+pt.Sys)/pt.Wall)
	groups := map[string]float64{}
	for tid, t := range now {
		d := t.cpu - w.threads[tid].cpu
		if d > 0 {
			name := t.name
			if n, ok := names[tid]; ok {
				name = n
			}
			groups[threadNum.ReplaceAllString(name, "N")] += d
		}
	}
	named := len(groups) > 1
	if named {
		for g, c := range groups {
			pt.Threads = append(pt.Threads, frameShare{Name: g, Flat: c / pt.Wall})
		}
		sort.Slice(pt.Threads, func(i, j int) bool { return pt.Threads[i].Flat > pt.Threads[j].Flat })
		if len(pt.Threads) > 12 {
			pt.Threads = pt.Threads[:12]
		}
	}
	return pt
}

// busy is the window's CPU in cores (user+system over wall time).
func (p profileTop) busy() float64 {
	if p.Wall <= 0 {
		return 0
	}
	return (p.User + p.Sys) / p.Wall
}

// kernelShare is the system time's share of the window's CPU.
func (p profileTop) kernelShare() float64 {
	if p.User+p.Sys <= 0 {
		return 0
	}
	return p.Sys / (p.User + p.Sys)
}

// cpuLine is "0.45 cores (user 0.20, kernel 0.25 = 56%)".
func (p profileTop) cpuLine() string {
	if p.Wall <= 0 {
		return "CPU split not measured"
	}
	return fmt.Sprintf("%.2f cores (user %.2f, kernel %.2f = %.0f%% of its CPU)", p.busy(), p.User/p.Wall, p.Sys/p.Wall, 100*p.kernelShare())
}

// threadTable renders the thread groups' CPU ("" when not named).
func (p profileTop) threadTable() string {
	if len(p.Threads) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nCPU by thread group (/proc/<pid>/task, cores over the window): %s\n", p.cpuLine())
	for _, t := range p.Threads {
		fmt.Fprintf(&b, "%6.2f  %s\n", t.Flat, t.Name)
	}
	return b.String()
}

// javaThreadNames maps a JVM's thread ids (nid) to their Java names, from
// `jcmd <pid> Thread.print` (lines `"name" #12 … nid=0x1a2b …`).
func javaThreadNames(pid int) map[int]string {
	out, err := jcmd(pid, time.Minute, "Thread.print")
	if err != nil {
		return nil
	}
	return parseThreadNames(out)
}

var threadLine = regexp.MustCompile(`^"(.*)" .*\bnid=(0x[0-9a-fA-F]+)`)

func parseThreadNames(dump string) map[int]string {
	names := map[int]string{}
	for _, l := range strings.Split(dump, "\n") {
		m := threadLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		var tid int
		if _, err := fmt.Sscanf(m[2], "0x%x", &tid); err == nil {
			names[tid] = m[1]
		}
	}
	return names
}
