package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kvlog/kvlog/client"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

type replaySummary struct {
	Topic             string  `json:"topic"`
	Partitions        int32   `json:"partitions"`
	LiveKeys          int     `json:"live_keys"`
	TombstonesSeen    int64   `json:"tombstones_seen"`
	Records           int64   `json:"records"`
	Bytes             int64   `json:"bytes"`
	DurationSeconds   float64 `json:"duration_seconds"`
	RecordsPerSecond  float64 `json:"records_per_second"`
	StalledPartitions []int32 `json:"stalled_partitions,omitempty"`
	Snapshot          string  `json:"snapshot,omitempty"`
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (a *app) replayCmd() *cobra.Command {
	var (
		snapshot string
		progress string
		timeout  time.Duration
		out      output
	)
	cmd := &cobra.Command{
		Use:   "replay TOPIC",
		Short: "Rebuild TOPIC's state as an application would, with progress and a summary",
		Long: `Replay TOPIC from every partition's log start to the high watermark it has
now, keeping the latest value per key (tombstones delete), exactly as the Go
library's Table does on start-up. Progress goes to standard error: a progress
bar on a terminal, a plain line per second otherwise. The summary (live keys,
tombstones seen, records and bytes read, duration, records/s) goes to
standard output. --snapshot writes the resulting state as JSON lines sorted
by key: {"key":"…","value":"…"} (key_base64/value_base64 for bytes that are
not UTF-8).`,
		Args: exactArgs("TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			mode := progress
			switch mode {
			case "auto":
				mode = "plain"
				if isTerminal(a.stderr) {
					mode = "bar"
				}
			case "bar", "plain", "none":
			default:
				return usageErr("--progress must be auto, bar, plain or none, not %q", progress)
			}
			topic := args[0]
			var bar *progressbar.ProgressBar
			var lastPlain time.Time
			onProgress := func(p client.Progress) {
				switch mode {
				case "bar":
					if bar == nil {
						bar = progressbar.NewOptions64(p.Total(),
							progressbar.OptionSetWriter(a.stderr),
							progressbar.OptionSetDescription("replaying "+topic),
							progressbar.OptionShowCount(),
							progressbar.OptionShowIts(),
							progressbar.OptionSetItsString("rec"),
							progressbar.OptionThrottle(100*time.Millisecond),
							progressbar.OptionSetPredictTime(true),
							progressbar.OptionClearOnFinish(),
						)
					}
					bar.Set64(p.Total() - p.Remaining())
					if p.Done {
						bar.Finish()
					}
				case "plain":
					if p.Done || time.Since(lastPlain) >= time.Second {
						lastPlain = time.Now()
						pct := 100.0
						if p.Total() > 0 {
							pct = 100 * float64(p.Total()-p.Remaining()) / float64(p.Total())
						}
						fmt.Fprintf(a.stderr, "replay %s: %.1f%% %d records %d bytes %s\n", topic, pct, p.Records, p.Bytes, p.Elapsed.Round(time.Millisecond))
					}
				}
			}
			ctx, cancel := a.ctxFor(timeout)
			defer cancel()
			if err := a.checkBroker(ctx); err != nil {
				return err
			}
			tbl, err := client.Open(ctx, a.brokers(), topic, a.clientOpts(client.ReplayOnly(), client.AllowUncompacted(),
				client.WithProgress(100*time.Millisecond, onProgress))...)
			if err != nil {
				return err
			}
			defer tbl.Close()
			st := tbl.Stats()
			sum := replaySummary{
				Topic:             topic,
				Partitions:        tbl.Partitions(),
				LiveKeys:          st.LiveKeys,
				TombstonesSeen:    st.Tombstones,
				Records:           st.Records,
				Bytes:             st.Bytes,
				DurationSeconds:   st.ReplayDuration.Seconds(),
				StalledPartitions: st.StalledPartitions,
			}
			if s := st.ReplayDuration.Seconds(); s > 0 {
				sum.RecordsPerSecond = float64(st.Records) / s
			}
			if snapshot != "" {
				if err := writeSnapshot(snapshot, tbl.Snapshot()); err != nil {
					return err
				}
				sum.Snapshot = snapshot
			}
			if out.json() {
				return writeJSON(a.stdout, sum)
			}
			t := newTable(a.stdout)
			t.row("topic:", sum.Topic)
			t.row("partitions:", sum.Partitions)
			t.row("live keys:", sum.LiveKeys)
			t.row("tombstones seen:", sum.TombstonesSeen)
			t.row("records read:", sum.Records)
			t.row("bytes read:", sum.Bytes)
			t.row("duration:", st.ReplayDuration.Round(time.Microsecond))
			t.row("records/s:", fmt.Sprintf("%.0f", sum.RecordsPerSecond))
			if len(sum.StalledPartitions) > 0 {
				t.row("stalled partitions:", ints(sum.StalledPartitions))
			}
			if snapshot != "" {
				t.row("snapshot:", snapshot)
			}
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "write the state to FILE as JSON lines sorted by key")
	cmd.Flags().StringVar(&progress, "progress", "auto", "progress display: auto, bar, plain or none")
	cmd.Flags().DurationVar(&timeout, "replay-timeout", 0, "give up when the replay takes longer (0: no limit)")
	out.register(cmd)
	return cmd
}

func writeSnapshot(path string, s *client.Snapshot) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	enc := json.NewEncoder(w)
	for k, v := range s.Sorted() {
		if err := enc.Encode(makeKV(k, v)); err != nil {
			f.Close()
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}
