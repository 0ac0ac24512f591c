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
