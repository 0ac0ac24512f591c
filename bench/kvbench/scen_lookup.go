package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kvlog/kvlog/client"
)

// Scenario 10: key lookups — a key's latest value without replay. Data,
// written once: `lookupKeys` keys (13-byte keys, 100-byte values) in a
// compacted kvlog topic of 1 partition and one of 8, and in a NATS KV
// bucket (history 1). Measured, alternating between variants:
//
// kvlog's data is produced in batches of at most 16 KiB (Java's default
// batch.size). Measured:
//
//   - single-key latency (p50/p99/p99.9), one client issuing lookups of
//     random keys back to back (warm page cache): kvlog GET
//     /v1/topics/{t}/keys/{k} over HTTP keep-alive, NATS KeyValue.Get;
//   - throughput with 16 concurrent clients doing single lookups, and
//     kvlog batchGet (100 keys per request);
//   - kvlog's replay-based get (client.Open + Get, what `kvlog get
//     --replay` does) for one key;
//   - RAM of the key index per key (GET …/keys:stats);
//   - restart to the first lookup answered, after SIGTERM and after
//     kill -9;
//   - produce throughput into a compacted topic with the key index on
//     (loaded) and off (kvlog.key.index.enable=false), same run,
//     alternating.

const (
	lookupSingleN    = 20_000
	lookupColdN      = 2000
	lookupConcurrent = 16
	lookupBatch      = 100
)

// lookupKeysFlag is -lookup-keys (0: the mode's default).
var lookupKeysFlag int

// lookupOnly is -lookup-only: "single" runs only the single-key latency
// and 16-client throughput measurements (and the CPU profiles of kvlogd
// and of this load generator), skipping batchGet, cold page cache,
// replay, restarts and the produce comparison; "restart" loads only
// kvlog's 1-partition topic and measures only the restarts to the first
// lookup answered (after SIGTERM and after kill -9); "noreplay" skips the
// replay-based get and the produce comparison (runs at 10M keys).
var lookupOnly = flag.String("lookup-only", "", "lookup scenario: \"single\" measures only single-key latency and throughput (with profiles), \"restart\" only kvlog's restarts to the first lookup, \"noreplay\" everything but the replay-based get and the produce comparison")

type lookupVariant struct {
	name string
	get  func(ctx context.Context, key []byte) (bool, error)
	many func(ctx context.Context, keys [][]byte) (int, error) // nil: no batch form
	in   *instance
}

var lookupHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// kvlogGet looks keys up the way a user of the Go library does:
// client.Lookup, with its own transport (hc nil) or with hc.
func kvlogGet(base, topic string, hc *http.Client) func(ctx context.Context, key []byte) (bool, error) {
	opts := client.LookupOptions{HTTP: base, Client: hc}
	return func(ctx context.Context, key []byte) (bool, error) {
		res, err := client.Lookup(ctx, topic, key, opts)
		if err != nil {
			return false, err
		}
		return res.Found, nil
	}
}

func kvlogMany(base, topic string) func(ctx context.Context, keys [][]byte) (int, error) {
	return func(ctx context.Context, keys [][]byte) (int, error) {
		res, errs, err := client.LookupMany(ctx, topic, keys, client.LookupOptions{HTTP: base, Client: lookupHTTP})
		if err != nil {
			return 0, err
		}
		n := 0
		for i := range res {
			if errs[i] != nil {
				return n, errs[i]
			}
			if res[i].Found {
				n++
			}
		}
		return n, nil
	}
}

