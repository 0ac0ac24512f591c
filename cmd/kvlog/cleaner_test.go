package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvlog/kvlog/cleaner/cleanerstatus"
)

// statusServer serves body at path and records every path asked for.
func statusServer(t *testing.T, path string, body []byte) (*httptest.Server, func() []string) {
	t.Helper()
	var (
		mu    sync.Mutex
		asked []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), asked...)
	}
}

// TestCleanerStatusRows: the CLI reads the broker's status document
// (cleanerstatus.Status) at cleanerstatus.Path and shows each partition with
// what its last clean reclaimed and, for an uncleanable one, the cause.
func TestCleanerStatusRows(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	st := cleanerstatus.Status{Enabled: true, Threads: 1, Config: cleanerstatus.Config{IOMaxBytesPerSecond: cleanerstatus.Unlimited}, Partitions: []cleanerstatus.PartitionStatus{
		{Topic: "t", Partition: 1, State: "idle", DirtyRatio: 0.5, FirstDirtyOffset: 42, LastCleanTime: &at,
			LastPass: &cleanerstatus.Pass{BytesRead: 1000, BytesWritten: 300}},
		{Topic: "t", Partition: 0, State: "uncleanable", Uncleanable: true, Error: "cleaner: corrupt batch"},
	}}
	body, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	srv, asked := statusServer(t, cleanerstatus.Path, body)
	got, err := fetchCleanerStatus(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ps := cleanerRows(got)
	if len(ps) != 2 {
		t.Fatalf("%d rows: %+v", len(ps), ps)
	}
	p0, p1 := ps[0], ps[1]
	if p0.Partition != 0 || p0.State != "uncleanable" || p0.Cause != "cleaner: corrupt batch" || p0.BytesReclaimed != nil || p0.LastClean != "" {
		t.Errorf("uncleanable partition: %+v", p0)
	}
	if p1.Partition != 1 || p1.State != "idle" || p1.DirtyRatio == nil || *p1.DirtyRatio != 0.5 ||
		p1.FirstDirtyOffset == nil || *p1.FirstDirtyOffset != 42 || p1.LastClean != "2025-01-02T03:04:05Z" ||
		p1.BytesReclaimed == nil || *p1.BytesReclaimed != 700 {
		t.Errorf("cleaned partition: %+v", p1)
	}
	if a := asked(); len(a) != 1 || a[0] != cleanerstatus.Path {
		t.Errorf("asked for %v, want only %s", a, cleanerstatus.Path)
	}
}

// TestCleanerStatusOnePath: the CLI asks for cleanerstatus.Path only; a
// listener without it is an error, not a reason to try other paths.
func TestCleanerStatusOnePath(t *testing.T) {
	body, _ := json.Marshal(cleanerstatus.Status{Partitions: []cleanerstatus.PartitionStatus{{Topic: "t"}}})
	srv, asked := statusServer(t, "/status", body)
	_, err := fetchCleanerStatus(context.Background(), srv.URL)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("status served elsewhere than %s: %v, want a 404 error", cleanerstatus.Path, err)
	}
	if a := asked(); len(a) != 1 || a[0] != cleanerstatus.Path {
		t.Errorf("asked for %v, want only %s", a, cleanerstatus.Path)
	}
	// Not a status document: an error naming the URL.
	srv, _ = statusServer(t, cleanerstatus.Path, []byte(`[1, 2]`))
	if _, err := fetchCleanerStatus(context.Background(), srv.URL); err == nil || !strings.Contains(err.Error(), srv.URL+cleanerstatus.Path) {
		t.Fatalf("a JSON array as the status: %v", err)
	}
}

// TestCleanerStatusBasicAuth: against an HTTP listener with
// kvlog.http.auth=basic, `kvlog cleaner status` sends the broker user from
// $KVLOG_HTTP_USER/$KVLOG_HTTP_PASSWORD (or the --http URL), says what to
// set on a 401, and never prints the password.
func TestCleanerStatusBasicAuth(t *testing.T) {
	body, _ := json.Marshal(cleanerstatus.Status{Partitions: []cleanerstatus.PartitionStatus{{Topic: "t", State: "idle"}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ops" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="kvlog"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("KVLOG_HTTP_USER", "")
	r := runCLI(t, "", "cleaner", "status", "--http", srv.URL, "-o", "json")
	if r.code == exitOK || !strings.Contains(r.stderr, "KVLOG_HTTP_USER") {
		t.Fatalf("without credentials: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Setenv("KVLOG_HTTP_USER", "ops")
	t.Setenv("KVLOG_HTTP_PASSWORD", "s3cret")
	r = runCLI(t, "", "cleaner", "status", "--http", srv.URL, "-o", "json")
	r.expect(t, exitOK, "cleaner", "status")
	if !strings.Contains(r.stdout, `"t"`) {
		t.Fatalf("status: %q", r.stdout)
	}
	t.Setenv("KVLOG_HTTP_USER", "")
	withUser := strings.Replace(srv.URL, "http://", "http://ops:wrongpass@", 1)
	r = runCLI(t, "", "cleaner", "status", "--http", withUser, "-o", "json")
	if r.code == exitOK || strings.Contains(r.stderr, "wrongpass") {
		t.Fatalf("wrong password in the URL: exit %d, stderr %q", r.code, r.stderr)
	}
	withUser = strings.Replace(srv.URL, "http://", "http://ops:s3cret@", 1)
	runCLI(t, "", "cleaner", "status", "--http", withUser, "-o", "json").expect(t, exitOK, "cleaner", "status", "(user in URL)")
}
