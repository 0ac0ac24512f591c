package testcluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/record"
)

// BenchmarkClusterPartitions: the controller and the brokers at scale, on
// three brokers (RF 3) sharing this machine with ZooKeeper and the client.
// For each partition count P (KVLOG_BENCH_PARTITIONS, a comma-separated
// list, default 3000; `make bench-cluster-partitions`):
//
//   - create: CreateTopics of P partitions (topics of at most 3,000
//     partitions, sent together), timed until every partition accepted a
//     produce (acks=1, one record, sent to the leader Metadata names).
//     "premature" counts the partitions Metadata named a leader for that
//     refused the produce (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION):
//     Metadata must never report a partition led before its leader
//     accepts writes, so this is 0.
//   - idle CPU: the brokers' CPU (utime+stime of the processes) over
//     KVLOG_BENCH_IDLE seconds (default 30) with the followers fetching
//     and nothing produced, then with one franz-go consumer of every
//     partition long-polling at the ends. It is measured once every
//     replica holds every record and knows the high watermark (every
//     broker's kvlog_partition_high_watermark equals the largest log end
//     offset of the partition), so followers catching up are not counted.
//   - fail-over: SIGKILL of the controller (once every partition has its
//     three replicas in sync again, so that no partition is left without
//     an eligible leader); from its ZooKeeper session's expiry (the
//     ephemeral /controller znode deleted) until every partition accepted
//     a produce again.
//
// Each count runs on a fresh cluster and reports its figures as metrics
// and a table row. With KVLOG_BENCH_PROFILE set to a directory, the
// brokers' CPU profiles, goroutine dumps, heap statistics and logs of the
// create, idle, idle-consumer and fail-over phases are written there.
func BenchmarkClusterPartitions(b *testing.B) {
	counts := []int{3000}
	if s := os.Getenv("KVLOG_BENCH_PARTITIONS"); s != "" {
		counts = nil
		for _, f := range strings.Split(s, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				counts = append(counts, n)
			}
		}
	}
	var rows []string
	for _, np := range counts {
		b.Run(strconv.Itoa(np), func(b *testing.B) {
			rows = append(rows, scalePartitions(b, np))
		})
	}
	fmt.Printf("\n| partitions (RF 3, 3 brokers) | create → all accept produce | premature leads | idle CPU, followers (%% of a core, 3 brokers) | idle CPU, + consumer of all | fail-over: session expiry → all accept produce |\n|---|---|---|---|---|---|\n%s\n", strings.Join(rows, "\n"))
}

