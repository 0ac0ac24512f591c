package config

import (
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Entry is one resolved value with where it came from.
type Entry struct {
	Name   string
	Value  string
	Null   bool // no value (a key with a null default and nothing set)
	Source kmsg.ConfigSource
}

// Layers holds every source of configuration values below topic
// overrides: the static file, this broker's dynamic configs and the
// cluster-wide dynamic defaults. It is immutable: a change builds a new
// one (the broker keeps it behind an atomic pointer and swaps it whole),
// so readers need no lock.
//
// Every value in it was validated when it entered (Parse, the AlterConfigs
// path through Next, Sanitize for stored values), and NewLayers resolves
// every key of the broker table into a typed value once. Reading a key
// the tables do not define, or reading a key as a type it is not, is a
// programming error and panics: there is no silent zero.
type Layers struct {
	static     map[string]string // server.properties (validated)
	dynBroker  map[string]string // dynamic, this broker (resource name = node id)
	dynDefault map[string]string // dynamic, cluster default (resource name "")

	vals map[string]value // every table key's effective value, parsed
}

// value is one broker key's effective value, parsed as its type.
type value struct {
	typ  kmsg.ConfigType
	null bool
	s    string
	n    int64
	f    float64
	b    bool
}

// NewLayers builds layers from already validated maps (the maps are kept:
// the caller must not change them afterwards).
func NewLayers(static, dynBroker, dynDefault map[string]string) *Layers {
	l := &Layers{static: static, dynBroker: dynBroker, dynDefault: dynDefault}
	l.vals = make(map[string]value, len(brokerDefs))
	for name, d := range brokerDefs {
		l.vals[name] = parseValue(d, l.Broker(name))
	}
	return l
}

// parseValue parses a validated entry as d's type.
func parseValue(d *Def, e Entry) value {
	v := value{typ: d.Type, null: e.Null, s: e.Value}
	if e.Null {
		return v
	}
	var err error
	switch d.Type {
	case kmsg.ConfigTypeInt, kmsg.ConfigTypeShort, kmsg.ConfigTypeLong:
		v.n, err = strconv.ParseInt(strings.TrimSpace(e.Value), 10, 64)
	case kmsg.ConfigTypeDouble:
		v.f, err = strconv.ParseFloat(strings.TrimSpace(e.Value), 64)
	case kmsg.ConfigTypeBoolean:
		v.b, err = parseBool(e.Value)
	}
	if err != nil {
		panic(fmt.Sprintf("config: %s=%q (%s) did not pass validation when it was set: %v", d.Name, e.Value, e.Source, err))
	}
	return v
}

// Static is the server.properties layer. Callers must not change it.
func (l *Layers) Static() map[string]string { return l.static }

// DynamicBroker is this broker's dynamic configs, DynamicDefault the
// cluster-wide dynamic defaults (copies).
func (l *Layers) DynamicBroker() map[string]string  { return maps.Clone(l.dynBroker) }
func (l *Layers) DynamicDefault() map[string]string { return maps.Clone(l.dynDefault) }

// DynamicDefaultValue is the cluster-wide dynamic default of a key.
func (l *Layers) DynamicDefaultValue(name string) (string, bool) {
	v, ok := l.dynDefault[name]
	return v, ok
}

// Next is l with a broker resource's dynamic configs replaced (resource
// "": the cluster-wide defaults; otherwise this broker's), not yet
// validated across keys (ValidateBroker).
func (l *Layers) Next(resource string, configs map[string]string) *Layers {
	if resource == "" {
		return NewLayers(l.static, l.dynBroker, configs)
	}
	return NewLayers(l.static, configs, l.dynDefault)
}

// Broker returns a broker key's effective value and source. The key must
// be one BrokerDef knows (check names that come from clients first).
func (l *Layers) Broker(name string) Entry {
	if v, ok := l.dynBroker[name]; ok {
		return Entry{name, v, false, kmsg.ConfigSourceDynamicBrokerConfig}
	}
	if v, ok := l.dynDefault[name]; ok {
		return Entry{name, v, false, kmsg.ConfigSourceDynamicDefaultBrokerConfig}
	}
	if v, ok := l.static[name]; ok {
		return Entry{name, v, false, kmsg.ConfigSourceStaticBrokerConfig}
	}
	d := BrokerDef(name)
	if d == nil {
		panic("config: unknown broker config " + strconv.Quote(name))
	}
	if d.NoDefault {
		return Entry{Name: name, Null: true, Source: kmsg.ConfigSourceDefaultConfig}
	}
	return Entry{name, d.Default, false, kmsg.ConfigSourceDefaultConfig}
}

// typed is a broker key's parsed value; it panics on a key outside the
// table (listener-scoped forms included: those are parsed on demand) or
// one whose type is not among types.
func (l *Layers) typed(name string, types ...kmsg.ConfigType) value {
	v, ok := l.vals[name]
	if !ok {
		d := BrokerDef(name)
		if d == nil {
			panic("config: unknown broker config " + strconv.Quote(name))
		}
		v = parseValue(d, l.Broker(name))
	}
	for _, t := range types {
		if v.typ == t {
			return v
		}
	}
	panic(fmt.Sprintf("config: broker config %s is a %v, read as %v", name, v.typ, types))
}

// notNull panics when v is null: a key with no default read as a number.
func notNull(name string, v value) value {
	if v.null {
		panic("config: broker config " + name + " has no value (no default, not set): check Broker(name).Null first")
	}
	return v
}

// Int is an integer key's value (INT, SHORT or LONG).
func (l *Layers) Int(name string) int64 {
	return notNull(name, l.typed(name, kmsg.ConfigTypeInt, kmsg.ConfigTypeShort, kmsg.ConfigTypeLong)).n
}

// Float is a DOUBLE key's value.
func (l *Layers) Float(name string) float64 {
	return notNull(name, l.typed(name, kmsg.ConfigTypeDouble)).f
}

// Bool is a BOOLEAN key's value.
func (l *Layers) Bool(name string) bool {
	return notNull(name, l.typed(name, kmsg.ConfigTypeBoolean)).b
}

// String is a STRING, PASSWORD or LIST key's value ("" when null).
func (l *Layers) String(name string) string {
	return l.typed(name, kmsg.ConfigTypeString, kmsg.ConfigTypePassword, kmsg.ConfigTypeList).s
}

// List is a LIST key's items.
func (l *Layers) List(name string) []string {
	return SplitList(l.typed(name, kmsg.ConfigTypeList).s)
}

// Duration is a time key's value: the unit is the key's suffix (.ms,
// .seconds, .minutes, .hours); negative values are -1 (unlimited) and
// values past Duration's range saturate, as MsDuration.
func (l *Layers) Duration(name string) time.Duration {
	return unitDuration(name, l.Int(name))
}

// unitDuration converts n in the unit name's suffix names.
func unitDuration(name string, n int64) time.Duration {
	var unit time.Duration
	switch {
	case strings.HasSuffix(name, ".ms"):
		unit = time.Millisecond
	case strings.HasSuffix(name, ".seconds"):
		unit = time.Second
	case strings.HasSuffix(name, ".minutes"):
		unit = time.Minute
	case strings.HasSuffix(name, ".hours"):
		unit = time.Hour
	default:
		panic("config: " + name + " is not a time key (.ms, .seconds, .minutes or .hours)")
	}
	if n < 0 {
		return -1
	}
	if n > math.MaxInt64/int64(unit) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(n) * unit
}

// BrokerSynonyms lists every source that sets a broker key, highest
// priority first, ending with its default (as DescribeConfigs v1+ reports).
func (l *Layers) BrokerSynonyms(names ...string) []Entry {
	var out []Entry
	for _, n := range names {
		if v, ok := l.dynBroker[n]; ok {
			out = append(out, Entry{n, v, false, kmsg.ConfigSourceDynamicBrokerConfig})
		}
	}
	for _, n := range names {
		if v, ok := l.dynDefault[n]; ok {
			out = append(out, Entry{n, v, false, kmsg.ConfigSourceDynamicDefaultBrokerConfig})
		}
	}
	for _, n := range names {
		if v, ok := l.static[n]; ok {
			out = append(out, Entry{n, v, false, kmsg.ConfigSourceStaticBrokerConfig})
		}
	}
	for _, n := range names {
		if d := BrokerDef(n); d != nil && !d.NoDefault {
			out = append(out, Entry{n, d.Default, false, kmsg.ConfigSourceDefaultConfig})
		}
	}
	return out
}

// BrokerNames is every key of the broker table, sorted (the per-listener
// forms are not in it: ListenerKeysSet lists those some layer sets).
func BrokerNames() []string { return SortedKeysOf(brokerDefs) }

// SortedKeysOf is a map's keys, sorted.
func SortedKeysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ListenerKeysSet lists the per-listener keys (listener.name.<l>.<key>)
// some layer sets (DescribeConfigs of every broker key includes them).
func (l *Layers) ListenerKeysSet() []string {
	seen := map[string]bool{}
	for _, m := range []map[string]string{l.static, l.dynBroker, l.dynDefault} {
		for k := range m {
			if strings.HasPrefix(k, "listener.name.") && brokerDefs[k] == nil {
				seen[k] = true
			}
		}
	}
	return SortedKeysOf(seen)
}
