package server

import (
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/config"
)

// IncrementalAlterConfigs: v0-1
//
// Applies SET, DELETE, APPEND and SUBTRACT (the last two on LIST keys only)
// to a resource's current dynamic configs, then validates and applies the
// result exactly as AlterConfigs does.
//
// Version notes:
//   - v1: flexible.
func init() { regKey(kmsg.IncrementalAlterConfigs, 0, 1, (*Server).handleIncrementalAlterConfigs) }

func (s *Server) handleIncrementalAlterConfigs(r *request) {
	req := r.kreq.(*kmsg.IncrementalAlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewIncrementalAlterConfigsResponseResource()
		sr.ResourceType = rr.ResourceType
		sr.ResourceName = rr.ResourceName
		err := r.authorizeConfigResource(opAlterConfigs, rr.ResourceType, rr.ResourceName)
		if err == nil {
			err = s.incrementalAlter(&rr, req.ValidateOnly)
		}
		if err != nil {
			sr.ErrorCode = errCode(err)
			sr.ErrorMessage = errMessage(err)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	r.reply(resp)
}

func (s *Server) incrementalAlter(rr *kmsg.IncrementalAlterConfigsRequestResource, validateOnly bool) error {
	// Serialise read-modify-write against other alterations of the same
	// resource: setTopicConfigs/setBrokerConfigs take topicMu again, so
	// compute under alterMu.
	s.alterMu.Lock()
	defer s.alterMu.Unlock()
	configs, err := s.currentConfigs(rr.ResourceType, rr.ResourceName)
	if err != nil {
		return err
	}
	if configs == nil {
		configs = map[string]string{}
	}
	seen := map[string]bool{}
	for _, c := range rr.Configs {
		if seen[c.Name] {
			return topicErrf(kerr.InvalidRequest, "config %q appears more than once", c.Name)
		}
		seen[c.Name] = true
		d := config.DefFor(rr.ResourceType, c.Name)
		if d == nil {
			return topicErrf(kerr.InvalidConfig, "unknown config %q", c.Name)
		}
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if c.Value == nil {
				return topicErrf(kerr.InvalidRequest, "config %q: SET with a null value", c.Name)
			}
			configs[c.Name] = *c.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			delete(configs, c.Name)
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			if d.Type != kmsg.ConfigTypeList {
				return topicErrf(kerr.InvalidConfig, "config %q is not a list; APPEND and SUBTRACT need one", c.Name)
			}
			if c.Value == nil {
				return topicErrf(kerr.InvalidRequest, "config %q: %v with a null value", c.Name, c.Op)
			}
			cur, ok := configs[c.Name]
			if !ok {
				cur = s.effectiveValue(rr.ResourceType, rr.ResourceName, c.Name)
			}
			items := config.SplitList(cur)
			for _, v := range config.SplitList(*c.Value) {
				if c.Op == kmsg.IncrementalAlterConfigOpAppend {
					if !slices.Contains(items, v) {
						items = append(items, v)
					}
				} else {
					items = slices.DeleteFunc(items, func(x string) bool { return x == v })
				}
			}
			configs[c.Name] = strings.Join(items, ",")
		default:
			return topicErrf(kerr.InvalidRequest, "config %q: unknown operation %d", c.Name, c.Op)
		}
	}
	return s.alterResource(rr.ResourceType, rr.ResourceName, configs, validateOnly)
}

// effectiveValue is a key's current value for APPEND/SUBTRACT when the
// resource has no dynamic value for it.
func (s *Server) effectiveValue(typ kmsg.ConfigResourceType, resource, name string) string {
	l := s.layers.Load()
	if typ == kmsg.ConfigResourceTypeTopic {
		if t := s.topic(resource); t != nil {
			return l.Topic(name, t.configs).Value
		}
		return ""
	}
	if config.BrokerDef(name) == nil {
		return ""
	}
	return l.Broker(name).Value
}
