package main

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (a *app) clusterCmd() *cobra.Command {
	cmd := groupCmd("cluster", "Brokers, controller, cluster id, API versions, dynamic broker configs and log dirs")
	cfg := groupCmd("config", "Get, set and delete dynamic broker configs (kafka-configs --entity-type brokers)")
	cfg.AddCommand(a.clusterConfigGetCmd(), a.clusterConfigSetCmd(), a.clusterConfigDeleteCmd())
	cmd.AddCommand(a.clusterInfoCmd(), cfg, a.clusterLogDirsCmd())
	return cmd
}

type brokerInfo struct {
	NodeID int32   `json:"node_id"`
	Host   string  `json:"host"`
	Port   int32   `json:"port"`
	Rack   *string `json:"rack,omitempty"`
}

type apiVersion struct {
	Key  int16  `json:"key"`
	Name string `json:"name"`
	Min  int16  `json:"min"`
	Max  int16  `json:"max"`
}

type clusterInfo struct {
	ClusterID   string                  `json:"cluster_id"`
	Controller  int32                   `json:"controller"`
	Brokers     []brokerInfo            `json:"brokers"`
	APIVersions map[string][]apiVersion `json:"api_versions,omitempty"` // by node id
}

func (a *app) clusterInfoCmd() *cobra.Command {
	var out output
	var apis bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Cluster id, controller, brokers and (--api-versions) the APIs each broker serves",
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
			md, err := adm.BrokerMetadata(ctx)
			if err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			info := clusterInfo{ClusterID: md.Cluster, Controller: md.Controller, Brokers: []brokerInfo{}}
			for _, b := range md.Brokers {
				info.Brokers = append(info.Brokers, brokerInfo{b.NodeID, b.Host, b.Port, b.Rack})
			}
			if apis {
				vs, err := adm.ApiVersions(ctx)
				if err != nil {
					return fmt.Errorf("api versions: %w", err)
				}
				info.APIVersions = map[string][]apiVersion{}
				for _, v := range vs.Sorted() {
					if v.Err != nil {
						return fmt.Errorf("api versions of broker %d: %w", v.NodeID, v.Err)
					}
					list := []apiVersion{}
					for _, k := range v.Raw().ApiKeys {
						list = append(list, apiVersion{k.ApiKey, kmsg.NameForKey(k.ApiKey), k.MinVersion, k.MaxVersion})
					}
					sort.Slice(list, func(i, j int) bool { return list[i].Key < list[j].Key })
					info.APIVersions[strconv.Itoa(int(v.NodeID))] = list
				}
			}
			if out.json() {
				return writeJSON(a.stdout, info)
			}
			fmt.Fprintf(a.stdout, "Cluster: %s  Controller: %d\n", info.ClusterID, info.Controller)
			t := newTable(a.stdout, "BROKER", "ADDRESS", "RACK")
			for _, b := range info.Brokers {
				id := fmt.Sprint(b.NodeID)
				if b.NodeID == info.Controller {
					id += "*"
				}
				t.row(id, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), derefOr(b.Rack, "-"))
			}
			t.flush()
			for _, b := range info.Brokers {
				list, ok := info.APIVersions[strconv.Itoa(int(b.NodeID))]
				if !ok {
					continue
				}
				fmt.Fprintf(a.stdout, "\nAPI versions of broker %d:\n", b.NodeID)
				at := newTable(a.stdout, "  KEY", "API", "MIN", "MAX")
				for _, v := range list {
					at.row(fmt.Sprintf("  %d", v.Key), v.Name, v.Min, v.Max)
				}
				at.flush()
			}
			return nil
		},
	}
	out.register(cmd)
	cmd.Flags().BoolVar(&apis, "api-versions", false, "also list the API keys and versions each broker serves")
	return cmd
}

// brokerTarget is --broker: a node id, or the cluster-wide default.
type brokerTarget struct{ id int32 }

func (b *brokerTarget) register(cmd *cobra.Command, what string) {
	cmd.Flags().Int32Var(&b.id, "broker", -1, what+" this broker's config (default: the cluster-wide default every broker inherits)")
}

func (b *brokerTarget) ids() []int32 {
	if b.id < 0 {
		return nil
	}
	return []int32{b.id}
}

func (b *brokerTarget) name() string {
	if b.id < 0 {
		return "cluster default"
	}
	return fmt.Sprintf("broker %d", b.id)
}

