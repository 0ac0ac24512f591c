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
	)
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Produce one record per line of standard input",
		Long: `Produce one record per line of standard input. With --key-separator each
line is KEY<sep>VALUE (split at the first separator; a line without it is an
error); otherwise lines are values with a null key. Keyed records are placed
with Kafka's default partitioner. With --null-value, a value equal to it is
written as a tombstone (null).`,
		Example: `  printf 'alice\t{"age":30}\nbob\t{"age":41}\n' | kvlog produce user-profiles --key-separator '\t'
  kvlog produce user-profiles --key-separator : --null-value NULL < changes.txt`,
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
			topic := args[0]
			opts := append([]kgo.Opt{kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation()}, ackOpts...)
			cl, _, err := a.connect(opts...)
			if err != nil {
				return err
			}
			defer cl.Close()

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
				r := &kgo.Record{Topic: topic}
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
	cmd.Flags().IntVar(&maxLine, "max-line-bytes", 16<<20, "longest accepted input line")
	return cmd
}

// unescape turns the \t, \n, \r and \\ escapes of a separator into bytes.
func unescape(s string) string {
	r := strings.NewReplacer(`\t`, "\t", `\n`, "\n", `\r`, "\r", `\\`, `\`, `\0`, "\x00")
	return r.Replace(s)
}
