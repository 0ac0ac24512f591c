package controller

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/server/zkstore"
)

// TestBatchedStateWrites: the controller reads and writes partition states
// in batches and each event touches only the partitions it can change
// (states.go). A topic of 400 partitions is one write batch and no read (a
// new partition has no state); a broker hosting half of them dying is one
// write batch of those 200 and no read; a leader's ISR change reads that
// one partition; a new controller reads every state in two batches (first
// those its broker's metadata names a dead broker leader of). Before, every
// event read every partition's state, one request each (400 reads per
// event), and wrote them one by one; later a new topic still read its 400
// absent states first.
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
		// A new topic's states are created without a read.
		store("topic-rr t 400 2", "store: 0 read batches (0 partitions), 1 write batches (400 partitions)")
		store("crash 4", "store: 0 read batches (0 partitions), 1 write batches (200 partitions)")
		store("isr t-0 1", "store: 1 read batches (1 partitions), 0 write batches (0 partitions)")
		store("restart 4", "store: 0 read batches (0 partitions), 0 write batches (0 partitions)")
		// Broker 2 takes over: the states of the 200 partitions its
		// metadata names broker 1 leader of are read first (and written:
		// their leader is gone), then the others (nothing to write).
		h.do("controller 2")
		store("crash 1", "store: 2 read batches (400 partitions), 1 write batches (200 partitions)")
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
		if got := h.do("store"); len(got) == 0 || got[0] != "store: 2 read batches (8 partitions), 2 write batches (4 partitions)" {
			t.Fatalf("store: %v", got)
		}
	})
}

// TestNewTopicStateExists: a new partition's state is created without a
// read; one that exists already (left by an earlier controller) makes the
// create fail, and is then read and decided again: kept here, its leader
// being live, and sent as it is.
func TestNewTopicStateExists(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		defer h.close()
		h.do("brokers 1 2")
		h.do("controller 1")
		h.zk.mu.Lock()
		err := h.zk.create(statePath("t", 1), zkstore.PartitionState{Leader: 2, LeaderEpoch: 3, ISR: []int32{2, 1}, ControllerEpoch: 1}, 0, 0)
		h.zk.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		h.do("store")
		out := strings.Join(h.do("topic t 1,2 1,2"), "\n")
		for _, want := range []string{
			"state t-0 L1 le0 isr[1 2] ce1 zkv0",
			"b1 <- LeaderAndIsr v4 c1 ce1 be101 [t-0 L1 le0 isr[1 2] r[1 2] ce1 zkv0] [t-1 L2 le3 isr[2 1] r[1 2] ce1 zkv0] leaders[1 2]",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("missing %q in:\n%s", want, out)
			}
		}
		if got := h.do("store"); len(got) == 0 || got[0] != "store: 1 read batches (1 partitions), 1 write batches (2 partitions)" {
			t.Fatalf("store: %v", got)
		}
	})
}

// TestFailoverPublishesFirst: at a fail-over that finds a broker dead, each
// live broker gets three requests whatever the partition count: the new
// leaderships (a LeaderAndIsr of the partitions the dead broker led), the
// metadata naming the new leaders once they answered, and only then the
// full state (a LeaderAndIsr of every partition it hosts). Before, the full
// state was queued ahead of the metadata, which named the new leaders only
// once every broker had applied it; at 30,000 partitions that was seconds.
func TestFailoverPublishesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		defer h.close()
		h.do("brokers 1 2 3")
		h.do("controller 1")
		// Replicas round-robin, three each: broker 1 leads every third.
		h.do("topic-rr t 300 3")
		h.do("controller 2 3")
		h.do("store")
		// The reads, and the new leaderships broker 2 had been sent when
		// each began.
		var reads []string
		h.zk.mu.Lock()
		h.zk.onRead = func(s *memSession, n int) {
			// On the reading controller's loop goroutine: its senders
			// are its own.
			for id, b := range h.brokers {
				if b.sess == s {
					reads = append(reads, fmt.Sprintf("%d partitions after %d LeaderAndIsr", n, h.ctrls[id].senders[2].queued[kmsg.LeaderAndISR.Int16()]))
				}
			}
		}
		h.zk.mu.Unlock()
		out := h.do("crash 1")
		h.zk.mu.Lock()
		h.zk.onRead = nil
		got := strings.Join(reads, "; ")
		h.zk.mu.Unlock()
		// Broker 2's metadata named broker 1 leader of 100 partitions:
		// those are read first, elected and told; the rest after.
		if want := "100 partitions after 0 LeaderAndIsr; 200 partitions after 1 LeaderAndIsr"; got != want {
			t.Errorf("reads: %s, want %s", got, want)
		}
		for _, b := range []string{"b2", "b3"} {
			var kinds []string
			for _, l := range out {
				rest, ok := strings.CutPrefix(l, b+" <- ")
				if !ok {
					continue
				}
				kind, _, _ := strings.Cut(rest, " ")
				n := strings.Count(rest, "[t-")
				kinds = append(kinds, kind+"("+strconv.Itoa(n)+")")
				if kind == "UpdateMetadata" && (!strings.Contains(rest, "[t-0 L2 le1 isr[2 3] offline[1]]") || strings.Contains(rest, "L-1")) {
					t.Errorf("%s: metadata does not name the new leaders: %s", b, rest)
				}
			}
			want := "LeaderAndIsr(100) UpdateMetadata(300) LeaderAndIsr(300)"
			if got := strings.Join(kinds, " "); got != want {
				t.Errorf("%s received %s, want %s", b, got, want)
			}
		}
		if got := h.do("store"); len(got) == 0 || got[0] != "store: 2 read batches (300 partitions), 2 write batches (300 partitions)" {
			t.Fatalf("store: %v", got)
		}
	})
}

