package replica

import (
	"errors"
	"testing"
	"time"

	"github.com/kvlog/kvlog/engine/vfs"
)

// KIP-101 scenario 1: follower A fetched m2 but never learned that the HW
// moved past it; A restarts, B (the leader) dies, A is elected. Truncating
// to the HW on restart would lose the acknowledged m2; truncating with
// OffsetsForLeaderEpoch keeps it.
func TestKIP101Scenario1TruncateToHWLoss(t *testing.T) {
	s := newSim(t, 1, 2) // A=1, B=2
	s.elect(2, 2, 1)
	s.mustProduce(2, "m1", 1)
	s.step(1, stepOpts{})
	res, err := s.produce(2, "m2", 1, true, 2)
	if err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	s.nodes[2].p.AwaitAck(res.LastOffset, 2, func(err error) { acked <- err })
	s.step(1, stepOpts{})                   // A gets m2; B's HW = 1
	s.step(1, stepOpts{dropResponse: true}) // B's HW = 2: m2 acknowledged; A never hears
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("m2 acks=all: %v", err)
		}
	default:
		t.Fatal("m2 not acknowledged after A fetched past it")
	}
	if hw := s.nodes[1].log.HighWatermark(); hw != 1 {
		t.Fatalf("A's HW %d, want 1 (the scenario needs A behind)", hw)
	}
	s.restart(1, vfs.KeepAll)
	s.tell(1)
	s.step(1, stepOpts{}) // OffsetsForLeaderEpoch, not truncate-to-HW
	s.assertHasKeys(1, "m1-0", "m2-0")

	s.nodes[2].down = true
	s.elect(1, 1)
	s.assertHasKeys(1, "m2-0")
	s.mustProduce(1, "m3", 1)

	s.restart(2, vfs.KeepAll)
	s.tell(2)
	s.settle(2)
	s.assertIdentical(1, 2)
	s.assertHasKeys(2, "m1-0", "m2-0", "m3-0")
}

// KIP-101 scenario 2: leader A has {m1, m2}, follower B {m1}; both restart;
// B leads first and writes m3 at offset 1; A must drop m2 and take m3.
func TestKIP101Scenario2Divergence(t *testing.T) {
	s := newSim(t, 1, 2) // A=1, B=2
	s.elect(1, 1, 2)
	s.mustProduce(1, "m1", 1)
	s.step(2, stepOpts{})
	s.mustProduce(1, "m2", 1) // B never fetches it
	s.restart(1, vfs.KeepAll)
	s.restart(2, vfs.KeepAll)
	s.nodes[1].down = true
	s.elect(2, 2)
	if res := s.mustProduce(2, "m3", 1); res.BaseOffset != 1 {
		t.Fatalf("m3 at %d, want 1", res.BaseOffset)
	}
	s.nodes[1].down = false
	s.tell(1)
	s.settle(1)
	s.assertIdentical(1, 2)
	s.assertLacksKeys(1, "m2-0")
	s.assertHasKeys(1, "m1-0", "m3-0")
}

// KIP-279: after several leader changes the follower does not know the
// epoch the leader answers with; it truncates to the end of its own smaller
// epoch and asks again. One round (KIP-101 alone) would keep divergent
// records.
func TestKIP279MultiEpochDivergence(t *testing.T) {
	s := newSim(t, 1, 2) // L=1, F=2
	only := func(up int32) {
		for _, id := range s.ids {
			s.nodes[id].down = id != up
		}
	}
	s.elect(1, 1, 2) // epoch 1
	s.mustProduce(1, "b0", 1)
	s.settle(2)

	only(2)
	s.elect(2, 2) // epoch 2: F writes offset 1
	s.mustProduce(2, "b1", 1)

	only(1)
	s.elect(1, 1) // epoch 3: L writes offsets 1, 2
	s.mustProduce(1, "c1", 1)
	s.mustProduce(1, "c2", 1)

	only(2)
	s.elect(2, 2) // epoch 4: F writes offsets 2, 3
	s.mustProduce(2, "d2", 1)
	s.mustProduce(2, "d3", 1)

	only(1)
	s.elect(1, 1) // epoch 5: L writes offset 3
	s.mustProduce(1, "e3", 1)

	// F: epochs {1@0, 2@1, 4@2}, LEO 4. L: {1@0, 3@1, 5@3}, LEO 4.
	s.nodes[2].down = false
	s.tell(2)
	s.queries = 0
	s.settle(2)
	if s.queries != 2 {
		t.Fatalf("%d OffsetsForLeaderEpoch rounds, want 2 (KIP-279)", s.queries)
	}
	s.assertIdentical(1, 2)
	s.assertLacksKeys(2, "b1-0", "d2-0", "d3-0")
	s.assertHasKeys(2, "b0-0", "c1-0", "c2-0", "e3-0")
}

