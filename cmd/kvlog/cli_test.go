package main

import (
	"net"
	"strings"
	"testing"
)

func TestHelpEverywhere(t *testing.T) {
	r := runCLI(t, "", "--help")
	r.expect(t, exitOK)
	for _, c := range []string{"topics", "put", "get", "delete", "produce", "consume", "replay", "groups", "cleaner", "dump"} {
		if !strings.Contains(r.stdout, c) {
			t.Errorf("kvlog --help does not list %q:\n%s", c, r.stdout)
		}
	}
	for _, args := range [][]string{
		{"topics", "--help"}, {"topics", "create", "--help"}, {"topics", "list", "--help"},
		{"topics", "describe", "--help"}, {"topics", "delete", "--help"}, {"topics", "alter-config", "--help"},
		{"put", "--help"}, {"get", "--help"}, {"delete", "--help"}, {"produce", "--help"}, {"consume", "--help"},
		{"replay", "--help"}, {"groups", "list", "--help"}, {"groups", "describe", "--help"},
		{"groups", "reset-offsets", "--help"}, {"cleaner", "status", "--help"}, {"dump", "--help"},
	} {
		r := runCLI(t, "", args...)
		r.expect(t, exitOK, args...)
		if !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "--bootstrap") {
			t.Errorf("kvlog %v: help lacks usage or the global flags:\n%s", args, r.stdout)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	cases := [][]string{
		{"no-such-command"},
		{"topics", "list", "--no-such-flag"},
		{"topics", "create"},
		{"topics", "create", "a", "b"},
		{"topics", "create", "t", "--config", "novalue"},
		{"topics", "create", "t", "--compact", "--config", "cleanup.policy=delete"},
		{"topics", "list", "-o", "yaml"},
		{"topics", "alter-config", "t"},
		{"put", "t", "k"},
		{"get", "t"},
		{"delete", "t"},
		{"produce"},
		{"produce", "t", "--compression", "brotli"},
		{"produce", "t", "--acks", "2"},
		{"consume", "t", "--format", "%q"},
		{"consume", "t", "-o", "xml"},
		{"replay", "t", "--progress", "fancy"},
		{"groups", "reset-offsets", "g", "--topic", "t"},
		{"groups", "reset-offsets", "g", "--to-earliest"},
		{"groups", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--to-latest"},
		{"dump"},
		{"topics", "list", "--timeout", "soon"},
	}
	for _, args := range cases {
		r := runCLI(t, "", args...)
		r.expect(t, exitUsage, args...)
		if !strings.HasPrefix(r.stderr, "kvlog: ") {
			t.Errorf("kvlog %v: stderr %q does not start with the error", args, r.stderr)
		}
	}
}

func TestUnreachableBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"topics", "list"},
		{"put", "t", "k", "v"},
		{"get", "t", "k"},
		{"replay", "t"},
		{"consume", "t", "--exit"},
		{"groups", "list"},
	} {
		full := append([]string{"--bootstrap", addr, "--timeout", "3s"}, args...)
		r := runCLI(t, "", full...)
		r.expect(t, exitFailure, full...)
		if !strings.Contains(r.stderr, "unreachable") {
			t.Errorf("kvlog %v: stderr %q does not say the broker is unreachable", args, r.stderr)
		}
	}
	r := runCLI(t, "", "cleaner", "status", "--http", addr, "--timeout", "3s")
	r.expect(t, exitFailure)
	if !strings.Contains(r.stderr, "unreachable") {
		t.Errorf("cleaner status: %q", r.stderr)
	}
}

func TestBootstrapFromEnv(t *testing.T) {
	t.Setenv("KVLOG_BOOTSTRAP", "10.0.0.1:1234, 10.0.0.2:1234")
	a := &app{}
	root := a.rootCmd()
	if err := root.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.brokers(), " "); got != "10.0.0.1:1234 10.0.0.2:1234" {
		t.Errorf("brokers from KVLOG_BOOTSTRAP: %q", got)
	}
}

func TestParseFormat(t *testing.T) {
	f, err := parseFormat(`%t/%p@%o %k=%v %K %S %%\n`)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.parts) == 0 {
		t.Fatal("no parts")
	}
	if _, err := parseFormat("abc%"); err == nil {
		t.Error("a trailing % was accepted")
	}
	if unescape(`a\tb\\n`) != "a\tb\\n" {
		t.Errorf("unescape: %q", unescape(`a\tb\\n`))
	}
}
