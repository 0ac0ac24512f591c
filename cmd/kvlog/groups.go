package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func (a *app) groupsCmd() *cobra.Command {
	cmd := groupCmd("groups", "List, describe and delete consumer groups, reset or delete their offsets")
	cmd.AddCommand(a.groupsListCmd(), a.groupsDescribeCmd(), a.groupsResetCmd(), a.groupsDeleteCmd(), a.groupsDeleteOffsetsCmd())
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
				if l.State == "Dead" && len(l.Members) == 0 && len(l.Lag) == 0 {
					return &notFound{msg: fmt.Sprintf("group %q does not exist", g), sentinel: kerr.GroupIDNotFound}
				}
				if len(l.Members) == 0 {
					fillUncommitted(ctx, adm, &l)
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
		allTopics          bool
		toEarliest, toLate bool
		toOffset           int64
		toDatetime         string
		shiftBy            int64
		execute            bool
		out                output
	)
	cmd := &cobra.Command{
		Use:   "reset-offsets GROUP",
		Short: "Reset a group's committed offsets (dry run unless --execute)",
		Long: `Reset GROUP's committed offsets for --topic (repeatable) or --all-topics
(every topic the group has committed offsets for) to the earliest offset,
the latest offset, a given offset, the first offset at or after a time, or
the current committed offset shifted by N (negative: back). The new offsets
are clamped to each partition's range. Without --execute the plan is
printed and nothing changes. The group must have no active members, as with
Kafka's kafka-consumer-groups.`,
		Example: `  kvlog groups reset-offsets audit --topic orders --to-earliest --execute
  kvlog groups reset-offsets audit --all-topics --to-datetime 2025-01-01T00:00:00Z
  kvlog groups reset-offsets audit --topic orders --shift-by -10 --execute`,
		Args: exactArgs("GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			n := 0
			for _, b := range []bool{toEarliest, toLate, cmd.Flags().Changed("to-offset"), toDatetime != "", cmd.Flags().Changed("shift-by")} {
				if b {
					n++
				}
			}
			if n != 1 {
				return usageErr("give exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by")
			}
			if (len(topics) == 0) == !allTopics {
				return usageErr("give --topic (repeatable) or --all-topics")
			}
			var at time.Time
			if toDatetime != "" {
				var err error
				if at, err = parseTime(toDatetime, time.Now()); err != nil {
					return err
				}
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
			committed, err := adm.FetchOffsets(ctx, group)
			if err != nil {
				return groupErr(fmt.Sprintf("offsets of group %q", group), err)
			}
			if allTopics {
				seen := map[string]bool{}
				committed.Each(func(o kadm.OffsetResponse) {
					if o.Err == nil && o.At >= 0 && !seen[o.Topic] {
						seen[o.Topic] = true
						topics = append(topics, o.Topic)
					}
				})
				if len(topics) == 0 {
					return fmt.Errorf("group %q has no committed offsets", group)
				}
				sort.Strings(topics)
			}
			for _, t := range topics {
				if _, err := describeOne(ctx, adm, t); err != nil {
					return err
				}
			}
			starts, err := listed(adm.ListStartOffsets(ctx, topics...))
			if err != nil {
				return err
			}
			ends, err := listed(adm.ListEndOffsets(ctx, topics...))
			if err != nil {
				return err
			}
			var byTime kadm.ListedOffsets
			if toDatetime != "" {
				if byTime, err = listed(adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topics...)); err != nil {
					return err
				}
			}
			plan := kadm.Offsets{}
			type row struct {
				Topic     string `json:"topic"`
				Partition int32  `json:"partition"`
				Current   int64  `json:"current"` // -1: no commit
				NewOffset int64  `json:"new_offset"`
			}
			var rows []row
			ends.Each(func(e kadm.ListedOffset) {
				s, _ := starts.Lookup(e.Topic, e.Partition)
				cur := int64(-1)
				if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.Err == nil {
					cur = c.At
				}
				var to int64
				switch {
				case toEarliest:
					to = s.Offset
				case toLate:
					to = e.Offset
				case toDatetime != "":
					to = e.Offset // no record at or after the time
					if bt, ok := byTime.Lookup(e.Topic, e.Partition); ok && bt.Offset >= 0 {
						to = bt.Offset
					}
				case cmd.Flags().Changed("shift-by"):
					base := cur
					if base < 0 {
						base = s.Offset // no commit: from the start, as a new member would read
					}
					to = base + shiftBy
				default:
					to = toOffset
				}
				to = min(max(to, s.Offset), e.Offset)
				plan.Add(kadm.Offset{Topic: e.Topic, Partition: e.Partition, At: to, LeaderEpoch: -1})
				rows = append(rows, row{e.Topic, e.Partition, cur, to})
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
			t := newTable(a.stdout, "TOPIC", "PARTITION", "CURRENT", "NEW-OFFSET")
			for _, r := range rows {
				cur := fmt.Sprint(r.Current)
				if r.Current < 0 {
					cur = "-"
				}
				t.row(r.Topic, r.Partition, cur, r.NewOffset)
			}
			t.flush()
			if !execute {
				fmt.Fprintln(a.stdout, "dry run: nothing changed (add --execute to commit these offsets)")
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&topics, "topic", "t", nil, "topic whose offsets to reset (repeatable)")
	cmd.Flags().BoolVar(&allTopics, "all-topics", false, "every topic the group has committed offsets for")
	cmd.Flags().BoolVar(&toEarliest, "to-earliest", false, "reset to each partition's log start")
	cmd.Flags().BoolVar(&toLate, "to-latest", false, "reset to each partition's high watermark")
	cmd.Flags().Int64Var(&toOffset, "to-offset", 0, "reset to this offset (clamped to each partition's range)")
	cmd.Flags().StringVar(&toDatetime, "to-datetime", "", "reset to the first offset at or after this time (ms, RFC 3339, date, -1h)")
	cmd.Flags().Int64Var(&shiftBy, "shift-by", 0, "move the committed offset by N (negative: back)")
	cmd.Flags().BoolVar(&execute, "execute", false, "commit the new offsets (default: dry run)")
	out.register(cmd)
	return cmd
}

// fillUncommitted adds, for a group without members (consumers that
// commit without joining, or a stopped group), the partitions of its topics
// it has no commit for, lagging by the whole partition (end − log start), as
// a member starting from the earliest offset would: otherwise such a
// partition is missing and the total lag understates reality.
func fillUncommitted(ctx context.Context, adm *kadm.Client, l *kadm.DescribedGroupLag) {
	var topics []string
	for t := range l.Lag {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	if len(topics) == 0 {
		return
	}
	starts, err := listed(adm.ListStartOffsets(ctx, topics...))
	if err != nil {
		return
	}
	ends, err := listed(adm.ListEndOffsets(ctx, topics...))
	if err != nil {
		return
	}
	ends.Each(func(e kadm.ListedOffset) {
		if _, ok := l.Lag.Lookup(e.Topic, e.Partition); ok {
			return
		}
		s, _ := starts.Lookup(e.Topic, e.Partition)
		if l.Lag[e.Topic] == nil {
			l.Lag[e.Topic] = map[int32]kadm.GroupMemberLag{}
		}
		l.Lag[e.Topic][e.Partition] = kadm.GroupMemberLag{
			Topic: e.Topic, Partition: e.Partition,
			Commit: kadm.Offset{Topic: e.Topic, Partition: e.Partition, At: -1},
			Start:  s, End: e, Lag: e.Offset - s.Offset,
		}
	})
}

func (a *app) groupsDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete GROUP...",
		Short: "Delete consumer groups and their committed offsets (the groups must have no members)",
		Args:  minArgs(1, "group"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			resps, err := adm.DeleteGroups(ctx, args...)
			if err != nil {
				return groupErr("delete groups", err)
			}
			var failed []error
			for _, g := range args {
				r, ok := resps[g]
				switch {
				case !ok:
					failed = append(failed, fmt.Errorf("delete group %q: no answer", g))
				case errors.Is(r.Err, kerr.GroupIDNotFound):
					failed = append(failed, &notFound{msg: fmt.Sprintf("group %q does not exist", g), sentinel: r.Err})
				case errors.Is(r.Err, kerr.NonEmptyGroup):
					failed = append(failed, fmt.Errorf("group %q has active members: stop them first", g))
				case r.Err != nil:
					failed = append(failed, fmt.Errorf("delete group %q: %w", g, r.Err))
				default:
					fmt.Fprintf(a.stdout, "deleted group %s\n", g)
				}
			}
			return errors.Join(failed...)
		},
	}
}

func (a *app) groupsDeleteOffsetsCmd() *cobra.Command {
	var (
		topic      string
		partitions []int32
	)
	cmd := &cobra.Command{
		Use:   "delete-offsets GROUP --topic TOPIC",
		Short: "Delete a group's committed offsets for a topic (OffsetDelete); the group must not be consuming it",
		Example: `  kvlog groups delete-offsets audit --topic orders
  kvlog groups delete-offsets audit --topic orders -p 0,1`,
		Args: exactArgs("GROUP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if topic == "" {
				return usageErr("give --topic")
			}
			only, err := parsePartitions(partitions)
			if err != nil {
				return err
			}
			group := args[0]
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
			if err != nil {
				return groupErr(fmt.Sprintf("offsets of group %q", group), err)
			}
			set := kadm.TopicsSet{}
			committed.Each(func(o kadm.OffsetResponse) {
				if o.Topic == topic && o.At >= 0 && (only == nil || only[o.Partition]) {
					set.Add(topic, o.Partition)
				}
			})
			for p := range only {
				if !set.Lookup(topic, p) {
					return fmt.Errorf("group %q has no committed offset for %s/%d", group, topic, p)
				}
			}
			if len(set) == 0 {
				return fmt.Errorf("group %q has no committed offsets for topic %s", group, topic)
			}
			resps, err := adm.DeleteOffsets(ctx, group, set)
			if err != nil {
				if errors.Is(err, kerr.GroupSubscribedToTopic) {
					return fmt.Errorf("group %q is consuming %s: stop its members first", group, topic)
				}
				return groupErr(fmt.Sprintf("delete offsets of group %q", group), err)
			}
			if err := resps.Error(); err != nil {
				if errors.Is(err, kerr.GroupSubscribedToTopic) {
					return fmt.Errorf("group %q is consuming %s: stop its members first", group, topic)
				}
				return fmt.Errorf("delete offsets of group %q: %w", group, err)
			}
			for _, p := range set.Sorted() {
				for _, pp := range p.Partitions {
					fmt.Fprintf(a.stdout, "%s: deleted the committed offset of %s/%d\n", group, p.Topic, pp)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&topic, "topic", "t", "", "topic whose committed offsets to delete")
	cmd.Flags().Int32SliceVarP(&partitions, "partition", "p", nil, "only these partitions (default all)")
	return cmd
}
