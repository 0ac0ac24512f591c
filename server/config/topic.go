package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine"
)

// Synonym is a broker key that supplies a topic key's default. Its value is
// multiplied by Scale to get the topic value's unit (log.retention.hours →
// retention.ms); negative values stay -1 as in Kafka.
type Synonym struct {
	Name  string
	Scale int64
}

// TopicDef is one topic-level config key with its broker-default
// synonyms in priority order.
type TopicDef struct {
	Def
	Synonyms []Synonym
}

// topicDefs is THE table of topic configs: CreateTopics validation,
// DescribeConfigs (value, source, synonyms), AlterConfigs and
// IncrementalAlterConfigs, and the conversion to engine.Config all read it.
var topicDefs = func() map[string]*TopicDef {
	defs := []*TopicDef{
		{Def{Name: "cleanup.policy", Type: kmsg.ConfigTypeList, Default: "delete", Check: listOf("compact", "delete"),
			Doc: "Retention policy for old log segments: delete, compact, or both (compact,delete)."},
			[]Synonym{{"log.cleanup.policy", 1}}},
		{Def{Name: "compression.type", Type: kmsg.ConfigTypeString, Default: "producer", Check: oneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
			Doc: "Final compression of the topic. kvlog stores batches as the producer sent them (producer); other values are accepted and reported."},
			[]Synonym{{"compression.type", 1}}},
		{Def{Name: "delete.retention.ms", Type: kmsg.ConfigTypeLong, Default: "86400000", Check: atLeast(0),
			Doc: "How long tombstones are retained on compacted topics after they are first cleaned."},
			[]Synonym{{"log.cleaner.delete.retention.ms", 1}}},
		{Def{Name: "file.delete.delay.ms", Type: kmsg.ConfigTypeLong, Default: "60000", Check: atLeast(0),
			Doc: "Delay before a deleted segment file is removed from the file system."},
			[]Synonym{{"log.segment.delete.delay.ms", 1}}},
		{Def{Name: "flush.messages", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(1),
			Doc: "Force an fsync after this many messages."},
			[]Synonym{{"log.flush.interval.messages", 1}}},
		{Def{Name: "flush.ms", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(0),
			Doc: "Force an fsync when data has been unflushed this long."},
			[]Synonym{{"log.flush.interval.ms", 1}}},
		{Def{Name: "index.interval.bytes", Type: kmsg.ConfigTypeInt, Default: "4096", Check: atLeast(0),
			Doc: "Bytes of log between offset index entries."},
			[]Synonym{{"log.index.interval.bytes", 1}}},
		{Def{Name: "kvlog.key.index.enable", Type: kmsg.ConfigTypeBoolean, Default: "true",
			Doc: "kvlog: keep a key index on each partition when cleanup.policy contains compact, for key lookups (GET /v1/topics/{topic}/keys/{key} on the HTTP listener)."},
			[]Synonym{{"kvlog.key.index.enable", 1}}},
		{Def{Name: "max.compaction.lag.ms", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(1),
			Doc: "Maximum time a record stays ineligible for compaction."},
			[]Synonym{{"log.cleaner.max.compaction.lag.ms", 1}}},
		{Def{Name: "max.message.bytes", Type: kmsg.ConfigTypeInt, Default: "1048588", Check: atLeast(0),
			Doc: "Largest record batch size allowed."},
			[]Synonym{{"message.max.bytes", 1}}},
		{Def{Name: "message.timestamp.after.max.ms", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(0),
			Doc: "Largest allowed amount a CreateTime timestamp may be ahead of the broker's time."},
			[]Synonym{{"log.message.timestamp.after.max.ms", 1}}},
		{Def{Name: "message.timestamp.before.max.ms", Type: kmsg.ConfigTypeLong, Default: maxLong, Check: atLeast(0),
			Doc: "Largest allowed amount a CreateTime timestamp may be behind the broker's time."},
			[]Synonym{{"log.message.timestamp.before.max.ms", 1}}},
		{Def{Name: "message.timestamp.type", Type: kmsg.ConfigTypeString, Default: "CreateTime", Check: oneOf("CreateTime", "LogAppendTime"),
			Doc: "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime)."},
			[]Synonym{{"log.message.timestamp.type", 1}}},
		{Def{Name: "min.cleanable.dirty.ratio", Type: kmsg.ConfigTypeDouble, Default: "0.5", Check: betweenFloat(0, 1),
			Doc: "Minimum ratio of dirty log to total log for a log to be eligible for cleaning."},
			[]Synonym{{"log.cleaner.min.cleanable.ratio", 1}}},
		{Def{Name: "min.compaction.lag.ms", Type: kmsg.ConfigTypeLong, Default: "0", Check: atLeast(0),
			Doc: "Minimum time a record remains uncompacted."},
			[]Synonym{{"log.cleaner.min.compaction.lag.ms", 1}}},
		{Def{Name: "min.insync.replicas", Type: kmsg.ConfigTypeInt, Default: "1", Check: atLeast(1),
			Doc: "Minimum in-sync replicas for an acks=all write to succeed."},
			[]Synonym{{"min.insync.replicas", 1}}},
		{Def{Name: "preallocate", Type: kmsg.ConfigTypeBoolean, Default: "false",
			Doc: "Preallocate segment files (accepted; kvlog does not preallocate)."},
			[]Synonym{{"log.preallocate", 1}}},
		{Def{Name: "retention.bytes", Type: kmsg.ConfigTypeLong, Default: "-1",
			Doc: "Maximum partition size before old segments are deleted; -1 is unlimited."},
			[]Synonym{{"log.retention.bytes", 1}}},
		{Def{Name: "retention.ms", Type: kmsg.ConfigTypeLong, Default: "604800000", Check: atLeast(-1),
			Doc: "Maximum age of a segment before it is deleted; -1 is unlimited."},
			[]Synonym{{"log.retention.ms", 1}, {"log.retention.minutes", 60000}, {"log.retention.hours", 3600000}}},
		{Def{Name: "segment.bytes", Type: kmsg.ConfigTypeInt, Default: "1073741824", Check: atLeast(14),
			Doc: "Segment file size."},
			[]Synonym{{"log.segment.bytes", 1}}},
		{Def{Name: "segment.index.bytes", Type: kmsg.ConfigTypeInt, Default: "10485760", Check: atLeast(4),
			Doc: "Size of the offset and time indexes of a segment."},
			[]Synonym{{"log.index.size.max.bytes", 1}}},
		{Def{Name: "segment.jitter.ms", Type: kmsg.ConfigTypeLong, Default: "0", Check: atLeast(0),
			Doc: "Maximum random jitter subtracted from segment.ms."},
			[]Synonym{{"log.roll.jitter.ms", 1}, {"log.roll.jitter.hours", 3600000}}},
		{Def{Name: "segment.ms", Type: kmsg.ConfigTypeLong, Default: "604800000", Check: atLeast(1),
			Doc: "Roll a new segment after this long even if the current one is not full."},
			[]Synonym{{"log.roll.ms", 1}, {"log.roll.hours", 3600000}}},
		{Def{Name: "unclean.leader.election.enable", Type: kmsg.ConfigTypeBoolean, Default: "false",
			Doc: "Allow out-of-sync replicas to become leader (no effect on a single node)."},
			[]Synonym{{"unclean.leader.election.enable", 1}}},
	}
	m := make(map[string]*TopicDef, len(defs))
	for _, d := range defs {
		m[d.Name] = d
	}
	return m
}()

