package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/client"
	"github.com/kvlog/kvlog/client/clienttest"
)

// TestUserProfilesRebuild: profiles written through one service instance are
// all there in a second instance started afterwards.
func TestUserProfilesRebuild(t *testing.T) {
	b := clienttest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	open := func() *client.Table {
		tbl, err := client.Open(ctx, b.Brokers(), "user-profiles", client.WithCreateTopic(client.TopicSpec{Partitions: 3}))
		if err != nil {
			t.Fatal(err)
		}
		return tbl
	}
	do := func(srv *httptest.Server, method, path, body string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t1 := open()
	s1 := httptest.NewServer(handler(t1))
	for _, u := range []string{"alice", "bob", "carol"} {
		if code, body := do(s1, "PUT", "/users/"+u, `{"name":"`+u+`"}`); code != 200 {
			t.Fatalf("PUT %s: %d %s", u, code, body)
		}
	}
	if code, _ := do(s1, "PUT", "/users/x", "not json"); code != 400 {
		t.Errorf("PUT non-JSON: %d", code)
	}
	if code, _ := do(s1, "DELETE", "/users/bob", ""); code != 204 {
		t.Fatalf("DELETE bob: %d", code)
	}
	if code, body := do(s1, "GET", "/users/alice", ""); code != 200 || body != `{"name":"alice"}` {
		t.Fatalf("GET alice right after PUT: %d %q", code, body)
	}
	s1.Close()
	t1.Close()

	t2 := open()
	defer t2.Close()
	s2 := httptest.NewServer(handler(t2))
	defer s2.Close()
	if code, body := do(s2, "GET", "/users", ""); code != 200 || strings.TrimSpace(body) != `{"alice":{"name":"alice"},"carol":{"name":"carol"}}` {
		t.Fatalf("rebuilt state: %d %s", code, body)
	}
	if code, _ := do(s2, "GET", "/users/bob", ""); code != 404 {
		t.Errorf("deleted bob: %d", code)
	}
}
