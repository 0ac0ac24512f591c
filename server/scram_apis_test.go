package server

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/security"
)

// TestScramCredentialAPIs: AlterUserScramCredentials and
// DescribeUserScramCredentials answer as Kafka does, per user: bad
// iterations, unknown mechanisms, empty names, duplicates and deletions of
// missing credentials fail that user only; Describe lists mechanisms and
// iterations, every user when none is named, and RESOURCE_NOT_FOUND or
// DUPLICATE_RESOURCE for named ones.
func TestScramCredentialAPIs(t *testing.T) {
	b := startBroker(t)
	cl := b.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	up := func(name string, mech int8, iters int32) kmsg.AlterUserSCRAMCredentialsRequestUpsertion {
		u := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		u.Name, u.Mechanism, u.Iterations = name, mech, iters
		u.Salt, u.SaltedPassword = []byte("salt"), make([]byte, 32)
		return u
	}
	del := func(name string, mech int8) kmsg.AlterUserSCRAMCredentialsRequestDeletion {
		d := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
		d.Name, d.Mechanism = name, mech
		return d
	}
	alter := func(ups []kmsg.AlterUserSCRAMCredentialsRequestUpsertion, dels []kmsg.AlterUserSCRAMCredentialsRequestDeletion) map[string]int16 {
		req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
		req.Upsertions, req.Deletions = ups, dels
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int16{}
		for _, r := range resp.Results {
			out[r.User] = r.ErrorCode
		}
		return out
	}
	got := alter([]kmsg.AlterUserSCRAMCredentialsRequestUpsertion{
		up("alice", security.ScramTypeSHA256, 4096),
		up("alice", security.ScramTypeSHA512, 16384),
		up("few", security.ScramTypeSHA256, 4095),
		up("many", security.ScramTypeSHA512, 16385),
		up("odd", 7, 4096),
		up("", security.ScramTypeSHA256, 4096),
		up("twice", security.ScramTypeSHA256, 4096),
		up("twice", security.ScramTypeSHA256, 8192),
	}, []kmsg.AlterUserSCRAMCredentialsRequestDeletion{del("ghost", security.ScramTypeSHA256)})
	want := map[string]int16{
		"alice": 0, "few": kerr.UnacceptableCredential.Code, "many": kerr.UnacceptableCredential.Code,
		"odd": kerr.UnsupportedSaslMechanism.Code, "": kerr.UnacceptableCredential.Code,
		"twice": kerr.DuplicateResource.Code, "ghost": kerr.ResourceNotFound.Code,
	}
	for u, code := range want {
		if got[u] != code {
			t.Errorf("alter %q: code %d, want %d (all: %v)", u, got[u], code, got)
		}
	}
	describe := func(users ...string) *kmsg.DescribeUserSCRAMCredentialsResponse {
		req := kmsg.NewPtrDescribeUserSCRAMCredentialsRequest()
		for _, u := range users {
			r := kmsg.NewDescribeUserSCRAMCredentialsRequestUser()
			r.Name = u
			req.Users = append(req.Users, r)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	all := describe()
	if len(all.Results) != 1 || all.Results[0].User != "alice" || len(all.Results[0].CredentialInfos) != 2 ||
		all.Results[0].CredentialInfos[0].Iterations != 4096 || all.Results[0].CredentialInfos[1].Iterations != 16384 {
		t.Fatalf("describe all: %+v", all.Results)
	}
	named := describe("alice", "ghost", "dup", "dup", "")
	codes := map[string]int16{}
	for _, r := range named.Results {
		codes[r.User] = r.ErrorCode
	}
	if len(named.Results) != 4 || codes["alice"] != 0 || codes["ghost"] != kerr.ResourceNotFound.Code ||
		codes["dup"] != kerr.DuplicateResource.Code || codes[""] != kerr.ResourceNotFound.Code {
		t.Fatalf("describe named: %+v", named.Results)
	}
	// The stored credential authenticates the salted password it came from.
	c, ok, err := b.s.scramCredential("alice", security.ScramSHA256)
	if err != nil || !ok || c.Iterations != 4096 || string(c.Salt) != "salt" {
		t.Fatalf("stored: %+v %v %v", c, ok, err)
	}
	if got := alter(nil, []kmsg.AlterUserSCRAMCredentialsRequestDeletion{del("alice", security.ScramTypeSHA256), del("alice", security.ScramTypeSHA512)}); got["alice"] != 0 {
		t.Fatalf("delete: %v", got)
	}
	if all := describe(); len(all.Results) != 0 {
		t.Fatalf("after deletion: %+v", all.Results)
	}
}
