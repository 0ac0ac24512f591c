package controller

import (
	"strings"
	"testing"
	"testing/synctest"
)

// TestBatchedStateWrites: the controller reads and writes partition states
// in batches and each event touches only the partitions it can change
// (states.go). A topic of 400 partitions is one read batch (states left by
// an earlier controller) and one write batch; a broker hosting half of them
// dying is one write batch of those 200 and no read; a leader's ISR change
// reads that one partition; a new controller reads every state in one
// batch. Before, every event read every partition's state, one request each
// (400 reads per event), and wrote them one by one.
func TestBatchedStateWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		defer h.close()
		store := func(cmd, want string) {
			t.Helper()
			h.do(cmd)
			got := h.do("store")
			if len(got) == 0 || got[0] != want {
				t.Fatalf("after %q: %s, want %s", cmd, strings.Join(got, "; "), want)
			}
		}
		h.do("brokers 1 2 3 4")
		store("controller 1", "store: 0 read batches (0 partitions), 0 write batches (0 partitions)")
		// Replicas round-robin: broker 4 hosts partitions 2 and 3 mod 4.
		store("topic-rr t 400 2", "store: 1 read batches (400 partitions), 1 write batches (400 partitions)")
		store("crash 4", "store: 0 read batches (0 partitions), 1 write batches (200 partitions)")
		store("isr t-0 1", "store: 1 read batches (1 partitions), 0 write batches (0 partitions)")
		store("restart 4", "store: 0 read batches (0 partitions), 0 write batches (0 partitions)")
		// Broker 2 takes over: one read of every state; nothing to write.
		h.do("controller 2")
		store("crash 1", "store: 1 read batches (400 partitions), 1 write batches (200 partitions)")
	})
}

// TestFailoverLeadsFirst: a new controller that finds a broker dead first
// elects leaders for the partitions that broker led and tells their
// replicas, and only then writes the states that merely drop the dead
// broker from the ISR of partitions led all along (two write batches; at
// 30,000 partitions on three brokers, two thirds of the writes). Before,
// every state was written first and the brokers told only after, so the
// partitions without a leader stayed so for all the writes.
func TestFailoverLeadsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		defer h.close()
		h.do("brokers 1 2 3 4")
		h.do("controller 1")
		// Replicas round-robin, two each: broker 1 leads t-0 and t-4 and
		// follows in t-3 and t-7 (led by 4).
		h.do("topic-rr t 8 2")
		h.do("store")
		h.do("controller 2")
		out := h.do("crash 1")
		var first string
		for _, l := range out {
			if strings.HasPrefix(l, "b2 <- LeaderAndIsr") {
				first = l
				break
			}
		}
		if !strings.Contains(first, "[t-0 L2") || !strings.Contains(first, "[t-4 L2") || strings.Contains(first, "[t-1 ") || strings.Contains(first, "[t-5 ") {
			t.Fatalf("broker 2's first LeaderAndIsr after the fail-over: %q, want the new leaderships alone\n%s", first, strings.Join(out, "\n"))
		}
		if got := h.do("store"); len(got) == 0 || got[0] != "store: 1 read batches (8 partitions), 2 write batches (4 partitions)" {
			t.Fatalf("store: %v", got)
		}
	})
}
