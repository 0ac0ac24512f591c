package server

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/acl"
)

// BenchmarkRequestAuthorization: what authorization adds to one Produce
// request naming 5 topics (the dispatcher's table lookup and the
// handler's filter-style WRITE check of each topic) with 10 and 10,000
// ACLs in place (literal and prefixed, 2,000 principals). The cost must
// not grow with the number of ACLs; docs/security.md has the figures.
func BenchmarkRequestAuthorization(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("acls=%d", n), func(b *testing.B) {
			all := map[acl.Pattern][]acl.Entry{}
			for i := 0; i < n; i++ {
				p := acl.Pattern{Type: kmsg.ACLResourceTypeTopic, Name: fmt.Sprintf("topic-%d", i), PatternType: kmsg.ACLResourcePatternTypeLiteral}
				if i%3 == 0 {
					p = acl.Pattern{Type: kmsg.ACLResourceTypeTopic, Name: fmt.Sprintf("team-%d-", i%101), PatternType: kmsg.ACLResourcePatternTypePrefixed}
				}
				all[p] = append(all[p], acl.Entry{Principal: fmt.Sprintf("User:u%d", i%2000), Host: "*",
					Operation: kmsg.ACLOperationWrite, Permission: kmsg.ACLPermissionTypeAllow})
			}
			all[acl.Pattern{Type: kmsg.ACLResourceTypeTopic, Name: "app-", PatternType: kmsg.ACLResourcePatternTypePrefixed}] = []acl.Entry{
				{Principal: "User:app", Host: "*", Operation: kmsg.ACLOperationWrite, Permission: kmsg.ACLPermissionTypeAllow}}
			a := acl.New(acl.Config{})
			a.Replace(all)
			s := &Server{authz: &authorizer{a: a, audit: slog.New(slog.NewTextHandler(io.Discard, nil))}, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			c := &conn{s: s, ip: "10.1.2.3", l: &listener{name: "CLIENTS"}}
			c.setPrincipal("User:app")
			req := kmsg.NewPtrProduceRequest()
			for i := 0; i < 5; i++ {
				rt := kmsg.NewProduceRequestTopic()
				rt.Topic = fmt.Sprintf("app-topic-%d", i)
				req.Topics = append(req.Topics, rt)
			}
			r := &request{s: s, c: c, hdr: requestHeader{key: kmsg.Produce.Int16(), version: 9}, kreq: req}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !s.authorizeAPI(r) {
					b.Fatal("refused")
				}
				allowed := r.authorizedNames(opWrite, resTopic, topicNames(req.Topics, func(t *kmsg.ProduceRequestTopic) string { return t.Topic }))
				if len(allowed) != 5 {
					b.Fatal("denied")
				}
			}
		})
	}
}
