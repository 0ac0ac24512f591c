// Command kvlogd is the kvlog broker: a Kafka-wire-compatible server for
// compacted changelog topics.
//
// With no flags it runs one broker on 127.0.0.1:9092 with its data in
// ./data and the embedded metadata store. --config reads a Kafka-style
// server.properties; the flags override the file's common keys. It takes
// no positional arguments. Exit status: 0 after a clean shutdown, --help or
// --version; 1 when the broker fails (e.g. its port is in use or its log
// dir is locked by another kvlogd); 2 for a bad command line.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvlog/kvlog/internal/buildinfo"
	"github.com/kvlog/kvlog/server"
	"github.com/kvlog/kvlog/server/config"
)

// version is the release version, set at build time with
// -ldflags "-X main.version=v1.2.3"; when empty, versionString falls back to
// the module version and VCS revision the Go toolchain stamps into the
// binary.
var version string

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usageText = `Usage: kvlogd [flags]

Runs one kvlog broker. Without flags: listener 127.0.0.1:9092, data in ./data,
HTTP (metrics, health) on 127.0.0.1:9644, single-node embedded metadata store.

Flags:
`

// run is kvlogd; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kvlogd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below, to stdout for --help
	var f flags
	fs.StringVar(&f.configPath, "config", "", "server.properties file (Apache Kafka key names)")
	fs.StringVar(&f.listeners, "listeners", "", "listeners, e.g. PLAINTEXT://127.0.0.1:9092 (overrides the file)")
	fs.StringVar(&f.logDirs, "log-dirs", "", "comma-separated data directories (overrides log.dirs)")
	fs.IntVar(&f.nodeID, "node-id", -1, "broker id (overrides node.id/broker.id)")
	fs.StringVar(&f.zkConnect, "zookeeper", "", "ZooKeeper connect string host:port[/chroot] (overrides zookeeper.connect): cluster mode")
	fs.StringVar(&f.httpAddr, "http", "", `HTTP listener for /metrics, /healthz, /cleaner, the console /ui/ and /debug/pprof (overrides kvlog.http.listener; "" disables)`)
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text (key=value) or json (one object per line)")
	fs.DurationVar(&f.shutdownTO, "shutdown-timeout", 30*time.Second, "how long graceful shutdown waits for in-flight requests")
	showVersion := fs.Bool("version", false, "print the version and exit")
	printUsage := func(w io.Writer) {
		fmt.Fprint(w, usageText)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return 0
		}
		// The flag package printed the error.
		printUsage(stderr)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kvlogd: unexpected argument %q: kvlogd takes only flags (see kvlogd --help)\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "kvlogd", versionString())
		return 0
	}
	if err := serve(fs, f, stderr); err != nil {
		fmt.Fprintln(stderr, "kvlogd:", err)
		return 1
	}
	return 0
}

// versionString is version, or what the build recorded.
func versionString() string { return buildinfo.Version(version) }

// flags are kvlogd's command-line settings.
type flags struct {
	configPath, listeners, logDirs, zkConnect, httpAddr, logLevel, logFormat string
	nodeID                                                                   int
	shutdownTO                                                               time.Duration
}

// serve runs the broker until SIGTERM or SIGINT; fs says which flags were
// given.
func serve(fs *flag.FlagSet, f flags, stderr io.Writer) error {
	startProf := startPhaseProfile("start", stderr)
	defer startProf.stop(stderr) // when start-up fails
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	// Durations print as "1.5s" in both formats (JSON would give
	// nanoseconds).
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			return slog.String(a.Key, a.Value.Duration().String())
		}
		return a
	}}
	var handler slog.Handler
	switch f.logFormat {
	case "text":
		handler = slog.NewTextHandler(stderr, hopts)
	case "json":
		handler = slog.NewJSONHandler(stderr, hopts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", f.logFormat)
	}
	logger := slog.New(handler)
	slog.SetDefault(logger)

	overrides := map[string]string{}
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "listeners":
			overrides["listeners"] = f.listeners
		case "log-dirs":
			overrides["log.dirs"] = f.logDirs
		case "node-id":
			overrides["node.id"] = strconv.Itoa(f.nodeID)
			overrides["broker.id"] = strconv.Itoa(f.nodeID)
		case "http":
			overrides["kvlog.http.listener"] = f.httpAddr
		case "zookeeper":
			overrides["zookeeper.connect"] = f.zkConnect
		}
	})
	cfg, err := config.Load(f.configPath, overrides, logger)
	if err != nil {
		return err
	}

	// Every listener is bound before the data dirs are touched (server.New
	// binds the Kafka f.listeners, then locks the dirs): a second kvlogd on
	// the same ports or data fails without reading or writing them.
	var httpLn net.Listener
	if cfg.HTTPListener != "" {
		if httpLn, err = net.Listen("tcp", cfg.HTTPListener); err != nil {
			return fmt.Errorf("http listener: %w", err)
		}
	}
	srv, err := server.New(cfg, server.Options{Logger: logger})
	if err != nil {
		if httpLn != nil {
			httpLn.Close()
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		if httpLn != nil {
			httpLn.Close()
		}
		srv.Close()
		return err
	}

	var httpSrv *http.Server
	httpErr := make(chan error, 1)
	if httpLn != nil {
		tlsCfg, err := srv.HTTPTLSConfig()
		if err != nil {
			httpLn.Close()
			srv.Close()
			return err
		}
		if tlsCfg != nil {
			httpLn = tls.NewListener(httpLn, tlsCfg)
		}
		httpSrv = &http.Server{Handler: srv.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { httpErr <- httpSrv.Serve(httpLn) }()
	}

	var addrs []string
	for name, a := range srv.ListenerAddrs() {
		addrs = append(addrs, name+"://"+a.String())
	}
	logger.Info("kvlogd started",
		"listeners", strings.Join(addrs, ","),
		"log_dirs", strings.Join(cfg.LogDirs, ","),
		"mode", mode(cfg),
		"node_id", cfg.NodeID,
		"cluster_id", srv.ClusterID(),
		"http", cfg.HTTPListener,
		"pid", os.Getpid())
	startProf.stop(stderr)

	select {
	case <-ctx.Done():
	case err := <-httpErr:
		logger.Error("http listener failed", "err", err)
	}
	stop()
	shutdownProf := startPhaseProfile("shutdown", stderr)
	defer shutdownProf.stop(stderr)
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTO)
	defer cancel()
	if httpSrv != nil {
		httpSrv.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("shutdown complete")
	return nil
}

func mode(cfg *config.Broker) string {
	if cfg.ZooKeeperConnect != "" {
		return "cluster, ZooKeeper " + cfg.ZooKeeperConnect
	}
	return "single-node, embedded metadata store"
}
