package server

import "github.com/twmb/franz-go/pkg/kmsg"

// ApiVersions: v0-3
//
// The response lists exactly the registry's keys and ranges.
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: flexible body (KIP-482) with client software name and version;
//     the response header stays v0 (no tag byte), handled in
//     appendResponseHeader.
//   - A version above 3 never reaches here: the connection answers it in
//     v0 with UNSUPPORTED_VERSION (conn.handleFrame).
func init() { regKey(kmsg.ApiVersions, 0, 3, (*Server).handleApiVersions) }

func (s *Server) handleApiVersions(r *request) {
	req := r.kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = s.apiVersionKeys()
	r.reply(resp)
}