// A zombie follower (paused past its session while the leadership moved
// twice) comes back fetching with its old epoch: the leader fences it
// (FENCED_LEADER_EPOCH), it waits for the new state, truncates and rejoins.
func TestZombieFollowerFenced(t *testing.T) {
	s := newSim(t, 1, 2, 3)
	s.elect(1, 1, 2, 3) // epoch 1
	s.mustProduce(1, "a", 3)
	s.settle(2, 3)

	s.nodes[3].down = true // paused
	s.mustProduce(1, "b", 2)
	s.settle(2)
	s.clk.Advance(s.lagMax + time.Second)
	s.step(2, stepOpts{})
	s.tick()
	if isr := s.state.ISR; len(isr) != 2 {
		t.Fatalf("ISR %v after follower 3 paused past the lag", isr)
	}
	s.elect(2, 2, 1) // epoch 2
	s.mustProduce(2, "c", 1)
	s.settle(1)
	s.elect(1, 1, 2) // epoch 3
	s.mustProduce(1, "d", 1)
	s.settle(2)

	// 3 wakes up believing epoch 1.
	s.nodes[3].down = false
	before := s.batches(3)
	s.step(3, stepOpts{})
	if req := s.nodes[3].p.NextRequest(); req.Kind != RequestNone {
		t.Fatalf("zombie follower not fenced: next request %+v", req)
	}
	if got := s.batches(3); len(got) != len(before) {
		t.Fatalf("zombie follower's log changed while fenced")
	}
	s.tell(3) // the LeaderAndIsr it missed
	s.settle(3)
	s.assertIdentical(1, 2, 3)
	s.step(3, stepOpts{})
	if isr := s.state.ISR; len(isr) != 3 {
		t.Fatalf("ISR %v after the zombie caught up", isr)
	}
}

// A zombie leader keeps accepting writes after losing leadership: acks=1
// writes to it are lost (as in Kafka), acks=all writes never complete, and
// when it learns the new epoch it truncates them.
func TestZombieLeader(t *testing.T) {
	s := newSim(t, 1, 2, 3)
	s.elect(1, 1, 2, 3)
	s.mustProduce(1, "a", 2)
	s.settle(2, 3)
	s.step(2, stepOpts{})
	s.step(3, stepOpts{})

	s.nodes[1].down = true // partitioned from the controller
	s.elect(2, 2, 3)
	s.nodes[1].down = false // still thinks it leads epoch 1
	s.mustProduce(1, "z", 1)
	res, err := s.produce(1, "zz", 1, true, 2)
	if err != nil {
		t.Fatalf("zombie refused acks=all up front: %v", err)
	}
	acked := make(chan error, 1)
	s.nodes[1].p.AwaitAck(res.LastOffset, 2, func(err error) { acked <- err })
	s.mustProduce(2, "c", 1)
	s.settle(3)
	select {
	case err := <-acked:
		t.Fatalf("zombie acknowledged acks=all: %v", err)
	default:
	}
	s.tell(1)
	if err := <-acked; !errors.Is(err, ErrNotLeader) {
		t.Fatalf("zombie's acks=all waiter: %v, want ErrNotLeader", err)
	}
	s.settle(1, 3)
	s.assertIdentical(1, 2, 3)
	s.assertLacksKeys(1, "z-0", "zz-0")
}

