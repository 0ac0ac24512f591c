package server

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/security"
)

// AlterUserScramCredentials: v0
//
// Upserts and deletes users' SCRAM credentials. An upsertion carries the
// salt and the salted password (the client hashed the password); the
// broker keeps salt, StoredKey, ServerKey and iterations in the metadata
// store, as Kafka does. Per user, as Kafka answers: an empty name is
// UNACCEPTABLE_CREDENTIAL, an unknown mechanism UNSUPPORTED_SASL_MECHANISM,
// iterations outside 4096..16384 UNACCEPTABLE_CREDENTIAL, the same user
// and mechanism twice DUPLICATE_RESOURCE, deleting a credential that does
// not exist RESOURCE_NOT_FOUND; a user with any of these is left
// unchanged. Connections already authenticated keep their sessions; new
// authentications use the new credentials at once.
//
// Until authorization (ACLs) is implemented, any client that can reach a
// listener may call this: docs/security.md.
func init() {
	regKey(kmsg.AlterUserSCRAMCredentials, 0, 0, (*Server).handleAlterUserScramCredentials)
}

func (s *Server) handleAlterUserScramCredentials(r *request) {
	req := r.kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	st, ok := s.meta.(metastore.ScramStore)
	failed := map[string]*kmsg.AlterUserSCRAMCredentialsResponseResult{}
	fail := func(user string, code int16, msg string) {
		if failed[user] != nil {
			return
		}
		res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		res.User, res.ErrorCode, res.ErrorMessage = user, code, kmsg.StringPtr(msg)
		failed[user] = &res
	}
	type change struct {
		mech  string
		cred  string // "" deletes
		iters int32
	}
	byUser := map[string][]change{}
	var order []string
	add := func(user string, c change) {
		if _, ok := byUser[user]; !ok {
			order = append(order, user)
		}
		byUser[user] = append(byUser[user], c)
	}
	for _, d := range req.Deletions {
		switch m := security.ScramName(d.Mechanism); {
		case d.Name == "":
			fail("", kerr.UnacceptableCredential.Code, "Username must not be empty")
		case m == "":
			fail(d.Name, kerr.UnsupportedSaslMechanism.Code, "Unknown SCRAM mechanism")
		default:
			add(d.Name, change{mech: m})
		}
	}
	for _, u := range req.Upsertions {
		m := security.ScramName(u.Mechanism)
		switch {
		case u.Name == "":
			fail("", kerr.UnacceptableCredential.Code, "Username must not be empty")
			continue
		case m == "":
			fail(u.Name, kerr.UnsupportedSaslMechanism.Code, "Unknown SCRAM mechanism")
			continue
		case u.Iterations < security.ScramMinIterations:
			fail(u.Name, kerr.UnacceptableCredential.Code, "Too few iterations")
			continue
		case u.Iterations > security.ScramMaxIterations:
			fail(u.Name, kerr.UnacceptableCredential.Code, "Too many iterations")
			continue
		case len(u.Salt) == 0 || len(u.SaltedPassword) == 0:
			fail(u.Name, kerr.UnacceptableCredential.Code, "Salt and salted password must not be empty")
			continue
		}
		c, err := security.NewScramCredential(m, u.Salt, u.SaltedPassword, int(u.Iterations))
		if err != nil {
			fail(u.Name, kerr.UnacceptableCredential.Code, err.Error())
			continue
		}
		add(u.Name, change{mech: m, cred: c.String(), iters: u.Iterations})
	}
	sort.Strings(order)
	for _, user := range order {
		if failed[user] != nil {
			continue
		}
		seen := map[string]bool{}
		for _, c := range byUser[user] {
			if seen[c.mech] {
				fail(user, kerr.DuplicateResource.Code, "A user credential cannot be altered twice in the same request")
			}
			seen[c.mech] = true
		}
		if failed[user] != nil {
			continue
		}
		if !ok {
			fail(user, kerr.UnsupportedVersion.Code, "the metadata store keeps no SCRAM credentials")
			continue
		}
		creds, err := st.ScramCredentials(user)
		if err != nil {
			fail(user, errCode(err), err.Error())
			continue
		}
		for _, c := range byUser[user] {
			if c.cred == "" {
				if _, exists := creds[c.mech]; !exists {
					fail(user, kerr.ResourceNotFound.Code, "Attempt to delete a user credential that does not exist")
				}
				delete(creds, c.mech)
			}
		}
		if failed[user] != nil {
			continue
		}
		for _, c := range byUser[user] {
			if c.cred != "" {
				creds[c.mech] = c.cred
			}
		}
		if err := st.SetScramCredentials(user, creds); err != nil {
			r.log().Error("storing SCRAM credentials failed", "user", user, "err", err)
			fail(user, errCode(err), "storing the credentials failed: "+err.Error())
			continue
		}
		r.log().Info("SCRAM credentials altered", "user", user, "mechanisms", len(creds))
		res := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		res.User = user
		resp.Results = append(resp.Results, res)
	}
	names := make([]string, 0, len(failed))
	for u := range failed {
		names = append(names, u)
	}
	sort.Strings(names)
	for _, u := range names {
		resp.Results = append(resp.Results, *failed[u])
	}
	r.reply(resp)
}
