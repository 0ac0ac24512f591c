package testcluster

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// TestChaos is `make chaos`: a long randomized run (KVLOG_CHAOS_DURATION,
// e.g. 5m) of kill -9, SIGSTOP/SIGCONT, clean bounces and controller kills
// every few seconds under an acks=all keyed load, ending with the checker's
// anomaly counts (all must be zero). Skipped unless the variable is set.
// KVLOG_CHAOS_SECURITY=SASL_SSL runs it on a cluster secured end to end
// (secureClusterOptions: SASL_SSL between brokers and for the clients,
// ZooKeeper authentication and ACLs). KVLOG_CHAOS_PARTITIONS (default 6;
// `make chaos CHAOS_PARTITIONS=3000`) is the checked topic's partition
// count: the keyed load then spreads over at least as many keys, so every
// partition is written, led, moved and checked.
func TestChaos(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("KVLOG_CHAOS_DURATION"))
	if err != nil || d <= 0 {
		t.Skip("set KVLOG_CHAOS_DURATION (make chaos)")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KVLOG_CHAOS_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	sec := os.Getenv("KVLOG_CHAOS_SECURITY")
	parts := 6
	if s := os.Getenv("KVLOG_CHAOS_PARTITIONS"); s != "" {
		if _, err := fmt.Sscan(s, &parts); err != nil || parts <= 0 {
			t.Fatalf("KVLOG_CHAOS_PARTITIONS=%s: a partition count", s)
		}
	}
	// Waits scale with the partitions: each moves through every fault.
	settle := 120*time.Second + time.Duration(parts)*40*time.Millisecond
	t.Logf("chaos for %v, %d partitions, seed %d, security %q", d, parts, seed, sec)
	c := startChaosCluster(t, sec)
	createTopicWithin(t, c, "chaos", int32(parts), settle)
	w := StartWorkload(c, "chaos", max(200, 2*parts), 64)
	ids := c.IDs()
	counts := map[string]int{}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(2000+rng.IntN(4000)) * time.Millisecond)
		id := ids[rng.IntN(len(ids))]
		var action string
		switch k := rng.IntN(10); {
		case k < 3:
			action = "kill -9 leader"
			leader, _ := leaderOf(t, c, "chaos", int32(rng.IntN(parts)))
			id = leader
			c.Kill(id)
			time.Sleep(time.Duration(1000+rng.IntN(4000)) * time.Millisecond)
			c.StartBroker(id)
		case k < 5:
			action = "kill -9 any"
			c.Kill(id)
			time.Sleep(time.Duration(500+rng.IntN(4000)) * time.Millisecond)
			c.StartBroker(id)
		case k < 7:
			action = "SIGSTOP/SIGCONT"
			c.Pause(id)
			time.Sleep(time.Duration(500+rng.IntN(6000)) * time.Millisecond)
			c.Resume(id)
		case k < 8:
			action = "clean bounce (SIGTERM)"
			if err := c.Stop(id, 60*time.Second); err != nil {
				t.Log(err)
			}
			c.StartBroker(id)
		default:
			action = "kill -9 controller"
			id = controllerID(t, c)
			c.Kill(id)
			time.Sleep(time.Duration(500+rng.IntN(3000)) * time.Millisecond)
			c.StartBroker(id)
		}
		counts[action]++
		t.Logf("%s: %s broker %d; acked %d, failed %d", time.Now().Format("15:04:05.000"), action, id, w.Acked(), w.Failed())
	}
	waitFullISR(t, c, "chaos", settle)
	acked := w.Acked()
	c.WaitFor(60*time.Second, "writes after the last fault", func() bool { return w.Acked() > acked+100 })
	w.Stop()
	rep := w.Check(ReadAll(t, c, "chaos"))
	var faults []string
	for a, n := range counts {
		faults = append(faults, fmt.Sprintf("%s×%d", a, n))
	}
	if sec == "" {
		sec = "PLAINTEXT"
	}
	summary := fmt.Sprintf("chaos %v partitions %d seed %d security %s faults [%s]\n%s", d, parts, seed, sec, strings.Join(faults, ", "), rep)
	fmt.Println(summary)
	t.Log(summary)
	if !rep.OK() {
		t.Errorf("anomalies:\n%s", strings.Join(rep.Examples, "\n"))
	}
}
