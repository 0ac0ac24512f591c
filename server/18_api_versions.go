package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions: v0-3
//
// The response lists exactly the registry's keys and ranges.
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: flexible body (KIP-482) with client software name and version;
//     the response header stays v0 (no tag byte), handled in
//     wire.AppendResponseHeader.
//   - A version above 3 never reaches here: the connection answers it
//     with unsupportedApiVersionsResponse (conn.handleFrame), as Kafka
//     does, and it is not counted as a bad request.
func init() { regKey(kmsg.ApiVersions, 0, 3, (*Server).handleApiVersions) }

// apiVersionsMax is the newest ApiVersions version served.
func (s *Server) apiVersionsMax() int16 {
	vr, _ := s.served(kmsg.ApiVersions.Int16())
	return vr.Max
}

// unsupportedApiVersionsResponse is Apache Kafka's answer to an
// ApiVersions request newer than the broker serves: a client does not
// know the broker's versions before its first request, so it sends its
// newest one. The body is encoded as v0 (whatever version was asked; the
// header is v0 as for every ApiVersions response) with UNSUPPORTED_VERSION
// and an ApiKeys list holding only ApiVersions' own range (KIP-511), and
// the connection stays open: the client retries at the newest version
// listed there.
func unsupportedApiVersionsResponse(max int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	k := kmsg.NewApiVersionsResponseApiKey()
	k.ApiKey = kmsg.ApiVersions.Int16()
	k.MinVersion = 0
	k.MaxVersion = max
	resp.ApiKeys = []kmsg.ApiVersionsResponseApiKey{k}
	return resp
}

func (s *Server) handleApiVersions(r *request) {
	req := r.kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.ApiKeys = s.apiVersionKeys()
	r.reply(resp)
}