func (a *app) clusterConfigGetCmd() *cobra.Command {
	var (
		out    output
		target brokerTarget
		all    bool
	)
	cmd := &cobra.Command{
		Use:   "get [KEY...]",
		Short: "Show broker configs with their source (DescribeConfigs)",
		Long: `Show the broker configs KEY... (default: every config set dynamically or in
the broker's server.properties; --all adds the defaults) with the source of
each value: DYNAMIC_BROKER_CONFIG (set with --broker), DYNAMIC_DEFAULT_BROKER_CONFIG
(set cluster-wide), STATIC_BROKER_CONFIG (server.properties) or DEFAULT_CONFIG.
Without --broker the cluster-wide defaults are shown (every broker inherits
them unless it has its own value).`,
		Example: `  kvlog cluster config get --broker 1
  kvlog cluster config get log.cleaner.threads --broker 1
  kvlog cluster config get`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			rcs, err := adm.DescribeBrokerConfigs(ctx, target.ids()...)
			if err != nil {
				return fmt.Errorf("describe configs of %s: %w", target.name(), err)
			}
			if len(rcs) != 1 {
				return fmt.Errorf("describe configs of %s: %d answers", target.name(), len(rcs))
			}
			rc := rcs[0]
			if rc.Err != nil {
				return fmt.Errorf("describe configs of %s: %w", target.name(), kafkaErr(rc.Err, rc.ErrMessage))
			}
			want := map[string]bool{}
			for _, k := range args {
				want[k] = true
			}
			filtered := len(want) > 0
			descs := []configDesc{}
			for _, c := range rc.Configs {
				if filtered {
					if !want[c.Key] {
						continue
					}
					delete(want, c.Key)
				} else if !all && c.Source == 5 /* DEFAULT_CONFIG */ {
					continue
				}
				cd := configDesc{Name: c.Key, Value: c.Value, Source: configSource(c.Source), Sensitive: c.Sensitive}
				for _, s := range c.Synonyms {
					cd.Synonyms = append(cd.Synonyms, fmt.Sprintf("%s=%s (%s)", s.Key, derefOr(s.Value, "null"), configSource(s.Source)))
				}
				descs = append(descs, cd)
			}
			if len(want) > 0 {
				var missing []string
				for k := range want {
					missing = append(missing, k)
				}
				sort.Strings(missing)
				return fmt.Errorf("%s has no config %s", target.name(), strings.Join(missing, ", "))
			}
			sort.Slice(descs, func(i, j int) bool { return descs[i].Name < descs[j].Name })
			if out.json() {
				return writeJSON(a.stdout, descs)
			}
			t := newTable(a.stdout, "NAME", "VALUE", "SOURCE")
			for _, c := range descs {
				v := derefOr(c.Value, "null")
				if c.Sensitive {
					v = "(sensitive)"
				}
				t.row(c.Name, v, c.Source)
			}
			return t.flush()
		},
	}
	out.register(cmd)
	target.register(cmd, "show")
	cmd.Flags().BoolVar(&all, "all", false, "also show configs at their default value")
	return cmd
}

func (a *app) clusterConfigSetCmd() *cobra.Command {
	var target brokerTarget
	cmd := &cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "Set dynamic broker configs, effective without restart (IncrementalAlterConfigs)",
		Example: `  kvlog cluster config set log.cleaner.threads=2
  kvlog cluster config set log.cleaner.io.max.bytes.per.second=10485760 --broker 1`,
		Args: minArgs(1, "KEY=VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := parseConfigs("set", args)
			if err != nil {
				return err
			}
			var alters []kadm.AlterConfig
			for k, v := range set {
				alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: v})
			}
			return a.alterBroker(target, alters)
		},
	}
	target.register(cmd, "set")
	return cmd
}

func (a *app) clusterConfigDeleteCmd() *cobra.Command {
	var target brokerTarget
	cmd := &cobra.Command{
		Use:     "delete KEY...",
		Short:   "Remove dynamic broker configs, reverting to server.properties or the default",
		Example: `  kvlog cluster config delete log.cleaner.threads`,
		Args:    minArgs(1, "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var alters []kadm.AlterConfig
			for _, k := range args {
				alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			}
			return a.alterBroker(target, alters)
		},
	}
	target.register(cmd, "change")
	return cmd
}

