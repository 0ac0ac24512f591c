package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
)

func (a *app) topicsAddPartitionsCmd() *cobra.Command {
	var add, total int
	cmd := &cobra.Command{
		Use:   "add-partitions TOPIC...",
		Short: "Add partitions to topics (CreatePartitions); partitions are never removed",
		Long: `Add partitions to each TOPIC: --num N adds N, --total N sets the count to N
(which must not be below the current count). Keys written before are not
moved: a keyed topic's records for one key end up in two partitions, which
a compacted changelog's readers must tolerate.`,
		Example: `  kvlog topics add-partitions orders --num 2
  kvlog topics add-partitions orders --total 12`,
		Args: minArgs(1, "topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (add > 0) == (total > 0) {
				return usageErr("give one of --num N (partitions to add) or --total N (the new count)")
			}
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			for _, t := range args {
				if _, err := describeOne(ctx, adm, t); err != nil {
					return err
				}
			}
			var resps kadm.CreatePartitionsResponses
			if add > 0 {
				resps, err = adm.CreatePartitions(ctx, add, args...)
			} else {
				resps, err = adm.UpdatePartitions(ctx, total, args...)
			}
			if err != nil {
				return fmt.Errorf("add partitions: %w", err)
			}
			var failed error
			for _, t := range args {
				r, ok := resps[t]
				switch {
				case !ok:
					failed = fmt.Errorf("add partitions to %q: no answer", t)
				case r.Err != nil:
					failed = fmt.Errorf("add partitions to %q: %w", t, kafkaErr(r.Err, r.ErrMessage))
				}
				if failed != nil {
					return failed
				}
			}
			tds, err := adm.ListTopics(ctx, args...)
			if err != nil {
				return fmt.Errorf("describe topics: %w", err)
			}
			for _, t := range args {
				fmt.Fprintf(a.stdout, "%s: %d partitions\n", t, len(tds[t].Partitions))
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&add, "num", "n", 0, "partitions to add")
	cmd.Flags().IntVar(&total, "total", 0, "the new partition count")
	return cmd
}

func (a *app) topicsDeleteRecordsCmd() *cobra.Command {
	var (
		partitions []int32
		before     string
		beforeTime string
		out        output
	)
	cmd := &cobra.Command{
		Use:   "delete-records TOPIC",
		Short: "Delete the records before an offset or a time (DeleteRecords: moves the log start offset)",
		Long: `Delete every record of TOPIC (or of the partitions given with -p) before
--before-offset N (or "end": everything up to the high watermark), or before
the first record with a timestamp at or after --before-time. The log start
offset moves there; whole segments below it are removed from disk.
Kafka allows this only on topics whose cleanup.policy includes delete.`,
		Example: `  kvlog topics delete-records events --before-offset 1000 -p 0
  kvlog topics delete-records events --before-time 2025-01-01T00:00:00Z
  kvlog topics delete-records events --before-offset end`,
		Args: exactArgs("TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			if (before == "") == (beforeTime == "") {
				return usageErr("give one of --before-offset N|end or --before-time T")
			}
			var offset int64 = -1
			if before != "" && before != "end" {
				n, err := strconv.ParseInt(before, 10, 64)
				if err != nil || n < 0 {
					return usageErr("--before-offset %q: want an offset >= 0 or end", before)
				}
				offset = n
			}
			var at time.Time
			if beforeTime != "" {
				var err error
				if at, err = parseTime(beforeTime, time.Now()); err != nil {
					return err
				}
			}
			only, err := parsePartitions(partitions)
			if err != nil {
				return err
			}
			topic := args[0]
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			td, err := describeOne(ctx, adm, topic)
			if err != nil {
				return err
			}
			for p := range only {
				if _, ok := td.Partitions[p]; !ok {
					return fmt.Errorf("topic %q has no partition %d (%d partitions)", topic, p, len(td.Partitions))
				}
			}
			ends, err := listed(adm.ListEndOffsets(ctx, topic))
			if err != nil {
				return err
			}
			var byTime kadm.ListedOffsets
			if beforeTime != "" {
				if byTime, err = listed(adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topic)); err != nil {
					return err
				}
			}
			plan := kadm.Offsets{}
			ends.Each(func(e kadm.ListedOffset) {
				if only != nil && !only[e.Partition] {
					return
				}
				o := offset
				if o < 0 || o > e.Offset {
					o = e.Offset
				}
				if beforeTime != "" {
					o = e.Offset // no record at or after the time: all of them
					if bt, ok := byTime.Lookup(topic, e.Partition); ok && bt.Offset >= 0 && bt.Offset < e.Offset {
						o = bt.Offset
					}
				}
				plan.Add(kadm.Offset{Topic: topic, Partition: e.Partition, At: o, LeaderEpoch: -1})
			})
			resps, err := adm.DeleteRecords(ctx, plan)
			if err != nil {
				return fmt.Errorf("delete records of %s: %w", topic, err)
			}
			type row struct {
				Partition      int32  `json:"partition"`
				LogStartOffset int64  `json:"log_start_offset"`
				Error          string `json:"error,omitempty"`
			}
			var rows []row
			var firstErr error
			for _, r := range resps.Sorted() {
				rw := row{Partition: r.Partition, LogStartOffset: r.LowWatermark}
				if r.Err != nil {
					rw.Error = r.Err.Error()
					if firstErr == nil {
						firstErr = fmt.Errorf("delete records of %s/%d: %w", topic, r.Partition, r.Err)
					}
				}
				rows = append(rows, rw)
			}
			if out.json() {
				if err := writeJSON(a.stdout, map[string]any{"topic": topic, "partitions": rows}); err != nil {
					return err
				}
				return firstErr
			}
			t := newTable(a.stdout, "PARTITION", "LOG-START", "ERROR")
			for _, r := range rows {
				t.row(r.Partition, r.LogStartOffset, orDash(r.Error))
			}
			t.flush()
			return firstErr
		},
	}
	cmd.Flags().Int32SliceVarP(&partitions, "partition", "p", nil, "only these partitions (repeatable or comma-separated; default all)")
	cmd.Flags().StringVar(&before, "before-offset", "", "delete the records before this offset (or end: all)")
	cmd.Flags().StringVar(&beforeTime, "before-time", "", "delete the records before the first one at or after this time (ms, RFC 3339, date, -1h)")
	out.register(cmd)
	return cmd
}

