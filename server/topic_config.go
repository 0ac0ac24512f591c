package server

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/cleaner"
	"github.com/kvlog/kvlog/engine"
)

// synonym is a broker key that supplies a topic key's default. Its value is
// multiplied by scale to get the topic value's unit (log.retention.hours →
// retention.ms); negative values stay -1 as in Kafka.
type synonym struct {
	name  string
	scale int64
}

// topicConfigDef is one topic-level config key with its broker-default
// synonyms in priority order.
type topicConfigDef struct {
	configDef
	synonyms []synonym
}

// topicConfigDefs is THE table of topic configs: CreateTopics validation,
// DescribeConfigs (value, source, synonyms), AlterConfigs and
// IncrementalAlterConfigs, and the conversion to engine.Config all read it.
var topicConfigDefs = func() map[string]*topicConfigDef {
	defs := []*topicConfigDef{
		{configDef{name: "cleanup.policy", typ: kmsg.ConfigTypeList, def: "delete", check: listOf("compact", "delete"),
			doc: "Retention policy for old log segments: delete, compact, or both (compact,delete)."},
			[]synonym{{"log.cleanup.policy", 1}}},
		{configDef{name: "compression.type", typ: kmsg.ConfigTypeString, def: "producer", check: oneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
			doc: "Final compression of the topic. kvlog stores batches as the producer sent them (producer); other values are accepted and reported."},
			[]synonym{{"compression.type", 1}}},
		{configDef{name: "delete.retention.ms", typ: kmsg.ConfigTypeLong, def: "86400000", check: atLeast(0),
			doc: "How long tombstones are retained on compacted topics after they are first cleaned."},
			[]synonym{{"log.cleaner.delete.retention.ms", 1}}},
		{configDef{name: "file.delete.delay.ms", typ: kmsg.ConfigTypeLong, def: "60000", check: atLeast(0),
			doc: "Delay before a deleted segment file is removed from the file system."},
			[]synonym{{"log.segment.delete.delay.ms", 1}}},
		{configDef{name: "flush.messages", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(1),
			doc: "Force an fsync after this many messages."},
			[]synonym{{"log.flush.interval.messages", 1}}},
		{configDef{name: "flush.ms", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(0),
			doc: "Force an fsync when data has been unflushed this long."},
			[]synonym{{"log.flush.interval.ms", 1}}},
		{configDef{name: "index.interval.bytes", typ: kmsg.ConfigTypeInt, def: "4096", check: atLeast(0),
			doc: "Bytes of log between offset index entries."},
			[]synonym{{"log.index.interval.bytes", 1}}},
		{configDef{name: "kvlog.key.index.enable", typ: kmsg.ConfigTypeBoolean, def: "true",
			doc: "kvlog: keep a key index on each partition when cleanup.policy contains compact, for key lookups (GET /v1/topics/{topic}/keys/{key} on the HTTP listener)."},
			[]synonym{{"kvlog.key.index.enable", 1}}},
		{configDef{name: "max.compaction.lag.ms", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(1),
			doc: "Maximum time a record stays ineligible for compaction."},
			[]synonym{{"log.cleaner.max.compaction.lag.ms", 1}}},
		{configDef{name: "max.message.bytes", typ: kmsg.ConfigTypeInt, def: "1048588", check: atLeast(0),
			doc: "Largest record batch size allowed."},
			[]synonym{{"message.max.bytes", 1}}},
		{configDef{name: "message.timestamp.after.max.ms", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(0),
			doc: "Largest allowed amount a CreateTime timestamp may be ahead of the broker's time."},
			[]synonym{{"log.message.timestamp.after.max.ms", 1}}},
		{configDef{name: "message.timestamp.before.max.ms", typ: kmsg.ConfigTypeLong, def: maxLong, check: atLeast(0),
			doc: "Largest allowed amount a CreateTime timestamp may be behind the broker's time."},
			[]synonym{{"log.message.timestamp.before.max.ms", 1}}},
		{configDef{name: "message.timestamp.type", typ: kmsg.ConfigTypeString, def: "CreateTime", check: oneOf("CreateTime", "LogAppendTime"),
			doc: "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime)."},
			[]synonym{{"log.message.timestamp.type", 1}}},
		{configDef{name: "min.cleanable.dirty.ratio", typ: kmsg.ConfigTypeDouble, def: "0.5", check: betweenFloat(0, 1),
			doc: "Minimum ratio of dirty log to total log for a log to be eligible for cleaning."},
			[]synonym{{"log.cleaner.min.cleanable.ratio", 1}}},
		{configDef{name: "min.compaction.lag.ms", typ: kmsg.ConfigTypeLong, def: "0", check: atLeast(0),
			doc: "Minimum time a record remains uncompacted."},
			[]synonym{{"log.cleaner.min.compaction.lag.ms", 1}}},
		{configDef{name: "min.insync.replicas", typ: kmsg.ConfigTypeInt, def: "1", check: atLeast(1),
			doc: "Minimum in-sync replicas for an acks=all write to succeed."},
			[]synonym{{"min.insync.replicas", 1}}},
		{configDef{name: "preallocate", typ: kmsg.ConfigTypeBoolean, def: "false",
			doc: "Preallocate segment files (accepted; kvlog does not preallocate)."},
			[]synonym{{"log.preallocate", 1}}},
		{configDef{name: "retention.bytes", typ: kmsg.ConfigTypeLong, def: "-1",
			doc: "Maximum partition size before old segments are deleted; -1 is unlimited."},
			[]synonym{{"log.retention.bytes", 1}}},
		{configDef{name: "retention.ms", typ: kmsg.ConfigTypeLong, def: "604800000", check: atLeast(-1),
			doc: "Maximum age of a segment before it is deleted; -1 is unlimited."},
			[]synonym{{"log.retention.ms", 1}, {"log.retention.minutes", 60000}, {"log.retention.hours", 3600000}}},
		{configDef{name: "segment.bytes", typ: kmsg.ConfigTypeInt, def: "1073741824", check: atLeast(14),
			doc: "Segment file size."},
			[]synonym{{"log.segment.bytes", 1}}},
		{configDef{name: "segment.index.bytes", typ: kmsg.ConfigTypeInt, def: "10485760", check: atLeast(4),
			doc: "Size of the offset and time indexes of a segment."},
			[]synonym{{"log.index.size.max.bytes", 1}}},
		{configDef{name: "segment.jitter.ms", typ: kmsg.ConfigTypeLong, def: "0", check: atLeast(0),
			doc: "Maximum random jitter subtracted from segment.ms."},
			[]synonym{{"log.roll.jitter.ms", 1}, {"log.roll.jitter.hours", 3600000}}},
		{configDef{name: "segment.ms", typ: kmsg.ConfigTypeLong, def: "604800000", check: atLeast(1),
			doc: "Roll a new segment after this long even if the current one is not full."},
			[]synonym{{"log.roll.ms", 1}, {"log.roll.hours", 3600000}}},
		{configDef{name: "unclean.leader.election.enable", typ: kmsg.ConfigTypeBoolean, def: "false",
			doc: "Allow out-of-sync replicas to become leader (no effect on a single node)."},
			[]synonym{{"unclean.leader.election.enable", 1}}},
	}
	m := make(map[string]*topicConfigDef, len(defs))
	for _, d := range defs {
		m[d.name] = d
	}
	return m
}()

