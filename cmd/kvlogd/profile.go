package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// cpuProfileEnv names a directory: when set, kvlogd profiles its own
// start-up (process start to "kvlogd started") and its shutdown (signal to
// exit) with Go's CPU profiler, into kvlogd-<pid>-start.pprof and
// kvlogd-<pid>-shutdown.pprof there. /debug/pprof cannot see either: the
// HTTP listener serves only once the logs are loaded, and stops first at
// shutdown.
const cpuProfileEnv = "KVLOG_CPUPROFILE"

// phaseProfile is a CPU profile of one phase (nil: not profiling; its
// methods do nothing then).
type phaseProfile struct {
	f    *os.File
	path string
}

// startPhaseProfile starts profiling phase when KVLOG_CPUPROFILE is set. A
// profile that cannot start is reported on stderr and skipped: profiling
// never stops the broker.
func startPhaseProfile(phase string, stderr io.Writer) *phaseProfile {
	dir := os.Getenv(cpuProfileEnv)
	if dir == "" {
		return nil
	}
	path := filepath.Join(dir, fmt.Sprintf("kvlogd-%d-%s.pprof", os.Getpid(), phase))
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "kvlogd: %s: %v\n", cpuProfileEnv, err)
		return nil
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "kvlogd: %s: %v\n", cpuProfileEnv, err)
		f.Close()
		os.Remove(path)
		return nil
	}
	return &phaseProfile{f: f, path: path}
}

// stop ends the profile and writes it out (once).
func (p *phaseProfile) stop(stderr io.Writer) {
	if p == nil || p.f == nil {
		return
	}
	pprof.StopCPUProfile()
	if err := p.f.Close(); err != nil {
		fmt.Fprintf(stderr, "kvlogd: %s: %s: %v\n", cpuProfileEnv, p.path, err)
	}
	p.f = nil
}