// listed is a ListOffsets answer with its per-partition errors folded in.
func listed(os kadm.ListedOffsets, err error) (kadm.ListedOffsets, error) {
	if err == nil {
		err = os.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	return os, nil
}

type offsetsRow struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Earliest  int64  `json:"earliest"`
	Latest    int64  `json:"latest"`
	// AtTime is the first offset whose timestamp is at or after --time
	// (the latest offset when there is none), with that record's
	// timestamp (ms, -1 when there is none).
	AtTime          *int64 `json:"at_time,omitempty"`
	AtTimeTimestamp *int64 `json:"at_time_timestamp,omitempty"`
}

func (a *app) topicsOffsetsCmd() *cobra.Command {
	var (
		at  string
		out output
	)
	cmd := &cobra.Command{
		Use:   "offsets TOPIC...",
		Short: "Each partition's earliest and latest offsets, and the offset at a time (ListOffsets)",
		Long: `Print each partition's earliest offset (the log start), latest offset (the
high watermark: the offset the next record gets) and, with --time, the first
offset whose record timestamp is at or after that time (the latest offset
when there is none), as Kafka's kafka-get-offsets --time does.`,
		Example: `  kvlog topics offsets users
  kvlog topics offsets users --time 2025-01-01T00:00:00Z
  kvlog topics offsets users --time -1h -o json`,
		Args: minArgs(1, "topic"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			var ts time.Time
			if at != "" {
				var err error
				if ts, err = parseTime(at, time.Now()); err != nil {
					return err
				}
			}
			ctx, adm, done, err := a.admin()
			if err != nil {
				return err
			}
			defer done()
			rows, err := topicOffsets(ctx, adm, args, at != "", ts)
			if err != nil {
				return err
			}
			if out.json() {
				return writeJSON(a.stdout, rows)
			}
			hdr := []string{"TOPIC", "PARTITION", "EARLIEST", "LATEST"}
			if at != "" {
				hdr = append(hdr, "AT-TIME", "TIMESTAMP")
			}
			t := newTable(a.stdout, hdr...)
			for _, r := range rows {
				cols := []any{r.Topic, r.Partition, r.Earliest, r.Latest}
				if r.AtTime != nil {
					cols = append(cols, *r.AtTime, fmtTime(*r.AtTimeTimestamp))
				}
				t.row(cols...)
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&at, "time", "", "also the first offset at or after this time (ms, RFC 3339, date, -1h)")
	out.register(cmd)
	return cmd
}

func topicOffsets(ctx context.Context, adm *kadm.Client, topics []string, withTime bool, ts time.Time) ([]offsetsRow, error) {
	for _, t := range topics {
		if _, err := describeOne(ctx, adm, t); err != nil {
			return nil, err
		}
	}
	starts, err := listed(adm.ListStartOffsets(ctx, topics...))
	if err != nil {
		return nil, err
	}
	ends, err := listed(adm.ListEndOffsets(ctx, topics...))
	if err != nil {
		return nil, err
	}
	var byTime kadm.ListedOffsets
	if withTime {
		if byTime, err = listed(adm.ListOffsetsAfterMilli(ctx, ts.UnixMilli(), topics...)); err != nil {
			return nil, err
		}
	}
	rows := []offsetsRow{}
	ends.Each(func(e kadm.ListedOffset) {
		r := offsetsRow{Topic: e.Topic, Partition: e.Partition, Latest: e.Offset}
		if s, ok := starts.Lookup(e.Topic, e.Partition); ok {
			r.Earliest = s.Offset
		}
		if withTime {
			o, stamp := e.Offset, int64(-1)
			if bt, ok := byTime.Lookup(e.Topic, e.Partition); ok && bt.Offset >= 0 && bt.Offset < e.Offset {
				o, stamp = bt.Offset, bt.Timestamp
			}
			r.AtTime, r.AtTimeTimestamp = &o, &stamp
		}
		rows = append(rows, r)
	})
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Topic != rows[j].Topic {
			return rows[i].Topic < rows[j].Topic
		}
		return rows[i].Partition < rows[j].Partition
	})
	return rows, nil
}
