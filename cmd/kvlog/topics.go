package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func (a *app) topicsCmd() *cobra.Command {
	cmd := groupCmd("topics", "Create, list, describe, delete topics and change their configs")
	cmd.AddCommand(a.topicsCreateCmd(), a.topicsListCmd(), a.topicsDescribeCmd(), a.topicsDeleteCmd(), a.topicsAlterConfigCmd(),
		a.topicsAddPartitionsCmd(), a.topicsDeleteRecordsCmd(), a.topicsOffsetsCmd())
	return cmd
}

// parseConfigs turns repeated key=value flags into a config map.
func parseConfigs(flag string, kvs []string) (map[string]*string, error) {
	out := make(map[string]*string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErr("--%s %q: want key=value", flag, kv)
		}
		out[k] = kadm.StringPtr(v)
	}
	return out, nil
}

func (a *app) topicsCreateCmd() *cobra.Command {
	var (
		partitions  int32
		rf          int16
		configs     []string
		compact     bool
		ifNotExists bool
	)
	cmd := &cobra.Command{
		Use:   "create TOPIC",
		Short: "Create a topic",
		Example: `  kvlog topics create user-profiles --partitions 6 --compact
  kvlog topics create events --config retention.ms=86400000`,
		Args: exactArgs("TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := parseConfigs("config", configs)
			if err != nil {
				return err
			}
			if compact {
				if p, ok := cfg["cleanup.policy"]; ok && !strings.Contains(*p, "compact") {
					return usageErr("--compact conflicts with --config cleanup.policy=%s", *p)
				}
				if _, ok := cfg["cleanup.policy"]; !ok {
					cfg["cleanup.policy"] = kadm.StringPtr("compact")
				}
			}
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			resp, err := adm.CreateTopic(ctx, partitions, rf, cfg, args[0])
			if err == nil {
				err = resp.Err
			}
			if ifNotExists && errors.Is(err, kerr.TopicAlreadyExists) {
				fmt.Fprintf(a.stdout, "topic %s already exists\n", args[0])
				return nil
			}
			if err != nil {
				return fmt.Errorf("create topic %q: %w", args[0], kafkaErr(err, resp.ErrMessage))
			}
			fmt.Fprintf(a.stdout, "created topic %s (%d partitions, replication factor %d)\n", resp.Topic, resp.NumPartitions, resp.ReplicationFactor)
			return nil
		},
	}
	cmd.Flags().Int32VarP(&partitions, "partitions", "p", -1, "number of partitions (-1: the broker's num.partitions)")
	cmd.Flags().Int16VarP(&rf, "replication-factor", "r", -1, "replication factor (-1: the broker's default.replication.factor)")
	cmd.Flags().StringArrayVarP(&configs, "config", "c", nil, "topic config key=value (repeatable)")
	cmd.Flags().BoolVar(&compact, "compact", false, "set cleanup.policy=compact (a changelog table)")
	cmd.Flags().BoolVar(&ifNotExists, "if-not-exists", false, "succeed without change when the topic exists")
	return cmd
}

func (a *app) topicsListCmd() *cobra.Command {
	var out output
	var internal bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List topics",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			var tds kadm.TopicDetails
			if internal {
				tds, err = adm.ListTopicsWithInternal(ctx)
			} else {
				tds, err = adm.ListTopics(ctx)
			}
			if err != nil {
				return fmt.Errorf("list topics: %w", err)
			}
			type row struct {
				Topic             string `json:"topic"`
				Partitions        int    `json:"partitions"`
				ReplicationFactor int    `json:"replication_factor"`
				Internal          bool   `json:"internal,omitempty"`
			}
			rows := []row{}
			for _, td := range tds.Sorted() {
				rows = append(rows, row{td.Topic, len(td.Partitions), td.Partitions.NumReplicas(), td.IsInternal})
			}
			if out.json() {
				return writeJSON(a.stdout, rows)
			}
			t := newTable(a.stdout, "TOPIC", "PARTITIONS", "REPLICATION")
			for _, r := range rows {
				t.row(r.Topic, r.Partitions, r.ReplicationFactor)
			}
			return t.flush()
		},
	}
	out.register(cmd)
	cmd.Flags().BoolVar(&internal, "internal", false, "include internal topics (__consumer_offsets)")
	return cmd
}

type partitionDesc struct {
	Partition      int32   `json:"partition"`
	Leader         int32   `json:"leader"`
	LeaderEpoch    int32   `json:"leader_epoch"`
	Replicas       []int32 `json:"replicas"`
	ISR            []int32 `json:"isr"`
	LogStartOffset int64   `json:"log_start_offset"`
	HighWatermark  int64   `json:"high_watermark"`
	SizeBytes      *int64  `json:"size_bytes,omitempty"`
	Error          string  `json:"error,omitempty"`
}

