package httpapi

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
)

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

// TestHTTPPathACL: what each path of the HTTP listener needs with an
// authorizer.
func TestHTTPPathACL(t *testing.T) {
	cluster := func(op acl.Operation) pathNeeds { return pathNeeds{op, kmsg.ACLResourceTypeCluster, acl.ClusterName} }
	for path, want := range map[string]pathNeeds{
		"/metrics":                   cluster(kmsg.ACLOperationDescribe),
		"/cleaner":                   cluster(kmsg.ACLOperationDescribe),
		"/debug/pprof/":              cluster(kmsg.ACLOperationAlter),
		"/debug/pprof/profile":       cluster(kmsg.ACLOperationAlter),
		"/v1/topics/users/keys/k1":   {kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, "users"},
		"/v1/topics/a.b-c_d/keys/x/": {kmsg.ACLOperationRead, kmsg.ACLResourceTypeTopic, "a.b-c_d"},
	} {
		got, ok := pathACL(path)
		if !ok || got != want {
			t.Errorf("%s: %+v %v, want %+v", path, got, ok, want)
		}
	}
	for _, path := range []string{"/ui/", "/ui", "/ui/topics/x"} {
		if _, ok := pathACL(path); ok {
			t.Errorf("%s: checked at the HTTP level; the broker checks the console's requests", path)
		}
	}
}
