package config

import (
	"errors"
	"log/slog"
	"maps"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefFor finds the definition of a key for a resource type.
func DefFor(typ kmsg.ConfigResourceType, name string) *Def {
	if typ == kmsg.ConfigResourceTypeTopic {
		if d := topicDefs[name]; d != nil {
			return &d.Def
		}
		return nil
	}
	return BrokerDef(name)
}

// SortedKeys is m's keys, sorted.
func SortedKeys(m map[string]string) []string { return SortedKeysOf(m) }

// Sanitize builds the config layers from the static config and the
// dynamic broker configs kept in the metadata store. A stored value that
// does not pass today's validation (stored before a bound existed, or by a
// broker that did not check it) never stops the broker: it is logged and
// left out, so the static or default value applies, and stays in the store
// for the operator to correct (DescribeConfigs shows what applies).
func Sanitize(static, dynBroker, dynDefault map[string]string, logger *slog.Logger) *Layers {
	l := &Layers{static: static, dynBroker: maps.Clone(dynBroker), dynDefault: maps.Clone(dynDefault)}
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
		for _, n := range SortedKeys(ly.m) {
			d := BrokerDef(n)
			switch {
			case d == nil:
				drop(ly.m, ly.resource, n, errUnknownDynamic)
			case !d.Dynamic:
				drop(ly.m, ly.resource, n, errNotDynamic)
			default:
				if err := d.Validate(ly.m[n]); err != nil {
					drop(ly.m, ly.resource, n, err)
				}
			}
		}
	}
	// Rules across keys: leave out the one key whose absence satisfies
	// them, else every dynamic key.
	for len(l.dynBroker)+len(l.dynDefault) > 0 {
		err := l.ValidateBroker()
		if err == nil {
			break
		}
		fixed := false
		for _, ly := range layers {
			for _, n := range SortedKeys(ly.m) {
				v := ly.m[n]
				delete(ly.m, n)
				if l.ValidateBroker() == nil {
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
				for _, n := range SortedKeys(ly.m) {
					drop(ly.m, ly.resource, n, err)
				}
			}
		}
	}
	return NewLayers(l.static, l.dynBroker, l.dynDefault)
}

var (
	errUnknownDynamic = errors.New("unknown broker config")
	errNotDynamic     = errors.New("not a dynamic broker config")
)

// SanitizeTopicConfigs removes from a stored topic's overrides the
// values that do not pass today's validation (logged; the broker default
// applies), so a bad stored value never stops the broker or reaches the
// engine.
func SanitizeTopicConfigs(topic string, overrides map[string]string, l *Layers, logger *slog.Logger) {
	for _, n := range SortedKeys(overrides) {
		d := topicDefs[n]
		var err error
		if d == nil {
			err = errors.New("unknown topic config")
		} else {
			err = d.Validate(overrides[n])
		}
		if err != nil {
			logger.Error("ignoring an invalid topic config from the metadata store; the broker default applies",
				"topic", topic, "config", n, "value", overrides[n], "err", err)
			delete(overrides, n)
		}
	}
	if err := l.ValidateTopicConfigs(overrides); err != nil {
		for _, n := range SortedKeys(overrides) {
			logger.Error("ignoring a topic config from the metadata store that conflicts with another; the broker default applies",
				"topic", topic, "config", n, "value", overrides[n], "err", err)
			delete(overrides, n)
			if l.ValidateTopicConfigs(overrides) == nil {
				return
			}
		}
	}
}
