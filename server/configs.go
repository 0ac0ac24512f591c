package server

import (
	"maps"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/config"
)

// Shared by DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.

// brokerResource checks a BROKER resource name: "" (cluster default) or
// this broker's id.
func (s *Server) brokerResource(name string) error {
	if name == "" || name == s.nodeIDString() {
		return nil
	}
	if _, err := strconv.Atoi(name); err != nil {
		return topicErrf(kerr.InvalidRequest, "broker resource name %q is not a broker id", name)
	}
	return topicErrf(kerr.InvalidRequest, "broker %s is not this broker (%s)", name, s.nodeIDString())
}

// checkBrokerConfigs validates a complete set of dynamic configs for a
// broker resource.
func (s *Server) checkBrokerConfigs(resource string, configs map[string]string) error {
	for _, n := range sortedKeys(configs) {
		d := config.BrokerDef(n)
		if d == nil {
			return topicErrf(kerr.InvalidConfig, "unknown broker config %q", n)
		}
		if !d.Dynamic {
			return topicErrf(kerr.InvalidConfig, "broker config %s cannot be updated dynamically", n)
		}
		if err := d.Validate(configs[n]); err != nil {
			return topicErrf(kerr.InvalidConfig, "invalid value for broker config %s: %v", n, err)
		}
	}
	cur := s.layers.Load()
	next := cur.Next(resource, configs)
	if err := next.ValidateBroker(); err != nil {
		return topicErrf(kerr.InvalidConfig, "%v", err)
	}
	if err := config.CheckCleanerReconfig(cur, next); err != nil {
		return topicErrf(kerr.InvalidConfig, "%v", err)
	}
	if err := s.checkListenerSecurity(next); err != nil {
		return topicErrf(kerr.InvalidConfig, "%v", err)
	}
	return nil
}

// alterResource validates and (unless validateOnly) applies a complete set
// of configs to a TOPIC or BROKER resource.
func (s *Server) alterResource(typ kmsg.ConfigResourceType, name string, configs map[string]string, validateOnly bool) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if s.topic(name) == nil {
			return topicErrf(kerr.UnknownTopicOrPartition, "unknown topic %q", name)
		}
		if err := s.layers.Load().ValidateTopicConfigs(configs); err != nil {
			return topicErrf(kerr.InvalidConfig, "%v", err)
		}
		if validateOnly {
			return nil
		}
		return s.setTopicConfigs(name, configs)
	case kmsg.ConfigResourceTypeBroker:
		if err := s.brokerResource(name); err != nil {
			return err
		}
		if err := s.checkBrokerConfigs(name, configs); err != nil {
			return err
		}
		if validateOnly {
			return nil
		}
		return s.setBrokerConfigs(name, configs)
	default:
		return topicErrf(kerr.InvalidRequest, "config resource type %v is not supported", typ)
	}
}

// currentConfigs is a resource's current dynamic configs (the base for
// IncrementalAlterConfigs).
func (s *Server) currentConfigs(typ kmsg.ConfigResourceType, name string) (map[string]string, error) {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		t := s.topic(name)
		if t == nil {
			return nil, topicErrf(kerr.UnknownTopicOrPartition, "unknown topic %q", name)
		}
		return maps.Clone(t.configs), nil
	case kmsg.ConfigResourceTypeBroker:
		if err := s.brokerResource(name); err != nil {
			return nil, err
		}
		l := s.layers.Load()
		if name == "" {
			return l.DynamicDefault(), nil
		}
		return l.DynamicBroker(), nil
	default:
		return nil, topicErrf(kerr.InvalidRequest, "config resource type %v is not supported", typ)
	}
}

func sortedKeys(m map[string]string) []string { return config.SortedKeys(m) }

// Typed reads of the broker keys through the current layers (dynamic
// changes included). A key the config tables do not define, or read as a
// type it is not, panics: see config.Layers.

func (s *Server) brokerInt(name string) int64 { return s.layers.Load().Int(name) }

func (s *Server) brokerBool(name string) bool { return s.layers.Load().Bool(name) }

func msConfig(s *Server, name string) time.Duration { return s.layers.Load().Duration(name) }
