package server

import "testing"

// TestLoopbackAddr: kvlog.http.pprof.enable=auto serves the profiler only
// on listeners bound to loopback; wildcard and other addresses are not.
func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9644":   true,
		"127.1.2.3:9644":   true,
		"[::1]:9644":       true,
		"localhost:9644":   true,
		"LOCALHOST:9644":   true,
		":9644":            false,
		"0.0.0.0:9644":     false,
		"[::]:9644":        false,
		"10.0.0.5:9644":    false,
		"broker.example:1": false,
		"garbage":          false,
	} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
