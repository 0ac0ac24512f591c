package config

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Described is one config as DescribeConfigs reports it: its entry (value
// and source), its synonyms in priority order, and what its definition
// says.
type Described struct {
	Entry     Entry
	Synonyms  []Entry
	Type      kmsg.ConfigType
	Doc       string
	ReadOnly  bool
	Sensitive bool
}

// DescribeTopic reports a topic's configs with overrides (names nil:
// all); unknown names are left out, as Kafka does.
func (l *Layers) DescribeTopic(overrides map[string]string, names []string) []Described {
	if names == nil {
		names = TopicNames()
	}
	var out []Described
	for _, n := range names {
		d := LookupTopicDef(n)
		if d == nil {
			continue
		}
		out = append(out, Described{
			Entry:    l.Topic(n, overrides),
			Synonyms: l.TopicSynonyms(n, overrides),
			Type:     d.Type,
			Doc:      d.Doc,
		})
	}
	return out
}

// DescribeBroker reports a broker's configs, or with clusterDefaults the
// cluster-wide dynamic defaults (only those set) (names nil: all,
// listener-scoped keys set included); unknown names are left out.
func (l *Layers) DescribeBroker(clusterDefaults bool, names []string) []Described {
	if names == nil {
		names = append(BrokerNames(), l.ListenerKeysSet()...)
		sort.Strings(names)
	}
	var out []Described
	for _, n := range names {
		d := BrokerDef(n)
		if d == nil {
			continue
		}
		var e Entry
		if clusterDefaults {
			v, ok := l.DynamicDefaultValue(n)
			if !ok {
				continue
			}
			e = Entry{Name: n, Value: v, Source: kmsg.ConfigSourceDynamicDefaultBrokerConfig}
		} else {
			e = l.Broker(n)
		}
		out = append(out, Described{
			Entry:     e,
			Synonyms:  l.BrokerSynonyms(n),
			Type:      d.Type,
			Doc:       d.Doc,
			ReadOnly:  !d.Dynamic,
			Sensitive: d.Sensitive,
		})
	}
	return out
}
