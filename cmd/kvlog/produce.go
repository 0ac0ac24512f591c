package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

func parseCompression(s string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(s) {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, usageErr("--compression must be none, gzip, snappy, lz4 or zstd, not %q", s)
}

func parseAcks(s string) ([]kgo.Opt, error) {
	switch s {
	case "all", "-1":
		return []kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks())}, nil
	case "1":
		return []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}, nil
	case "0":
		return []kgo.Opt{kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite()}, nil
	}
	return nil, usageErr("--acks must be all, -1, 1 or 0, not %q", s)
}

func (a *app) produceCmd() *cobra.Command {
	var (
		keySep      string
		compression string
		acks        string
		nullValue   string
		maxLine     int
		headers     []string
		partition   int32
	)
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Produce one record per line of standard input",
		Long: `Produce one record per line of standard input. With --key-separator each
line is KEY<sep>VALUE (split at the first separator; a line without it is an
error); otherwise lines are values with a null key. Keyed records are placed
with Kafka's default partitioner. With --null-value, a value equal to it is
written as a tombstone (null). -H key:value adds a header to every record
(repeatable); -p writes every record to that partition instead of the
partitioner's choice.`,
		Example: `  printf 'alice\t{"age":30}\nbob\t{"age":41}\n' | kvlog produce user-profiles --key-separator '\t'
  kvlog produce user-profiles --key-separator : --null-value NULL < changes.txt
  echo '{"total":12}' | kvlog produce orders -p 2 -H source:import -H trace-id:abc`,
		Args: exactArgs("TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			codec, err := parseCompression(compression)
			if err != nil {
				return err
			}
			ackOpts, err := parseAcks(acks)
			if err != nil {
				return err
			}
			sep := unescape(keySep)
			if keySep != "" && sep == "" {
				return usageErr("--key-separator is empty")
			}
			var hdrs []kgo.RecordHeader
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok || k == "" {
					return usageErr("--header %q: want key:value", h)
				}
				hdrs = append(hdrs, kgo.RecordHeader{Key: k, Value: []byte(v)})
			}
			topic := args[0]
			opts := append([]kgo.Opt{kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation()}, ackOpts...)
			if partition >= 0 {
				opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			}
			cl, adm, err := a.connect(opts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			if partition >= 0 {
				rctx, cancel := a.reqCtx()
				td, err := describeOne(rctx, adm, topic)
				cancel()
				if err != nil {
					return err
				}
				if _, ok := td.Partitions[partition]; !ok {
					return fmt.Errorf("topic %q has no partition %d (%d partitions)", topic, partition, len(td.Partitions))
				}
			}

			var (
				sent     atomic.Int64
				errOnce  sync.Once
				firstErr error
			)
			ctx, cancel := context.WithCancel(a.ctx)
			defer cancel()
			sc := bufio.NewScanner(a.stdin)
			sc.Buffer(make([]byte, 64<<10), maxLine)
			line := 0
			var readErr error
			for sc.Scan() {
				line++
				text := sc.Bytes()
				r := &kgo.Record{Topic: topic, Partition: partition, Headers: hdrs}
				if sep != "" {
					k, v, ok := bytes.Cut(text, []byte(sep))
					if !ok {
						readErr = fmt.Errorf("line %d has no key separator %q", line, keySep)
						break
					}
					r.Key = bytes.Clone(k)
					r.Value = bytes.Clone(v)
				} else {
					r.Value = bytes.Clone(text)
				}
				if nullValue != "" && string(r.Value) == nullValue {
					r.Value = nil
				}
				cl.Produce(ctx, r, func(r *kgo.Record, err error) {
					if err != nil {
						errOnce.Do(func() { firstErr = err; cancel() })
						return
					}
					sent.Add(1)
				})
			}
			if err := sc.Err(); err != nil && readErr == nil {
				readErr = fmt.Errorf("reading stdin: %w", err)
			}
			if err := cl.Flush(a.ctx); err != nil && firstErr == nil {
				firstErr = err
			}
			fmt.Fprintf(a.stderr, "produced %d record(s) to %s\n", sent.Load(), topic)
			if firstErr != nil {
				return fmt.Errorf("produce to %s: %w", topic, firstErr)
			}
			return readErr
		},
	}
	cmd.Flags().StringVarP(&keySep, "key-separator", "K", "", `split each line into KEY and VALUE at this separator (\t and \n escapes allowed)`)
	cmd.Flags().StringVarP(&compression, "compression", "z", "none", "batch compression: none, gzip, snappy, lz4, zstd")
	cmd.Flags().StringVar(&acks, "acks", "all", "required acks: all (-1), 1 or 0")
	cmd.Flags().StringVar(&nullValue, "null-value", "", "write a value equal to this string as a tombstone (null)")
	cmd.Flags().StringArrayVarP(&headers, "header", "H", nil, "header key:value added to every record (repeatable)")
	cmd.Flags().Int32VarP(&partition, "partition", "p", -1, "write to this partition (default: Kafka's partitioner by key)")
	cmd.Flags().IntVar(&maxLine, "max-line-bytes", 16<<20, "longest accepted input line")
	return cmd
}

// unescape turns the \t, \n, \r and \\ escapes of a separator into bytes.
func unescape(s string) string {
	r := strings.NewReplacer(`\t`, "\t", `\n`, "\n", `\r`, "\r", `\\`, `\`, `\0`, "\x00")
	return r.Replace(s)
}
