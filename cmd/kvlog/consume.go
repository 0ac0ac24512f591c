package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// recordFormat renders records with kcat-style placeholders.
type recordFormat struct{ parts []fmtPart }

type fmtPart struct {
	lit  string
	verb byte // 0 for a literal
}

const formatHelp = `%t topic, %p partition, %o offset, %k key, %v value (empty for null),
%T timestamp (ms), %K key length, %S value length (-1 for null), %h headers,
%% a percent sign; \n, \t, \\ escapes`

func parseFormat(s string) (*recordFormat, error) {
	s = unescape(s)
	f := &recordFormat{}
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return nil, usageErr("--format ends with a lone %%")
		}
		i++
		switch c := s[i]; c {
		case '%':
			lit.WriteByte('%')
		case 't', 'p', 'o', 'k', 'v', 'T', 'K', 'S', 'h':
			if lit.Len() > 0 {
				f.parts = append(f.parts, fmtPart{lit: lit.String()})
				lit.Reset()
			}
			f.parts = append(f.parts, fmtPart{verb: c})
		default:
			return nil, usageErr("--format: unknown placeholder %%%c (known: %s)", c, formatHelp)
		}
	}
	if lit.Len() > 0 {
		f.parts = append(f.parts, fmtPart{lit: lit.String()})
	}
	return f, nil
}

func (f *recordFormat) write(w *bufio.Writer, r *kgo.Record, null string) {
	for _, p := range f.parts {
		switch p.verb {
		case 0:
			w.WriteString(p.lit)
		case 't':
			w.WriteString(r.Topic)
		case 'p':
			w.WriteString(strconv.Itoa(int(r.Partition)))
		case 'o':
			w.WriteString(strconv.FormatInt(r.Offset, 10))
		case 'k':
			w.Write(r.Key)
		case 'v':
			if r.Value == nil {
				w.WriteString(null)
			} else {
				w.Write(r.Value)
			}
		case 'T':
			w.WriteString(strconv.FormatInt(r.Timestamp.UnixMilli(), 10))
		case 'K':
			if r.Key == nil {
				w.WriteString("-1")
			} else {
				w.WriteString(strconv.Itoa(len(r.Key)))
			}
		case 'S':
			if r.Value == nil {
				w.WriteString("-1")
			} else {
				w.WriteString(strconv.Itoa(len(r.Value)))
			}
		case 'h':
			for i, h := range r.Headers {
				if i > 0 {
					w.WriteByte(',')
				}
				w.WriteString(h.Key)
				w.WriteByte('=')
				w.Write(h.Value)
			}
		}
	}
}

type headerJSON struct {
	Key   string  `json:"key"`
	Value *string `json:"value"` // null for a null header value
	// ValueBase64 holds a value that is not valid UTF-8.
	ValueBase64 []byte `json:"value_base64,omitempty"`
}

type consumedJSON struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp int64  `json:"timestamp"`
	kvJSON
	Headers []headerJSON `json:"headers,omitempty"`
}

func makeConsumed(r *kgo.Record) consumedJSON {
	c := consumedJSON{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), kvJSON: makeKV(r.Key, r.Value)}
	for _, h := range r.Headers {
		hj := headerJSON{Key: h.Key}
		if s, null := jsonBytes(h.Value); s != nil {
			hj.Value = s
		} else if !null {
			hj.ValueBase64 = h.Value
		}
		c.Headers = append(c.Headers, hj)
	}
	return c
}

// startSpec is -o: where each partition starts.
type startSpec struct {
	kind byte  // 's' start, 'e' end, 'a' absolute, 'r' relative to the end, 't' timestamp
	n    int64 // the offset, the count back from the end, or the time (ms)
}

func parseStart(s string, now time.Time) (startSpec, error) {
	switch s {
	case "start", "beginning", "earliest", "oldest":
		return startSpec{kind: 's'}, nil
	case "end", "latest", "newest":
		return startSpec{kind: 'e'}, nil
	}
	if strings.HasPrefix(s, "@") {
		t, err := parseTime(s[1:], now)
		if err != nil {
			return startSpec{}, err
		}
		return startSpec{kind: 't', n: t.UnixMilli()}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return startSpec{}, usageErr("--offset %q: want start, end, an offset N, -N (N before the end) or @TIME", s)
	}
	if n < 0 || strings.HasPrefix(s, "-") {
		return startSpec{kind: 'r', n: -n}, nil
	}
	return startSpec{kind: 'a', n: n}, nil
}

