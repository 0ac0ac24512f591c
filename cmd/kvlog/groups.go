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

func (a *app) groupsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "List and describe consumer groups, reset their offsets",
		Args:  exactArgs(),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.groupsListCmd(), a.groupsDescribeCmd(), a.groupsResetCmd())
	return cmd
}

// groupErr explains errors from a broker without a group coordinator.
func groupErr(what string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "too old") || strings.Contains(msg, "does not support") || errors.Is(err, kerr.UnsupportedVersion) {
		return fmt.Errorf("%s: the broker does not serve consumer groups (no group coordinator): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (a *app) groupsListCmd() *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List consumer groups with their state",
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
			groups, err := adm.ListGroups(ctx)
			if err != nil {
				return groupErr("list groups", err)
			}
			type row struct {
				Group        string `json:"group"`
				State        string `json:"state"`
				ProtocolType string `json:"protocol_type"`
				Coordinator  int32  `json:"coordinator"`
			}
			rows := []row{}
			for _, g := range groups.Sorted() {
				rows = append(rows, row{g.Group, g.State, g.ProtocolType, g.Coordinator})
			}
			if out.json() {
				return writeJSON(a.stdout, rows)
			}
			t := newTable(a.stdout, "GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR")
			for _, r := range rows {
				t.row(r.Group, r.State, r.ProtocolType, r.Coordinator)
			}
			return t.flush()
		},
	}
	out.register(cmd)
	return cmd
}

type groupMemberDesc struct {
	MemberID   string   `json:"member_id"`
	InstanceID string   `json:"instance_id,omitempty"`
	ClientID   string   `json:"client_id"`
	ClientHost string   `json:"client_host"`
	Assigned   []string `json:"assigned"`
}

type groupOffsetDesc struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	Member    string `json:"member,omitempty"`
	Error     string `json:"error,omitempty"`
}

type groupDesc struct {
	Group        string            `json:"group"`
	State        string            `json:"state"`
	ProtocolType string            `json:"protocol_type"`
	Protocol     string            `json:"protocol"`
	Coordinator  int32             `json:"coordinator"`
	Members      []groupMemberDesc `json:"members"`
	Offsets      []groupOffsetDesc `json:"offsets"`
	TotalLag     int64             `json:"total_lag"`
}

func (a *app) groupsDescribeCmd() *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "describe GROUP...",
		Short: "Show members, assignments, committed offsets and lag per partition",
		Args:  minArgs(1, "group"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			lags, err := adm.Lag(ctx, args...)
			if err != nil {
				return groupErr("describe groups", err)
			}
			var descs []groupDesc
			for _, g := range args {
				l, ok := lags[g]
				if !ok {
					return fmt.Errorf("group %q: no answer", g)
				}
				if err := l.Error(); err != nil {
					return groupErr(fmt.Sprintf("group %q", g), err)
				}
				d := groupDesc{Group: g, State: l.State, ProtocolType: l.ProtocolType, Protocol: l.Protocol, Coordinator: l.Coordinator.NodeID, Members: []groupMemberDesc{}, Offsets: []groupOffsetDesc{}}
				for _, m := range l.Members {
					md := groupMemberDesc{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost, Assigned: []string{}}
					if m.InstanceID != nil {
						md.InstanceID = *m.InstanceID
					}
					if c, ok := m.Assigned.AsConsumer(); ok {
						for _, t := range c.Topics {
							for _, p := range t.Partitions {
								md.Assigned = append(md.Assigned, fmt.Sprintf("%s/%d", t.Topic, p))
							}
						}
					}
					sort.Strings(md.Assigned)
					d.Members = append(d.Members, md)
				}
				for _, ml := range l.Lag.Sorted() {
					od := groupOffsetDesc{Topic: ml.Topic, Partition: ml.Partition, Committed: ml.Commit.At, End: ml.End.Offset, Lag: ml.Lag}
					if ml.Member != nil {
						od.Member = ml.Member.MemberID
					}
					if ml.Err != nil {
						od.Error = ml.Err.Error()
					}
					if ml.Lag > 0 {
						d.TotalLag += ml.Lag
					}
					d.Offsets = append(d.Offsets, od)
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
				fmt.Fprintf(a.stdout, "Group: %s  State: %s  Protocol: %s/%s  Coordinator: %d  Total lag: %d\n", d.Group, d.State, d.ProtocolType, d.Protocol, d.Coordinator, d.TotalLag)
				fmt.Fprintln(a.stdout, "Members:")
				mt := newTable(a.stdout, "  MEMBER", "CLIENT-ID", "HOST", "ASSIGNED")
				for _, m := range d.Members {
					mt.row("  "+m.MemberID, m.ClientID, m.ClientHost, strings.Join(m.Assigned, ","))
				}
				mt.flush()
				fmt.Fprintln(a.stdout, "Offsets:")
				ot := newTable(a.stdout, "  TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER")
				for _, o := range d.Offsets {
					committed := fmt.Sprint(o.Committed)
					if o.Committed < 0 {
						committed = "-"
					}
					ot.row("  "+o.Topic, o.Partition, committed, o.End, o.Lag, o.Member)
				}
				ot.flush()
			}
			return nil
		},
	}
	out.register(cmd)
	return cmd
}

