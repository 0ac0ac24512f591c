package main

import (
	"context"
	"fmt"
	"io"
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
	var replayTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "get TOPIC KEY",
		Short: "Replay TOPIC and print KEY's latest value",
		Long: `Replay TOPIC from its log start to its high watermark, as an application
rebuilding its state would, and print KEY's latest value followed by a
newline. Exits with code 3 when the key is not live (never written, or
deleted).`,
		Args: exactArgs("TOPIC", "KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := a.ctxFor(replayTimeout)
			defer cancel()
			if err := a.checkBroker(ctx); err != nil {
				return err
			}
			tbl, err := client.Open(ctx, a.brokers(), args[0], a.clientOpts(client.ReplayOnly(), client.AllowUncompacted())...)
			if err != nil {
				return err
			}
			defer tbl.Close()
			v, ok := tbl.Get([]byte(args[1]))
			if !ok {
				return &exitError{code: exitNotFound, err: fmt.Errorf("key %q not found in topic %s", args[1], args[0])}
			}
			a.stdout.Write(v)
			fmt.Fprintln(a.stdout)
			return nil
		},
	}
	cmd.Flags().DurationVar(&replayTimeout, "replay-timeout", 0, "give up when the replay takes longer (0: no limit)")
	return cmd
}

// ctxFor returns the command context bounded by d when d > 0.
func (a *app) ctxFor(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(a.ctx)
	}
	return context.WithTimeout(a.ctx, d)
}