func scalePartitions(b *testing.B, np int) string {
	c := benchCluster(b,
		"zookeeper.session.timeout.ms=4000",
		"default.replication.factor=3",
		"min.insync.replicas=1",
		"auto.leader.rebalance.enable=false",
		"auto.create.topics.enable=false",
		"offsets.topic.num.partitions=3",
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	idleWindow := time.Duration(benchEnv("KVLOG_BENCH_IDLE", 30)) * time.Second
	phase := "create"
	if dir := os.Getenv("KVLOG_BENCH_PROFILE"); dir != "" {
		// The brokers' logs of the phase that ended (or failed).
		defer func() {
			for _, id := range c.IDs() {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", phase, id)), []byte(c.Broker(id).Logs()), 0o644)
			}
		}()
	}

	// Topics of at most 3,000 partitions, one CreateTopics request each
	// (a request may hold 10,000 partitions times replicas), sent
	// together.
	var topics []string
	var sizes []int32
	for left, i := np, 0; left > 0; i++ {
		n := min(left, 3000)
		topics = append(topics, fmt.Sprintf("many-%d", i))
		sizes = append(sizes, int32(n))
		left -= n
	}
	ctl := controllerIDNow(c)
	profile(b, c, "create", 15*time.Second)
	start := time.Now()
	errs := make(chan error, len(topics))
	for i, t := range topics {
		go func() {
			req := kmsg.NewPtrCreateTopicsRequest()
			req.Version = 4
			req.TimeoutMillis = 600_000
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic = t
			rt.NumPartitions = sizes[i]
			rt.ReplicationFactor = 3
			req.Topics = append(req.Topics, rt)
			resp, err := c.RequestTo(c.IDs()[0], req, 10*time.Minute)
			if err == nil {
				err = kerr.ErrorForCode(resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode)
			}
			if err != nil {
				err = fmt.Errorf("create %s: %w", t, err)
			}
			errs <- err
		}()
	}
	for range topics {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	premature, err := allAcceptProduce(ctx, c, topics, -1, 10*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	create := time.Since(start)
	if dir := os.Getenv("KVLOG_BENCH_PROFILE"); dir != "" {
		for _, id := range c.IDs() {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("create-%d.log", id)), []byte(c.Broker(id).Logs()), 0o644)
		}
		b.Logf("create started at %s", start.Format(time.RFC3339Nano))
	}
	phase = "idle"
	b.Logf("%d partitions: created, every partition accepts produce after %v (%d premature leads; controller %d)", np, create.Round(time.Millisecond), premature, ctl)
	b.ReportMetric(create.Seconds(), "create-s")
	b.ReportMetric(float64(premature), "premature")

	// Idle: followers only (wait for full ISRs first, so catching up is
	// not counted), then with a consumer of every partition.
	c.WaitFor(5*time.Minute, "full ISRs", func() bool { return fullISRs(c, topics) })
	c.WaitFor(5*time.Minute, "replicas caught up", func() bool { return caughtUp(c) })
	profile(b, c, "idle", idleWindow)
	idle := brokersCPU(c, idleWindow)
	cl := c.Client(kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(5*time.Second))
	pctx, pcancel := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for pctx.Err() == nil {
			cl.PollFetches(pctx)
		}
	}()
	// Let the consumer list offsets and settle on long polls.
	time.Sleep(5 * time.Second)
	profile(b, c, "idle-consumer", idleWindow)
	idleConsumer := brokersCPU(c, idleWindow)
	pcancel()
	<-polled
	cl.Close()
	b.Logf("%d partitions: idle CPU %.2f%% of a core (followers), %.2f%% with a consumer of every partition", np, idle, idleConsumer)
	b.ReportMetric(idle, "idle-cpu-%")
	b.ReportMetric(idleConsumer, "idle-consumer-cpu-%")

	// Fail-over: kill the controller, wait for its session to expire.
	phase = "failover"
	c.WaitFor(5*time.Minute, "full ISRs before the kill", func() bool { return fullISRs(c, topics) })
	ctl = controllerIDNow(c)
	if ctl < 0 {
		b.Fatal("no controller")
	}
	zkc := c.ZKConn()
	c.Kill(ctl)
	expired := waitDeleted(b, zkc, "/kvlog/controller", 60*time.Second)
	profile(b, c, "failover", 10*time.Second) // the new controller's work, from the expiry
	if _, err := allAcceptProduce(ctx, c, topics, ctl, 10*time.Minute); err != nil {
		b.Fatal(err)
	}
	failover := time.Since(expired)
	if os.Getenv("KVLOG_BENCH_PROFILE") != "" {
		b.Logf("session expired at %s", expired.Format(time.RFC3339Nano))
	}
	b.Logf("%d partitions: fail-over, every partition accepts produce %v after the controller's session expired", np, failover.Round(time.Millisecond))
	b.ReportMetric(failover.Seconds(), "failover-s")
	profiling.Wait() // the fail-over's profiles, before the cluster stops
	return fmt.Sprintf("| %d | %.1f s | %d | %.2f | %.2f | %.1f s |", np, create.Seconds(), premature, idle, idleConsumer, failover.Seconds())
}

var profiling sync.WaitGroup

