package server

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/config"
)

// DescribeConfigs: v0-4
//
// TOPIC resources report every topic key of the config table (or the ones
// named) with value, source and synonyms (topic override, dynamic broker,
// dynamic default, static broker, default). BROKER resources report this
// broker's keys (resource = node id) or the cluster-wide dynamic defaults
// (resource ""). Broker keys that are not dynamic are read-only; sensitive
// ones (passwords, private keys, JAAS text) are reported with a null value
// and IsSensitive, their synonyms too, as Kafka does.
//
// Version notes:
//   - v0: IsDefault instead of Source.
//   - v1: IncludeSynonyms, Source.
//   - v3: IncludeDocumentation, ConfigType.
//   - v4: flexible.
func init() { regKey(kmsg.DescribeConfigs, 0, 4, (*Server).handleDescribeConfigs) }

func (s *Server) handleDescribeConfigs(r *request) {
	req := r.kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType = rr.ResourceType
		sr.ResourceName = rr.ResourceName
		var (
			cfgs []config.Described
			err  error
		)
		err = r.authorizeConfigResource(opDescribeConfigs, rr.ResourceType, rr.ResourceName)
		switch {
		case err != nil:
		case rr.ResourceType == kmsg.ConfigResourceTypeTopic:
			if t := s.topic(rr.ResourceName); t == nil {
				err = topicErrf(kerr.UnknownTopicOrPartition, "unknown topic %q", rr.ResourceName)
			} else {
				cfgs = s.layers.Load().DescribeTopic(t.configs, rr.ConfigNames)
			}
		case rr.ResourceType == kmsg.ConfigResourceTypeBroker:
			if err = s.brokerResource(rr.ResourceName); err == nil {
				cfgs = s.layers.Load().DescribeBroker(rr.ResourceName == "", rr.ConfigNames)
			}
		default:
			err = topicErrf(kerr.InvalidRequest, "config resource type %v is not supported", rr.ResourceType)
		}
		if err != nil {
			sr.ErrorCode = errCode(err)
			sr.ErrorMessage = errMessage(err)
		}
		for _, c := range cfgs {
			sr.Configs = append(sr.Configs, describeEntry(req, c))
		}
		resp.Resources = append(resp.Resources, sr)
	}
	r.reply(resp)
}

func describeEntry(req *kmsg.DescribeConfigsRequest, c config.Described) kmsg.DescribeConfigsResponseResourceConfig {
	e := kmsg.NewDescribeConfigsResponseResourceConfig()
	e.Name = c.Entry.Name
	e.IsSensitive = c.Sensitive
	if !c.Entry.Null && !c.Sensitive {
		v := c.Entry.Value
		e.Value = &v
	}
	e.ReadOnly = c.ReadOnly
	e.IsDefault = c.Entry.Source == kmsg.ConfigSourceDefaultConfig
	e.Source = c.Entry.Source
	if req.IncludeSynonyms {
		for _, syn := range c.Synonyms {
			se := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
			se.Name = syn.Name
			if !syn.Null && !c.Sensitive {
				v := syn.Value
				se.Value = &v
			}
			se.Source = syn.Source
			e.ConfigSynonyms = append(e.ConfigSynonyms, se)
		}
	}
	e.ConfigType = c.Type
	if req.IncludeDocumentation {
		doc := c.Doc
		e.Documentation = &doc
	}
	return e
}
