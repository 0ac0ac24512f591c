// Package clienttest starts a real kvlogd process for the tests of the client
// library, the kvlog command-line tool and the examples, with the settings
// they share: a binary built without -race (or $KVLOGD_BIN), warn-level
// logging, and a skip when KVLOG_SKIP_BROKER is set. The process itself is
// run by internal/testbroker; neither imports broker packages: the broker is
// a process.
package clienttest

import (
	"os"
	"testing"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// Broker is a running kvlogd: Addr, Brokers, Log, Stop, Kill, Restart.
type Broker = testbroker.Broker

// Main runs the tests and removes the kvlogd binary built for them. Call it
// from TestMain: os.Exit(clienttest.Main(m)).
func Main(m *testing.M) int { return testbroker.Main(m) }

// Start builds (once) and starts a kvlogd with a fresh data directory. props
// are extra server.properties lines ("key=value"), written to a config file.
// The broker is stopped when the test ends. Start skips the test when
// KVLOG_SKIP_BROKER is set, and fails it when the broker cannot start within
// 60s.
func Start(t testing.TB, props ...string) *Broker {
	t.Helper()
	if os.Getenv("KVLOG_SKIP_BROKER") != "" {
		t.Skip("KVLOG_SKIP_BROKER set: skipping broker test")
	}
	return testbroker.Start(t, testbroker.Options{Props: props, LogLevel: "warn"})
}

// Long returns tb with its Cleanup and TempDir deferred to the end of Main,
// so that a broker started with it outlives tb: one broker loaded once for
// all of a test binary's benchmarks.
func Long(tb testing.TB) testing.TB { return testbroker.Long(tb) }