func keyIndexBytes(base, topic string) (entries, bytes int64, err error) {
	resp, err := lookupHTTP.Get("http://" + base + "/v1/topics/" + topic + "/keys:stats?load=true")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var st []struct {
		Entries int64 `json:"entries"`
		Bytes   int64 `json:"bytes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, 0, err
	}
	for _, p := range st {
		entries += p.Entries
		bytes += p.Bytes
	}
	return entries, bytes, nil
}

func scenLookup(ctx context.Context, r *runner) error {
	keys := r.cfg.lookupKeys
	// Batches of at most 16 KiB, the Java producer's default batch.size: a
	// lookup reads (and decompresses) the whole batch holding the record,
	// so its cost grows with the producer's batches (franz-go's default
	// allows 1 MB; the report notes it).
	s := shape{partitions: 1, valueLen: 100, keys: keys, acks: "all", comp: "none"}
	systems := []string{"kvlog", "nats-kv"}
	if *lookupOnly == "restart" {
		systems = systems[:1]
	}
	specs := r.available("lookup", systems...)
	r.note("lookup", "kvlog's data is produced in batches of at most 16 KiB (the Java producer's default batch.size, franz-go's default is 1 MB), uncompressed: a lookup reads and decompresses the whole batch holding the key's record, so its latency grows with the producer's batch size and codec.")
	ins, err := r.startAll(specs)
	if err != nil {
		return err
	}
	defer r.stopAll("lookup", ins)
	cell := fmt.Sprintf("%s keys", countName(keys))
	all := keySet(keys)
	var vs []lookupVariant
	var kv *instance
	for _, in := range ins {
		in := in
		pids := []int{in.p.pid}
		switch in.spec.impl {
		case "kvlogd":
			kv = in
			addr := []string{in.addr}
			partCounts := []int32{1, 8}
			if *lookupOnly == "restart" {
				partCounts = partCounts[:1]
			}
			for _, parts := range partCounts {
				topic := fmt.Sprintf("look-p%d", parts)
				if err := createTopic(ctx, addr, topic, parts, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
					return err
				}
				s.partitions = parts
				st, err := kafkaProduceWith(ctx, addr, topic, s, 0, keys, pids, kgo.ProducerBatchMaxBytes(16<<10))
				if err != nil {
					return fmt.Errorf("kvlog: loading %s: %w", topic, err)
				}
				logf("  kvlog: loaded %d keys into %d partition(s) at %.0f rec/s", keys, parts, st.recPerSec())
				start := time.Now()
				entries, bytes, err := keyIndexBytes(in.http, topic)
				if err != nil {
					return fmt.Errorf("kvlog: key index stats: %w", err)
				}
				if entries != int64(keys) {
					return fmt.Errorf("kvlog: key index of %s holds %d keys, want %d", topic, entries, keys)
				}
				pc := fmt.Sprintf("kvlog %d partition(s)", parts)
				r.st.add("lookup", cell, pc, "index load s", "s", time.Since(start).Seconds())
				r.st.add("lookup", cell, pc, "RAM bytes/key", "B", float64(bytes)/float64(entries))
				vs = append(vs, lookupVariant{name: fmt.Sprintf("kvlog GET (%d partition(s))", parts), get: kvlogGet(in.http, topic, nil), many: kvlogMany(in.http, topic), in: in})
				if parts == 1 {
					// The same lookups through net/http (what Lookup does
					// when given an http.Client, e.g. for TLS).
					vs = append(vs, lookupVariant{name: "kvlog GET net/http (1 partition(s))", get: kvlogGet(in.http, topic, lookupHTTP), in: in})
				}
			}
		case "nats":
			c, err := natsDial(in.addr)
			if err != nil {
				return err
			}
			defer c.close()
			t, err := c.create(ctx, "LOOK", true)
			if err != nil {
				return err
			}
			if _, err := natsProduce(ctx, c, t, s, 0, keys, pids); err != nil {
				return fmt.Errorf("nats: loading: %w", err)
			}
			logf("  nats-kv: loaded %d keys", keys)
			vs = append(vs, lookupVariant{name: "nats-kv Get", get: func(ctx context.Context, key []byte) (bool, error) {
				e, err := t.kv.Get(ctx, string(key))
				if err != nil {
					return false, err
				}
				return e.Value() != nil, nil
			}, in: in})
		}
	}
	if len(vs) == 0 {
		return fmt.Errorf("no system to look keys up in")
	}
	reps := r.cfg.reps
	if *lookupOnly == "restart" {
		reps = 0
	}
	err = rotate(reps, vs, func(rep int, v lookupVariant) error {
		runtime.GC()
		rng := rand.New(rand.NewPCG(uint64(rep), 10))
		lat := make([]float64, lookupSingleN)
		for i := range lat {
			k := all[rng.IntN(keys)]
			start := time.Now()
			found, err := v.get(ctx, k)
			lat[i] = float64(time.Since(start).Microseconds())
			if err != nil || !found {
				return fmt.Errorf("%s: lookup %s: found %v, %v", v.name, k, found, err)
			}
		}
		sort.Float64s(lat)
		p := percentiles(lat, 0.5, 0.99, 0.999)
		r.st.add("lookup", cell, v.name, "p50 µs", "µs", p[0])
		r.st.add("lookup", cell, v.name, "p99 µs", "µs", p[1])
		r.st.add("lookup", cell, v.name, "p99.9 µs", "µs", p[2])
		ops, cpu, err := lookupThroughput(ctx, v, all, rep, false)
		if err != nil {
			return err
		}
		r.st.add("lookup", cell, v.name, "lookups/s (16 clients)", "lookups/s", ops)
		r.st.add("lookup", cell, v.name, "server CPU µs/lookup", "µs", cpu.server)
		r.st.add("lookup", cell, v.name, "client CPU µs/lookup", "µs", cpu.client)
		logf("  %-28s rep %d: p50 %.0f µs p99 %.0f µs p99.9 %.0f µs, %.0f lookups/s with %d clients (CPU per lookup: server %.1f µs, load generator %.1f µs)", v.name, rep, p[0], p[1], p[2], ops, lookupConcurrent, cpu.server, cpu.client)
		if v.many != nil && *lookupOnly != "single" {
			ops, _, err := lookupThroughput(ctx, v, all, rep, true)
			if err != nil {
				return err
			}
			r.st.add("lookup", cell, v.name, "keys/s batchGet", "keys/s", ops)
			logf("  %-28s rep %d: batchGet %.0f keys/s", v.name, rep, ops)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *lookupOnly == "restart" {
		return lookupRestarts(ctx, r, cell, kv, all)
	}
	for _, v := range vs {
		// Where the load generator's time goes (its client library
		// shares the cores with the server).
		if err := r.profileLoadgen(ctx, v, all); err != nil {
			r.note("lookup", "load generator profile of %s failed: %v", v.name, err)
		}
	}
	if kv != nil {
		// Where kvlogd's time goes under the single-lookup load, over 1
		// partition and over 8 (through Lookup's own transport).
		var v lookupVariant
		for _, x := range vs {
			if x.in != kv || strings.Contains(x.name, "net/http") {
				continue
			}
			if v.get == nil {
				v = x
			}
			r.profile(ctx, kv, "lookup", x.name+", 16 clients", r.cfg.profileSeconds, func() error {
				_, _, err := lookupThroughput(ctx, x, all, 0, false)
				return err
			})
		}
		if *lookupOnly == "single" {
			return nil
		}
		r.profile(ctx, kv, "lookup", "kvlog batchGet, 16 clients", r.cfg.profileSeconds, func() error {
			_, _, err := lookupThroughput(ctx, v, all, 0, true)
			return err
		})
	}
	if err := lookupCold(ctx, r, cell, vs, all); err != nil {
		// A peer that loses keys over a restart must not cost the
		// measurements after this one.
		r.note("lookup", "cold lookups stopped: %v", err)
		logf("  cold lookups stopped: %v", err)
	}
	if kv == nil {
		return nil
	}
	if *lookupOnly == "noreplay" {
		return lookupRestarts(ctx, r, cell, kv, all)
	}
	addr := []string{kv.addr}
	pids := []int{kv.p.pid}
	// The replay-based get: open the table (replay), read one key.
	for rep := 0; rep < r.cfg.reps; rep++ {
		n, st, err := libraryReplay(ctx, addr, "look-p1", false, pids)
		if err != nil || n != keys {
			return fmt.Errorf("replay get: %d keys, %v", n, err)
		}
		r.st.add("lookup", cell, "kvlog replay get", "seconds", "s", st.elapsed.Seconds())
		logf("  kvlog replay get rep %d: %.3f s", rep, st.elapsed.Seconds())
	}
	if err := lookupRestarts(ctx, r, cell, kv, all); err != nil {
		return err
	}
	// Produce with the index on and off.
	for _, t := range []struct {
		name string
		cfg  map[string]string
	}{{"prod-on", map[string]string{"cleanup.policy": "compact"}}, {"prod-off", map[string]string{"cleanup.policy": "compact", "kvlog.key.index.enable": "false"}}} {
		if err := createTopic(ctx, addr, t.name, 1, 1, t.cfg); err != nil {
			return err
		}
	}
	if _, _, err := keyIndexBytes(kv.http, "prod-on"); err != nil {
		return err
	}
	pids = []int{kv.p.pid} // restarted above
	ps := shape{partitions: 1, valueLen: 100, keys: keys, acks: "all", comp: "none"}
	n := r.cfg.lookupProduce
	type pv struct{ name, topic string }
	err = rotate(r.cfg.reps, []pv{{"index on", "prod-on"}, {"index off", "prod-off"}}, func(rep int, v pv) error {
		runtime.GC()
		st, err := kafkaProduce(ctx, addr, v.topic, ps, rep*n, n, pids)
		if err != nil {
			return err
		}
		r.st.add("lookup", "produce", "kvlog "+v.name, "records/s", "records/s", st.recPerSec())
		r.st.add("lookup", "produce", "kvlog "+v.name, "broker cpu s", "CPU s", st.cpu)
		logf("  produce, key index %s, rep %d: %.0f rec/s", v.name, rep, st.recPerSec())
		return nil
	})
	return err
}

// lookupRestarts measures kvlogd's restart to the first lookup answered,
// after SIGTERM and after kill -9, reps times (the machine's load
// average logged with each).
func lookupRestarts(ctx context.Context, r *runner, cell string, kv *instance, all [][]byte) error {
	get := kvlogGet(kv.http, "look-p1", nil)
	for rep := 0; rep < r.cfg.reps; rep++ {
		for _, clean := range []bool{true, false} {
			if clean {
				kv.p.stop(5 * time.Minute)
			} else {
				kv.p.kill()
			}
			start := time.Now()
			if err := kv.launch(); err != nil {
				return err
			}
			for {
				found, err := get(ctx, all[rep])
				if err == nil && found {
					break
				}
				if time.Since(start) > 5*time.Minute {
					return fmt.Errorf("no lookup answered within 5 minutes of the restart: %v", err)
				}
				time.Sleep(time.Millisecond)
			}
			name := "kvlog restart after kill -9"
			if clean {
				name = "kvlog restart after SIGTERM"
			}
			r.st.add("lookup", cell, name, "restart to lookup s", "s", time.Since(start).Seconds())
			logf("  %s rep %d: first lookup after %.3f s (load average %.1f)", name, rep, time.Since(start).Seconds(), loadAvg())
		}
	}
	return nil
}

// profileLoadgen writes a CPU profile of this process while v's
// 16-client throughput runs (raw/profiles/lookup-loadgen-*.pprof) and logs
// its top functions.
func (r *runner) profileLoadgen(ctx context.Context, v lookupVariant, all [][]byte) error {
	file := filepath.Join(r.raw, "profiles", "lookup-loadgen-"+strings.NewReplacer(" ", "_", "(", "", ")", "", "/", "").Replace(v.name)+".pprof")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	ops, _, err := lookupThroughput(ctx, v, all, 0, false)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	logf("  load generator profile of %s (%.0f lookups/s): %s", v.name, ops, file)
	return nil
}

// lookupCold measures single lookups with a cold page cache: every system
// restarted (SIGTERM), its startup finished (kvlog: key indexes loaded),
// then its data files dropped from the page cache (fdatasync +
// POSIX_FADV_DONTNEED, which needs no root; what stays resident is
// reported), then lookupColdN lookups of distinct random keys one after
// the other; reps times, the systems in rotation.
func lookupCold(ctx context.Context, r *runner, cell string, vs []lookupVariant, all [][]byte) error {
	return rotate(r.cfg.reps, vs, func(rep int, v lookupVariant) error {
		in := v.in
		in.p.stop(5 * time.Minute)
		if err := in.launch(); err != nil {
			return err
		}
		// Serving again (kvlog: the indexes loaded, NATS: reconnected).
		deadline := time.Now().Add(5 * time.Minute)
		for {
			_, err := v.get(ctx, all[0])
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no lookup answered within 5 minutes of the restart: %w", v.name, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if in.spec.impl == "kvlogd" {
			if _, _, err := keyIndexBytes(in.http, "look-p1"); err != nil {
				return err
			}
			if _, _, err := keyIndexBytes(in.http, "look-p8"); err != nil {
				return err
			}
		}
		dropCache(in.dir)
		resident := residentFraction(in.dir)
		rng := rand.New(rand.NewPCG(uint64(rep), 77))
		lat := make([]float64, lookupColdN)
		for i := range lat {
			k := all[rng.IntN(len(all))]
			start := time.Now()
			found, err := v.get(ctx, k)
			lat[i] = float64(time.Since(start).Microseconds())
			if err != nil || !found {
				return fmt.Errorf("%s: cold lookup %s: found %v, %v", v.name, k, found, err)
			}
		}
		sort.Float64s(lat)
		p := percentiles(lat, 0.5, 0.99, 0.999)
		r.st.add("lookup", cell, v.name, "cold p50 µs", "µs", p[0])
		r.st.add("lookup", cell, v.name, "cold p99 µs", "µs", p[1])
		r.st.add("lookup", cell, v.name, "cold p99.9 µs", "µs", p[2])
		r.st.add("lookup", cell, v.name, "cold resident", "fraction", resident)
		logf("  %-28s cold rep %d: p50 %.0f µs p99 %.0f µs p99.9 %.0f µs (%.1f%% of the data files resident before)", v.name, rep, p[0], p[1], p[2], 100*resident)
		return nil
	})
}

// lookupCPU is the CPU time per key looked up, in µs, of the server
// process and of this load generator (its clients share the cores).
type lookupCPU struct{ server, client float64 }

// lookupThroughput runs lookupConcurrent clients doing single lookups
// (or batchGets of lookupBatch keys) of random keys for 2 seconds and
// returns keys looked up per second and the CPU they cost.
func lookupThroughput(ctx context.Context, v lookupVariant, all [][]byte, rep int, batch bool) (float64, lookupCPU, error) {
	srv0, _ := procCPUSeconds(v.in.p.pid)
	cli0, _ := procCPUSeconds(os.Getpid())
	var (
		done     atomic.Int64
		firstErr atomic.Pointer[error]
		wg       sync.WaitGroup
	)
	stop := time.Now().Add(2 * time.Second)
	start := time.Now()
	for c := 0; c < lookupConcurrent; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(rep), uint64(c)))
			ks := make([][]byte, lookupBatch)
			for time.Now().Before(stop) {
				var err error
				if batch {
					for i := range ks {
						ks[i] = all[rng.IntN(len(all))]
					}
					var n int
					if n, err = v.many(ctx, ks); err == nil && n != len(ks) {
						err = fmt.Errorf("batchGet found %d of %d keys", n, len(ks))
					}
					done.Add(int64(len(ks)))
				} else {
					var found bool
					if found, err = v.get(ctx, all[rng.IntN(len(all))]); err == nil && !found {
						err = fmt.Errorf("a live key not found")
					}
					done.Add(1)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if p := firstErr.Load(); p != nil {
		return 0, lookupCPU{}, fmt.Errorf("%s: %w", v.name, *p)
	}
	srv1, _ := procCPUSeconds(v.in.p.pid)
	cli1, _ := procCPUSeconds(os.Getpid())
	n := float64(max(done.Load(), 1))
	return float64(done.Load()) / elapsed.Seconds(), lookupCPU{server: (srv1 - srv0) * 1e6 / n, client: (cli1 - cli0) * 1e6 / n}, nil
}

func reportLookup(r *runner, w *md) {
	for _, c := range r.st.cells("lookup") {
		if c == "peak RSS" || c == "produce" {
			continue
		}
		w.h(3, "Lookups of "+c)
		var rows [][]string
		nats := r.st.get("lookup", c, "nats-kv Get", "lookups/s (16 clients)")
		for _, sys := range r.st.systems("lookup", c) {
			g := func(m string) []float64 { return r.st.get("lookup", c, sys, m) }
			if len(g("p50 µs")) == 0 {
				continue
			}
			rows = append(rows, []string{sys, mr(g("p50 µs")), mr(g("p99 µs")), mr(g("p99.9 µs")), mr(g("lookups/s (16 clients)")), fx(pairedRatio(g("lookups/s (16 clients)"), nats)), orDashF(g("server CPU µs/lookup")), orDashF(g("client CPU µs/lookup")), orDashF(g("keys/s batchGet"))})
		}
		w.p("Throughput: %d clients doing single lookups of random keys back to back for 2 s; CPU per lookup of the server process and of the load generator (the clients' library), from /proc, over the same 2 s.", lookupConcurrent)
		w.table([]string{"Variant", "p50 µs", "p99 µs", "p99.9 µs", "lookups/s, 16 clients", "/ NATS KV Get", "server CPU µs/lookup", "client CPU µs/lookup", "keys/s, batchGet of 100"}, rows)
		rows = nil
		for _, sys := range r.st.systems("lookup", c) {
			g := func(m string) []float64 { return r.st.get("lookup", c, sys, m) }
			if len(g("cold p50 µs")) == 0 {
				continue
			}
			rows = append(rows, []string{sys, mr(g("cold p50 µs")), mr(g("cold p99 µs")), mr(g("cold p99.9 µs")), fmt.Sprintf("%.1f%%", 100*median(g("cold resident")))})
		}
		if len(rows) > 0 {
			w.p("Cold page cache: each system restarted, its data files dropped from the page cache (fdatasync + POSIX_FADV_DONTNEED; no root needed), then %d single lookups of random keys one after the other:", lookupColdN)
			w.table([]string{"Variant", "cold p50 µs", "cold p99 µs", "cold p99.9 µs", "data resident before"}, rows)
		}
		rows = nil
		for _, sys := range r.st.systems("lookup", c) {
			g := func(m string) []float64 { return r.st.get("lookup", c, sys, m) }
			switch {
			case len(g("RAM bytes/key")) > 0:
				rows = append(rows, []string{sys, "key index RAM per key", fnum(median(g("RAM bytes/key"))) + " B"}, []string{sys, "index load (first lookup after the load)", mr(g("index load s")) + " s"})
			case len(g("seconds")) > 0:
				rows = append(rows, []string{sys, "time to the first answer (replay)", mr(g("seconds")) + " s"})
			case len(g("restart to lookup s")) > 0:
				rows = append(rows, []string{sys, "restart to the first lookup answered", mr(g("restart to lookup s")) + " s"})
			}
		}
		w.table([]string{"System", "What", "Median (min–max)"}, rows)
	}
	on, off := r.st.get("lookup", "produce", "kvlog index on", "records/s"), r.st.get("lookup", "produce", "kvlog index off", "records/s")
	if len(on) > 0 && len(off) > 0 {
		w.h(3, "Produce with the key index on and off (1 partition, acks=all, 100-byte values)")
		w.table([]string{"Variant", "records/s", "broker CPU s", "on / off"}, [][]string{
			{"kvlog index on", mr(on), fnum(median(r.st.get("lookup", "produce", "kvlog index on", "broker cpu s"))), fx(pairedRatio(on, off))},
			{"kvlog index off", mr(off), fnum(median(r.st.get("lookup", "produce", "kvlog index off", "broker cpu s"))), "1.00x"},
		})
	}
	r.rssTable(w, "lookup")
}

func orDashF(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	return mr(xs)
}