// topicConfigNames is topicConfigDefs' keys, sorted.
var topicConfigNames = func() []string {
	names := make([]string, 0, len(topicConfigDefs))
	for n := range topicConfigDefs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}()

// configEntry is one resolved value with where it came from.
type configEntry struct {
	name   string
	value  string
	null   bool // no value (a key with a null default and nothing set)
	source kmsg.ConfigSource
}

// configLayers holds every source of configuration values below topic
// overrides. It is immutable: a change builds a new one (Server.layers is
// an atomic pointer), so readers need no lock.
type configLayers struct {
	static     map[string]string // server.properties (validated)
	dynBroker  map[string]string // dynamic, this broker (resource name = node id)
	dynDefault map[string]string // dynamic, cluster default (resource name "")
}

// brokerValue returns a broker key's effective value and source.
func (l *configLayers) brokerValue(name string) configEntry {
	if v, ok := l.dynBroker[name]; ok {
		return configEntry{name, v, false, kmsg.ConfigSourceDynamicBrokerConfig}
	}
	if v, ok := l.dynDefault[name]; ok {
		return configEntry{name, v, false, kmsg.ConfigSourceDynamicDefaultBrokerConfig}
	}
	if v, ok := l.static[name]; ok {
		return configEntry{name, v, false, kmsg.ConfigSourceStaticBrokerConfig}
	}
	d := brokerDef(name)
	if d == nil || d.noDefault {
		return configEntry{name: name, null: true, source: kmsg.ConfigSourceDefaultConfig}
	}
	return configEntry{name, d.def, false, kmsg.ConfigSourceDefaultConfig}
}

