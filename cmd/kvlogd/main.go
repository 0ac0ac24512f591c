// Command kvlogd is the kvlog broker: a Kafka-wire-compatible server for
// compacted changelog topics.
//
// With no flags it runs one broker on 127.0.0.1:9092 with its data in
// ./data and the embedded metadata store. --config reads a Kafka-style
// server.properties; the flags override the file's common keys.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvlog/kvlog/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kvlogd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("kvlogd", flag.ContinueOnError)
	var (
		configPath = fs.String("config", "", "server.properties file (Apache Kafka key names)")
		listeners  = fs.String("listeners", "", "listeners, e.g. PLAINTEXT://127.0.0.1:9092 (overrides the file)")
		logDirs    = fs.String("log-dirs", "", "comma-separated data directories (overrides log.dirs)")
		nodeID     = fs.Int("node-id", -1, "broker id (overrides node.id/broker.id)")
		zkConnect  = fs.String("zookeeper", "", "ZooKeeper connect string host:port[/chroot] (overrides zookeeper.connect): cluster mode")
		httpAddr   = fs.String("http", "", `HTTP listener for /metrics, /healthz, /cleaner and /debug/pprof (overrides kvlog.http.listener; "" disables)`)
		logLevel   = fs.String("log-level", "info", "debug, info, warn or error")
		shutdownTO = fs.Duration("shutdown-timeout", 30*time.Second, "how long graceful shutdown waits for in-flight requests")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	overrides := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listeners":
			overrides["listeners"] = *listeners
		case "log-dirs":
			overrides["log.dirs"] = *logDirs
		case "node-id":
			overrides["node.id"] = strconv.Itoa(*nodeID)
			overrides["broker.id"] = strconv.Itoa(*nodeID)
		case "http":
			overrides["kvlog.http.listener"] = *httpAddr
		case "zookeeper":
			overrides["zookeeper.connect"] = *zkConnect
		}
	})
	cfg, err := server.LoadConfigFile(*configPath, overrides, logger)
	if err != nil {
		return err
	}

	srv, err := server.New(cfg, server.Options{Logger: logger})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		srv.Close()
		return err
	}

	var httpSrv *http.Server
	httpErr := make(chan error, 1)
	if cfg.HTTPListener != "" {
		ln, err := net.Listen("tcp", cfg.HTTPListener)
		if err != nil {
			srv.Close()
			return fmt.Errorf("http listener: %w", err)
		}
		httpSrv = &http.Server{Handler: srv.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { httpErr <- httpSrv.Serve(ln) }()
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

	select {
	case <-ctx.Done():
	case err := <-httpErr:
		logger.Error("http listener failed", "err", err)
	}
	stop()
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTO)
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

func mode(cfg *server.Config) string {
	if cfg.ZooKeeperConnect != "" {
		return "cluster, ZooKeeper " + cfg.ZooKeeperConnect
	}
	return "single-node, embedded metadata store"
}
