// Command kvlog is the command-line tool for kvlog (and any Kafka-compatible
// broker): topics, key-value puts and gets on compacted topics, produce and
// consume, state replay with a progress bar, consumer groups, the cleaner's
// status, and an offline dump of segment, index and checkpoint files.
//
// Exit codes: 0 success; 1 failure (broker unreachable, unknown topic, a
// request refused, …); 2 usage error (bad flags or arguments); 3 not found
// (get of a key that is not live); 4 dump found corruption.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvlog/kvlog/internal/buildinfo"
)

// Exit codes.
const (
	exitOK         = 0
	exitFailure    = 1
	exitUsage      = 2
	exitNotFound   = 3
	exitCorruption = 4
)

const defaultBootstrap = "127.0.0.1:9092"

// exitError carries an exit code; its message (if any) is printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// app holds the global flags and the streams, so tests can run the command
// tree in-process.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	bootstrap      string
	timeout        time.Duration
	ctx            context.Context
	// profileName is --profile; profileHTTP and tls come from the
	// profile applied (applyProfile).
	profileName string
	profileHTTP string
	tls         *tls.Config
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, ctx: ctx}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if isCobraUsageError(err) {
		code = exitUsage
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, "kvlog:", concise(msg))
	}
	if code == exitUsage {
		fmt.Fprintln(stderr, "Run 'kvlog --help' or 'kvlog COMMAND --help' for usage.")
	}
	return code
}

// isCobraUsageError recognises the errors cobra returns for unknown commands
// and arguments it validates itself.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "flag needs an argument") ||
		strings.HasPrefix(msg, "invalid argument") || strings.HasPrefix(msg, "required flag")
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "kvlog",
		Short: "Command-line tool for kvlog: topics, key-value tables, replay, groups, cleaner, dump",
		Long: `kvlog talks to a kvlog broker (or any Kafka-compatible broker) over the Kafka
protocol, and inspects kvlog's data files offline.

The broker is given by --bootstrap or $KVLOG_BOOTSTRAP (default ` + defaultBootstrap + `).

Exit codes: 0 success, 1 failure, 2 usage error, 3 key not found (get),
4 corruption found (dump).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate("kvlog {{.Version}}\n")
	bootstrap := os.Getenv("KVLOG_BOOTSTRAP")
	if bootstrap == "" {
		bootstrap = defaultBootstrap
	}
	root.PersistentFlags().StringVarP(&a.bootstrap, "bootstrap", "b", bootstrap, "comma-separated broker addresses (env KVLOG_BOOTSTRAP)")
	root.PersistentFlags().DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for the broker on each request")
	root.PersistentFlags().StringVar(&a.profileName, "profile", "", "connection profile to use (env KVLOG_PROFILE; default: the current one, see kvlog profile)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Parent() != nil && cmd.Parent().Name() == "profile" {
			return nil
		}
		return a.applyProfile(cmd)
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: err}
	})
	root.AddCommand(
		a.topicsCmd(),
		a.putCmd(), a.getCmd(), a.deleteCmd(),
		a.produceCmd(), a.consumeCmd(),
		a.replayCmd(),
		a.groupsCmd(),
		a.clusterCmd(),
		a.profileCmd(),
		a.cleanerCmd(),
		a.dumpCmd(),
	)
	return root
}

// brokers returns the bootstrap list.
func (a *app) brokers() []string {
	var out []string
	for _, s := range strings.Split(a.bootstrap, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// reqCtx is a context bounded by --timeout for one request-response exchange.
func (a *app) reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.ctx, a.timeout)
}

// exactArgs is cobra.ExactArgs with a usage exit code and the names of the
// expected arguments in the message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErr("%s: expected %d argument(s) %s, got %d", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErr("%s: expected at least %d %s", cmd.CommandPath(), n, what)
		}
		return nil
	}
}

// version describes the build (internal/buildinfo).
func version() string { return buildinfo.Version("") }

// groupCmd is a command that only holds subcommands: without one it prints
// its help; an unknown one is a usage error with cobra's suggestions.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:                        use,
		Short:                      short,
		SuggestionsMinimumDistance: 2,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
			}
			return usageErr("%s", msg)
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}
