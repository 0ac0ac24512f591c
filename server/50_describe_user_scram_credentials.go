package server

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/metastore"
	"github.com/kvlog/kvlog/server/security"
)

// DescribeUserScramCredentials: v0
//
// Lists the SCRAM mechanisms and iteration counts of users' credentials
// (never the credentials): every user with one when Users is null or
// empty, sorted; otherwise each named user once, in request order, with
// RESOURCE_NOT_FOUND for a user without credentials or with an empty
// name, and DUPLICATE_RESOURCE for a user named twice — Kafka's answers.
// Credentials live in the metadata store (metastore.ScramStore).
func init() {
	regKey(kmsg.DescribeUserSCRAMCredentials, 0, 0, (*Server).handleDescribeUserScramCredentials)
}

func (s *Server) handleDescribeUserScramCredentials(r *request) {
	req := r.kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	st, ok := s.meta.(metastore.ScramStore)
	if !ok {
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		r.reply(resp)
		return
	}
	describe := func(user string, explicit bool) (kmsg.DescribeUserSCRAMCredentialsResponseResult, bool) {
		res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		res.User = user
		creds, err := st.ScramCredentials(user)
		if err != nil {
			res.ErrorCode = errCode(err)
			res.ErrorMessage = kmsg.StringPtr("reading the credentials failed: " + err.Error())
			return res, true
		}
		mechs := make([]string, 0, len(creds))
		for m := range creds {
			mechs = append(mechs, m)
		}
		sort.Strings(mechs)
		for _, m := range mechs {
			c, err := security.ParseScramCredential(creds[m])
			if err != nil || security.ScramType(m) == security.ScramTypeUnknown {
				continue
			}
			ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
			ci.Mechanism, ci.Iterations = security.ScramType(m), int32(c.Iterations)
			res.CredentialInfos = append(res.CredentialInfos, ci)
		}
		if len(res.CredentialInfos) == 0 {
			if !explicit {
				return res, false
			}
			res.ErrorCode = kerr.ResourceNotFound.Code
			res.ErrorMessage = kmsg.StringPtr("Attempt to describe a user credential that does not exist: " + user)
		}
		return res, true
	}
	if len(req.Users) == 0 {
		users, err := st.ScramUsers()
		if err != nil {
			resp.ErrorCode = errCode(err)
			resp.ErrorMessage = kmsg.StringPtr(err.Error())
		}
		for _, u := range users {
			if res, ok := describe(u, false); ok {
				resp.Results = append(resp.Results, res)
			}
		}
		r.reply(resp)
		return
	}
	count := map[string]int{}
	for _, u := range req.Users {
		count[u.Name]++
	}
	done := map[string]bool{}
	for _, u := range req.Users {
		if done[u.Name] {
			continue
		}
		done[u.Name] = true
		res := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		res.User = u.Name
		switch {
		case u.Name == "":
			res.ErrorCode = kerr.ResourceNotFound.Code
			res.ErrorMessage = kmsg.StringPtr("Username must not be empty")
		case count[u.Name] > 1:
			res.ErrorCode = kerr.DuplicateResource.Code
			res.ErrorMessage = kmsg.StringPtr("Cannot describe SCRAM credentials for the same user twice in a single request: " + u.Name)
		default:
			res, _ = describe(u.Name, true)
		}
		resp.Results = append(resp.Results, res)
	}
	r.reply(resp)
}
