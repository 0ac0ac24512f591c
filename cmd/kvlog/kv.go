package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kvlog/kvlog/client"
	"github.com/spf13/cobra"
)

func (a *app) putCmd() *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "put TOPIC KEY [VALUE]",
		Short: "Write VALUE under KEY (placed with Kafka's default partitioner)",
		Long: `Write VALUE under KEY. The key's partition is the one Kafka's default
partitioner (murmur2) picks, so Java, librdkafka and Go writers agree. With
--stdin the value is read from standard input. Prints where the record
landed: TOPIC/PARTITION@OFFSET.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if fromStdin {
				return exactArgs("TOPIC", "KEY")(cmd, args)
			}
			return exactArgs("TOPIC", "KEY", "VALUE")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var value []byte
			if fromStdin {
				b, err := io.ReadAll(a.stdin)
				if err != nil {
					return fmt.Errorf("reading stdin: %w", err)
				}
				value = b
			} else {
				value = []byte(args[2])
			}
			return a.write(args[0], []byte(args[1]), value)
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "stdin", false, "read the value from standard input")
	return cmd
}

func (a *app) deleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete TOPIC KEY",
		Short: "Delete KEY: write a tombstone (null value)",
		Args:  exactArgs("TOPIC", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.write(args[0], []byte(args[1]), nil)
		},
	}
}

func (a *app) write(topic string, key, value []byte) error {
	ctx, cancel := a.reqCtx()
	defer cancel()
	if err := a.checkBroker(ctx); err != nil {
		return err
	}
	w, err := client.NewWriter(ctx, a.brokers(), topic, a.clientOpts()...)
	if err != nil {
		return err
	}
	defer w.Close()
	var pos client.Position
	if value == nil {
		pos, err = w.Delete(ctx, key)
	} else {
		pos, err = w.Put(ctx, key, value)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s/%d@%d\n", topic, pos.Partition, pos.Offset)
	return nil
}

func (a *app) getCmd() *cobra.Command {
	var (
		replayTimeout time.Duration
		replay        bool
		httpAddr      string
		atOffset      int64
		wait          time.Duration
	)
	def := os.Getenv("KVLOG_HTTP")
	cmd := &cobra.Command{
		Use:   "get TOPIC KEY",
		Short: "Print KEY's latest value (a lookup on the broker's key index)",
		Long: `Print KEY's latest committed value followed by a newline. The broker
answers from the topic's key index (compacted topics keep one) on its HTTP
listener, with no replay: --http (or $KVLOG_HTTP) when given, else the
kvlog.http.listener the --bootstrap broker reports. --at-offset N waits
(at most --wait) until the record at offset N of the key's partition is
committed, to read one's own write (put prints TOPIC/PARTITION@OFFSET).
--replay instead replays TOPIC from its log start to its high watermark,
as an application rebuilding its state would (any Kafka broker, any
topic); a topic without a key index is replayed too. Exits with code 3 when the key is not live (never written, or
deleted).`,
		Args: exactArgs("TOPIC", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if replay {
				return a.getByReplay(args[0], args[1], replayTimeout)
			}
			base := httpAddr
			if base == "" {
				base = a.profileHTTP
			}
			if base == "" {
				var err error
				if base, err = a.brokerHTTP(); err != nil {
					return fmt.Errorf("%w (get --replay reads the key by replaying the topic instead)", err)
				}
			}
			ctx, cancel := a.reqCtx()
			defer cancel()
			if wait > 0 {
				cancel()
				ctx, cancel = context.WithTimeout(a.ctx, wait+10*time.Second)
				defer cancel()
			}
			opts := client.LookupOptions{HTTP: base, Wait: wait}
			if cmd.Flags().Changed("at-offset") {
				if atOffset < 0 {
					return usageErr("--at-offset must be >= 0")
				}
				opts.MinOffset, opts.AtOffset = atOffset, true
			}
			res, err := client.Lookup(ctx, args[0], []byte(args[1]), opts)
			if errors.Is(err, client.ErrNotCompacted) && !opts.AtOffset {
				// No key index (not compacted, or disabled): replay.
				return a.getByReplay(args[0], args[1], replayTimeout)
			}
			if err != nil {
				return err
			}
			if !res.Found {
				return &exitError{code: exitNotFound, err: fmt.Errorf("key %q not found in topic %s", args[1], args[0])}
			}
			a.stdout.Write(res.Value)
			fmt.Fprintln(a.stdout)
			return nil
		},
	}
	cmd.Flags().BoolVar(&replay, "replay", false, "replay the topic instead of asking the broker's key index")
	cmd.Flags().DurationVar(&replayTimeout, "replay-timeout", 0, "with --replay, give up when the replay takes longer (0: no limit)")
	cmd.Flags().StringVar(&httpAddr, "http", def, "broker HTTP listener host:port (env KVLOG_HTTP; default: asked from the --bootstrap broker)")
	cmd.Flags().Int64Var(&atOffset, "at-offset", -1, "wait until this offset of the key's partition is committed (read-your-writes)")
	cmd.Flags().DurationVar(&wait, "wait", 0, "with --at-offset, how long the broker waits (0: its default, 5s)")
	return cmd
}

// getByReplay is get --replay: replay the topic and print the key.
func (a *app) getByReplay(topic, key string, replayTimeout time.Duration) error {
	ctx, cancel := a.ctxFor(replayTimeout)
	defer cancel()
	if err := a.checkBroker(ctx); err != nil {
		return err
	}
	tbl, err := client.Open(ctx, a.brokers(), topic, a.clientOpts(client.ReplayOnly(), client.AllowUncompacted())...)
	if err != nil {
		return err
	}
	defer tbl.Close()
	v, ok := tbl.Get([]byte(key))
	if !ok {
		return &exitError{code: exitNotFound, err: fmt.Errorf("key %q not found in topic %s", key, topic)}
	}
	a.stdout.Write(v)
	fmt.Fprintln(a.stdout)
	return nil
}

// ctxFor returns the command context bounded by d when d > 0.
func (a *app) ctxFor(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(a.ctx)
	}
	return context.WithTimeout(a.ctx, d)
}