func (a *app) alterBroker(target brokerTarget, alters []kadm.AlterConfig) error {
	sort.Slice(alters, func(i, j int) bool { return alters[i].Name < alters[j].Name })
	ctx, adm, done, err := a.admin()
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.AlterBrokerConfigs(ctx, alters, target.ids()...)
	if err != nil {
		return fmt.Errorf("alter configs of %s: %w", target.name(), err)
	}
	if len(resps) != 1 {
		return fmt.Errorf("alter configs of %s: %d answers", target.name(), len(resps))
	}
	if r := resps[0]; r.Err != nil {
		return fmt.Errorf("alter configs of %s: %w", target.name(), kafkaErr(r.Err, r.ErrMessage))
	}
	for _, c := range alters {
		if c.Op == kadm.DeleteConfig {
			fmt.Fprintf(a.stdout, "%s: removed %s\n", target.name(), c.Name)
		} else {
			fmt.Fprintf(a.stdout, "%s: set %s=%s\n", target.name(), c.Name, *c.Value)
		}
	}
	return nil
}

type logDirPartition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	SizeBytes int64  `json:"size_bytes"`
	OffsetLag int64  `json:"offset_lag"`
}

type logDirDesc struct {
	Broker      int32             `json:"broker"`
	Dir         string            `json:"dir"`
	SizeBytes   int64             `json:"size_bytes"`
	TotalBytes  int64             `json:"total_bytes"`  // the volume's; -1 unknown
	UsableBytes int64             `json:"usable_bytes"` // free on the volume; -1 unknown
	Error       string            `json:"error,omitempty"`
	Partitions  []logDirPartition `json:"partitions"`
}

func (a *app) clusterLogDirsCmd() *cobra.Command {
	var (
		out      output
		topics   []string
		internal bool
	)
	cmd := &cobra.Command{
		Use:   "log-dirs",
		Short: "Each broker's log dirs: size, the volume's total and free bytes, per-partition sizes (DescribeLogDirs)",
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
			var set kadm.TopicsSet
			if len(topics) > 0 {
				for _, t := range topics {
					if _, err := describeOne(ctx, adm, t); err != nil {
						return err
					}
				}
				tds, err := adm.ListTopics(ctx, topics...)
				if err != nil {
					return fmt.Errorf("describe topics: %w", err)
				}
				set = tdsSet(tds)
			}
			dirs, err := adm.DescribeAllLogDirs(ctx, set)
			if err != nil {
				var se *kadm.ShardErrors
				if !errors.As(err, &se) || len(dirs) == 0 {
					return fmt.Errorf("describe log dirs: %w", err)
				}
			}
			descs := []logDirDesc{}
			dirs.Each(func(d kadm.DescribedLogDir) {
				ld := logDirDesc{Broker: d.Broker, Dir: d.Dir, TotalBytes: d.TotalBytes, UsableBytes: d.UsableBytes, Partitions: []logDirPartition{}}
				if d.Err != nil {
					ld.Error = d.Err.Error()
				}
				for _, p := range d.Topics.Sorted() {
					if !internal && strings.HasPrefix(p.Topic, "__") {
						continue
					}
					ld.Partitions = append(ld.Partitions, logDirPartition{p.Topic, p.Partition, p.Size, p.OffsetLag})
					ld.SizeBytes += p.Size
				}
				descs = append(descs, ld)
			})
			sort.Slice(descs, func(i, j int) bool {
				if descs[i].Broker != descs[j].Broker {
					return descs[i].Broker < descs[j].Broker
				}
				return descs[i].Dir < descs[j].Dir
			})
			if out.json() {
				return writeJSON(a.stdout, descs)
			}
			for i, d := range descs {
				if i > 0 {
					fmt.Fprintln(a.stdout)
				}
				fmt.Fprintf(a.stdout, "Broker: %d  Dir: %s  Size: %s  Free: %s of %s", d.Broker, d.Dir, humanBytes(d.SizeBytes), humanBytes(d.UsableBytes), humanBytes(d.TotalBytes))
				if d.Error != "" {
					fmt.Fprintf(a.stdout, "  Error: %s", d.Error)
				}
				fmt.Fprintln(a.stdout)
				t := newTable(a.stdout, "  TOPIC", "PARTITION", "SIZE", "OFFSET-LAG")
				for _, p := range d.Partitions {
					t.row("  "+p.Topic, p.Partition, p.SizeBytes, p.OffsetLag)
				}
				t.flush()
			}
			return nil
		},
	}
	out.register(cmd)
	cmd.Flags().StringArrayVarP(&topics, "topic", "t", nil, "only these topics (repeatable)")
	cmd.Flags().BoolVar(&internal, "internal", false, "include internal topics (__consumer_offsets)")
	return cmd
}

// humanBytes prints a byte count with a binary unit; -1 is unknown.
func humanBytes(n int64) string {
	if n < 0 {
		return "unknown"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
