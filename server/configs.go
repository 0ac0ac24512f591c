package server

import (
	"errors"
	"log/slog"
	"maps"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Shared by DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.

// describedConfig is one config as DescribeConfigs reports it.
type describedConfig struct {
	entry     configEntry
	synonyms  []configEntry
	typ       kmsg.ConfigType
	doc       string
	readOnly  bool
	sensitive bool
}

// describeTopicConfigs reports a topic's configs (names nil: all).
func (s *Server) describeTopicConfigs(t *topic, names []string) []describedConfig {
	layers := s.layers.Load()
	if names == nil {
		names = topicConfigNames
	}
	var out []describedConfig
	for _, n := range names {
		d := topicConfigDefs[n]
		if d == nil {
			continue // Kafka omits unknown names
		}
		out = append(out, describedConfig{
			entry:    layers.topicValue(n, t.configs),
			synonyms: layers.topicSynonyms(n, t.configs),
			typ:      d.typ,
			doc:      d.doc,
		})
	}
	return out
}

// describeBrokerConfigs reports this broker's configs (resource = node
// id) or the cluster-wide dynamic defaults (resource "").
func (s *Server) describeBrokerConfigs(resource string, names []string) []describedConfig {
	layers := s.layers.Load()
	if names == nil {
		for n := range brokerConfigDefs {
			names = append(names, n)
		}
		names = append(names, listenerKeysSet(layers)...)
		sortStrings(names)
	}
	var out []describedConfig
	for _, n := range names {
		d := brokerDef(n)
		if d == nil {
			continue
		}
		var e configEntry
		if resource == "" {
			v, ok := layers.dynDefault[n]
			if !ok {
				continue
			}
			e = configEntry{n, v, false, kmsg.ConfigSourceDynamicDefaultBrokerConfig}
		} else {
			e = layers.brokerValue(n)
		}
		out = append(out, describedConfig{
			entry:     e,
			synonyms:  layers.brokerSynonyms(n),
			typ:       d.typ,
			doc:       d.doc,
			readOnly:  !d.dynamic,
			sensitive: d.sensitive,
		})
	}
	return out
}

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
		d := brokerDef(n)
		if d == nil {
			return topicErrf(kerr.InvalidConfig, "unknown broker config %q", n)
		}
		if !d.dynamic {
			return topicErrf(kerr.InvalidConfig, "broker config %s cannot be updated dynamically", n)
		}
		if err := d.validate(configs[n]); err != nil {
			return topicErrf(kerr.InvalidConfig, "invalid value for broker config %s: %v", n, err)
		}
	}
	cur := s.layers.Load()
	next := &configLayers{static: cur.static, dynBroker: cur.dynBroker, dynDefault: cur.dynDefault}
	if resource == "" {
		next.dynDefault = configs
	} else {
		next.dynBroker = configs
	}
	if err := next.validateBroker(); err != nil {
		return topicErrf(kerr.InvalidConfig, "%v", err)
	}
	if err := checkCleanerReconfig(cur, next); err != nil {
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
		if err := s.layers.Load().validateTopicConfigs(configs); err != nil {
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
			return maps.Clone(l.dynDefault), nil
		}
		return maps.Clone(l.dynBroker), nil
	default:
		return nil, topicErrf(kerr.InvalidRequest, "config resource type %v is not supported", typ)
	}
}

// configDefFor finds the definition of a key for a resource type.
func configDefFor(typ kmsg.ConfigResourceType, name string) *configDef {
	if typ == kmsg.ConfigResourceTypeTopic {
		if d := topicConfigDefs[name]; d != nil {
			return &d.configDef
		}
		return nil
	}
	return brokerDef(name)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}

func sortStrings(s []string) { sort.Strings(s) }

// dynamicLayers builds the config layers from the static config and the
// dynamic broker configs kept in the metadata store. A stored value that
// does not pass today's validation (stored before a bound existed, or by a
// broker that did not check it) never stops the broker: it is logged and
// left out, so the static or default value applies, and stays in the store
// for the operator to correct (DescribeConfigs shows what applies).
func dynamicLayers(static, dynBroker, dynDefault map[string]string, logger *slog.Logger) *configLayers {
	l := &configLayers{static: static, dynBroker: maps.Clone(dynBroker), dynDefault: maps.Clone(dynDefault)}
	drop := func(layer map[string]string, resource, name string, err error) {
		logger.Error("ignoring an invalid dynamic broker config from the metadata store; the static or default value applies",
			"resource", resource, "config", name, "value", layer[name], "err", err)
		delete(layer, name)
	}
	layers := []struct {
		resource string
		m        map[string]string
	}{{"default", l.dynDefault}, {"broker", l.dynBroker}}
	for _, ly := range layers {
		for _, n := range sortedKeys(ly.m) {
			d := brokerDef(n)
			switch {
			case d == nil:
				drop(ly.m, ly.resource, n, errUnknownDynamic)
			case !d.dynamic:
				drop(ly.m, ly.resource, n, errNotDynamic)
			default:
				if err := d.validate(ly.m[n]); err != nil {
					drop(ly.m, ly.resource, n, err)
				}
			}
		}
	}
	// Rules across keys: leave out the one key whose absence satisfies
	// them, else every dynamic key.
	for len(l.dynBroker)+len(l.dynDefault) > 0 {
		err := l.validateBroker()
		if err == nil {
			break
		}
		fixed := false
		for _, ly := range layers {
			for _, n := range sortedKeys(ly.m) {
				v := ly.m[n]
				delete(ly.m, n)
				if l.validateBroker() == nil {
					ly.m[n] = v
					drop(ly.m, ly.resource, n, err)
					fixed = true
					break
				}
				ly.m[n] = v
			}
			if fixed {
				break
			}
		}
		if !fixed {
			for _, ly := range layers {
				for _, n := range sortedKeys(ly.m) {
					drop(ly.m, ly.resource, n, err)
				}
			}
		}
	}
	return l
}

var (
	errUnknownDynamic = errors.New("unknown broker config")
	errNotDynamic     = errors.New("not a dynamic broker config")
)

// dropInvalidTopicConfigs removes from a stored topic's overrides the
// values that do not pass today's validation (logged; the broker default
// applies), so a bad stored value never stops the broker or reaches the
// engine.
func dropInvalidTopicConfigs(topic string, overrides map[string]string, l *configLayers, logger *slog.Logger) {
	for _, n := range sortedKeys(overrides) {
		d := topicConfigDefs[n]
		var err error
		if d == nil {
			err = errors.New("unknown topic config")
		} else {
			err = d.validate(overrides[n])
		}
		if err != nil {
			logger.Error("ignoring an invalid topic config from the metadata store; the broker default applies",
				"topic", topic, "config", n, "value", overrides[n], "err", err)
			delete(overrides, n)
		}
	}
	if err := l.validateTopicConfigs(overrides); err != nil {
		for _, n := range sortedKeys(overrides) {
			logger.Error("ignoring a topic config from the metadata store that conflicts with another; the broker default applies",
				"topic", topic, "config", n, "value", overrides[n], "err", err)
			delete(overrides, n)
			if l.validateTopicConfigs(overrides) == nil {
				return
			}
		}
	}
}