// untilSpec is --until: where each partition stops (exclusive).
type untilSpec struct {
	offset int64 // -1: none
	ms     int64 // -1: none
}

func parseUntil(s string, now time.Time) (untilSpec, error) {
	u := untilSpec{offset: -1, ms: -1}
	if s == "" {
		return u, nil
	}
	if strings.HasPrefix(s, "@") {
		t, err := parseTime(s[1:], now)
		if err != nil {
			return u, err
		}
		u.ms = t.UnixMilli()
		return u, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return u, usageErr("--until %q: want an offset N or @TIME", s)
	}
	u.offset = n
	return u, nil
}

func (a *app) consumeCmd() *cobra.Command {
	var (
		fromBeginning bool
		offsetFlag    string
		partitions    []int32
		until         string
		group         string
		format        string
		nullValue     string
		max           int64
		exitAtEnd     bool
		idle          time.Duration
		commitEvery   time.Duration
		outFormat     string
	)
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print records of TOPIC",
		Long: `Print the records of TOPIC, from the end (new records only) by default.

-o/--offset says where each partition starts: start (the log start), end,
an offset N, -N (N records before the end), or @TIME (the first record at or
after TIME: Unix ms, RFC 3339, a date, or -1h for an hour ago).
--from-beginning is -o start. -p reads only the given partitions.
--until N stops each partition before offset N; --until @TIME before the
first record at or after TIME. --exit stops once every partition reached the
high watermark it had when consume started (or after --idle-timeout without
records, for partitions whose tail was compacted away).

With --group the records are consumed as a member of that consumer group and
the offsets of printed records are committed every --commit-interval (5s, as
Kafka's console consumer auto-commits) and on exit, so a killed consume
loses at most that interval of progress; the group's committed offsets take
precedence over -o, which applies to partitions without one.

--format takes kcat-style placeholders:
  ` + formatHelp + `
A null value (a tombstone) prints as --null-value (default: nothing; %S
is -1 for it and 0 for an empty value). --output json prints one JSON object
per record instead: a tombstone has "null": true and no "value", headers
are listed under "headers".`,
		Example: `  kvlog consume user-profiles -o start --exit --format '%k=%v\n'
  kvlog consume orders -p 0 -o -10 --exit --format '%o %k %h\n'
  kvlog consume orders -o @2025-01-01T00:00:00Z --until @2025-01-02 --output json
  kvlog consume orders --group audit --max 100 --output json`,
		Args: exactArgs("TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			// -o json and -o text: the output format, as before -o
			// became the offset.
			if offsetFlag == "json" || offsetFlag == "text" {
				outFormat, offsetFlag = offsetFlag, ""
			}
			if outFormat == "table" {
				outFormat = "text"
			}
			if outFormat != "text" && outFormat != "json" {
				return usageErr("--output must be text or json, not %q", outFormat)
			}
			f, err := parseFormat(format)
			if err != nil {
				return err
			}
			if max < 0 {
				return usageErr("--max must be >= 0")
			}
			if commitEvery < 0 {
				return usageErr("--commit-interval must be >= 0")
			}
			now := time.Now()
			start := startSpec{kind: 'e'}
			if fromBeginning {
				if offsetFlag != "" {
					return usageErr("give --from-beginning or --offset, not both")
				}
				start.kind = 's'
			}
			if offsetFlag != "" {
				if start, err = parseStart(offsetFlag, now); err != nil {
					return err
				}
			}
			stop, err := parseUntil(until, now)
			if err != nil {
				return err
			}
			only, err := parsePartitions(partitions)
			if err != nil {
				return err
			}
			if group != "" && only != nil {
				return usageErr("--partition cannot be used with --group: the group assigns the partitions")
			}
			topic := args[0]

			// Where each partition starts and stops, from the offsets
			// the broker lists now.
			cl0, adm, err := a.connect()
			if err != nil {
				return err
			}
			rctx, cancel := a.reqCtx()
			plan, err := planConsume(rctx, adm, topic, group, only, start)
			cancel()
			cl0.Close()
			if err != nil {
				return err
			}

			opts := []kgo.Opt{kgo.FetchMaxWait(500 * time.Millisecond)}
			if group != "" {
				opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start.kgo()), kgo.ConsumerGroup(group), kgo.DisableAutoCommit())
			} else {
				at := map[int32]kgo.Offset{}
				for p, o := range plan.from {
					at[p] = kgo.NewOffset().At(o)
				}
				opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}))
			}
			cl, _, err := a.connect(opts...)
			if err != nil {
				return err
			}
			defer cl.Close()

			// remaining: the partitions still to finish, when consume
			// ends by itself (--exit or --until), with the offset they
			// end before (-1: until a record at or after --until's time).
			bounded := exitAtEnd || stop.offset >= 0 || stop.ms >= 0
			remaining := map[int32]int64{}
			if bounded {
				for p, from := range plan.from {
					end := int64(-1)
					if exitAtEnd {
						end = plan.end[p]
					}
					if stop.offset >= 0 && (end < 0 || stop.offset < end) {
						end = stop.offset
					}
					if end < 0 || from < end {
						remaining[p] = end
					}
				}
			}

			w := bufio.NewWriterSize(a.stdout, 64<<10)
			defer w.Flush()
			enc := json.NewEncoder(w)
			var n int64
			last := map[int32]*kgo.Record{} // per partition, printed and not yet committed
			lastRecord := time.Now()
			// commit commits the offsets after the records printed so far.
			// Not a.ctx: an interrupt ends the loop, and the final commit
			// must still happen.
			lastCommit := time.Now()
			commit := func() error {
				lastCommit = time.Now()
				if group == "" || len(last) == 0 {
					return nil
				}
				recs := make([]*kgo.Record, 0, len(last))
				for _, r := range last {
					recs = append(recs, r)
				}
				cctx, cancel := context.WithTimeout(context.Background(), a.timeout)
				err := cl.CommitRecords(cctx, recs...)
				cancel()
				if err != nil {
					return fmt.Errorf("commit offsets for group %s: %w", group, err)
				}
				clear(last)
				return nil
			}
			done := func() bool {
				if max > 0 && n >= max {
					return true
				}
				if !bounded {
					return false
				}
				return len(remaining) == 0 || (exitAtEnd && time.Since(lastRecord) >= idle)
			}
			for !done() {
				pctx, cancel := context.WithTimeout(a.ctx, 500*time.Millisecond)
				fetches := cl.PollRecords(pctx, 0)
				cancel()
				if a.ctx.Err() != nil {
					break
				}
				var ferr error
				fetches.EachError(func(t string, p int32, err error) {
					if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
						ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
					}
				})
				if ferr != nil {
					return ferr
				}
				stopAll := false
				fetches.EachRecord(func(r *kgo.Record) {
					if stopAll {
						return
					}
					end, bound := remaining[r.Partition]
					if bounded && !bound {
						return // this partition is finished
					}
					if !bound {
						end = -1
					}
					if (end >= 0 && r.Offset >= end) || (stop.ms >= 0 && r.Timestamp.UnixMilli() >= stop.ms) {
						delete(remaining, r.Partition)
						return
					}
					if outFormat == "json" {
						enc.Encode(makeConsumed(r))
					} else {
						f.write(w, r, nullValue)
					}
					n++
					lastRecord = time.Now()
					if end >= 0 && r.Offset+1 >= end {
						delete(remaining, r.Partition)
					}
					if group != "" {
						last[r.Partition] = r
					}
					if max > 0 && n >= max {
						stopAll = true
					}
				})
				w.Flush()
				// Periodically, after the records are printed: at least
				// once, as Kafka's console consumer.
				if commitEvery > 0 && time.Since(lastCommit) >= commitEvery {
					if err := commit(); err != nil {
						return err
					}
				}
			}
			if err := commit(); err != nil {
				return err
			}
			return nil // an interrupt (Ctrl-C) ends consume normally
		},
	}
	cmd.Flags().StringVarP(&offsetFlag, "offset", "o", "", "where to start: start, end, N, -N (before the end), @TIME (default end)")
	cmd.Flags().BoolVar(&fromBeginning, "from-beginning", false, "start at each partition's log start (-o start)")
	cmd.Flags().Int32SliceVarP(&partitions, "partition", "p", nil, "only these partitions (repeatable or comma-separated)")
	cmd.Flags().StringVarP(&until, "until", "u", "", "stop each partition before offset N or before the first record at or after @TIME")
	cmd.Flags().StringVarP(&group, "group", "g", "", "consume as a member of this consumer group and commit offsets")
	cmd.Flags().StringVarP(&format, "format", "f", `%v\n`, "record format (see above)")
	cmd.Flags().StringVar(&nullValue, "null-value", "", "what %v prints for a null value (a tombstone)")
	cmd.Flags().Int64VarP(&max, "max", "n", 0, "stop after this many records (0: no limit)")
	cmd.Flags().BoolVarP(&exitAtEnd, "exit", "e", false, "exit at the end of the topic as of start")
	cmd.Flags().DurationVar(&idle, "idle-timeout", 5*time.Second, "with --exit, also stop after this long without records")
	cmd.Flags().DurationVar(&commitEvery, "commit-interval", 5*time.Second, "with --group, commit the printed records' offsets this often (0: only on exit)")
	cmd.Flags().StringVar(&outFormat, "output", "text", "output: text (--format) or json (-o json is accepted too)")
	return cmd
}