// brokerSynonyms lists every source that sets a broker key, highest
// priority first, ending with its default (as DescribeConfigs v1+ reports).
func (l *configLayers) brokerSynonyms(names ...string) []configEntry {
	var out []configEntry
	for _, n := range names {
		if v, ok := l.dynBroker[n]; ok {
			out = append(out, configEntry{n, v, false, kmsg.ConfigSourceDynamicBrokerConfig})
		}
	}
	for _, n := range names {
		if v, ok := l.dynDefault[n]; ok {
			out = append(out, configEntry{n, v, false, kmsg.ConfigSourceDynamicDefaultBrokerConfig})
		}
	}
	for _, n := range names {
		if v, ok := l.static[n]; ok {
			out = append(out, configEntry{n, v, false, kmsg.ConfigSourceStaticBrokerConfig})
		}
	}
	for _, n := range names {
		if d := brokerDef(n); d != nil && !d.noDefault {
			out = append(out, configEntry{n, d.def, false, kmsg.ConfigSourceDefaultConfig})
		}
	}
	return out
}

// scaleSynonym converts a broker synonym's value to the topic key's unit.
func scaleSynonym(v string, scale int64) string {
	if scale == 1 {
		return v
	}
	n := mustInt(v)
	if n < 0 {
		return "-1"
	}
	if n > math.MaxInt64/scale {
		return maxLong
	}
	return strconv.FormatInt(n*scale, 10)
}

// topicSynonyms lists every source of a topic key, highest priority first:
// the topic override, the broker synonyms (converted to the topic key's
// unit) and the topic default.
func (l *configLayers) topicSynonyms(name string, overrides map[string]string) []configEntry {
	d := topicConfigDefs[name]
	if d == nil {
		return nil
	}
	var out []configEntry
	if v, ok := overrides[name]; ok {
		out = append(out, configEntry{name, v, false, kmsg.ConfigSourceDynamicTopicConfig})
	}
	names := make([]string, len(d.synonyms))
	scales := make(map[string]int64, len(d.synonyms))
	for i, s := range d.synonyms {
		names[i] = s.name
		scales[s.name] = s.scale
	}
	for _, e := range l.brokerSynonyms(names...) {
		if e.source == kmsg.ConfigSourceDefaultConfig {
			continue // the topic's own default ends the list
		}
		e.value = scaleSynonym(e.value, scales[e.name])
		out = append(out, e)
	}
	out = append(out, configEntry{d.synonyms[0].name, d.def, false, kmsg.ConfigSourceDefaultConfig})
	return out
}

// topicValue is a topic key's effective value and source.
func (l *configLayers) topicValue(name string, overrides map[string]string) configEntry {
	syn := l.topicSynonyms(name, overrides)
	if len(syn) == 0 {
		return configEntry{name: name, null: true}
	}
	e := syn[0]
	if e.source != kmsg.ConfigSourceDynamicTopicConfig {
		// The winning synonym's value is reported under the topic key.
		e.name = name
	}
	return e
}

