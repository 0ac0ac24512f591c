// Command kfaked runs franz-go's kfake (a fake Kafka cluster, built from the
// Go module proxy at the version bench/kvbench/go.mod pins) as its own
// process, so the benchmark measures its CPU time and RSS from /proc exactly
// as it does kvlogd's and nats-server's.
//
//	kfaked -listen 127.0.0.1:9092 [-data-dir DIR] [-control 127.0.0.1:9093]
//
// One broker. With -data-dir, kfake persists its segments there (DataDir; no
// per-batch fsync, kfake's default). -control serves:
//
//	POST /compact   runs Cluster.Compact() (every compacted topic) and answers
//	                {"seconds": wall time of the call}
//	GET  /healthz   200 "ok"
//
// SIGTERM or SIGINT closes the cluster.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9092", "Kafka listener host:port")
	dataDir := flag.String("data-dir", "", "persist to this directory (kfake DataDir); empty: in memory")
	control := flag.String("control", "", "HTTP control listener host:port (POST /compact)")
	flag.Parse()

	_, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		fail(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fail(err)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port)}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fail(err)
	}
	if *control != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/compact", func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				http.Error(w, "POST only", http.StatusMethodNotAllowed)
				return
			}
			start := time.Now()
			c.Compact()
			json.NewEncoder(w).Encode(map[string]float64{"seconds": time.Since(start).Seconds()})
		})
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
		ln, err := net.Listen("tcp", *control)
		if err != nil {
			fail(err)
		}
		go http.Serve(ln, mux)
	}
	fmt.Fprintf(os.Stderr, "kfaked ready on %v (data dir %q)\n", c.ListenAddrs(), *dataDir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	c.Close()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kfaked:", err)
	os.Exit(1)
}
