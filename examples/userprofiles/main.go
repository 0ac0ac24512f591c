// Command userprofiles is an example service that keeps user profiles in the
// compacted topic user-profiles and rebuilds its whole state on start by
// replaying it with the kvlog client library: no database, the topic is the
// source of truth.
//
//	make run                                  # a broker on 127.0.0.1:9092
//	go run ./examples/userprofiles            # serves http://127.0.0.1:8080
//	curl -X PUT -d '{"name":"Alice"}' 127.0.0.1:8080/users/alice
//	curl 127.0.0.1:8080/users/alice
//	curl -X DELETE 127.0.0.1:8080/users/alice
//	curl 127.0.0.1:8080/users                 # every profile, sorted
//
// Stop it and start it again: the profiles are back, rebuilt from the topic.
// PUT and DELETE return once the change is acknowledged and applied locally,
// so a GET right after sees it (read your writes).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kvlog/kvlog/client"
)

func main() {
	bootstrap := flag.String("bootstrap", "127.0.0.1:9092", "kvlog broker addresses, comma-separated")
	topic := flag.String("topic", "user-profiles", "compacted topic holding the profiles")
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP listen address")
	partitions := flag.Int("partitions", 3, "partitions when the topic is created")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Split(*bootstrap, ","), *topic, *listen, int32(*partitions)); err != nil {
		slog.Error("userprofiles", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, brokers []string, topic, listen string, partitions int32) error {
	start := time.Now()
	tbl, err := client.Open(ctx, brokers, topic,
		client.WithCreateTopic(client.TopicSpec{Partitions: partitions}),
		client.WithProgress(time.Second, func(p client.Progress) {
			slog.Info("replaying", "topic", topic, "records", p.Records, "remaining_offsets", p.Remaining(), "done", p.Done)
		}))
	if err != nil {
		return err
	}
	defer tbl.Close()
	st := tbl.Stats()
	slog.Info("state rebuilt", "profiles", tbl.Len(), "records", st.Records, "tombstones", st.Tombstones, "took", time.Since(start).Round(time.Millisecond))

	srv := &http.Server{Addr: listen, Handler: handler(tbl), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	slog.Info("serving", "addr", "http://"+listen+"/users/")
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func handler(tbl *client.Table) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]json.RawMessage{}
		for k, v := range tbl.Snapshot().Sorted() {
			if json.Valid(v) {
				out[string(k)] = v
			} else {
				b, _ := json.Marshal(string(v))
				out[string(k)] = b
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		v, ok := tbl.Get([]byte(r.PathValue("id")))
		if !ok {
			http.Error(w, "no such user", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(v)
	})
	mux.HandleFunc("PUT /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || !json.Valid(body) {
			http.Error(w, "body must be JSON", http.StatusBadRequest)
			return
		}
		pos, err := tbl.Put(r.Context(), []byte(r.PathValue("id")), body)
		if err == nil {
			err = tbl.WaitFor(r.Context(), pos)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "stored at partition %d offset %d\n", pos.Partition, pos.Offset)
	})
	mux.HandleFunc("DELETE /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		pos, err := tbl.Delete(r.Context(), []byte(r.PathValue("id")))
		if err == nil {
			err = tbl.WaitFor(r.Context(), pos)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