// LookupTopicDef is the definition of a topic key, nil if kvlog does not know it.
func LookupTopicDef(name string) *TopicDef { return topicDefs[name] }

// TopicNames is every topic key, sorted (a copy).
func TopicNames() []string { return append([]string(nil), topicNames...) }

// topicNames is topicDefs' keys, sorted.
var topicNames = func() []string {
	names := make([]string, 0, len(topicDefs))
	for n := range topicDefs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}()

// scaleSynonym converts a broker synonym's value to the topic key's unit.
func scaleSynonym(v string, scale int64) string {
	if scale == 1 {
		return v
	}
	n := intOf(v)
	if n < 0 {
		return "-1"
	}
	if n > math.MaxInt64/scale {
		return maxLong
	}
	return strconv.FormatInt(n*scale, 10)
}

// TopicSynonyms lists every source of a topic key, highest priority first:
// the topic override, the broker synonyms (converted to the topic key's
// unit) and the topic default.
func (l *Layers) TopicSynonyms(name string, overrides map[string]string) []Entry {
	d := topicDefs[name]
	if d == nil {
		return nil
	}
	var out []Entry
	if v, ok := overrides[name]; ok {
		out = append(out, Entry{name, v, false, kmsg.ConfigSourceDynamicTopicConfig})
	}
	names := make([]string, len(d.Synonyms))
	scales := make(map[string]int64, len(d.Synonyms))
	for i, s := range d.Synonyms {
		names[i] = s.Name
		scales[s.Name] = s.Scale
	}
	for _, e := range l.BrokerSynonyms(names...) {
		if e.Source == kmsg.ConfigSourceDefaultConfig {
			continue // the topic's own default ends the list
		}
		e.Value = scaleSynonym(e.Value, scales[e.Name])
		out = append(out, e)
	}
	out = append(out, Entry{d.Synonyms[0].Name, d.Default, false, kmsg.ConfigSourceDefaultConfig})
	return out
}

// Topic is a topic key's effective value and source (Null for a key the
// topic table does not define).
func (l *Layers) Topic(name string, overrides map[string]string) Entry {
	syn := l.TopicSynonyms(name, overrides)
	if len(syn) == 0 {
		return Entry{Name: name, Null: true}
	}
	e := syn[0]
	if e.Source != kmsg.ConfigSourceDynamicTopicConfig {
		// The winning synonym's value is reported under the topic key.
		e.Name = name
	}
	return e
}