type configDesc struct {
	Name      string   `json:"name"`
	Value     *string  `json:"value"`
	Source    string   `json:"source"`
	Sensitive bool     `json:"sensitive,omitempty"`
	Synonyms  []string `json:"synonyms,omitempty"`
}

type topicDesc struct {
	Topic             string          `json:"topic"`
	ID                string          `json:"id,omitempty"`
	Internal          bool            `json:"internal,omitempty"`
	Partitions        []partitionDesc `json:"partitions"`
	ReplicationFactor int             `json:"replication_factor"`
	SizeBytes         *int64          `json:"size_bytes,omitempty"`
	Configs           []configDesc    `json:"configs"`
	SizeError         string          `json:"size_error,omitempty"`
}

func (a *app) topicsDescribeCmd() *cobra.Command {
	var out output
	var allConfigs bool
	cmd := &cobra.Command{
		Use:   "describe TOPIC...",
		Short: "Show partitions, leaders, replicas/ISR, offsets, sizes and configs with their sources",
		Long: `Show each partition's leader, replicas, in-sync replicas, log start offset,
high watermark and size on disk, and the topic's configs with their source.
By default only configs set on the topic (or the broker, dynamically or
statically) are shown; --all-configs adds defaults.`,
		Args: minArgs(1, "topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			tds, err := adm.ListTopics(ctx, args...)
			if err != nil {
				return fmt.Errorf("describe topics: %w", err)
			}
			for _, t := range args {
				td, ok := tds[t]
				if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
					return topicNotFound(t)
				}
				if td.Err != nil {
					return fmt.Errorf("topic %q: %w", t, td.Err)
				}
			}
			starts, err := adm.ListStartOffsets(ctx, args...)
			if err != nil {
				return fmt.Errorf("list offsets: %w", err)
			}
			ends, err := adm.ListEndOffsets(ctx, args...)
			if err != nil {
				return fmt.Errorf("list offsets: %w", err)
			}
			rcs, cfgErr := adm.DescribeTopicConfigs(ctx, args...)
			dirs, sizeErr := adm.DescribeAllLogDirs(ctx, tdsSet(tds))
			var descs []topicDesc
			for _, t := range args {
				td := tds[t]
				d := topicDesc{Topic: t, Internal: td.IsInternal, ReplicationFactor: td.Partitions.NumReplicas(), Partitions: []partitionDesc{}, Configs: []configDesc{}}
				if td.ID != (kadm.TopicID{}) {
					d.ID = td.ID.String()
				}
				var total int64
				haveSizes := sizeErr == nil
				for _, pd := range td.Partitions.Sorted() {
					p := partitionDesc{Partition: pd.Partition, Leader: pd.Leader, LeaderEpoch: pd.LeaderEpoch, Replicas: pd.Replicas, ISR: pd.ISR}
					if pd.Err != nil {
						p.Error = pd.Err.Error()
					}
					if so, ok := starts.Lookup(t, pd.Partition); ok {
						p.LogStartOffset = so.Offset
					}
					if eo, ok := ends.Lookup(t, pd.Partition); ok {
						p.HighWatermark = eo.Offset
					}
					if haveSizes {
						var size int64
						found := false
						dirs.Each(func(ld kadm.DescribedLogDir) {
							if dp, ok := ld.Topics.Lookup(t, pd.Partition); ok {
								size += dp.Size
								found = true
							}
						})
						if found {
							p.SizeBytes = &size
							total += size
						}
					}
					d.Partitions = append(d.Partitions, p)
				}
				if haveSizes {
					d.SizeBytes = &total
				} else {
					d.SizeError = sizeErr.Error()
				}
				if cfgErr == nil {
					if rc, err := rcs.On(t, nil); err == nil && rc.Err == nil {
						for _, c := range rc.Configs {
							if !allConfigs && c.Source == 5 /* DEFAULT_CONFIG */ {
								continue
							}
							cd := configDesc{Name: c.Key, Value: c.Value, Source: configSource(c.Source), Sensitive: c.Sensitive}
							for _, s := range c.Synonyms {
								cd.Synonyms = append(cd.Synonyms, fmt.Sprintf("%s=%s (%s)", s.Key, derefOr(s.Value, "null"), configSource(s.Source)))
							}
							d.Configs = append(d.Configs, cd)
						}
						sort.Slice(d.Configs, func(i, j int) bool { return d.Configs[i].Name < d.Configs[j].Name })
					}
				}
				descs = append(descs, d)
			}
			if out.json() {
				return writeJSONOneOrMany(a.stdout, descs)
			}
			for i, d := range descs {
				if i > 0 {
					fmt.Fprintln(a.stdout)
				}
				size := "unknown"
				if d.SizeBytes != nil {
					size = fmt.Sprintf("%d bytes", *d.SizeBytes)
				}
				fmt.Fprintf(a.stdout, "Topic: %s  Partitions: %d  ReplicationFactor: %d  Size: %s\n", d.Topic, len(d.Partitions), d.ReplicationFactor, size)
				t := newTable(a.stdout, "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "HIGH-WATERMARK", "SIZE")
				for _, p := range d.Partitions {
					sz := "-"
					if p.SizeBytes != nil {
						sz = fmt.Sprint(*p.SizeBytes)
					}
					t.row(p.Partition, p.Leader, p.LeaderEpoch, ints(p.Replicas), ints(p.ISR), p.LogStartOffset, p.HighWatermark, sz)
				}
				t.flush()
				if cfgErr != nil {
					fmt.Fprintf(a.stdout, "Configs: unavailable: %v\n", cfgErr)
					continue
				}
				fmt.Fprintln(a.stdout, "Configs:")
				ct := newTable(a.stdout, "  NAME", "VALUE", "SOURCE")
				for _, c := range d.Configs {
					v := derefOr(c.Value, "null")
					if c.Sensitive {
						v = "(sensitive)"
					}
					ct.row("  "+c.Name, v, c.Source)
				}
				ct.flush()
			}
			return nil
		},
	}
	out.register(cmd)
	cmd.Flags().BoolVar(&allConfigs, "all-configs", false, "also show configs at their default value")
	return cmd
}