func (a *app) groupsResetCmd() *cobra.Command {
	var (
		topics             []string
		toEarliest, toLate bool
		toOffset           int64
		execute            bool
		out                output
	)
	cmd := &cobra.Command{
		Use:   "reset-offsets GROUP",
		Short: "Reset a group's committed offsets (dry run unless --execute)",
		Long: `Reset GROUP's committed offsets for --topic (repeatable) to the earliest
offset, the latest offset, or a given offset (clamped to the partition's
range). Without --execute the plan is printed and nothing changes. The group
must have no active members, as with Kafka's kafka-consumer-groups.`,
		Example: `  kvlog groups reset-offsets audit --topic orders --to-earliest --execute`,
		Args:    exactArgs("GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			n := 0
			for _, b := range []bool{toEarliest, toLate, cmd.Flags().Changed("to-offset")} {
				if b {
					n++
				}
			}
			if n != 1 {
				return usageErr("give exactly one of --to-earliest, --to-latest, --to-offset")
			}
			if len(topics) == 0 {
				return usageErr("give at least one --topic")
			}
			group := args[0]
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			dgs, err := adm.DescribeGroups(ctx, group)
			if err != nil {
				return groupErr("describe group", err)
			}
			if dg, ok := dgs[group]; ok {
				if dg.Err != nil {
					return groupErr(fmt.Sprintf("group %q", group), dg.Err)
				}
				if len(dg.Members) > 0 {
					return fmt.Errorf("group %q has %d active member(s) (state %s): stop them first", group, len(dg.Members), dg.State)
				}
			}
			for _, t := range topics {
				if _, err := describeOne(ctx, adm, t); err != nil {
					return err
				}
			}
			starts, err := adm.ListStartOffsets(ctx, topics...)
			if err == nil {
				err = starts.Error()
			}
			if err != nil {
				return fmt.Errorf("list offsets: %w", err)
			}
			ends, err := adm.ListEndOffsets(ctx, topics...)
			if err == nil {
				err = ends.Error()
			}
			if err != nil {
				return fmt.Errorf("list offsets: %w", err)
			}
			plan := kadm.Offsets{}
			type row struct {
				Topic     string `json:"topic"`
				Partition int32  `json:"partition"`
				NewOffset int64  `json:"new_offset"`
			}
			var rows []row
			ends.Each(func(e kadm.ListedOffset) {
				s, _ := starts.Lookup(e.Topic, e.Partition)
				var at int64
				switch {
				case toEarliest:
					at = s.Offset
				case toLate:
					at = e.Offset
				default:
					at = min(max(toOffset, s.Offset), e.Offset)
				}
				plan.Add(kadm.Offset{Topic: e.Topic, Partition: e.Partition, At: at, LeaderEpoch: -1})
				rows = append(rows, row{e.Topic, e.Partition, at})
			})
			sort.Slice(rows, func(i, j int) bool {
				if rows[i].Topic != rows[j].Topic {
					return rows[i].Topic < rows[j].Topic
				}
				return rows[i].Partition < rows[j].Partition
			})
			if execute {
				resps, err := adm.CommitOffsets(ctx, group, plan)
				if err != nil {
					return groupErr("commit offsets", err)
				}
				if err := resps.Error(); err != nil {
					return groupErr("commit offsets", err)
				}
			}
			if out.json() {
				return writeJSON(a.stdout, map[string]any{"group": group, "executed": execute, "offsets": rows})
			}
			t := newTable(a.stdout, "TOPIC", "PARTITION", "NEW-OFFSET")
			for _, r := range rows {
				t.row(r.Topic, r.Partition, r.NewOffset)
			}
			t.flush()
			if !execute {
				fmt.Fprintln(a.stdout, "dry run: nothing changed (add --execute to commit these offsets)")
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&topics, "topic", "t", nil, "topic whose offsets to reset (repeatable)")
	cmd.Flags().BoolVar(&toEarliest, "to-earliest", false, "reset to each partition's log start")
	cmd.Flags().BoolVar(&toLate, "to-latest", false, "reset to each partition's high watermark")
	cmd.Flags().Int64Var(&toOffset, "to-offset", 0, "reset to this offset (clamped to each partition's range)")
	cmd.Flags().BoolVar(&execute, "execute", false, "commit the new offsets (default: dry run)")
	out.register(cmd)
	return cmd
}