// topicTyped is a topic key's effective value parsed as its type; an
// unknown key or a key of a type not among types panics (programming
// error), as Layers' broker reads do.
func (l *Layers) topicTyped(name string, overrides map[string]string, types ...kmsg.ConfigType) value {
	d := topicDefs[name]
	if d == nil {
		panic("config: unknown topic config " + strconv.Quote(name))
	}
	for _, t := range types {
		if d.Type == t {
			return notNull(name, parseValue(&d.Def, l.Topic(name, overrides)))
		}
	}
	panic(fmt.Sprintf("config: topic config %s is a %v, read as %v", name, d.Type, types))
}

// TopicInt is an integer topic key's effective value.
func (l *Layers) TopicInt(name string, overrides map[string]string) int64 {
	return l.topicTyped(name, overrides, kmsg.ConfigTypeInt, kmsg.ConfigTypeShort, kmsg.ConfigTypeLong).n
}

// TopicFloat is a DOUBLE topic key's effective value.
func (l *Layers) TopicFloat(name string, overrides map[string]string) float64 {
	return l.topicTyped(name, overrides, kmsg.ConfigTypeDouble).f
}

// TopicBool is a BOOLEAN topic key's effective value.
func (l *Layers) TopicBool(name string, overrides map[string]string) bool {
	return l.topicTyped(name, overrides, kmsg.ConfigTypeBoolean).b
}

// TopicString is a STRING or LIST topic key's effective value.
func (l *Layers) TopicString(name string, overrides map[string]string) string {
	return l.topicTyped(name, overrides, kmsg.ConfigTypeString, kmsg.ConfigTypeList).s
}

// TopicDuration is a topic time key's effective value (see Duration).
func (l *Layers) TopicDuration(name string, overrides map[string]string) time.Duration {
	return unitDuration(name, l.TopicInt(name, overrides))
}

// TopicPolicy reports a topic's cleanup.policy: compaction and deletion.
func (l *Layers) TopicPolicy(overrides map[string]string) (compact, delete bool) {
	for _, p := range SplitList(l.TopicString("cleanup.policy", overrides)) {
		switch p {
		case "compact":
			compact = true
		case "delete":
			delete = true
		}
	}
	return compact, delete
}

// ValidateTopicConfigs checks a complete set of topic overrides: every key
// known, every value valid, and the cross-key rules Kafka applies. The
// error names the key and the reason (for INVALID_CONFIG messages).
func (l *Layers) ValidateTopicConfigs(overrides map[string]string) error {
	names := make([]string, 0, len(overrides))
	for n := range overrides {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := topicDefs[n]
		if d == nil {
			return fmt.Errorf("unknown topic config %q", n)
		}
		if err := d.Validate(overrides[n]); err != nil {
			return fmt.Errorf("invalid value for topic config %s: %w", n, err)
		}
	}
	minLag := l.TopicInt("min.compaction.lag.ms", overrides)
	maxLag := l.TopicInt("max.compaction.lag.ms", overrides)
	if minLag > maxLag {
		return fmt.Errorf("conflict topic config setting: min.compaction.lag.ms (%d) > max.compaction.lag.ms (%d)", minLag, maxLag)
	}
	return nil
}

// MsDuration converts Kafka milliseconds to a Duration: negative means
// unlimited (-1), and values past Duration's range saturate.
func MsDuration(ms int64) time.Duration { return unitDuration(".ms", ms) }

// EngineConfig resolves a topic's effective configuration into the
// engine's per-log settings.
func (l *Layers) EngineConfig(overrides map[string]string) engine.Config {
	n := func(name string) int64 { return l.TopicInt(name, overrides) }
	ms := func(name string) time.Duration { return l.TopicDuration(name, overrides) }
	c := engine.DefaultConfig()
	c.SegmentBytes = n("segment.bytes")
	c.SegmentTime = ms("segment.ms")
	c.SegmentJitter = ms("segment.jitter.ms")
	c.SegmentIndexBytes = int(n("segment.index.bytes"))
	c.IndexIntervalBytes = int(n("index.interval.bytes"))
	c.MaxMessageBytes = int(n("max.message.bytes"))
	c.RetentionTime = ms("retention.ms")
	c.RetentionBytes = n("retention.bytes")
	if c.RetentionBytes < 0 {
		c.RetentionBytes = -1
	}
	c.Compact, c.Delete = l.TopicPolicy(overrides)
	c.MaxCompactionLag = ms("max.compaction.lag.ms")
	c.LogAppendTime = l.TopicString("message.timestamp.type", overrides) == "LogAppendTime"
	c.FlushMessages = n("flush.messages")
	c.FlushInterval = ms("flush.ms")
	c.FileDeleteDelay = ms("file.delete.delay.ms")
	c.Preallocate = l.TopicBool("preallocate", overrides)
	c.KeyIndex = l.TopicBool("kvlog.key.index.enable", overrides)
	c.TimestampBeforeMaxMs = n("message.timestamp.before.max.ms")
	c.TimestampAfterMaxMs = n("message.timestamp.after.max.ms")
	c.ProducerIDExpiration = l.Duration("producer.id.expiration.ms")
	return c
}