// kgo is the reset offset for a group's partitions without a commit.
func (s startSpec) kgo() kgo.Offset {
	switch s.kind {
	case 's':
		return kgo.NewOffset().AtStart()
	case 'a':
		return kgo.NewOffset().At(s.n)
	case 'r':
		return kgo.NewOffset().AtEnd().Relative(-s.n)
	case 't':
		return kgo.NewOffset().AfterMilli(s.n)
	}
	return kgo.NewOffset().AtEnd()
}

// consumePlan is, per partition read, the offset consume starts at and the
// high watermark as of start.
type consumePlan struct {
	from map[int32]int64
	end  map[int32]int64
}

func planConsume(ctx context.Context, adm *kadm.Client, topic, group string, only map[int32]bool, start startSpec) (consumePlan, error) {
	plan := consumePlan{from: map[int32]int64{}, end: map[int32]int64{}}
	td, err := describeOne(ctx, adm, topic)
	if err != nil {
		return plan, err
	}
	for p := range only {
		if _, ok := td.Partitions[p]; !ok {
			return plan, fmt.Errorf("topic %q has no partition %d (%d partitions)", topic, p, len(td.Partitions))
		}
	}
	ends, err := listed(adm.ListEndOffsets(ctx, topic))
	if err != nil {
		return plan, err
	}
	starts, err := listed(adm.ListStartOffsets(ctx, topic))
	if err != nil {
		return plan, err
	}
	var byTime kadm.ListedOffsets
	if start.kind == 't' {
		if byTime, err = listed(adm.ListOffsetsAfterMilli(ctx, start.n, topic)); err != nil {
			return plan, err
		}
	}
	var committed kadm.OffsetResponses
	if group != "" {
		committed, err = adm.FetchOffsetsForTopics(ctx, group, topic)
		if err != nil {
			return plan, groupErr(fmt.Sprintf("committed offsets of group %q", group), err)
		}
	}
	ends.Each(func(e kadm.ListedOffset) {
		if only != nil && !only[e.Partition] {
			return
		}
		s, _ := starts.Lookup(topic, e.Partition)
		var from int64
		switch start.kind {
		case 's':
			from = s.Offset
		case 'e':
			from = e.Offset
		case 'a':
			from = start.n
		case 'r':
			from = e.Offset - start.n
		case 't':
			from = e.Offset
			if bt, ok := byTime.Lookup(topic, e.Partition); ok && bt.Offset >= 0 {
				from = bt.Offset
			}
		}
		if c, ok := committed.Lookup(topic, e.Partition); ok && c.Err == nil && c.At >= 0 {
			from = c.At
		}
		plan.from[e.Partition] = min(max(from, s.Offset), e.Offset)
		if start.kind == 'a' && start.n > e.Offset {
			plan.from[e.Partition] = start.n // wait for it
		}
		plan.end[e.Partition] = e.Offset
	})
	return plan, nil
}

func describeOne(ctx context.Context, adm *kadm.Client, topic string) (kadm.TopicDetail, error) {
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return kadm.TopicDetail{}, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	td, ok := tds[topic]
	if !ok || td.Err != nil {
		if td.Err != nil && !isUnknownTopic(td.Err) {
			return td, fmt.Errorf("topic %q: %w", topic, td.Err)
		}
		return td, topicNotFound(topic)
	}
	return td, nil
}

func isUnknownTopic(err error) bool { return errors.Is(err, kerr.UnknownTopicOrPartition) }