// acks=all waits for the HW, fails with NOT_ENOUGH_REPLICAS up front and
// with ..._AFTER_APPEND when the ISR shrank below the minimum meanwhile.
func TestAcksAll(t *testing.T) {
	s := newSim(t, 1, 2, 3)
	s.elect(1, 1, 2, 3)
	res, err := s.produce(1, "a", 1, true, 2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	s.nodes[1].p.AwaitAck(res.LastOffset, 2, func(err error) { done <- err })
	s.step(2, stepOpts{})
	s.step(2, stepOpts{})
	select {
	case <-done:
		t.Fatal("acknowledged while follower 3 (in the ISR) lacks the record")
	default:
	}
	s.step(3, stepOpts{})
	s.step(3, stepOpts{})
	if err := <-done; err != nil {
		t.Fatalf("acks=all: %v", err)
	}

	// Both followers stop; a write waits, the ISR shrinks to the leader:
	// the waiter completes with NOT_ENOUGH_REPLICAS_AFTER_APPEND.
	res, err = s.produce(1, "b", 1, true, 2)
	if err != nil {
		t.Fatal(err)
	}
	s.nodes[1].p.AwaitAck(res.LastOffset, 2, func(err error) { done <- err })
	s.clk.Advance(s.lagMax + time.Second)
	s.tick()
	if err := <-done; !errors.Is(err, ErrNotEnoughReplicasAfterAppend) {
		t.Fatalf("after the shrink: %v", err)
	}
	if _, err := s.produce(1, "c", 1, true, 2); !errors.Is(err, ErrNotEnoughReplicas) {
		t.Fatalf("acks=all with ISR %v: %v", s.state.ISR, err)
	}
	// Followers return and rejoin; acks=all works again.
	s.settle(2, 3)
	s.step(2, stepOpts{})
	s.step(3, stepOpts{})
	if len(s.state.ISR) != 3 {
		t.Fatalf("ISR %v after followers caught up", s.state.ISR)
	}
	if _, err := s.produce(1, "d", 1, true, 2); err != nil {
		t.Fatal(err)
	}
}

// Last replica standing (see the package doc): the ISR shrinks to the
// leader, which then loses power; whatever was acknowledged survives
// because the shrink fsynced first.
func TestLastReplicaStandingSurvivesPowerLoss(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		s := newSim(t, 1, 2)
		s.useCrashFS(1, seed)
		s.elect(1, 1, 2)
		var keys []string
		for i := 0; i < 20; i++ {
			prefix := "k" + string(rune('a'+i))
			res, err := s.produce(1, prefix, 3, true, 1)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			s.nodes[1].p.AwaitAck(res.LastOffset, 1, func(err error) { done <- err })
			s.step(2, stepOpts{})
			s.step(2, stepOpts{})
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			keys = append(keys, prefix+"-0", prefix+"-2")
		}
		// The follower goes away for good; the leader stands alone.
		s.nodes[2].down = true
		s.mustProduce(1, "unreplicated", 1)
		s.clk.Advance(s.lagMax + time.Second)
		s.tick()
		if len(s.state.ISR) != 1 {
			t.Fatalf("ISR %v", s.state.ISR)
		}
		if seed%2 == 0 {
			// Acknowledged while alone: fsynced before the ack. (Odd seeds
			// skip this so that only the shrink's fsync protects the data.)
			if _, err := s.produce(1, "alone", 2, true, 1); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, "alone-0", "alone-1")
		}

		s.restart(1, vfs.KeepNone) // power loss: only fsynced data survives
		s.elect(1, 1)              // elected again as the only ISR member
		s.assertHasKeys(1, keys...)
	}
}

// The control for the test above: without an fsync, a power loss does
// take replicated, committed data with it (so the test above has teeth).
func TestPowerLossWithoutFsyncLosesData(t *testing.T) {
	s := newSim(t, 1, 2)
	s.useCrashFS(1, 1)
	s.elect(1, 1, 2)
	s.mustProduce(1, "x", 3)
	s.settle(2)
	if hw := s.nodes[1].log.HighWatermark(); hw != 3 {
		t.Fatalf("HW %d", hw)
	}
	s.restart(1, vfs.KeepNone)
	if leo := s.nodes[1].log.LogEndOffset(); leo != 0 {
		t.Fatalf("LEO %d after a power loss with nothing fsynced; want 0", leo)
	}
}

// A follower that was behind a leader whose log start moved past the
// follower's end starts over at the leader's log start.
func TestFollowerBehindLogStart(t *testing.T) {
	s := newSim(t, 1, 2)
	s.elect(1, 1, 2)
	s.nodes[2].down = true
	for i := 0; i < 5; i++ {
		s.mustProduce(1, "x"+string(rune('a'+i)), 2)
	}
	l := s.nodes[1].log
	l.SetHighWatermark(l.LogEndOffset())
	if err := l.DeleteRecordsBefore(6); err != nil {
		t.Fatal(err)
	}
	s.nodes[2].down = false
	s.settle(2)
	if ls := s.nodes[2].log.LogStartOffset(); ls != 6 {
		t.Fatalf("follower log start %d, want 6", ls)
	}
	s.assertIdentical(1, 2)
}