func tdsSet(tds kadm.TopicDetails) kadm.TopicsSet {
	s := make(kadm.TopicsSet)
	for t, td := range tds {
		for p := range td.Partitions {
			s.Add(t, p)
		}
	}
	return s
}

func ints(xs []int32) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}

func derefOr(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

// configSource names a DescribeConfigs source the way Kafka's tools print it.
func configSource[T ~int8](s T) string {
	switch s {
	case 1:
		return "DYNAMIC_TOPIC_CONFIG"
	case 2:
		return "DYNAMIC_BROKER_CONFIG"
	case 3:
		return "DYNAMIC_DEFAULT_BROKER_CONFIG"
	case 4:
		return "STATIC_BROKER_CONFIG"
	case 5:
		return "DEFAULT_CONFIG"
	case 6:
		return "DYNAMIC_BROKER_LOGGER_CONFIG"
	case 7:
		return "CLIENT_METRICS_CONFIG"
	}
	return "UNKNOWN"
}

func (a *app) topicsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete TOPIC...",
		Short: "Delete topics",
		Args:  minArgs(1, "topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			resps, err := adm.DeleteTopics(ctx, args...)
			if err != nil {
				return fmt.Errorf("delete topics: %w", err)
			}
			var failed []error
			for _, t := range args {
				r, ok := resps[t]
				switch {
				case !ok:
					failed = append(failed, fmt.Errorf("topic %q: no answer", t))
				case errors.Is(r.Err, kerr.UnknownTopicOrPartition):
					failed = append(failed, topicNotFound(t))
				case r.Err != nil:
					failed = append(failed, fmt.Errorf("delete topic %q: %w", t, kafkaErr(r.Err, r.ErrMessage)))
				default:
					fmt.Fprintf(a.stdout, "deleted topic %s\n", t)
				}
			}
			return errors.Join(failed...)
		},
	}
}

func (a *app) topicsAlterConfigCmd() *cobra.Command {
	var sets, deletes []string
	cmd := &cobra.Command{
		Use:   "alter-config TOPIC",
		Short: "Set or remove topic configs (IncrementalAlterConfigs; effective without restart)",
		Example: `  kvlog topics alter-config user-profiles --set min.cleanable.dirty.ratio=0.1 --set segment.ms=60000
  kvlog topics alter-config user-profiles --delete segment.ms`,
		Args: exactArgs("TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(sets) == 0 && len(deletes) == 0 {
				return usageErr("nothing to change: give --set key=value or --delete key")
			}
			set, err := parseConfigs("set", sets)
			if err != nil {
				return err
			}
			var alters []kadm.AlterConfig
			for k, v := range set {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: v})
			}
			for _, k := range deletes {
				alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			}
			sort.Slice(alters, func(i, j int) bool { return alters[i].Name < alters[j].Name })
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			resps, err := adm.AlterTopicConfigs(ctx, alters, args[0])
			if err != nil {
				return fmt.Errorf("alter configs: %w", err)
			}
			r, err := resps.On(args[0], nil)
			if err != nil {
				return fmt.Errorf("alter configs of %q: %w", args[0], err)
			}
			if r.Err != nil {
				return fmt.Errorf("alter configs of %q: %w", args[0], kafkaErr(r.Err, r.ErrMessage))
			}
			for _, c := range alters {
				if c.Op == kadm.DeleteConfig {
					fmt.Fprintf(a.stdout, "%s: removed %s\n", args[0], c.Name)
				} else {
					fmt.Fprintf(a.stdout, "%s: set %s=%s\n", args[0], c.Name, *c.Value)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "config key=value to set (repeatable)")
	cmd.Flags().StringArrayVar(&deletes, "delete", nil, "config key to remove, reverting to the default (repeatable)")
	return cmd
}