// profile, with KVLOG_BENCH_PROFILE set to a directory, takes a CPU
// profile of every running broker for d in the background, written to
// <dir>/<what>-<broker id>.pprof.
func profile(b *testing.B, c *Cluster, what string, d time.Duration) {
	dir := os.Getenv("KVLOG_BENCH_PROFILE")
	if dir == "" {
		return
	}
	profiling.Wait() // one CPU profile at a time
	for _, id := range c.IDs() {
		br := c.Broker(id)
		if !br.Running() {
			continue
		}
		go func() {
			for i := 1; i <= 3; i++ {
				time.Sleep(d / 4)
				cl := http.Client{Timeout: 10 * time.Second}
				resp, err := cl.Get(fmt.Sprintf("http://%s/debug/pprof/goroutine?debug=2", br.HTTP))
				if err != nil {
					return
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d-goroutines-%d.txt", what, id, i)), data, 0o644)
			}
		}()
		profiling.Add(1)
		go func() {
			defer profiling.Done()
			// The heap's statistics (the runtime's MemStats: GC cycles,
			// bytes allocated) before and after the window.
			memStats := func(when string) {
				cl := http.Client{Timeout: 10 * time.Second}
				resp, err := cl.Get(fmt.Sprintf("http://%s/debug/pprof/heap?debug=1", br.HTTP))
				if err != nil {
					return
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if i := strings.Index(string(data), "# runtime.MemStats"); i >= 0 {
					data = data[i:]
				}
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d-memstats-%s.txt", what, id, when)), data, 0o644)
			}
			memStats("before")
			defer memStats("after")
			cl := http.Client{Timeout: d + 10*time.Second}
			resp, err := cl.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", br.HTTP, int(d.Seconds())))
			if err != nil {
				b.Logf("profile of broker %d: %v", id, err)
				return
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", what, id)), data, 0o644)
		}()
	}
}

// waitDeleted waits for path to be deleted and returns when it was seen.
func waitDeleted(b *testing.B, zkc *zk.Conn, path string, timeout time.Duration) time.Time {
	deadline := time.After(timeout)
	for {
		ok, _, ch, err := zkc.ExistsW(path)
		if err != nil {
			b.Fatalf("watching %s: %v", path, err)
		}
		if !ok {
			return time.Now()
		}
		select {
		case ev := <-ch:
			if ev.Type == zk.EventNodeDeleted {
				return time.Now() // (a new controller may be elected at once)
			}
		case <-deadline:
			b.Fatalf("%s not deleted within %v", path, timeout)
		}
	}
}

// fullISRs reports whether every partition of topics has a leader and
// three in-sync replicas.
func fullISRs(c *Cluster, topics []string) bool {
	m, err := c.Metadata(topics...)
	if err != nil {
		return false
	}
	for _, t := range m.Topics {
		if t.ErrorCode != 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Leader < 0 || len(p.ISR) != 3 {
				return false
			}
		}
	}
	return true
}

// caughtUp reports whether every running broker's replica of every
// partition has the partition's largest log end offset as its high
// watermark (read from each broker's /metrics): every follower holds every
// record and has been told the high watermark.
func caughtUp(c *Cluster) bool {
	hws := map[string][]int64{}
	for _, id := range c.IDs() {
		br := c.Broker(id)
		if !br.Running() {
			continue
		}
		cl := http.Client{Timeout: 30 * time.Second}
		resp, err := cl.Get(fmt.Sprintf("http://%s/metrics", br.HTTP))
		if err != nil {
			return false
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return false
		}
		for _, line := range strings.Split(string(data), "\n") {
			var kind string
			switch {
			case strings.HasPrefix(line, "kvlog_partition_high_watermark{"):
				kind = "hw"
			case strings.HasPrefix(line, "kvlog_partition_log_end_offset{"):
				kind = "leo"
			default:
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseInt(line[i+1:], 10, 64)
			if err != nil {
				continue
			}
			labels := line[strings.IndexByte(line, '{'):i]
			hws[labels] = append(hws[labels], v)
			if kind == "hw" {
				hws[labels+"hw"] = append(hws[labels+"hw"], v)
			}
		}
	}
	for k, vs := range hws {
		if strings.HasSuffix(k, "hw") {
			continue
		}
		top := slices.Max(vs)
		for _, hw := range hws[k+"hw"] {
			if hw != top {
				return false
			}
		}
	}
	return true
}

// brokersCPU is the running brokers' CPU over d, in percent of one core.
func brokersCPU(c *Cluster, d time.Duration) float64 {
	ticks := func() (n int64) {
		for _, id := range c.IDs() {
			b := c.Broker(id)
			if !b.Running() {
				continue
			}
			b.mu.Lock()
			pid := b.cmd.Process.Pid
			b.mu.Unlock()
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			s := string(data)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			n += u + st
		}
		return n
	}
	t0, w0 := ticks(), time.Now()
	time.Sleep(d)
	t1, w1 := ticks(), time.Now()
	return float64(t1-t0) / 100 / w1.Sub(w0).Seconds() * 100 // USER_HZ 100
}

// allAcceptProduce produces one record to every partition of topics, to
// the leader Metadata names, until each was accepted. It returns how many
// partitions a named leader (other than skip, a broker known dead) refused as
// not leading or not knowing the partition.
func allAcceptProduce(ctx context.Context, c *Cluster, topics []string, skip int32, timeout time.Duration) (int, error) {
	type tp struct {
		t string
		p int32
	}
	pending := map[tp]bool{}
	deadline := time.Now().Add(timeout)
	premature := 0
	refused := map[tp]bool{}
	var bl record.Builder
	bl.ProducerID, bl.ProducerEpoch, bl.BaseSequence = -1, -1, -1
	bl.BaseTimestamp = time.Now().UnixMilli()
	bl.LastOffsetDelta, bl.MaxTimestamp = -1, -1
	bl.Add(record.Record{Key: []byte("k"), Value: []byte("v")})
	batch, err := bl.Build(nil)
	if err != nil {
		return 0, err
	}
	first := true
	for {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return premature, fmt.Errorf("%d partitions still refuse produce after %v", len(pending), timeout)
		}
		m, err := c.Metadata(topics...)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		byLeader := map[int32][]tp{}
		for _, t := range m.Topics {
			for _, p := range t.Partitions {
				k := tp{*t.Topic, p.Partition}
				if first {
					pending[k] = true
				}
				if pending[k] && p.Leader >= 0 && p.Leader != skip {
					byLeader[p.Leader] = append(byLeader[p.Leader], k)
				}
			}
		}
		if first && len(pending) == 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		first = false
		for leader, tps := range byLeader {
			req := kmsg.NewPtrProduceRequest()
			req.Version = 8
			req.Acks = 1
			req.TimeoutMillis = 10_000
			idx := map[string]int{}
			for _, k := range tps {
				i, ok := idx[k.t]
				if !ok {
					i = len(req.Topics)
					idx[k.t] = i
					rt := kmsg.NewProduceRequestTopic()
					rt.Topic = k.t
					req.Topics = append(req.Topics, rt)
				}
				rp := kmsg.NewProduceRequestTopicPartition()
				rp.Partition = k.p
				rp.Records = batch
				req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
			}
			resp, err := c.RequestTo(leader, req, 30*time.Second)
			if err != nil {
				continue
			}
			for _, t := range resp.(*kmsg.ProduceResponse).Topics {
				for _, p := range t.Partitions {
					switch p.ErrorCode {
					case 0:
						delete(pending, tp{t.Topic, p.Partition})
					case kerr.NotLeaderForPartition.Code, kerr.UnknownTopicOrPartition.Code:
						if !refused[tp{t.Topic, p.Partition}] {
							refused[tp{t.Topic, p.Partition}] = true
							premature++
						}
					}
				}
			}
		}
		if len(pending) == 0 {
			return premature, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}