// validateTopicConfigs checks a complete set of topic overrides: every key
// known, every value valid, and the cross-key rules Kafka applies. The
// error names the key and the reason (for INVALID_CONFIG messages).
func (l *configLayers) validateTopicConfigs(overrides map[string]string) error {
	names := make([]string, 0, len(overrides))
	for n := range overrides {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := topicConfigDefs[n]
		if d == nil {
			return fmt.Errorf("unknown topic config %q", n)
		}
		if err := d.validate(overrides[n]); err != nil {
			return fmt.Errorf("invalid value for topic config %s: %w", n, err)
		}
	}
	minLag := mustInt(l.topicValue("min.compaction.lag.ms", overrides).value)
	maxLag := mustInt(l.topicValue("max.compaction.lag.ms", overrides).value)
	if minLag > maxLag {
		return fmt.Errorf("conflict topic config setting: min.compaction.lag.ms (%d) > max.compaction.lag.ms (%d)", minLag, maxLag)
	}
	return nil
}

// msDuration converts Kafka milliseconds to a Duration: negative means
// unlimited (-1), and values past Duration's range saturate.
func msDuration(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ms) * time.Millisecond
}

// engineConfig resolves a topic's effective configuration into the
// engine's per-log settings.
func (l *configLayers) engineConfig(overrides map[string]string) engine.Config {
	get := func(name string) string { return l.topicValue(name, overrides).value }
	c := engine.DefaultConfig()
	c.SegmentBytes = mustInt(get("segment.bytes"))
	c.SegmentTime = msDuration(mustInt(get("segment.ms")))
	c.SegmentJitter = msDuration(mustInt(get("segment.jitter.ms")))
	c.SegmentIndexBytes = int(mustInt(get("segment.index.bytes")))
	c.IndexIntervalBytes = int(mustInt(get("index.interval.bytes")))
	c.MaxMessageBytes = int(mustInt(get("max.message.bytes")))
	c.RetentionTime = msDuration(mustInt(get("retention.ms")))
	c.RetentionBytes = mustInt(get("retention.bytes"))
	if c.RetentionBytes < 0 {
		c.RetentionBytes = -1
	}
	c.Compact, c.Delete = false, false
	for _, p := range splitList(get("cleanup.policy")) {
		switch p {
		case "compact":
			c.Compact = true
		case "delete":
			c.Delete = true
		}
	}
	c.MaxCompactionLag = msDuration(mustInt(get("max.compaction.lag.ms")))
	c.LogAppendTime = get("message.timestamp.type") == "LogAppendTime"
	c.FlushMessages = mustInt(get("flush.messages"))
	c.FlushInterval = msDuration(mustInt(get("flush.ms")))
	c.FileDeleteDelay = msDuration(mustInt(get("file.delete.delay.ms")))
	c.Preallocate = mustBool(get("preallocate"))
	c.KeyIndex = mustBool(get("kvlog.key.index.enable"))
	return c
}

// topicSettings are the topic values the server itself enforces (not the
// engine): produce-time timestamp bounds and min.insync.replicas; plus the
// cleaner's topic-level settings (cleaner.go).
type topicSettings struct {
	compact         bool
	logAppendTime   bool
	timestampBefore int64 // ms; MaxInt64 = unchecked
	timestampAfter  int64
	minInsync       int32
	cleaner         cleaner.TopicConfig
}

func (l *configLayers) topicSettings(overrides map[string]string) topicSettings {
	get := func(name string) string { return l.topicValue(name, overrides).value }
	s := topicSettings{
		logAppendTime:   get("message.timestamp.type") == "LogAppendTime",
		timestampBefore: mustInt(get("message.timestamp.before.max.ms")),
		timestampAfter:  mustInt(get("message.timestamp.after.max.ms")),
		minInsync:       int32(mustInt(get("min.insync.replicas"))),
		cleaner:         l.cleanerTopicConfig(overrides),
	}
	for _, p := range splitList(get("cleanup.policy")) {
		if p == "compact" {
			s.compact = true
		}
	}
	return s
}
