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

	"github.com/kvlog/kvlog/client"
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

func (f *recordFormat) write(w *bufio.Writer, r *kgo.Record) {
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
			w.Write(r.Value)
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

type consumedJSON struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp int64  `json:"timestamp"`
	kvJSON
}

func (a *app) consumeCmd() *cobra.Command {
	var (
		fromBeginning bool
		group         string
		format        string
		max           int64
		exitAtEnd     bool
		idle          time.Duration
		commitEvery   time.Duration
		out           output
	)
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print records of TOPIC",
		Long: `Print the records of TOPIC, from the end (new records only) or with
--from-beginning from each partition's log start. With --group the records
are consumed as a member of that consumer group and the offsets of printed
records are committed every --commit-interval (5s, as Kafka's console
consumer auto-commits) and on exit, so a killed consume loses at most that
interval of progress; the group's committed offsets take precedence over
--from-beginning.

--format takes kcat-style placeholders:
  ` + formatHelp + `
-o json prints one JSON object per record instead.

--exit stops once every partition reached the high watermark it had when
consume started (or after --idle-timeout without records, for partitions
whose tail was compacted away).`,
		Example: `  kvlog consume user-profiles --from-beginning --exit --format '%k=%v\n'
  kvlog consume orders --group audit --max 100 -o json`,
		Args: exactArgs("TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out.format == "table" {
				out.format = "text"
			}
			if out.format != "text" && out.format != "json" {
				return usageErr("--output must be text or json, not %q", out.format)
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
			topic := args[0]
			reset := kgo.NewOffset().AtEnd()
			if fromBeginning {
				reset = kgo.NewOffset().AtStart()
			}
			opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(reset), kgo.FetchMaxWait(500 * time.Millisecond)}
			if group != "" {
				opts = append(opts, kgo.ConsumerGroup(group), kgo.DisableAutoCommit())
			}
			cl, adm, err := a.connect(opts...)
			if err != nil {
				return err
			}
			defer cl.Close()

			// What "the end" is, when asked to exit there.
			remaining := map[int32]int64{}
			if exitAtEnd {
				rctx, cancel := a.reqCtx()
				remaining, err = endTargets(rctx, adm, topic, group, fromBeginning)
				cancel()
				if err != nil {
					return err
				}
			} else {
				rctx, cancel := a.reqCtx()
				_, err := describeOne(rctx, adm, topic)
				cancel()
				if err != nil {
					return err
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
				return exitAtEnd && (len(remaining) == 0 || time.Since(lastRecord) >= idle)
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
				stop := false
				fetches.EachRecord(func(r *kgo.Record) {
					if stop {
						return
					}
					if out.format == "json" {
						enc.Encode(consumedJSON{r.Topic, r.Partition, r.Offset, r.Timestamp.UnixMilli(), makeKV(r.Key, r.Value)})
					} else {
						f.write(w, r)
					}
					n++
					lastRecord = time.Now()
					if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
						delete(remaining, r.Partition)
					}
					if group != "" {
						last[r.Partition] = r
					}
					if max > 0 && n >= max {
						stop = true
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
	cmd.Flags().BoolVar(&fromBeginning, "from-beginning", false, "start at each partition's log start (default: the end)")
	cmd.Flags().StringVarP(&group, "group", "g", "", "consume as a member of this consumer group and commit offsets")
	cmd.Flags().StringVarP(&format, "format", "f", `%v\n`, "record format (see above)")
	cmd.Flags().Int64VarP(&max, "max", "n", 0, "stop after this many records (0: no limit)")
	cmd.Flags().BoolVarP(&exitAtEnd, "exit", "e", false, "exit at the end of the topic as of start")
	cmd.Flags().DurationVar(&idle, "idle-timeout", 5*time.Second, "with --exit, also stop after this long without records")
	cmd.Flags().DurationVar(&commitEvery, "commit-interval", 5*time.Second, "with --group, commit the printed records' offsets this often (0: only on exit)")
	cmd.Flags().StringVarP(&out.format, "output", "o", "text", "output: text (--format) or json")
	return cmd
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
		return td, fmt.Errorf("topic %q: %w", topic, client.ErrTopicNotFound)
	}
	return td, nil
}

// endTargets returns, per partition with something left to read, the high
// watermark to stop at.
func endTargets(ctx context.Context, adm *kadm.Client, topic, group string, fromBeginning bool) (map[int32]int64, error) {
	if _, err := describeOne(ctx, adm, topic); err != nil {
		return nil, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	var committed kadm.OffsetResponses
	if group != "" {
		committed, err = adm.FetchOffsetsForTopics(ctx, group, topic)
		if err != nil {
			return nil, fmt.Errorf("fetch committed offsets of group %s: %w", group, err)
		}
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		from := o.Offset // from the end: nothing to read
		if fromBeginning {
			if s, ok := starts.Lookup(topic, o.Partition); ok {
				from = s.Offset
			}
		}
		if c, ok := committed.Lookup(topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			from = c.At
		}
		if from < o.Offset {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}

func isUnknownTopic(err error) bool { return errors.Is(err, kerr.UnknownTopicOrPartition) }