// TestFailoverPublishesWhileReading: at a fail-over of many partitions, the
// states its broker's metadata names live leaders for are read while the
// new leaders apply their LeaderAndIsr, and the metadata naming them goes
// out as soon as they answered, before that read ends (it lists the
// partitions not read yet as the broker's metadata had them). At 30,000
// partitions that read takes seconds: the new leaders waited for it.
func TestFailoverPublishesWhileReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		defer h.close()
		h.do("brokers 1 2 3")
		h.do("controller 1")
		h.do("topic-rr t 1500 3") // broker 1 leads 500
		h.do("controller 2 3")
		h.do("store")
		// The read of the other 1,000 ends only once broker 2 received
		// metadata from the new controller.
		gotMeta := make(chan struct{})
		h.net.mu.Lock()
		h.net.onRequest = func(id int32, line string) {
			if id == 2 && (strings.HasPrefix(line, "UpdateMetadata v6 c2") || strings.HasPrefix(line, "UpdateMetadata v6 c3")) {
				select {
				case <-gotMeta:
				default:
					close(gotMeta)
				}
			}
		}
		h.net.mu.Unlock()
		var missed bool // under h.zk.mu
		h.zk.mu.Lock()
		h.zk.onRead = func(s *memSession, n int) {
			if n == 1000 {
				// Without the store's lock meanwhile: the other
				// candidate reads /controller.
				h.zk.mu.Unlock()
				defer h.zk.mu.Lock()
				select {
				case <-gotMeta:
				case <-time.After(time.Minute): // fake time: nothing else would send it
					missed = true
				}
			}
		}
		h.zk.mu.Unlock()
		out := h.do("crash 1")
		h.zk.mu.Lock()
		h.zk.onRead = nil
		if missed {
			t.Error("no metadata from the new controller while it read the other states")
		}
		h.zk.mu.Unlock()
		h.net.mu.Lock()
		h.net.onRequest = nil
		h.net.mu.Unlock()
		for _, b := range []string{"b2", "b3"} {
			var kinds []string
			for _, l := range out {
				rest, ok := strings.CutPrefix(l, b+" <- ")
				if !ok {
					continue
				}
				kind, _, _ := strings.Cut(rest, " ")
				kinds = append(kinds, kind+"("+strconv.Itoa(strings.Count(rest, "[t-"))+")")
				if kind == "UpdateMetadata" && (!strings.Contains(rest, "[t-0 L2 le1 isr[2 3] offline[1]]") || strings.Contains(rest, "L-1")) {
					t.Errorf("%s: metadata does not name the new leaders: %.300s", b, rest)
				}
			}
			// The first metadata during the read, the second after it
			// (as read and written), then the full state.
			want := "LeaderAndIsr(500) UpdateMetadata(1500) UpdateMetadata(1500) LeaderAndIsr(1500)"
			if got := strings.Join(kinds, " "); got != want {
				t.Errorf("%s received %s, want %s", b, got, want)
			}
		}
	})
}
