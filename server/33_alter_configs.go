package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AlterConfigs: v0-2
//
// Replaces the whole set of dynamic configs of a TOPIC or BROKER resource
// (keys not given return to their defaults). Values are validated against
// the config table (INVALID_CONFIG naming the key and reason), persisted in
// the metadata store and applied to the logs at once.
//
// Version notes:
//   - v2: flexible.
func init() { regKey(kmsg.AlterConfigs, 0, 2, (*Server).handleAlterConfigs) }

func (s *Server) handleAlterConfigs(r *request) {
	req := r.kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType = rr.ResourceType
		sr.ResourceName = rr.ResourceName
		configs := map[string]string{}
		err := r.authorizeConfigResource(opAlterConfigs, rr.ResourceType, rr.ResourceName)
		for _, c := range rr.Configs {
			if err != nil {
				break
			}
			if _, dup := configs[c.Name]; dup {
				err = topicErrf(kerr.InvalidRequest, "config %q appears more than once", c.Name)
				break
			}
			if c.Value == nil {
				continue // null: back to the default
			}
			configs[c.Name] = *c.Value
		}
		if err == nil {
			err = s.alterResource(rr.ResourceType, rr.ResourceName, configs, req.ValidateOnly)
		}
		if err != nil {
			sr.ErrorCode = errCode(err)
			sr.ErrorMessage = errMessage(err)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	r.reply(resp)
}
