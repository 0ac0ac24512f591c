package server

import (
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvlog/kvlog/server/config"
)

// TestFailedNewUndoesItsSetUp: a New that fails late (here: an SSL
// listener whose key store does not exist, found when the listeners'
// security is built, after the logs, the coordinators and the metrics
// are set up) undoes what it set up, newest first: the log dirs are
// unlocked (a New on the same dir then succeeds) and the metrics are out
// of the caller's registry again (a registry shared with a later broker
// must not keep serving collectors of the failed one: Register leaves a
// collector registered already as it is).
func TestFailedNewUndoesItsSetUp(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	parse := func(extra ...string) *config.Broker {
		t.Helper()
		props := strings.Join(append([]string{
			"log.dirs=" + dir,
			"log.cleaner.dedupe.buffer.size=4194304",
		}, extra...), "\n")
		pp, err := config.ParseProperties(strings.NewReader(props))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(pp, logger)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	reg := prometheus.NewRegistry()
	bad := parse("listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
		"ssl.keystore.location="+filepath.Join(dir, "no-such-keystore.pem"))
	if s, err := New(bad, Options{Registry: reg, Logger: logger}); err == nil {
		s.Close()
		t.Fatal("New succeeded with a key store that does not exist")
	} else if !strings.Contains(err.Error(), "no-such-keystore") {
		t.Fatalf("New failed for another reason than the key store: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		t.Errorf("metric %s still registered after New failed", mf.GetName())
	}

	s, err := New(parse("listeners=PLAINTEXT://127.0.0.1:0"), Options{Registry: reg, Logger: logger})
	if err != nil {
		t.Fatalf("New on the same log dir after a failed New: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
