package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeKeys is a lookup listener answering as the broker does: raw answers
// (the value as the body, metadata in X-Kvlog-* headers), JSON ones with
// ?format=json, 404 for a missing key, and some odd answers by key. With
// other set, it redirects key "redirect" there (the leader, where that
// key is missing).
func fakeKeys(t *testing.T, other string) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/topics/t/keys") {
			http.Error(w, "bad path "+r.URL.Path, http.StatusBadRequest)
			return
		}
		key, err := base64.RawURLEncoding.DecodeString(r.URL.Query().Get("key_b64"))
		if err != nil {
			t.Errorf("key_b64 %q: %v", r.URL.Query().Get("key_b64"), err)
		}
		h := w.Header()
		meta := func(headers int) {
			h.Set("X-Kvlog-Partition", "2")
			h.Set("X-Kvlog-Stable-Offset", "100")
			h.Set("X-Kvlog-Offset", "42")
			h.Set("X-Kvlog-Timestamp", "1700000000000")
			h.Set("X-Kvlog-Header-Count", fmt.Sprint(headers))
			h.Set("Content-Type", "application/octet-stream")
		}
		switch string(key) {
		case "a":
			meta(0)
			h.Set("Content-Length", "2")
			w.Write([]byte("va"))
		case "chunked":
			meta(0)
			w.Write([]byte("part1-"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
		case "close":
			meta(0)
			h.Set("Connection", "close")
			w.Write([]byte("vc"))
		case "headers":
			if r.URL.Query().Get("format") != "json" {
				meta(1)
				w.Write([]byte("vh"))
				return
			}
			h.Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"topic":"t","partition":2,"found":true,"key_b64":"aGVhZGVycw==","offset":43,"timestamp":1700000000001,"value_b64":"dmg=","headers":[{"key":"trace","value_b64":"eA=="}],"stable_offset":100}`)
		case "missing", "redirect":
			if string(key) == "redirect" && other != "" {
				http.Redirect(w, r, other+r.URL.RequestURI(), http.StatusTemporaryRedirect)
				return
			}
			h.Set("X-Kvlog-Partition", "1")
			h.Set("X-Kvlog-Stable-Offset", "100")
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"KEY_NOT_FOUND","message":"no live value"}`)
		case "follower":
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":"NOT_LEADER_OR_FOLLOWER","message":"this broker does not lead t-2"}`)
		case "slow":
			<-r.Context().Done()
		default:
			if !strings.HasPrefix(string(key), "echo-") {
				t.Errorf("unexpected key %q", key)
				return
			}
			meta(0)
			w.Write(key)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// TestLookupOwnTransport: Lookup's own HTTP/1.1 transport reads raw
// answers (Content-Length and chunked), asks again as JSON for a record
// with headers, follows a redirect to another listener, reuses its
// connections, sends again on a new connection when the broker closed an
// idle one, and gives up on a connection its context ended.
func TestLookupOwnTransport(t *testing.T) {
	leader, leaderConns := fakeKeys(t, "")
	srv, conns := fakeKeys(t, leader.URL)
	ctx := context.Background()
	opts := LookupOptions{HTTP: srv.URL}
	lookup := func(key string) (LookupResult, error) { return Lookup(ctx, "t", []byte(key), opts) }

	for i := 0; i < 5; i++ {
		res, err := lookup("a")
		if err != nil || !res.Found || string(res.Value) != "va" || res.Partition != 2 || res.Offset != 42 || res.StableOffset != 100 ||
			res.Timestamp.UnixMilli() != 1700000000000 || string(res.Key) != "a" || res.Headers != nil {
			t.Fatalf("lookup a: %+v, %v", res, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 lookups one after the other opened %d connections, want 1", n)
	}
	if res, err := lookup("chunked"); err != nil || string(res.Value) != "part1-part2" {
		t.Fatalf("chunked answer: %+v, %v", res, err)
	}
	res, err := lookup("headers")
	if err != nil || !res.Found || string(res.Value) != "vh" || res.Offset != 43 || len(res.Headers) != 1 || res.Headers[0].Key != "trace" || string(res.Headers[0].Value) != "x" {
		t.Fatalf("record with headers: %+v, %v", res, err)
	}
	if res, err := lookup("missing"); err != nil || res.Found || res.Partition != 1 || res.StableOffset != 100 {
		t.Fatalf("missing key: %+v, %v", res, err)
	}
	var le *LookupError
	if _, err := lookup("follower"); !errors.As(err, &le) || le.Code != "NOT_LEADER_OR_FOLLOWER" || le.Status != http.StatusServiceUnavailable {
		t.Fatalf("error answer: %v", err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections after answers that keep the connection, want 1", n)
	}
	if res, err := lookup("close"); err != nil || string(res.Value) != "vc" {
		t.Fatalf("Connection: close: %+v, %v", res, err)
	}
	if res, err := lookup("a"); err != nil || string(res.Value) != "va" || conns.Load() != 2 {
		t.Fatalf("after Connection: close: %+v, %v, %d connections (want 2)", res, err, conns.Load())
	}

	// The broker closes the idle connection: the next lookup sends again.
	srv.CloseClientConnections()
	if res, err := lookup("a"); err != nil || string(res.Value) != "va" {
		t.Fatalf("after the broker closed the idle connection: %+v, %v", res, err)
	}

	// A redirect to the leader's listener.
	if res, err := lookup("redirect"); err != nil || res.Found || res.Partition != 1 || leaderConns.Load() != 1 {
		t.Fatalf("redirected lookup: %+v, %v (%d connections to the leader)", res, err, leaderConns.Load())
	}

	// A context ending mid-answer.
	before := conns.Load()
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := Lookup(cctx, "t", []byte("slow"), opts); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lookup past its deadline: %v", err)
	}
	if res, err := lookup("a"); err != nil || string(res.Value) != "va" {
		t.Fatalf("after a lookup's deadline: %+v, %v", res, err)
	}
	if n := conns.Load(); n != before+1 {
		t.Fatalf("%d new connections after the timed-out lookup, want 1 (its connection is not reused)", n-before)
	}
}

// TestLookupConcurrent: concurrent lookups on the own transport's
// connections each get their own answer, also while the broker closes
// connections under them.
func TestLookupConcurrent(t *testing.T) {
	srv, _ := fakeKeys(t, "")
	opts := LookupOptions{HTTP: srv.URL}
	ctx := context.Background()
	const workers, each = 16, 200
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for i := 0; i < each; i++ {
				key := fmt.Sprintf("echo-%d-%d", w, i)
				res, err := Lookup(ctx, "t", []byte(key), opts)
				if err != nil || !res.Found || string(res.Value) != key {
					errs <- fmt.Errorf("lookup %s: %q, %v", key, res.Value, err)
					return
				}
				if w == 0 && i%100 == 99 {
					srv.CloseClientConnections()
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
